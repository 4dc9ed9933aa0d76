import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { DisruptionSchema } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { seededRandom } from "@logistics/shared/testing";
import { createDisruptionCache, type ActiveDisruptionRow } from "./disruption-cache.js";

const row = (id: string, endsUs?: bigint): ActiveDisruptionRow => ({
  stored: { disruption: create(DisruptionSchema, { disruptionId: id }), hubCodes: ["AAA"] },
  endsUs,
});
const ids = (ds: readonly { disruption: { disruptionId: string } }[]) => ds.map((d) => d.disruption.disruptionId);

/** A table of disruptions and a cache over it, with a manual clock and reads that wait until released. */
function setup(ttlMs = 1_000) {
  let table: Array<{ id: string; endsUs?: bigint; cleared: boolean }> = [];
  let t = 0;
  let reads = 0;
  const gates: Array<() => void> = [];
  let gated = false;
  const cache = createDisruptionCache({
    ttlMs,
    now: () => t,
    async load(at) {
      reads++;
      const atUs = BigInt(at.getTime()) * 1000n;
      // The read's snapshot is taken when it starts.
      const rows = table.filter((d) => !d.cleared && (d.endsUs === undefined || d.endsUs > atUs)).map((d) => row(d.id, d.endsUs));
      if (gated) await new Promise<void>((r) => gates.push(r));
      return rows;
    },
  });
  return {
    cache,
    set: (rows: typeof table) => (table = rows),
    advance: (ms: number) => (t += ms),
    reads: () => reads,
    gate: (on: boolean) => (gated = on),
    release: () => gates.splice(0).forEach((r) => r()),
  };
}

describe("createDisruptionCache", () => {
  it("reads at every call while changes are not watched", async () => {
    const s = setup();
    s.set([{ id: "d1", cleared: false }]);
    await s.cache.active(new Date(0));
    await s.cache.active(new Date(0));
    assert.equal(s.reads(), 2);
  });

  it("serves from memory while watched, until invalidated or the ttl passes", async () => {
    const s = setup(1_000);
    s.cache.watching(true);
    s.set([{ id: "d1", cleared: false }]);
    assert.deepEqual(ids(await s.cache.active(new Date(0))), ["d1"]);
    s.set([{ id: "d1", cleared: false }, { id: "d2", cleared: false }]);
    assert.deepEqual(ids(await s.cache.active(new Date(0))), ["d1"], "held");
    assert.equal(s.reads(), 1);
    s.cache.invalidate();
    assert.deepEqual(ids(await s.cache.active(new Date(0))), ["d1", "d2"]);
    s.set([]);
    s.advance(999);
    assert.deepEqual(ids(await s.cache.active(new Date(0))), ["d1", "d2"]);
    s.advance(1);
    assert.deepEqual(ids(await s.cache.active(new Date(0))), [], "read again once the ttl passed");
    s.set([{ id: "d3", cleared: false }]);
    s.cache.watching(false);
    s.cache.watching(true);
    assert.deepEqual(ids(await s.cache.active(new Date(0))), ["d3"], "nothing held across a lost listener");
  });

  it("does not keep a read that was under way when a change came in", async () => {
    const s = setup();
    s.cache.watching(true);
    s.set([{ id: "d1", cleared: false }]);
    s.gate(true);
    const before = s.cache.active(new Date(0));
    s.set([{ id: "d1", cleared: true }]);
    s.cache.invalidate();
    s.gate(false);
    const after = s.cache.active(new Date(0));
    s.release();
    assert.deepEqual(ids(await before), ["d1"], "the read under way answers its own callers");
    assert.deepEqual(ids(await after), []);
    assert.deepEqual(ids(await s.cache.active(new Date(0))), []);
    assert.equal(s.reads(), 2);
  });

  it("shares one read among the calls made while it is under way", async () => {
    const s = setup();
    s.cache.watching(true);
    s.set([{ id: "d1", cleared: false }]);
    s.gate(true);
    const calls = [s.cache.active(new Date(5)), s.cache.active(new Date(6))];
    s.release();
    assert.deepEqual((await Promise.all(calls)).map(ids), [["d1"], ["d1"]]);
    assert.equal(s.reads(), 1);
  });

  it("answers what a read at the call's time answers, for any order of times, changes and ttl expiries", async () => {
    const rnd = seededRandom(7);
    for (let run = 0; run < 200; run++) {
      const s = setup(50);
      s.cache.watching(true);
      const table: Array<{ id: string; endsUs?: bigint; cleared: boolean }> = [];
      let clock = 1_000;
      for (let step = 0; step < 40; step++) {
        const r = rnd();
        if (r < 0.15) {
          // Ends at a time near the clock, to the microsecond.
          table.push({ id: `d${step}`, cleared: false, ...(rnd() < 0.7 ? { endsUs: BigInt(clock + Math.floor(rnd() * 40) - 10) * 1000n + BigInt(Math.floor(rnd() * 3) * 500) } : {}) });
          s.set([...table]);
          s.cache.invalidate();
        } else if (r < 0.25 && table.length > 0) {
          table[Math.floor(rnd() * table.length)]!.cleared = true;
          s.set([...table]);
          s.cache.invalidate();
        } else {
          // Mostly forward; sometimes a call for an earlier time.
          clock += Math.floor(rnd() * 10) - (rnd() < 0.1 ? 15 : 0);
          s.advance(Math.floor(rnd() * 20));
          const at = new Date(clock);
          const atUs = BigInt(clock) * 1000n;
          const expected = table.filter((d) => !d.cleared && (d.endsUs === undefined || d.endsUs > atUs)).map((d) => d.id);
          assert.deepEqual(ids(await s.cache.active(at)), expected, `run ${run} step ${step}`);
        }
      }
    }
  });
});
