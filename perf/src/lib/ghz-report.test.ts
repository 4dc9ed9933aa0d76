import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { toGhzReport } from "./ghz-report.js";
import { runLoad } from "./load-generator.js";

describe("toGhzReport", () => {
  it("produces ghz's fields with nanosecond durations and consistent counts", async () => {
    let n = 0;
    const r = await runLoad({
      mode: "closed",
      concurrency: 4,
      durationMs: 300,
      call: async () => {
        n++;
        await new Promise((res) => setImmediate(res));
        if (n % 10 === 0) throw Object.assign(new Error("boom"), { code: 14 });
      },
    });
    const g = toGhzReport("unit", r);
    for (const k of ["date", "count", "total", "average", "fastest", "slowest", "rps", "latencyDistribution", "histogram", "statusCodeDistribution", "errorDistribution"]) {
      assert.ok(k in g, `missing ${k}`);
    }
    assert.equal(g.count, Number(r.histogram.totalCount));
    assert.equal(g.statusCodeDistribution["OK"]! + g.statusCodeDistribution["Unavailable"]!, g.count);
    assert.equal(g.errorDistribution["boom"], g.statusCodeDistribution["Unavailable"]);
    assert.deepEqual(g.latencyDistribution.map((d) => d.percentage), [10, 25, 50, 75, 90, 95, 99]);
    assert.ok(g.fastest <= g.average && g.average <= g.slowest, "fastest <= average <= slowest");
    assert.equal(g.total, 300 * 1e6);
    const bucketed = g.histogram.reduce((a, b) => a + b.count, 0);
    assert.ok(Math.abs(bucketed - g.count) <= g.histogram.length, `histogram holds ~all calls (${bucketed} vs ${g.count})`);
  });

  it("open loop measures from the intended start, so a stall shows up as latency", async () => {
    let calls = 0;
    const r = await runLoad({
      mode: "open",
      rate: 200,
      concurrency: 1000,
      durationMs: 500,
      call: async () => {
        calls++;
        // One call stalls for 150 ms; every call scheduled meanwhile still starts on time, so
        // only the stalled call is slow — unlike a closed loop, nothing hides behind it.
        // (Timers may fire a little early against performance.now(), hence the margin below.)
        if (calls === 10) await new Promise((res) => setTimeout(res, 150));
      },
    });
    assert.ok(r.histogram.maxValue >= 100_000, `the stall is recorded (max ${r.histogram.maxValue} µs)`);
    assert.ok(Number(r.histogram.totalCount) >= 90, `about rate x duration calls (${r.histogram.totalCount})`);
  });
});
