import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { costTable, judgeSustained, meshTotal, nextRate, sizing, sizingTable, targetRows, type E2eFigures } from "./summary.js";

function run(rate: number, over: Partial<E2eFigures> = {}): E2eFigures {
  return {
    rate,
    offeredPerSec: rate,
    sentPerSec: rate,
    ackedPerSec: rate,
    clientUnacked: 0,
    maxConsumerBacklog: 0,
    sustained: true,
    failed: [],
    p50: { sendToAckMs: 5, ackToVisibleMs: 40, ackToWebhookMs: 600 },
    p99: { sendToAckMs: 50, ackToVisibleMs: 200, ackToWebhookMs: 1500 },
    visibleMissing: 0,
    webhooks: { expected: 100, received: 100, missing: 0, unknownForInvisible: 0 },
    cost: {
      scans: rate * 10,
      perThousandScans: { ingest: 100, routing: 50, tracking: 300, notification: 80, "nats-server": 40, "redis-server": 10, postgres: 400, "load generator": 200 },
      idleMsPerSec: { ingest: 5, postgres: 20 },
      machineBusyCores: 1.5,
      otherCores: 0.2,
    },
    load: { start: [1, 1, 1], end: [2, 1, 1] },
    ...over,
  };
}

describe("judgeSustained", () => {
  const ok = { offeredPerSec: 1000, ackedPerSec: 990, clientUnacked: 200, maxConsumerBacklog: 400, ackToVisibleP99Ms: 800 };

  it("needs the acked rate, a bounded backlog and ack → visible p99 ≤ 1 s", () => {
    assert.deepEqual(judgeSustained(ok), { sustained: true, failed: [] });
    assert.equal(judgeSustained({ ...ok, ackedPerSec: 979 }).sustained, false, "acked < 98% of offered");
    assert.equal(judgeSustained({ ...ok, clientUnacked: 1001 }).sustained, false, "more than a second of traffic unacked");
    assert.equal(judgeSustained({ ...ok, maxConsumerBacklog: 5000 }).sustained, false, "a durable behind by 5 s of traffic");
    assert.equal(judgeSustained({ ...ok, ackToVisibleP99Ms: 1001 }).sustained, false);
    const never = judgeSustained({ ...ok, ackToVisibleP99Ms: Infinity });
    assert.equal(never.sustained, false);
    assert.match(never.failed[0]!, /never visible/);
  });

  it("fails a run during which a service exited, whatever the figures say", () => {
    const r = judgeSustained({ ...ok, exited: ["routing exited (1)"] });
    assert.deepEqual(r, { sustained: false, failed: ["routing exited (1) during the run"] });
  });
});

describe("targetRows", () => {
  const benches = {
    ingest: { ratio: 0.72, ingestPerSec: 7200, rawPerSec: 10_000 },
    store: { ratio: 0.2, batchedPerSec: 2000, rawPerSec: 10_000, historyOnly: { ratio: 0.05, rawPerSec: 40_000 } },
    claim: { ratio: 0.95, largePerSec: 38, smallPerSec: 40, large: 50_000, small: 1000 },
  };

  it("judges every target of issue 13 from one run", () => {
    const rows = targetRows([run(300), run(1000), run(2000, { sustained: false, failed: ["x"] })], benches);
    const v = Object.fromEntries(rows.map((r) => [r.target, r.verdict]));
    assert.equal(v["highest sustained rate ≥ 1,000 scans/s"], "pass");
    assert.equal(v["ack → visible p99 ≤ 250 ms at 300 scans/s"], "pass");
    assert.equal(v["ack → webhook p99 ≤ 2 s at 300 scans/s"], "pass");
    assert.equal(v["ingest accepted rate ≥ 70% of raw JetStream publish"], "pass");
    assert.equal(v["batched store apply ≥ 25% of raw multi-row INSERT of the same rows"], "MISS");
    const store = rows.find((r) => r.target.startsWith("batched store apply"))!;
    assert.match(store.measured, /^20\.0% .*vs the history rows alone: 5\.0%/);
    assert.equal(v["GetShipment (cache hit) ≥ 70% of a bare echo RPC"], "not measured");
    assert.equal(v["notification claim does not grow with the backlog: large-backlog claims/s ≥ 80% of small-backlog"], "pass");
    assert.match(rows[0]!.measured, /^1000\/s/);
  });

  it("misses the latency targets when scans or webhooks never arrived", () => {
    const at300 = run(300, {
      sustained: false,
      failed: ["y"],
      p99: { sendToAckMs: 50, ackToVisibleMs: Infinity, ackToWebhookMs: 1900 },
      visibleMissing: 40,
      webhooks: { expected: 90, received: 90, missing: 0, unknownForInvisible: 40 },
    });
    const rows = targetRows([at300], {});
    const v = Object.fromEntries(rows.map((r) => [r.target, r]));
    assert.equal(v["highest sustained rate ≥ 1,000 scans/s"]!.verdict, "MISS");
    assert.equal(v["ack → visible p99 ≤ 250 ms at 300 scans/s"]!.verdict, "MISS");
    assert.match(v["ack → visible p99 ≤ 250 ms at 300 scans/s"]!.measured, /not reached, 40 scans never visible/);
    assert.equal(v["ack → webhook p99 ≤ 2 s at 300 scans/s"]!.verdict, "MISS", "webhooks of invisible scans are unknown");
  });
});

describe("cost per scan", () => {
  it("sums the mesh without the load generator and tabulates every run", () => {
    assert.equal(meshTotal(run(300).cost.perThousandScans), 980);
    const lines = costTable([run(1000), run(300, { sustained: false })]);
    assert.match(lines[0]!, /\| 300\/s † \| 1000\/s \|/);
    assert.ok(lines.some((l) => l.startsWith("| **mesh total** | **980** | **980** |")));
    assert.ok(lines.some((l) => l.startsWith("| load generator | 200 | 200 |")));
    assert.ok(lines.some((l) => l.startsWith("| postgres | 400 | 400 | 20 |")), "idle column from the lowest rate's run");
    const swamped = costTable([run(300, { sustained: false, ackedPerSec: 100 })]);
    assert.ok(swamped.some((l) => l.startsWith("| tracking | ‡ |")), "no cost per scan when most scans were never acked");
  });
});

describe("nextRate", () => {
  it("bisects geometrically between the highest sustained and the lowest failed rate", () => {
    assert.equal(nextRate([{ rate: 300, sustained: true }, { rate: 1000, sustained: false }]), 550);
    assert.equal(nextRate([{ rate: 300, sustained: false }, { rate: 1000, sustained: false }]), 150);
    assert.equal(nextRate([{ rate: 300, sustained: true }, { rate: 1000, sustained: true }]), 2000);
    assert.equal(nextRate([{ rate: 300, sustained: true }]), 1000, "the target next while nothing failed");
    assert.equal(nextRate([{ rate: 300, sustained: false }]), 150);
    assert.equal(nextRate([{ rate: 500, sustained: true }, { rate: 600, sustained: false }]), undefined, "close enough");
    assert.equal(nextRate([{ rate: 25, sustained: false }]), undefined, "nothing below the floor");
  });
});

describe("sizing", () => {
  it("allots replicas so the peak stays under 60% of their cores, and cluster nodes each doing the whole work", () => {
    const perThousand = { ingest: 500, routing: 0, tracking: 3000, notification: 1000, postgres: 6000, "nats-server": 400, "redis-server": 100 };
    const idle = { notification: 50 };
    const small = Object.fromEntries(sizing(perThousand, idle, { name: "s", avgPerSec: 70, peakPerSec: 300 }).map((r) => [r.component, r]));
    assert.equal(small["tracking"]!.instances, 2, "0.9 busy cores fit two replicas at 45%");
    assert.ok(Math.abs(small["tracking"]!.peakCores - 0.9) < 1e-9);
    assert.ok(Math.abs(small["notification"]!.peakCores - (0.3 + 0.1)) < 1e-9, "idle cost per replica added");
    assert.equal(small["PostgreSQL (primary)"]!.allotCores, 3, "1.8 busy cores / 0.6");
    assert.equal(small["NATS (3 nodes)"]!.allotCores, 3);
    const big = Object.fromEntries(sizing(perThousand, idle, { name: "b", avgPerSec: 700, peakPerSec: 3000 }).map((r) => [r.component, r]));
    assert.equal(big["tracking"]!.instances, 15, "9 busy cores at 60% of 15");
    assert.equal(big["PostgreSQL (primary)"]!.allotCores, 30);
    const table = sizingTable(perThousand, idle);
    assert.equal(table.length, 2 + 7 + 1);
    assert.match(table.at(-1)!, /^\| \*\*total\*\*/);
  });
});
