import assert from "node:assert/strict";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { Registry } from "prom-client";
import { derivePrincipal, principalKey, type Principal } from "@logistics/shared/auth";
import { ScanSchema, type Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import {
  IngestService,
  RejectReason,
  ScanAckSchema,
  ScanOutcome,
  StreamScansRequestSchema,
  type StreamScansRequest,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { resetCallKey } from "@logistics/shared/server";
import { seededRandom, waitFor } from "@logistics/shared/testing";
import { createIngestMetrics } from "./ingest-metrics.js";
import { createIngestHandlers, pipeline, STREAM_STALLED_MESSAGE, type IngestHandlersDeps } from "./ingest-handlers.js";
import type { RateLimiter } from "./redis-rate-limiter.js";
import type { ScanCaller, ScanIngestor } from "./scan-ingestor.js";

const carrierPrincipal = (carrier: string): Principal => derivePrincipal({ sub: `gw-${carrier}`, scope: "scans:write", carrier });

function scan(id: string, carrierCode = "acme"): Scan {
  return create(ScanSchema, {
    eventId: id,
    trackingNumber: "ABCD12345678",
    carrierCode,
    rawStatus: { code: "AR" },
    eventTime: timestampFromMs(Date.now()),
  });
}

/** An ingestor of our own interface: accepts everything, each batch after `delayMs(batch)`; records callers. */
function echoIngestor(delayMs: (firstId: string) => number = () => 0): ScanIngestor & { calls: number; callers: ScanCaller[] } {
  const self = {
    calls: 0,
    callers: [] as ScanCaller[],
    async ingest(scans: readonly Scan[], caller: ScanCaller) {
      self.calls++;
      self.callers.push(caller);
      await new Promise((r) => setTimeout(r, delayMs(scans[0]?.eventId ?? "")));
      return scans.map((s) => create(ScanAckSchema, { eventId: s.eventId, outcome: ScanOutcome.ACCEPTED }));
    },
  };
  return self;
}

const allow: RateLimiter = { take: async () => ({ allowed: true, retryAfterMs: 0 }) };

function clientFor(principal: Principal, deps: Partial<IngestHandlersDeps>) {
  const setPrincipal: Interceptor = (next) => (req) => {
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
  const handlers = createIngestHandlers({
    ingestor: echoIngestor(),
    rateLimiter: allow,
    createShipment: async () => {
      throw new ConnectError("not used", Code.Unimplemented);
    },
    handOver: async () => {
      throw new ConnectError("not used", Code.Unimplemented);
    },
    removePartner: async () => {
      throw new ConnectError("not used", Code.Unimplemented);
    },
    metrics: createIngestMetrics(new Registry()),
    log: { warn: () => {} },
    drainSignal: new AbortController().signal,
    ...deps,
  });
  const transport = createRouterTransport((r) => r.service(IngestService, handlers), { router: { interceptors: [setPrincipal] } });
  return createClient(IngestService, transport);
}

async function* messages(batches: Scan[][]): AsyncIterable<StreamScansRequest> {
  for (const scans of batches) yield create(StreamScansRequestSchema, { scans });
}

/** V8's full garbage collection, without starting the test process with --expose-gc. */
function fullGc(): () => void {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  setFlagsFromString("--no-expose-gc");
  return gc;
}

describe("IngestService handlers", () => {
  it("answers stream messages in request order even when later ones finish first", async () => {
    const ingestor = echoIngestor((id) => (id === "m0" ? 80 : 1));
    const client = clientFor(carrierPrincipal("acme"), { ingestor, streamWindow: 4 });
    const batches = [0, 1, 2, 3, 4, 5].map((i) => [scan(`m${i}`), scan(`m${i}-b`)]);
    const got: string[][] = [];
    for await (const res of client.streamScans(messages(batches))) got.push(res.acks.map((a) => a.eventId));
    assert.deepEqual(got, batches.map((b) => b.map((s) => s.eventId)));
  });

  it("handles no more than the window of messages at once when answers are not ready", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    const ingestor: ScanIngestor = {
      async ingest(scans) {
        started++;
        await gate;
        return scans.map((s) => create(ScanAckSchema, { eventId: s.eventId, outcome: ScanOutcome.ACCEPTED }));
      },
    };
    const client = clientFor(carrierPrincipal("acme"), { ingestor, streamWindow: 2 });
    const batches = Array.from({ length: 10 }, (_, i) => [scan(`w${i}`)]);
    const done = (async () => {
      let n = 0;
      for await (const _ of client.streamScans(messages(batches))) n++;
      return n;
    })();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(started, 2);
    release();
    assert.equal(await done, 10);
  });

  it("hands every stream message to the ingestor with the token's carrier, never failing the stream for a foreign scan", async () => {
    const ingestor = echoIngestor();
    const client = clientFor(carrierPrincipal("acme"), { ingestor, streamWindow: 1 });
    const got: number[] = [];
    for await (const res of client.streamScans(messages([[scan("ok1")], [scan("other", "ups")], [scan("ok2")]]))) got.push(res.acks.length);
    assert.deepEqual(got, [1, 1, 1]);
    assert.deepEqual(ingestor.callers, [{ carrier: "acme" }, { carrier: "acme" }, { carrier: "acme" }]);
  });

  it("hands SubmitScans to the ingestor with the carrier claim, and without one for internal callers", async () => {
    const ingestor = echoIngestor();
    const carrier = clientFor(carrierPrincipal("acme"), { ingestor });
    assert.equal((await carrier.submitScans({ scans: [scan("a"), scan("b", "ups")] })).acks.length, 2);
    const internal = clientFor(derivePrincipal({ sub: "svc", scope: "scans:write" }), { ingestor });
    assert.equal((await internal.submitScans({ scans: [scan("a"), scan("b", "ups")] })).acks.length, 2);
    assert.deepEqual(ingestor.callers, [{ carrier: "acme" }, {}]);
  });

  it("answers SubmitScans over the rate limit with ResourceExhausted and a retry-after hint", async () => {
    const deny: RateLimiter = { take: async () => ({ allowed: false, retryAfterMs: 1500 }) };
    const client = clientFor(carrierPrincipal("acme"), { rateLimiter: deny });
    const err = await client.submitScans({ scans: [scan("a")] }).then(
      () => assert.fail("expected ResourceExhausted"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(err.code, Code.ResourceExhausted);
    assert.equal(err.metadata.get("retry-after"), "2");
  });

  it("answers stream messages over the rate limit with RATE_LIMITED acks and keeps the stream open", async () => {
    let n = 0;
    const limiter: RateLimiter = { take: async () => (n++ === 0 ? { allowed: false, retryAfterMs: 300 } : { allowed: true, retryAfterMs: 0 }) };
    const client = clientFor(carrierPrincipal("acme"), { rateLimiter: limiter, streamWindow: 1 });
    const got = [];
    for await (const res of client.streamScans(messages([[scan("r1")], [scan("r2")]]))) got.push(res.acks[0]);
    assert.equal(got[0]?.rejectReason, RejectReason.RATE_LIMITED);
    assert.match(got[0]?.detail ?? "", /retry after 300 ms/);
    assert.equal(got[1]?.outcome, ScanOutcome.ACCEPTED);
  });

  it("lets go of every answered message of a stream that stays open", async () => {
    const gc = fullGc();
    // The messages as the handler got them (the transport decodes its own copies).
    const seen: Array<WeakRef<readonly Scan[]>> = [];
    const ingestor: ScanIngestor = {
      async ingest(scans) {
        seen.push(new WeakRef(scans));
        return scans.map((s) => create(ScanAckSchema, { eventId: s.eventId, outcome: ScanOutcome.ACCEPTED }));
      },
    };
    const client = clientFor(carrierPrincipal("acme"), { ingestor, streamWindow: 4 });
    let endStream!: () => void;
    const ended = new Promise<void>((r) => (endStream = r));
    async function* open(): AsyncIterable<StreamScansRequest> {
      for (let i = 0; i < 500; i++) yield create(StreamScansRequestSchema, { scans: [scan(`k${i}`)] });
      await ended;
    }
    const responses = client.streamScans(open())[Symbol.asyncIterator]();
    for (let i = 0; i < 500; i++) assert.equal((await responses.next()).value?.acks[0]?.eventId, `k${i}`);
    // A WeakRef's target stays alive until the job that made or read it ends: collect in a later one.
    await new Promise((r) => setImmediate(r));
    gc();
    const alive = seen.filter((w) => w.deref() !== undefined).length;
    endStream();
    assert.equal((await responses.next()).done, true);
    assert.equal(seen.length, 500);
    // A few may still be referenced by the window of steps in flight (streamWindow 4) or a job not
    // yet run; the leak kept all 500.
    assert.ok(alive <= 8, `${alive} of 500 answered messages still reachable while the stream is open`);
  });

  it("ends an open stream with Unavailable when the server drains, after answering every message it read", async () => {
    const drain = new AbortController();
    const client = clientFor(carrierPrincipal("acme"), { drainSignal: drain.signal });
    let sendMore!: () => void;
    const more = new Promise<void>((r) => (sendMore = r));
    async function* open(): AsyncIterable<StreamScansRequest> {
      yield create(StreamScansRequestSchema, { scans: [scan("d1")] });
      await more;
      yield create(StreamScansRequestSchema, { scans: [scan("d2")] });
    }
    const got: string[] = [];
    const err = await (async () => {
      for await (const res of client.streamScans(open())) {
        got.push(res.acks[0]?.eventId ?? "");
        drain.abort();
        sendMore();
      }
    })().then(
      () => assert.fail("a drained stream must not end with OK: d2 may have been sent and never answered"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.deepEqual(got, ["d1"]);
    assert.equal(err.code, Code.Unavailable);
    assert.match(err.rawMessage, /resend/);
  });

  it("ends a stream that stopped sending with Unavailable after the idle timeout, and never one whose message is being answered", async () => {
    // The first message takes three timeouts to answer: the stream is not idle while it waits.
    const ingestor = echoIngestor((id) => (id === "slow" ? 300 : 0));
    const client = clientFor(carrierPrincipal("acme"), { ingestor, streamIdleMs: 100 });
    let stop!: () => void;
    const never = new Promise<void>((r) => (stop = r));
    async function* open(): AsyncIterable<StreamScansRequest> {
      yield create(StreamScansRequestSchema, { scans: [scan("slow")] });
      await never; // half-open: no more messages, no end
    }
    const got: string[] = [];
    const t0 = performance.now();
    const err = await (async () => {
      for await (const res of client.streamScans(open())) got.push(res.acks[0]?.eventId ?? "");
    })().then(
      () => assert.fail("an idle stream must not end with OK"),
      (e: unknown) => ConnectError.from(e),
    );
    stop();
    assert.deepEqual(got, ["slow"]);
    assert.equal(err.code, Code.Unavailable);
    assert.match(err.rawMessage, /stream idle.*resend/);
    // The answer came after ~300 ms; the stream was idle only from then on.
    assert.ok(performance.now() - t0 >= 390, `closed after ${Math.round(performance.now() - t0)} ms`);
  });

  it("keeps a stream open that sends more often than the idle timeout, and ends it with OK when it half-closes", async () => {
    // 40 ms between messages against 400 ms: a late timer on a loaded machine does not make it idle.
    const client = clientFor(carrierPrincipal("acme"), { streamIdleMs: 400 });
    async function* steady(): AsyncIterable<StreamScansRequest> {
      for (let i = 0; i < 8; i++) {
        yield create(StreamScansRequestSchema, { scans: [scan(`s${i}`)] });
        await new Promise((r) => setTimeout(r, 40));
      }
    }
    const got: string[] = [];
    for await (const res of client.streamScans(steady())) got.push(res.acks[0]?.eventId ?? "");
    assert.deepEqual(got, ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"]);
  });

  it("resets a stream whose gateway stopped reading acks after the stall timeout: counts it, names the caller, cuts the transport", async () => {
    const metrics = createIngestMetrics(new Registry());
    const warnings: Array<{ obj: object; msg?: string }> = [];
    let resets = 0;
    const principal = carrierPrincipal("acme");
    const setContext: Interceptor = (next) => (req) => {
      req.contextValues.set(principalKey, principal).set(resetCallKey, () => resets++);
      return next(req);
    };
    const handlers = createIngestHandlers({
      ingestor: echoIngestor(),
      rateLimiter: allow,
      createShipment: async () => assert.fail("not used"),
      handOver: async () => assert.fail("not used"),
      removePartner: async () => assert.fail("not used"),
      metrics,
      log: { warn: (obj, msg) => warnings.push({ obj, ...(msg === undefined ? {} : { msg }) }) },
      drainSignal: new AbortController().signal,
      streamStallMs: 100,
    });
    const transport = createRouterTransport((r) => r.service(IngestService, handlers), { router: { interceptors: [setContext] } });
    let sent = 0;
    async function* endless(): AsyncIterable<StreamScansRequest> {
      for (;;) yield create(StreamScansRequestSchema, { scans: [scan(`st${++sent}`)] });
    }
    const responses = createClient(IngestService, transport).streamScans(endless())[Symbol.asyncIterator]();
    assert.equal((await responses.next()).value?.acks[0]?.eventId, "st1");
    // The gateway reads nothing more.
    await waitFor(() => resets > 0, { message: "the stalled stream's transport is reset", timeoutMs: 5000 });
    assert.equal(resets, 1);
    assert.equal((await metrics.streamStalls.get()).values[0]?.value, 1);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!.msg ?? "", /stall timeout/);
    assert.deepEqual(
      { ...warnings[0]!.obj, stalledMs: undefined, messages: undefined, unsent: undefined },
      { subject: "gw-acme", carrier: "acme", address: "unknown", stalledMs: undefined, messages: undefined, unsent: undefined },
    );
    assert.ok((warnings[0]!.obj as { stalledMs: number }).stalledMs >= 100);
    // Where the transport cannot be reset (this in-process one), a reader that comes back learns why.
    const err = await (async () => {
      while ((await responses.next()).done !== true);
    })().then(
      () => assert.fail("a stalled stream must not end with OK"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(err.code, Code.Canceled);
    assert.equal(err.rawMessage, STREAM_STALLED_MESSAGE);
    const read = sent;
    await new Promise((r) => setImmediate(r));
    assert.equal(sent, read, "the stalled stream reads no more requests");
  });

  it("ends with OK on drain when the gateway had half-closed and every message was answered", async () => {
    const drain = new AbortController();
    const ingestor = echoIngestor(() => 30);
    const client = clientFor(carrierPrincipal("acme"), { drainSignal: drain.signal, ingestor, streamWindow: 4 });
    const got: string[] = [];
    for await (const res of client.streamScans(messages([[scan("h1")], [scan("h2")]]))) {
      got.push(res.acks[0]?.eventId ?? "");
      drain.abort();
    }
    assert.deepEqual(got, ["h1", "h2"]);
  });
});

type Step<Res> =
  | { tag: "request"; result: IteratorResult<StreamScansRequest> }
  | { tag: "readError"; error: unknown }
  | { tag: "answered"; response: Res }
  | { tag: "drain" };

/** The pipeline as an async generator racing its steps, as it was before it became a state machine: the reference. */
async function* referencePipeline<Res>(
  requests: AsyncIterable<StreamScansRequest>,
  window: number,
  drainSignal: AbortSignal,
  handle: (req: StreamScansRequest) => Promise<Res>,
): AsyncGenerator<Res> {
  const it = requests[Symbol.asyncIterator]();
  const inProgress: Array<Promise<Step<Res>>> = [];
  let reading: Promise<Step<Res>> | undefined;
  let readingDone = false;
  let failure: { error: unknown } | undefined;
  let drainedOpen = false;
  let wake: ((step: Step<Res>) => void) | undefined;
  const onDrain = () => wake?.({ tag: "drain" });
  drainSignal.addEventListener("abort", onDrain, { once: true });
  try {
    for (;;) {
      if (!readingDone && !failure && !reading && inProgress.length < window) {
        if (drainSignal.aborted) {
          readingDone = true;
          drainedOpen = true;
        } else {
          reading = new Promise<Step<Res>>((resolve) => {
            wake = resolve;
            it.next().then(
              (result) => resolve({ tag: "request", result }),
              (error: unknown) => resolve({ tag: "readError", error }),
            );
          });
        }
      }
      const racers: Array<Promise<Step<Res>>> = inProgress.slice(0, 1);
      if (reading) racers.push(reading);
      if (racers.length === 0) break;
      const step = await Promise.race(racers);
      switch (step.tag) {
        case "answered":
          inProgress.shift();
          yield step.response;
          break;
        case "request":
          reading = undefined;
          wake = undefined;
          if (step.result.done) {
            readingDone = true;
            break;
          }
          try {
            const answered = handle(step.result.value).then((response): Step<Res> => ({ tag: "answered", response }));
            answered.catch(() => {});
            inProgress.push(answered);
          } catch (error) {
            failure = { error };
          }
          break;
        case "readError":
          reading = undefined;
          wake = undefined;
          failure = { error: step.error };
          break;
        case "drain":
          reading = undefined;
          readingDone = true;
          drainedOpen = true;
          break;
      }
    }
    if (failure) throw failure.error;
    if (drainedOpen) throw new ConnectError("drained", Code.Unavailable);
  } finally {
    drainSignal.removeEventListener("abort", onDrain);
    if (!readingDone || failure) void it.return?.().catch(() => {});
  }
}

interface PipelineCase {
  messages: number;
  /** Reading fails after the messages instead of ending. */
  readFails: boolean;
  window: number;
  /** Per message: hops before its answer, and whether `handle` answers, rejects, or throws at once. */
  answers: Array<{ hops: number; outcome: "ok" | "reject" | "throw" }>;
  /** The reader stops after this many responses, if it does. */
  stopAfter: number | undefined;
}

function pipelineCase(random: () => number): PipelineCase {
  const messages = Math.floor(random() * 10);
  return {
    messages,
    readFails: random() < 0.2,
    window: 1 + Math.floor(random() * 4),
    answers: Array.from({ length: messages }, () => ({
      hops: Math.floor(random() * 4),
      outcome: random() < 0.85 ? ("ok" as const) : random() < 0.5 ? ("reject" as const) : ("throw" as const),
    })),
    stopAfter: random() < 0.25 ? Math.floor(random() * (messages + 1)) : undefined,
  };
}

/** A pause of `hops` turns, some of them timer turns so that reads and answers interleave. */
async function hops(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await (i % 2 === 0 ? Promise.resolve() : new Promise((r) => setImmediate(r)));
}

async function playPipeline(c: PipelineCase, impl: typeof pipeline): Promise<{ got: string[]; outcome: string }> {
  let read = 0;
  let closed = false;
  let handling = 0;
  let mostHandling = 0;
  const requests: AsyncIterable<StreamScansRequest> = {
    [Symbol.asyncIterator]: () => ({
      async next() {
        await hops(1);
        if (read < c.messages) return { done: false, value: create(StreamScansRequestSchema, { scans: [scan(`p${read++}`)] }) };
        if (c.readFails) throw new Error("read failed");
        return { done: true, value: undefined };
      },
      async return() {
        closed = true;
        return { done: true, value: undefined };
      },
    }),
  };
  const handle = (req: StreamScansRequest): Promise<string> => {
    const id = req.scans[0]!.eventId;
    const a = c.answers[Number(id.slice(1))]!;
    if (a.outcome === "throw") throw new Error(`refused ${id}`);
    handling++;
    mostHandling = Math.max(mostHandling, handling);
    return hops(a.hops).then(() => {
      handling--;
      if (a.outcome === "reject") throw new Error(`failed ${id}`);
      return id;
    });
  };
  const got: string[] = [];
  let outcome = "done";
  const it = impl(requests, c.window, new AbortController().signal, handle)[Symbol.asyncIterator]();
  try {
    for (;;) {
      if (got.length === c.stopAfter) {
        await it.return?.();
        outcome = "stopped";
        break;
      }
      const r = await it.next();
      if (r.done === true) break;
      got.push(r.value);
    }
  } catch (err) {
    outcome = `failed: ${(err as Error).message}`;
  }
  assert.ok(mostHandling <= c.window, `at most the window in progress: ${mostHandling} > ${c.window}`);
  if (outcome !== "done" || c.readFails) {
    await new Promise((r) => setImmediate(r));
    // A reader that leaves before its first pull never started the stream.
    assert.ok(closed || read === c.messages || c.stopAfter === 0, "a stream that stopped early stops reading its requests");
  }
  return { got, outcome };
}

describe("the StreamScans pipeline", () => {
  it("answers as the racing generator did, on many generated streams, readers and answer timings", async () => {
    for (let seed = 1; seed <= 300; seed++) {
      const c = pipelineCase(seededRandom(seed));
      const ref = await playPipeline(c, referencePipeline as unknown as typeof pipeline);
      assert.deepEqual(await playPipeline(c, pipeline), ref, `seed ${seed}: ${JSON.stringify(c)}`);
    }
  });

  it("stops reading requests and ends at once when the reader leaves while a response is pending", async () => {
    let closed = false;
    let started = 0;
    const requests: AsyncIterable<StreamScansRequest> = {
      [Symbol.asyncIterator]: () => ({
        next: async () => ({ done: false, value: create(StreamScansRequestSchema, { scans: [scan("x")] }) }),
        return: async () => ((closed = true), { done: true, value: undefined }),
      }),
    };
    const it = pipeline(requests, 4, new AbortController().signal, () => (started++, new Promise<string>(() => {})));
    const pending = it.next();
    await new Promise((r) => setImmediate(r));
    assert.equal(started, 4, "the window is full");
    assert.deepEqual(await it.return!(), { done: true, value: undefined });
    assert.deepEqual(await pending, { done: true, value: undefined });
    assert.equal(closed, true);
    assert.deepEqual(await it.next(), { done: true, value: undefined });
  });

  /** Requests that never end, each message's id counted in `sent`; `return()` sets `closed`. */
  function endlessRequests() {
    const state = { sent: 0, closed: false };
    const requests: AsyncIterable<StreamScansRequest> = {
      [Symbol.asyncIterator]: () => ({
        next: async () => ({ done: false, value: create(StreamScansRequestSchema, { scans: [scan(`e${++state.sent}`)] }) }),
        return: async () => ((state.closed = true), { done: true, value: undefined }),
      }),
    };
    return { state, requests };
  }

  it("ends a stream whose reader has not come back for the stall timeout: stops reading, lets go, reports once", async () => {
    const { state, requests } = endlessRequests();
    const stalls: Array<{ stalledMs: number; unsent: number }> = [];
    const it = pipeline(requests, 4, new AbortController().signal, async (req) => req.scans[0]!.eventId, {
      stallMs: 100,
      onStall: (s) => stalls.push(s),
    });
    assert.deepEqual(await it.next(), { done: false, value: "e1" });
    const taken = performance.now();
    // The reader is stuck writing "e1" to a peer that does not read.
    await waitFor(() => stalls.length > 0, { message: "the stall is reported", timeoutMs: 5000 });
    assert.ok(performance.now() - taken >= 100, `reported ${Math.round(performance.now() - taken)} ms after the take`);
    assert.equal(stalls.length, 1);
    assert.ok(stalls[0]!.stalledMs >= 100);
    // Answers started before the take may have completed since; none after it (no reader, no progress).
    assert.ok(stalls[0]!.unsent <= 4, `${stalls[0]!.unsent} unsent`);
    assert.equal(state.closed, true, "the requests are no longer read");
    const err = await it.next().then(
      () => assert.fail("a stalled stream must not go on"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(err.code, Code.Canceled);
    assert.deepEqual(await it.next(), { done: true, value: undefined });
  });

  it("never stalls a reader that waits for slow answers, or comes back slowly but within the limit", async () => {
    const { requests } = endlessRequests();
    const stalls: unknown[] = [];
    let n = 0;
    // Every third answer takes three stall timeouts; the reader waits for it, which is not a stall.
    const it = pipeline(
      requests,
      4,
      new AbortController().signal,
      (req) => new Promise<string>((r) => setTimeout(() => r(req.scans[0]!.eventId), ++n % 3 === 0 ? 300 : 0)),
      { stallMs: 100, onStall: (s) => stalls.push(s) },
    );
    const t0 = performance.now();
    let got = 0;
    while (performance.now() - t0 < 1000) {
      assert.equal((await it.next()).done, false);
      got++;
      // A reader that takes a quarter of the limit to write each response.
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.deepEqual(stalls, []);
    assert.ok(got > 5);
    await it.return!();
  });

  it("stalls a stream whose reader is away even after the idle timeout stopped its reading", async () => {
    // One message, then the client is silent and does not read: idle stops reading, but only the
    // reader could end the stream, and it is stuck writing.
    let reads = 0;
    const requests: AsyncIterable<StreamScansRequest> = {
      [Symbol.asyncIterator]: () => ({
        next: () => (++reads === 1 ? Promise.resolve({ done: false, value: create(StreamScansRequestSchema, { scans: [scan("one")] }) }) : new Promise(() => {})),
      }),
    };
    const stalls: unknown[] = [];
    const it = pipeline(requests, 4, new AbortController().signal, async (req) => req.scans[0]!.eventId, {
      idleMs: 50,
      stallMs: 300,
      onStall: (s) => stalls.push(s),
    });
    assert.deepEqual(await it.next(), { done: false, value: "one" });
    await waitFor(() => stalls.length > 0, { message: "the stall is reported", timeoutMs: 5000 });
    assert.equal(ConnectError.from(await it.next().catch((e: unknown) => e)).code, Code.Canceled);
  });
});
