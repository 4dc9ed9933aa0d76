import assert from "node:assert/strict";
import { describe, it } from "vitest";
import type { ApplyResult, ShipmentEventInput } from "./store/ports.js";
import { createApplyBatcher } from "./apply-batcher.js";

const event = (id: string) => ({ eventId: id, trackingNumber: `TN${id}` }) as unknown as ShipmentEventInput;
const result = (id: string) => ({ applied: true, after: { trackingNumber: id } }) as unknown as ApplyResult;

describe("createApplyBatcher", () => {
  it("commits queued calls together while the slots are busy, in order", async () => {
    const batches: string[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const store = {
      async applyEvents(events: readonly ShipmentEventInput[]) {
        batches.push(events.map((e) => e.eventId));
        if (batches.length === 1) await gate;
        return events.map((e) => result(e.eventId));
      },
    };
    const b = createApplyBatcher(store, { maxConcurrentBatches: 1, maxBatch: 3 });
    const calls = ["a", "b", "c", "d", "e"].map((id) => b.apply(event(id)));
    release();
    const out = await Promise.all(calls);
    assert.deepEqual(batches, [["a"], ["b", "c", "d"], ["e"]]);
    assert.deepEqual(out.map((r) => r.after.trackingNumber), ["a", "b", "c", "d", "e"]);
  });

  it("isolates a failing event: the rest of its batch still succeeds", async () => {
    let first = true;
    const store = {
      async applyEvents(events: readonly ShipmentEventInput[]) {
        if (first) {
          first = false;
          await new Promise((r) => setImmediate(r));
          return events.map((e) => result(e.eventId));
        }
        if (events.some((e) => e.eventId === "bad")) throw new Error("bad event");
        return events.map((e) => result(e.eventId));
      },
    };
    const b = createApplyBatcher(store, { maxConcurrentBatches: 1 });
    const warm = b.apply(event("w"));
    const calls = ["x", "bad", "y"].map((id) => b.apply(event(id)));
    await warm;
    const settled = await Promise.allSettled(calls);
    assert.deepEqual(settled.map((s) => s.status), ["fulfilled", "rejected", "fulfilled"]);
  });
});
