import * as assert from "node:assert/strict";
import { setImmediate as tick } from "node:timers/promises";
import { describe, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { context, createContextKey, ROOT_CONTEXT } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { codeName, codeOf, observeStream } from "./observe-stream.js";

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
