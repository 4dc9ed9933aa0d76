import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { createSemaphore } from "./semaphore.js";

describe("createSemaphore", () => {
  it("grants permits up to the capacity and queues the rest in order", async () => {
    const s = createSemaphore(10);
    const r1 = await s.acquire(6);
    const order: string[] = [];
    const p2 = s.acquire(6).then((r) => (order.push("b"), r));
    const p3 = s.acquire(1).then((r) => (order.push("c"), r));
    await Promise.resolve();
    assert.equal(s.inUse, 6);
    assert.deepEqual(order, []);
    r1();
    const r2 = await p2;
    const r3 = await p3;
    assert.deepEqual(order, ["b", "c"]);
    assert.equal(s.inUse, 7);
    r2();
    r2();
    r3();
    assert.equal(s.inUse, 0);
  });

  it("clamps a request above the capacity to the capacity", async () => {
    const s = createSemaphore(4);
    const r = await s.acquire(100);
    assert.equal(s.inUse, 4);
    r();
    assert.equal(s.inUse, 0);
  });

  it("rejects a waiter whose signal aborts and lets later waiters through", async () => {
    const s = createSemaphore(2);
    const r1 = await s.acquire(2);
    const ac = new AbortController();
    const waiting = s.acquire(2, ac.signal);
    const later = s.acquire(1);
    ac.abort(new Error("gone"));
    await assert.rejects(waiting, /gone/);
    r1();
    (await later)();
    assert.equal(s.inUse, 0);
  });
});
