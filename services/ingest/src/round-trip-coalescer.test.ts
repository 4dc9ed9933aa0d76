import assert from "node:assert/strict";
import { describe, it } from "vitest";
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
