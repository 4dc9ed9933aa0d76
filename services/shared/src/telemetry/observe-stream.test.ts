import * as assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { setImmediate as tick } from "node:timers/promises";
import { describe, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { context, createContextKey, ROOT_CONTEXT, type Context } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { codeName, codeOf, mapStreamErrors, observeStream, type ObserveStreamOptions } from "./observe-stream.js";
import { seededRandom } from "../testing/seeded-random.js";

async function* numbers(n: number, failAfter?: Error): AsyncGenerator<number> {
  for (let i = 1; i <= n; i++) {
    await tick();
    yield i;
  }
  if (failAfter) throw failAfter;
}

/** Records `onEnd` calls. */
function ends(): { readonly calls: unknown[]; onEnd(error: unknown): void } {
  const calls: unknown[] = [];
  return { calls, onEnd: (error) => calls.push(error) };
}

describe("observeStream", () => {
  it("passes every message through and reports the end once, after the last message", async () => {
    const end = ends();
    const seen: number[] = [];
    for await (const n of observeStream(numbers(3), end)) {
      seen.push(n);
      assert.equal(end.calls.length, 0, "not ended while messages flow");
    }
    assert.deepEqual(seen, [1, 2, 3]);
    assert.deepEqual(end.calls, [undefined]);
  });

  it("reports the source's error and rethrows it", async () => {
    const end = ends();
    const boom = new ConnectError("hub offline", Code.Unavailable);
    await assert.rejects(async () => {
      for await (const _ of observeStream(numbers(1, boom), end)) void _;
    }, boom);
    assert.deepEqual(end.calls, [boom]);
  });

  it("reports Canceled when the reader stops early, and closes the source", async () => {
    const end = ends();
    let sourceClosed = false;
    async function* source() {
      try {
        yield* numbers(10);
      } finally {
        sourceClosed = true;
      }
    }
    for await (const n of observeStream(source(), end)) if (n === 2) break;
    assert.equal(end.calls.length, 1);
    assert.equal(codeOf(end.calls[0], Code.Unknown), Code.Canceled);
    assert.equal(sourceClosed, true);
  });

  it("reports the abort reason when the call's signal aborts mid-stream", async () => {
    const end = ends();
    const controller = new AbortController();
    const it = observeStream(numbers(10), { ...end, signal: controller.signal })[Symbol.asyncIterator]();
    await it.next();
    controller.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
    assert.equal(end.calls.length, 1);
    assert.equal(codeOf(end.calls[0], Code.Unknown), Code.DeadlineExceeded);
    await it.return?.();
    assert.equal(end.calls.length, 1, "reported once");
  });

  it("treats an abort without a ConnectError reason as Canceled", () => {
    const end = ends();
    const controller = new AbortController();
    observeStream(numbers(1), { ...end, signal: controller.signal });
    controller.abort();
    assert.equal(codeOf(end.calls[0], Code.Unknown), Code.Canceled);
  });

  it("runs the source inside the given context", async () => {
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    try {
      const key = createContextKey("request");
      async function* source() {
        yield context.active().getValue(key);
        await tick();
        yield context.active().getValue(key);
      }
      const ctx = ROOT_CONTEXT.setValue(key, "call-1");
      const seen: unknown[] = [];
      for await (const v of observeStream(source(), { context: ctx, onEnd: () => {} })) seen.push(v);
      assert.deepEqual(seen, ["call-1", "call-1"]);
    } finally {
      context.disable();
    }
  });
});

/** The wrappers as the interceptors stacked them before they shared one: one layer per stage. */
const reference = {
  observe<T>(source: AsyncIterable<T>, opts: ObserveStreamOptions): AsyncIterable<T> {
    const { signal } = opts;
    let ended = false;
    const onAbort = () => end(signal?.reason instanceof ConnectError ? signal.reason : new ConnectError("the call was canceled", Code.Canceled));
    function end(error: unknown): void {
      if (ended) return;
      ended = true;
      signal?.removeEventListener("abort", onAbort);
      opts.onEnd(error);
    }
    const run = <R>(fn: () => R): R => (opts.context !== undefined ? context.with(opts.context, fn) : fn());
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
    return {
      [Symbol.asyncIterator](): AsyncIterator<T> {
        const it = run(() => source[Symbol.asyncIterator]());
        return {
          async next() {
            try {
              const result = await run(() => it.next());
              if (result.done === true) end(undefined);
              return result;
            } catch (err) {
              end(err);
              throw err;
            }
          },
          async return(value?: unknown) {
            end(new ConnectError("the stream was abandoned before its end", Code.Canceled));
            if (it.return === undefined) return { done: true, value };
            return run(() => it.return!(value));
          },
        };
      },
    };
  },
  map<T>(source: AsyncIterable<T>, map: (err: unknown) => unknown): AsyncIterable<T> {
    return (async function* () {
      try {
        yield* source;
      } catch (err) {
        throw map(err);
      }
    })();
  },
  release<T>(source: AsyncIterable<T>, release: () => void): AsyncIterable<T> {
    return (async function* () {
      try {
        yield* source;
      } finally {
        release();
      }
    })();
  },
};

type StageKind = "release" | "map" | "observe" | "observeSignal" | "observeContext";
interface Scenario {
  messages: number;
  /** The source fails after its messages: with a plain Error (mapped) or a ConnectError (kept). */
  failure: "none" | "error" | "connect";
  /** Innermost first, as the interceptors nearest the handler wrap first. */
  stages: StageKind[];
  /** The reader stops (`return`) after this many messages, if it does. */
  stopAfter: number | undefined;
  /** The call's signal aborts after this many messages, if it does, with a deadline or no reason. */
  abortAfter: number | undefined;
  abortReason: "deadline" | "none";
}

function scenario(random: () => number): Scenario {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const messages = Math.floor(random() * 5);
  const kinds: StageKind[] = ["release", "map", "observe", "observeSignal", "observeContext"];
  return {
    messages,
    failure: pick(["none", "error", "connect"] as const),
    stages: Array.from({ length: 1 + Math.floor(random() * 6) }, () => pick(kinds)),
    stopAfter: random() < 0.3 ? 1 + Math.floor(random() * (messages + 1)) : undefined,
    abortAfter: random() < 0.3 ? Math.floor(random() * (messages + 1)) : undefined,
    abortReason: pick(["deadline", "none"] as const),
  };
}

const callKey = createContextKey("call");

/** Runs a scenario on one implementation; what every observer, the source and the reader saw. */
async function play(s: Scenario, impl: "fused" | "reference"): Promise<unknown> {
  const log: string[] = [];
  const ctx: Context = ROOT_CONTEXT.setValue(callKey, "call");
  async function* source() {
    try {
      for (let i = 0; i < s.messages; i++) {
        await null;
        log.push(`source ${i} in ${String(context.active().getValue(callKey))}`);
        yield i;
      }
      if (s.failure === "error") throw new Error("connection terminated");
      if (s.failure === "connect") throw new ConnectError("not here", Code.NotFound);
    } finally {
      log.push("source closed");
    }
  }
  const signal = new AbortController();
  const describe = (err: unknown) => (err === undefined ? "ok" : `${codeName(codeOf(err, Code.Internal))}:${err instanceof ConnectError ? err.rawMessage : String(err)}`);
  let stream: AsyncIterable<number> = source();
  s.stages.forEach((kind, i) => {
    const onEnd = (err: unknown) => log.push(`stage ${i} ${kind} ended ${describe(err)}`);
    const map = (err: unknown) => (err instanceof ConnectError ? err : new ConnectError(`mapped ${String(err)}`, Code.Unavailable));
    const opts: ObserveStreamOptions =
      kind === "observe" ? { onEnd } : kind === "observeSignal" ? { onEnd, signal: signal.signal } : { onEnd, signal: signal.signal, context: ctx };
    if (impl === "fused") {
      stream = kind === "release" ? observeStream(stream, { onEnd: () => onEnd(undefined) }) : kind === "map" ? mapStreamErrors(stream, map) : observeStream(stream, opts);
    } else {
      stream =
        kind === "release" ? reference.release(stream, () => onEnd(undefined)) : kind === "map" ? reference.map(stream, map) : reference.observe(stream, opts);
    }
  });
  const it = stream[Symbol.asyncIterator]();
  let read = 0;
  let outcome = "";
  for (;;) {
    if (s.abortAfter === read && !signal.signal.aborted) {
      signal.abort(s.abortReason === "deadline" ? new ConnectError("the operation timed out", Code.DeadlineExceeded) : undefined);
    }
    if (s.stopAfter === read) {
      await it.return?.();
      outcome = "stopped";
      break;
    }
    try {
      const r = await it.next();
      if (r.done === true) {
        outcome = "done";
        break;
      }
      log.push(`read ${r.value}`);
      read++;
    } catch (err) {
      outcome = `failed ${describe(err)}`;
      break;
    }
  }
  // Observers may end in another order (an early stop or an abort reached the outer layers first):
  // compare each observer's own calls, and the order of everything else.
  const ends = log.filter((l) => l.startsWith("stage")).sort();
  return { flow: log.filter((l) => !l.startsWith("stage")), ends, outcome };
}

describe("observeStream and mapStreamErrors on one stream", () => {
  it("behave as one wrapper per stage did, on many generated stacks and readers", async () => {
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    try {
      for (let seed = 1; seed <= 400; seed++) {
        const s = scenario(seededRandom(seed));
        assert.deepEqual(await play(s, "fused"), await play(s, "reference"), `seed ${seed}: ${JSON.stringify(s)}`);
      }
    } finally {
      context.disable();
    }
  });

  it("stack into one wrapper with one abort listener, which goes when the stream ends", async () => {
    const controller = new AbortController();
    const inner = observeStream(numbers(2), { onEnd: () => {}, signal: controller.signal });
    const mapped = mapStreamErrors(inner, (e) => e);
    const outer = observeStream(mapped, { onEnd: () => {}, signal: controller.signal });
    assert.equal(mapped, inner);
    assert.equal(outer, inner);
    assert.equal(getEventListeners(controller.signal, "abort").length, 1);
    for await (const _ of outer) void _;
    assert.equal(getEventListeners(controller.signal, "abort").length, 0);
  });

  it("wraps anew a stream already being read, or one observed with another signal or context", async () => {
    const a = new AbortController();
    const b = new AbortController();
    const inner = observeStream(numbers(3), { onEnd: () => {}, signal: a.signal });
    assert.notEqual(observeStream(inner, { onEnd: () => {}, signal: b.signal }), inner);
    const other = observeStream(numbers(3), { onEnd: () => {}, context: ROOT_CONTEXT.setValue(callKey, 1) });
    assert.notEqual(observeStream(other, { onEnd: () => {}, context: ROOT_CONTEXT.setValue(callKey, 2) }), other);
    const reading = observeStream(numbers(3), { onEnd: () => {} });
    const it = reading[Symbol.asyncIterator]();
    await it.next();
    const late = ends();
    const outer = observeStream(reading, late);
    assert.notEqual(outer, reading);
    for await (const _ of { [Symbol.asyncIterator]: () => outer[Symbol.asyncIterator]() }) void _;
    assert.deepEqual(late.calls, [undefined]);
  });

  it("runs observers inside the stream's context when the stream ends on a pull", async () => {
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    try {
      const seen: unknown[] = [];
      const ctx = ROOT_CONTEXT.setValue(callKey, "call-2");
      const inner = observeStream(numbers(1, new Error("boom")), { onEnd: () => seen.push(context.active().getValue(callKey)) });
      const outer = observeStream(inner, { context: ctx, onEnd: () => seen.push(context.active().getValue(callKey)) });
      await assert.rejects(async () => {
        for await (const _ of outer) void _;
      }, /boom/);
      assert.deepEqual(seen, ["call-2", "call-2"]);
    } finally {
      context.disable();
    }
  });
});

describe("codeName", () => {
  it("names codes as Connect does, and 0 as ok", () => {
    assert.equal(codeName(0), "ok");
    assert.equal(codeName(Code.NotFound), "not_found");
    assert.equal(codeName(Code.ResourceExhausted), "resource_exhausted");
    assert.equal(codeName(Code.Unauthenticated), "unauthenticated");
  });
});

describe("codeOf", () => {
  it("takes a ConnectError's code and falls back for anything else", () => {
    assert.equal(codeOf(new ConnectError("x", Code.PermissionDenied), Code.Internal), Code.PermissionDenied);
    assert.equal(codeOf(new Error("x"), Code.Internal), Code.Internal);
    assert.equal(codeOf("x", Code.Unknown), Code.Unknown);
  });
});
