import assert from "node:assert/strict";
import { afterEach, describe, it, vi } from "vitest";
import { context, SpanKind, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { TracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace";
import { DeliveryState, type DeliveryAttempt } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { waitFor } from "@logistics/shared/testing";
import { DELIVERY_ID_HEADER, startDeliveryWorker, type DeliveryWorkerOptions } from "./delivery-worker.js";
import type { AttemptRecord, ClaimedDelivery, ClaimOptions, DeliveryTransition } from "./notification-store.js";
import { verifyWebhookSignature } from "./signature.js";
import type { WebhookRequest, WebhookResult } from "./webhook-sender.js";

/** An in-memory stand-in for the store's claim/record pair: every delivery is due at once. */
function fakeStore(deliveries: ClaimedDelivery[], successorDue: (d: ClaimedDelivery) => boolean = () => false) {
  const queue = [...deliveries];
  const recorded: Array<{ id: string; attempt: DeliveryAttempt; next: DeliveryTransition }> = [];
  /** Sizes of the recordAttempts calls, and the number of claims. */
  const calls = { recordBatches: [] as number[], claims: 0 };
  return {
    recorded,
    calls,
    /** Makes `d` due (a new or unblocked delivery). */
    add: (d: ClaimedDelivery) => queue.push(d),
    store: {
      async claimDue(o: ClaimOptions) {
        calls.claims++;
        return queue.splice(0, o.limit).map((d) => ({ ...d, leaseToken: o.leaseToken }));
      },
      async recordAttempts(records: readonly AttemptRecord[]) {
        calls.recordBatches.push(records.length);
        return records.map(({ delivery: d, attempt, next }) => {
          recorded.push({ id: d.id, attempt, next });
          if (next.state === DeliveryState.RETRYING) queue.push({ ...d, attemptsInBudget: d.attemptsInBudget + 1 });
          return { written: true, successorDue: successorDue(d) };
        });
      },
    },
  };
}

const delivery = (over: Partial<ClaimedDelivery> = {}): ClaimedDelivery => ({
  id: "dlv_1",
  leaseToken: "",
  subscriptionId: "sub_1",
  eventId: "evt-1",
  trackingNumber: "ABCD12345678",
  body: '{"id":"evt-1"}',
  traceContext: {},
  attemptsInBudget: 0,
  origin: "https://hooks.example.com",
  webhookUrl: "https://hooks.example.com/x",
  secret: "s".repeat(43),
  ...over,
});

const options = (over: Partial<DeliveryWorkerOptions>): DeliveryWorkerOptions => ({
  store: fakeStore([]).store,
  targetPolicy: {
    allowHttp: false,
    allow: { hosts: [], cidrs: [] },
    resolve: async () => [{ address: "93.184.216.34", family: 4 }],
  },
  retry: { baseMs: 1, maxMs: 2, maxAttempts: 10 },
  timeoutMs: 1000,
  leaseMs: 5000,
  concurrency: 4,
  endpointConcurrency: 2,
  pollIntervalMs: 10,
  breaker: { failureThreshold: 3, cooldownMs: 60_000 },
  log: { warn() {}, error() {}, debug() {} },
  send: async () => answer(200),
  ...over,
});

const answer = (status: number): WebhookResult => ({ status, error: "", durationMs: 1, excerpt: "", retryAfter: undefined });
/** A connection refused within 2 ms. */
const noResponse: WebhookResult = {
  status: 0,
  error: "connection failed",
  errorDetail: "ECONNREFUSED: connect ECONNREFUSED 93.184.216.34:443",
  durationMs: 2,
  excerpt: "",
  retryAfter: undefined,
};

describe("startDeliveryWorker", () => {
  it("signs the body and sends the event id, then records the delivery", async () => {
    const { store, recorded } = fakeStore([delivery()]);
    const sent: WebhookRequest[] = [];
    const worker = startDeliveryWorker(options({ store, send: async (r) => (sent.push(r), answer(200)) }));
    try {
      await waitFor(() => recorded.length === 1);
      const req = sent[0] as WebhookRequest;
      assert.equal(req.headers["Logistics-Event-Id"], "evt-1");
      assert.equal(req.target.address, "93.184.216.34", "connects to the checked address");
      assert.ok(verifyWebhookSignature({ body: req.body, header: req.headers["Logistics-Signature"] ?? "", secret: "s".repeat(43) }));
      assert.equal(recorded[0]?.next.state, DeliveryState.DELIVERED);
    } finally {
      await worker.close();
    }
  });

  it("re-checks the address before every attempt: a host rebound to a private address is not contacted", async () => {
    const { store, recorded } = fakeStore([delivery()]);
    let sends = 0;
    const worker = startDeliveryWorker(
      options({
        store,
        targetPolicy: { allowHttp: false, allow: { hosts: [], cidrs: [] }, resolve: async () => [{ address: "10.0.0.7", family: 4 }] },
        send: async () => (sends++, answer(200)),
      }),
    );
    try {
      await waitFor(() => recorded.length >= 1);
      assert.equal(sends, 0);
      assert.equal(recorded[0]?.next.state, DeliveryState.RETRYING);
      assert.match(recorded[0]?.attempt.error ?? "", /refused: .*resolves to an address that is not public/);
      assert.doesNotMatch(recorded[0]?.attempt.error ?? "", /10\.0\.0\.7/, "the subscriber does not learn internal addresses");
    } finally {
      await worker.close();
    }
  });

  it("re-checks the port before every attempt: a port no longer allowed is not contacted", async () => {
    const onPort = (id: string, port: number) =>
      delivery({ id, trackingNumber: `PORT0000${port}`, origin: `https://hooks.example.com:${port}`, webhookUrl: `https://hooks.example.com:${port}/x` });
    const { store, recorded } = fakeStore([onPort("dlv_22", 22), onPort("dlv_8443", 8443)]);
    const sentTo: string[] = [];
    const worker = startDeliveryWorker(
      options({
        store,
        targetPolicy: { ...options({}).targetPolicy, allowPorts: [8443] },
        send: async (r) => (sentTo.push(r.target.url.host), answer(200)),
      }),
    );
    try {
      await waitFor(() => recorded.length >= 2);
      assert.deepEqual(sentTo, ["hooks.example.com:8443"]);
      const refused = recorded.find((r) => r.id === "dlv_22");
      assert.equal(refused?.next.state, DeliveryState.RETRYING);
      assert.match(refused?.attempt.error ?? "", /^refused: webhook_url may not use port 22: https webhooks go to port 443 \(the default\) or 8443;/);
      assert.equal(recorded.find((r) => r.id === "dlv_8443")?.next.state, DeliveryState.DELIVERED);
    } finally {
      await worker.close();
    }
  });

  it("opens the endpoint's circuit after repeated failures and stops sending to it, not to others", async () => {
    const dead = Array.from({ length: 4 }, (_, i) => delivery({ id: `dead_${i}`, trackingNumber: `DEAD000000${i}` }));
    const healthy = delivery({ id: "ok_1", origin: "https://ok.example.com", webhookUrl: "https://ok.example.com/x" });
    const { store, recorded } = fakeStore([...dead, healthy]);
    const sentTo: string[] = [];
    const worker = startDeliveryWorker(
      options({
        store,
        // One at a time, so no request is already in flight when the circuit opens.
        concurrency: 1,
        endpointConcurrency: 1,
        retry: { baseMs: 1, maxMs: 1, maxAttempts: 3 },
        send: async (r) => (sentTo.push(r.target.url.origin), answer(r.target.url.host === "ok.example.com" ? 200 : 503)),
      }),
    );
    try {
      await waitFor(() => recorded.filter((r) => r.next.state === DeliveryState.DEAD_LETTERED).length === 4);
      const deadSends = sentTo.filter((o) => o === "https://hooks.example.com").length;
      assert.equal(deadSends, 3, "only the first three failures reached the endpoint");
      assert.equal(worker.breakers.state("https://hooks.example.com"), "open");
      assert.ok(recorded.some((r) => /circuit open/.test(r.attempt.error)));
      assert.ok(recorded.some((r) => r.id === "ok_1" && r.next.state === DeliveryState.DELIVERED));
    } finally {
      await worker.close();
    }
  });

  it("dead-letters after the last attempt and honours Retry-After", async () => {
    const { store, recorded } = fakeStore([delivery()]);
    const worker = startDeliveryWorker(
      options({
        store,
        retry: { baseMs: 1, maxMs: 10_000, maxAttempts: 2 },
        send: async () => ({ ...answer(429), retryAfter: "3" }),
      }),
    );
    try {
      await waitFor(() => recorded.length === 2);
      const first = recorded[0]?.next;
      assert.equal(first?.state, DeliveryState.RETRYING);
      assert.equal(first?.state === DeliveryState.RETRYING ? first.delayMs : -1, 3000);
      assert.equal(recorded[1]?.next.state, DeliveryState.DEAD_LETTERED);
      assert.equal(recorded[1]?.attempt.error, "HTTP 429");
    } finally {
      await worker.close();
    }
  });
});

describe("startDeliveryWorker claims and records", () => {
  const fakeClock = () => vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "clearImmediate", "Date"] });
  afterEach(() => vi.useRealTimers());

  it("claims once per tick for deliveries created within it, records attempts that finished together in one statement, and does not claim after each attempt", async () => {
    fakeClock();
    const fake = fakeStore([]);
    const worker = startDeliveryWorker(options({ store: fake.store, concurrency: 8, endpointConcurrency: 8, pollIntervalMs: 60_000, tickMs: 50, send: async () => answer(200) }));
    try {
      await vi.advanceTimersByTimeAsync(0);
      assert.equal(fake.calls.claims, 1, "the first look at start");
      // Five batches committed within one tick, each creating a delivery due after the order window.
      for (let i = 0; i < 5; i++) {
        fake.add(delivery({ id: `dlv_${i}`, trackingNumber: `TICK0000000${i}` }));
        worker.wakeAfter(1000);
      }
      await vi.advanceTimersByTimeAsync(999);
      assert.equal(fake.calls.claims, 1, "not before the deliveries are due");
      await vi.advanceTimersByTimeAsync(51);
      assert.equal(fake.calls.claims, 2, "one claim for the five");
      await vi.advanceTimersByTimeAsync(50);
      assert.equal(fake.recorded.length, 5);
      assert.deepEqual(fake.calls.recordBatches, [5], "the five attempts recorded in one statement");
      await vi.advanceTimersByTimeAsync(58_900);
      assert.equal(fake.calls.claims, 2, "finished attempts that held nothing back claim nothing");
      await vi.advanceTimersByTimeAsync(1100);
      assert.equal(fake.calls.claims, 3, "the idle poll still runs");
    } finally {
      const closed = worker.close();
      await vi.advanceTimersByTimeAsync(0);
      await closed;
    }
  });

  it("gives an endpoint's slot back when its response is in, not when the attempt is recorded a tick later", async () => {
    fakeClock();
    const fake = fakeStore(["dlv_1", "dlv_2", "dlv_3"].map((id, i) => delivery({ id, trackingNumber: `SLOT0000000${i}` })));
    // As the real claim does: no more of an origin than its slots left free.
    const store = {
      ...fake.store,
      claimDue: (o: ClaimOptions) => fake.store.claimDue({ ...o, limit: Math.min(o.limit, o.perOriginLimit - (o.inFlightByOrigin.get(delivery().origin) ?? 0)) }),
    };
    const sent: string[] = [];
    const worker = startDeliveryWorker(
      options({ store, concurrency: 8, endpointConcurrency: 1, pollIntervalMs: 60_000, tickMs: 50, send: async (r) => (sent.push(r.headers[DELIVERY_ID_HEADER] ?? r.body), answer(200)) }),
    );
    try {
      await vi.advanceTimersByTimeAsync(10);
      // One request at a time to the endpoint, but each slot is free again as soon as its response
      // is in: all three go out within the first tick and are recorded together.
      assert.equal(sent.length, 3, "three requests within one tick");
      assert.equal(fake.recorded.length, 0, "none recorded before the tick ends");
      await vi.advanceTimersByTimeAsync(50);
      assert.deepEqual(fake.calls.recordBatches, [3]);
    } finally {
      const closed = worker.close();
      await vi.advanceTimersByTimeAsync(0);
      await closed;
    }
  });

  it("holds an attempt without a response until its time limit: its slot, its breaker outcome and its record, as a filtered port would", async () => {
    fakeClock();
    const refused = delivery({ id: "dlv_refused", trackingNumber: "HOLD00000001" });
    const slow = delivery({ id: "dlv_answered", trackingNumber: "HOLD00000002", origin: "https://ok.example.com", webhookUrl: "https://ok.example.com/x" });
    const fake = fakeStore([refused, slow]);
    const sent: string[] = [];
    let refusedAt = 0;
    const worker = startDeliveryWorker(
      options({
        store: fake.store,
        timeoutMs: 1000,
        tickMs: 0,
        pollIntervalMs: 60_000,
        breaker: { failureThreshold: 1, cooldownMs: 60_000 },
        retry: { baseMs: 1, maxMs: 1, maxAttempts: 1 },
        send: async (r) => {
          sent.push(r.target.url.origin);
          if (r.target.url.host === "ok.example.com") return { ...answer(503), durationMs: 3 };
          refusedAt = Date.now();
          return noResponse;
        },
      }),
    );
    try {
      await vi.advanceTimersByTimeAsync(1);
      assert.deepEqual(sent.sort(), ["https://hooks.example.com", "https://ok.example.com"]);
      assert.deepEqual(fake.recorded.map((r) => r.id), ["dlv_answered"], "an answer is recorded at once");
      await vi.advanceTimersByTimeAsync(refusedAt + 999 - Date.now());
      assert.equal(fake.recorded.length, 1, "the refused attempt is not recorded before its time limit");
      assert.equal(worker.inFlight().get(refused.origin), 1, "its endpoint slot is still taken");
      assert.equal(worker.breakers.state(refused.origin), "closed", "its failure does not count yet");
      await vi.advanceTimersByTimeAsync(2);
      assert.deepEqual(fake.recorded.map((r) => r.id), ["dlv_answered", "dlv_refused"]);
      assert.equal(worker.inFlight().get(refused.origin), undefined);
      assert.equal(worker.breakers.state(refused.origin), "open");
    } finally {
      let closed = false;
      void worker.close().then(() => (closed = true));
      while (!closed) await vi.advanceTimersByTimeAsync(1);
    }
  });

  it("stops holding attempts without a response when closed, and records them", async () => {
    const fake = fakeStore([delivery()]);
    let sent = 0;
    const worker = startDeliveryWorker(options({ store: fake.store, timeoutMs: 600_000, send: async () => (sent++, noResponse) }));
    await waitFor(() => sent === 1);
    await worker.close();
    assert.equal(fake.recorded.length, 1);
    assert.equal(fake.recorded[0]?.attempt.error, "connection failed");
  });

  it("claims again at once when a finished attempt frees a full worker", async () => {
    const fake = fakeStore([delivery({ id: "dlv_a" }), delivery({ id: "dlv_b", trackingNumber: "FULL00000002" })]);
    const worker = startDeliveryWorker(options({ store: fake.store, concurrency: 1, endpointConcurrency: 1, pollIntervalMs: 60_000, send: async () => answer(200) }));
    try {
      // The poll is a minute away: only the freed slot's wake can have claimed the second one.
      await waitFor(() => fake.recorded.length === 2, { message: "both delivered" });
    } finally {
      await worker.close();
    }
  });

  it("claims again at once when a finished attempt held back a successor that is due now", async () => {
    const successor = delivery({ id: "dlv_v2", eventId: "evt-2" });
    const fake = fakeStore([delivery({ id: "dlv_v1" })], (d) => {
      if (d.id !== "dlv_v1") return false;
      fake.add(successor);
      return true;
    });
    const worker = startDeliveryWorker(options({ store: fake.store, pollIntervalMs: 60_000, send: async () => answer(200) }));
    try {
      await waitFor(() => fake.recorded.some((r) => r.id === "dlv_v2"), { message: "the successor delivered" });
    } finally {
      await worker.close();
    }
  });

  it("claims again after a wake that arrived while a claim was in flight (no lost wakeup)", async () => {
    const fake = fakeStore([]);
    let gate: Promise<void> | undefined;
    let entered: (() => void) | undefined;
    const inClaim = new Promise<void>((r) => (entered = r));
    let open: (() => void) | undefined;
    const store = {
      ...fake.store,
      async claimDue(o: ClaimOptions) {
        if (fake.calls.claims === 1 && gate === undefined) {
          gate = new Promise<void>((r) => (open = r));
          // The claim's snapshot is taken before the new delivery exists.
          const before = await fake.store.claimDue(o);
          entered?.();
          await gate;
          return before;
        }
        return fake.store.claimDue(o);
      },
    };
    const worker = startDeliveryWorker(options({ store, pollIntervalMs: 60_000, send: async () => answer(200) }));
    try {
      await waitFor(() => fake.calls.claims === 1, { message: "the first claim" });
      worker.wake();
      await inClaim;
      fake.add(delivery({ id: "dlv_late" }));
      worker.wake();
      open?.();
      await waitFor(() => fake.recorded.length === 1, { message: "the late delivery claimed by the claim after" });
    } finally {
      await worker.close();
    }
  });
});

describe("startDeliveryWorker tracing", () => {
  it("logs a dead-lettered delivery inside its attempt's POST span, which follows the HTTP client conventions", async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    const logged: Array<{ msg: string; traceId?: string; spanId?: string }> = [];
    const log = {
      warn(_: object, msg?: string) {
        const sc = trace.getActiveSpan()?.spanContext();
        logged.push({ msg: msg ?? "", traceId: sc?.traceId, spanId: sc?.spanId });
      },
      error() {},
      debug() {},
    };
    const { store, recorded } = fakeStore([delivery({ webhookUrl: "https://hooks.example.com:8443/x?token=secret#part" })]);
    const targetPolicy = { ...options({}).targetPolicy, allowPorts: [8443] };
    const worker = startDeliveryWorker(options({ store, log, targetPolicy, tracer: provider.getTracer("test"), send: async () => answer(410) }));
    try {
      await waitFor(() => recorded.length === 1 && logged.length === 1);
      const [span] = exporter.getFinishedSpans();
      assert.ok(span);
      assert.equal(span.name, "POST");
      assert.equal(span.kind, SpanKind.CLIENT);
      assert.deepEqual(
        {
          method: span.attributes["http.request.method"],
          url: span.attributes["url.full"],
          address: span.attributes["server.address"],
          port: span.attributes["server.port"],
          status: span.attributes["http.response.status_code"],
          error: span.attributes["error.type"],
        },
        { method: "POST", url: "https://hooks.example.com:8443/x?token=REDACTED", address: "hooks.example.com", port: 8443, status: 410, error: "410" },
      );
      assert.deepEqual(logged[0], { msg: "webhook delivery dead-lettered", traceId: span.spanContext().traceId, spanId: span.spanContext().spanId });
    } finally {
      await worker.close();
      context.disable();
      await provider.shutdown();
    }
  });

  it("records a transport failure's class for the subscriber and puts its detail and exact duration on the span and in the log", async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
    const { store, recorded } = fakeStore([delivery()]);
    const debug: Array<{ fields: object; msg: string }> = [];
    const log = { warn() {}, error() {}, debug: (fields: object, msg: string) => debug.push({ fields, msg }) };
    const worker = startDeliveryWorker(options({ store, log, timeoutMs: 50, tracer: provider.getTracer("test"), send: async () => noResponse }));
    try {
      // The fake store makes a retry due at once: look at the first attempt.
      await waitFor(() => recorded.length >= 1 && exporter.getFinishedSpans().length >= 1 && debug.length >= 1);
      assert.equal(recorded[0]?.attempt.error, "connection failed");
      assert.equal(recorded[0]?.next.state, DeliveryState.RETRYING);
      const [span] = exporter.getFinishedSpans();
      assert.equal(span?.attributes["error.type"], "ECONNREFUSED");
      assert.equal(span?.status.message, "ECONNREFUSED: connect ECONNREFUSED 93.184.216.34:443");
      assert.equal(span?.attributes["logistics.attempt_duration_ms"], 2);
      assert.deepEqual(debug[0], {
        msg: "webhook attempt failed",
        fields: {
          deliveryId: "dlv_1",
          origin: "https://hooks.example.com",
          attempts: 1,
          error: "connection failed",
          errorDetail: "ECONNREFUSED: connect ECONNREFUSED 93.184.216.34:443",
          durationMs: 2,
        },
      });
    } finally {
      await worker.close();
      await provider.shutdown();
    }
  });
});
