import assert from "node:assert/strict";
import * as hdr from "hdr-histogram-js";
import { describe, it } from "vitest";
import { parseJsz } from "./jetstream-backlog.js";
import { cpuBetween, cpuMsFromStat, CpuSampler, ppidFromStat, processCpuMs } from "./proc.js";
import { linearRegression, seriesPercentileMs, slopeVerdict } from "./stats.js";

describe("/proc readings", () => {
  it("parses utime + stime after a command name with spaces and parentheses", () => {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    const stat = "4242 (node (worker) x) S 17 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 11 0 100 0 0";
    assert.equal(cpuMsFromStat(stat, 100), 3000);
    assert.equal(ppidFromStat(stat), 17);
  });

  it("reads this process's CPU, which grows while it works", () => {
    const before = processCpuMs(process.pid)!;
    const end = performance.now() + 150;
    let x = 0;
    while (performance.now() < end) x += Math.sqrt(x + 1);
    assert.ok(x > 0);
    assert.ok(processCpuMs(process.pid)! > before, "utime advanced");
  });

  it("keeps the last reading of a process that is gone, so a group's total never drops", () => {
    let pids = [process.pid];
    const sampler = new CpuSampler([{ name: "g", pids: () => pids }], "self");
    const a = sampler.sample();
    pids = []; // the process "exits" from the group's view; it is still read while alive
    const b = sampler.sample();
    assert.ok(b.cpuMs["g"]! >= a.cpuMs["g"]!);
    const d = cpuBetween(a, b);
    assert.ok(d.perGroup["g"]! >= 0 && d.perGroup["self"]! >= 0 && d.wallMs >= 0);
    assert.equal(processCpuMs(2 ** 31 - 2), undefined, "no such process");
  });
});

describe("parseJsz", () => {
  it("lists pending + ack pending per durable", () => {
    const doc = {
      account_details: [
        {
          stream_detail: [
            { name: "P_SCANS", consumer_detail: [{ name: "tracking-scans", num_pending: 120, num_ack_pending: 30, num_redelivered: 2 }, { name: "routing-scans", num_pending: 0, num_ack_pending: 0 }] },
            { name: "P_STATUS" },
          ],
        },
      ],
    };
    assert.deepEqual(parseJsz(doc), [
      { name: "P_SCANS/routing-scans", pending: 0, ackPending: 0, redelivered: 0 },
      { name: "P_SCANS/tracking-scans", pending: 120, ackPending: 30, redelivered: 2 },
    ]);
    assert.deepEqual(parseJsz({}), []);
  });
});

describe("statistics", () => {
  it("fits a line exactly and reports growth over a soak", () => {
    const pts = Array.from({ length: 10 }, (_, i) => [i * 60, 100 + 2 * i] as const); // +2 per minute
    const fit = linearRegression(pts.map(([t, v]) => [t / 60, v] as const));
    assert.ok(Math.abs(fit.slope - 2) < 1e-9 && Math.abs(fit.intercept - 100) < 1e-9 && Math.abs(fit.r2 - 1) < 1e-9);
    const v = slopeVerdict(pts, 10, () => 10);
    assert.ok(Math.abs(v.slopePerMin - 2) < 1e-9);
    assert.ok(Math.abs(v.growth - 20) < 1e-9);
    assert.equal(v.flat, false, "20 of growth is more than the 10 allowed");
    assert.equal(slopeVerdict(pts.map(([t]) => [t, 50] as const), 10, () => 1).flat, true);
  });

  it("counts values never observed as slower than all measured ones", () => {
    const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 1e9, numberOfSignificantValueDigits: 3 });
    for (let i = 1; i <= 98; i++) h.recordValue(i * 1000); // 1..98 ms
    assert.ok(Math.abs(seriesPercentileMs({ histogram: h, missing: 0 }, 50) - 49) < 0.1);
    // 98 measured + 2 missing: p98 is the slowest measured, p99 is among the missing.
    assert.ok(Math.abs(seriesPercentileMs({ histogram: h, missing: 2 }, 98) - 98) < 0.1);
    assert.equal(seriesPercentileMs({ histogram: h, missing: 2 }, 99), Infinity);
    assert.ok(Number.isNaN(seriesPercentileMs({ histogram: hdr.build(), missing: 0 }, 99)));
  });
});
