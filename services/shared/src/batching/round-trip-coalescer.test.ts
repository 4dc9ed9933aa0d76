import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, vi } from "vitest";
import { createRoundTripCoalescer } from "./round-trip-coalescer.js";

/** A coalescer whose rounds answer `item * 10` and are recorded; flushes only when the test says so. */
function recording(maxItems?: number) {
  const rounds: number[][] = [];
  const due: Array<() => void> = [];
  const c = createRoundTripCoalescer<number, number>({
    ...(maxItems === undefined ? {} : { maxItems }),
    schedule: (flush) => due.push(flush),
    async send(items) {
      rounds.push([...items]);
      return items.map((i) => i * 10);
    },
  });
  const runScheduled = () => {
    for (const f of due.splice(0)) f();
  };
  return { c, rounds, runScheduled };
}

describe("createRoundTripCoalescer", () => {
  it("sends the calls of one turn as one round and gives each call its own results", async () => {
    const { c, rounds, runScheduled } = recording();
    const a = c.call([1, 2]);
    const b = c.call([3]);
    const d = c.call([4, 5, 6]);
    assert.equal(rounds.length, 0, "nothing is sent before the turn ends");
    runScheduled();
    assert.deepEqual(await Promise.all([a, b, d]), [[10, 20], [30], [40, 50, 60]]);
    assert.deepEqual(rounds, [[1, 2, 3, 4, 5, 6]]);
  });

  it("sends the queued round at once when a call would take it past maxItems", async () => {
    const { c, rounds, runScheduled } = recording(4);
    const a = c.call([1, 2, 3]);
    const b = c.call([4, 5]);
    assert.deepEqual(rounds, [[1, 2, 3]], "the full round left before the call that did not fit");
    const big = c.call([6, 7, 8, 9, 10, 11]);
    assert.deepEqual(rounds, [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10, 11]], "a call larger than a round is a round of its own, unsplit");
    runScheduled();
    assert.deepEqual(await Promise.all([a, b, big]), [[10, 20, 30], [40, 50], [60, 70, 80, 90, 100, 110]]);
    assert.equal(rounds.length, 3, "the scheduled flush finds nothing left to send");
  });

  it("starts a new round for calls made after a round was sent", async () => {
    const { c, rounds, runScheduled } = recording();
    const a = c.call([1]);
    runScheduled();
    const b = c.call([2]);
    runScheduled();
    assert.deepEqual(await Promise.all([a, b]), [[10], [20]]);
    assert.deepEqual(rounds, [[1], [2]]);
  });

  it("rejects every call of a round whose request fails, and only those", async () => {
    let fail = true;
    const due: Array<() => void> = [];
    const c = createRoundTripCoalescer<number, number>({
      schedule: (flush) => due.push(flush),
      async send(items) {
        if (fail) throw new Error("down");
        return items;
      },
    });
    const a = c.call([1]);
    const b = c.call([2]);
    due.shift()?.();
    await assert.rejects(a, /down/);
    await assert.rejects(b, /down/);
    fail = false;
    const d = c.call([3]);
    due.shift()?.();
    assert.deepEqual(await d, [3]);
  });

  it("rejects the round's calls when the request answers with the wrong number of results", async () => {
    const due: Array<() => void> = [];
    const c = createRoundTripCoalescer<number, number>({ schedule: (flush) => due.push(flush), send: async () => [1] });
    const a = c.call([1, 2]);
    due.shift()?.();
    await assert.rejects(a, /2 items got 1 results/);
  });

  it("answers an empty call at once without a round", async () => {
    const { c, rounds } = recording();
    assert.deepEqual(await c.call([]), []);
    assert.equal(rounds.length, 0);
  });

  it("sends the turn's calls on its own with the default schedule (setImmediate)", async () => {
    const sent: number[][] = [];
    const c = createRoundTripCoalescer<number, number>({
      async send(items) {
        sent.push([...items]);
        return items;
      },
    });
    // Calls from separate promise chains of one turn, as concurrent request handlers make them.
    const calls = [1, 2, 3].map(async (i) => {
      await Promise.resolve();
      return c.call([i]);
    });
    assert.deepEqual(await Promise.all(calls), [[1], [2], [3]]);
    assert.deepEqual(sent, [[1, 2, 3]]);
  });
});

describe("createRoundTripCoalescer, serial with a linger (group commit)", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  /** Serial rounds doubling numbers, recording each write's items; `fails` items fail any write they are in. */
  const doubling = (lingerMs: number, fails: ReadonlySet<number> = new Set()) => {
    const writes: number[][] = [];
    let release: (() => void) | undefined;
    const c = createRoundTripCoalescer<number, number>({
      lingerMs,
      serial: true,
      isolateFailures: true,
      async send(items) {
        writes.push([...items]);
        if (release === undefined && items.includes(-1)) await new Promise<void>((r) => (release = r));
        if (items.some((i) => fails.has(i))) throw new Error(`cannot write ${items.join(",")}`);
        return items.map((i) => i * 2);
      },
    });
    const writer = { add: (i: number) => c.call([i]).then((r) => r[0] as number), flushNow: () => c.flushNow() };
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

describe("createRoundTripCoalescer, serial with blame (the tracking projector's group apply)", () => {
  class ItemError extends Error {
    constructor(public index: number | undefined) {
      super(index === undefined ? "store down" : `item ${index} is bad`);
    }
  }

  /** Serial rounds the test releases one by one; `bad` items fail their round with an ItemError naming them. */
  const gated = (bad: ReadonlySet<number> = new Set(), down = false) => {
    const rounds: number[][] = [];
    const gates: Array<() => void> = [];
    let running = 0;
    let maxRunning = 0;
    const due: Array<() => void> = [];
    const c = createRoundTripCoalescer<number, number>({
      serial: true,
      maxItems: 6,
      schedule: (flush) => due.push(flush),
      blame: {
        itemOf: (err) => (err instanceof ItemError ? err.index : undefined),
        forCall: (err, index) => Object.assign(err as ItemError, { index }),
      },
      async send(items) {
        rounds.push([...items]);
        running++;
        maxRunning = Math.max(maxRunning, running);
        await new Promise<void>((r) => gates.push(r));
        running--;
        if (down) throw new ItemError(undefined);
        const i = items.findIndex((x) => bad.has(x));
        if (i >= 0) throw new ItemError(i);
        return items.map((x) => x * 10);
      },
    });
    /** Runs scheduled flushes and releases the next round, in turns, until `settled` settles. */
    const drive = async <T>(settled: Promise<T>): Promise<T> => {
      let done = false;
      const out = settled.finally(() => (done = true));
      for (let turn = 0; turn < 200 && !done; turn++) {
        for (const f of due.splice(0)) f();
        gates.shift()?.();
        await new Promise((r) => setImmediate(r));
      }
      return out;
    };
    const flushDue = () => {
      for (const f of due.splice(0)) f();
    };
    return { c, rounds, drive, flushDue, releaseNext: () => gates.shift()?.(), maxRunning: () => maxRunning };
  };
  const outcome = (p: Promise<number[]>) => p.then((v) => v, (err: unknown) => err as ItemError);

  it("merges the calls made while a round runs into the next one, one round at a time", async () => {
    const { c, rounds, drive, flushDue, releaseNext, maxRunning } = gated();
    const first = c.call([1]);
    flushDue();
    assert.deepEqual(rounds, [[1]]);
    const later = [c.call([2, 3]), c.call([4])];
    flushDue();
    assert.deepEqual(rounds, [[1]], "nothing more is sent while a round runs");
    releaseNext();
    assert.deepEqual(await drive(Promise.all([first, ...later])), [[10], [20, 30], [40]]);
    assert.deepEqual(rounds, [[1], [2, 3, 4]]);
    assert.equal(maxRunning(), 1);
  });

  it("sends the calls queued behind a round in rounds of at most maxItems, in call order, never splitting a call", async () => {
    const { c, rounds, drive, flushDue, releaseNext, maxRunning } = gated();
    const first = c.call([1]);
    flushDue();
    const later = [c.call([2, 3, 4]), c.call([5, 6]), c.call([7, 8, 9]), c.call([10])];
    flushDue();
    releaseNext();
    assert.deepEqual(await drive(Promise.all([first, ...later])), [[10], [20, 30, 40], [50, 60], [70, 80, 90], [100]]);
    assert.deepEqual(rounds, [[1], [2, 3, 4, 5, 6], [7, 8, 9, 10]], "maxItems is 6");
    assert.equal(maxRunning(), 1);
  });

  it("fails only the call holding the blamed item, at its own position, and sends the others again first", async () => {
    const { c, rounds, drive } = gated(new Set([5]));
    const calls = [c.call([1, 2]), c.call([4, 5, 6]), c.call([7])].map(outcome);
    const [a, b, d] = await drive(Promise.all(calls));
    assert.deepEqual(a, [10, 20]);
    assert.ok(b instanceof ItemError && b.index === 1, `the bad call learns its own position: ${String(b)}`);
    assert.deepEqual(d, [70]);
    assert.deepEqual(rounds, [[1, 2, 4, 5, 6, 7], [1, 2, 7]]);
  });

  it("rejects every call of the round on an error that names no item", async () => {
    const { c, rounds, drive } = gated(new Set(), true);
    const results = await drive(Promise.all([c.call([1]), c.call([2])].map(outcome)));
    for (const r of results) assert.ok(r instanceof ItemError && r.index === undefined);
    assert.deepEqual(rounds, [[1, 2]], "not sent again");
  });
});
