import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, vi } from "vitest";
import { createBatchWriter } from "./batch-writer.js";

describe("createBatchWriter", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  /** A writer doubling numbers, recording each write's items; `fails` items fail any write they are in. */
  const doubling = (lingerMs: number, fails: ReadonlySet<number> = new Set()) => {
    const writes: number[][] = [];
    let release: (() => void) | undefined;
    const writer = createBatchWriter<number, number>({
      lingerMs,
      async write(items) {
        writes.push([...items]);
        if (release === undefined && items.includes(-1)) await new Promise<void>((r) => (release = r));
        if (items.some((i) => fails.has(i))) throw new Error(`cannot write ${items.join(",")}`);
        return items.map((i) => i * 2);
      },
    });
    return { writer, writes, release: () => release?.() };
  };

  it("writes the items added within the linger in one write, each resolved with its own result", async () => {
    const { writer, writes } = doubling(50);
    const results = [1, 2, 3].map((i) => writer.add(i));
    await vi.advanceTimersByTimeAsync(49);
    assert.equal(writes.length, 0, "the first item waits up to the linger");
    await vi.advanceTimersByTimeAsync(1);
    assert.deepEqual(await Promise.all(results), [2, 4, 6]);
    assert.deepEqual(writes, [[1, 2, 3]]);
  });

  it("puts items added during a write into the next one, written as soon as their linger is over", async () => {
    const { writer, writes, release } = doubling(50);
    const first = writer.add(-1);
    await vi.advanceTimersByTimeAsync(50);
    const later = [writer.add(7), writer.add(8)];
    await vi.advanceTimersByTimeAsync(100);
    assert.deepEqual(writes, [[-1]], "one write at a time");
    release();
    await vi.advanceTimersByTimeAsync(0);
    assert.deepEqual(await Promise.all([first, ...later]), [-2, 14, 16]);
    assert.deepEqual(writes, [[-1], [7, 8]], "their linger had passed: written right after the one in flight");
  });

  it("writes the items of a failed batch one by one, so only the bad one fails", async () => {
    const { writer, writes } = doubling(10, new Set([5]));
    const results = [4, 5, 6].map((i) => writer.add(i).then((v) => v, (err: unknown) => (err as Error).message));
    await vi.advanceTimersByTimeAsync(10);
    assert.deepEqual(await Promise.all(results), [8, "cannot write 5", 12]);
    assert.deepEqual(writes, [[4, 5, 6], [4], [5], [6]]);
  });

  it("stops lingering after flushNow (shutdown)", async () => {
    const { writer, writes } = doubling(60_000);
    const pending = writer.add(1);
    writer.flushNow();
    await vi.advanceTimersByTimeAsync(0);
    assert.equal(await pending, 2);
    const next = writer.add(2);
    await vi.advanceTimersByTimeAsync(0);
    assert.equal(await next, 4);
    assert.deepEqual(writes, [[1], [2]]);
  });
});
