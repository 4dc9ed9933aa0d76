import * as assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, it } from "vitest";
import { runChaos } from "../src/chaos/chaos-run.js";

/*
 * The bounded chaos run of `npm test`: the mesh on a three-node JetStream cluster (3 replicas),
 * carriers streaming at a fixed rate, and three faults — kill -9 of the scans stream's leader,
 * Redis killed and restarted, kill -9 of a tracking replica while its consumer holds a batch.
 * The full schedule is `npm run chaos` (perf/README.md, "Chaos").
 */
describe("chaos (bounded): faults under load on a three-node JetStream cluster", () => {
  const logDir = mkdtempSync(join(tmpdir(), "chaos-test-logs-"));
  afterAll(() => rmSync(logDir, { recursive: true, force: true }));

  it("loses no acknowledged scan, applies none twice, and every shipment ends as the sequential model says", async (ctx) => {
    const seed = 20261203;
    const r = await runChaos({
      seed,
      faults: ["nats-leader-kill", "redis-kill", "consumer-kill-mid-batch"],
      baselineMs: 8000,
      settleMs: 6000,
      carriers: ["acme", "globex", "initech"],
      ratePerCarrier: 3,
      slots: 4,
      replicas: { ingest: 2, routing: 1, tracking: 2, notification: 1 },
      logDir,
    });
    for (const f of [r.baseline, ...r.faults]) {
      ctx.annotate(
        `${f.name}: recover ${f.recoverMs ?? "-"} ms, longest ack gap ${f.longestAckGapMs} ms, lag peak ${f.lagPeak}, carriers saw ${JSON.stringify(f.carrierErrors)}`,
      );
    }
    const c = r.checker;
    ctx.annotate(`seed ${seed}: ${c.scansSent} scans sent, ${c.scansAcked} acknowledged, ${c.shipments} shipments, ${c.webhooks.distinctEvents} webhook events`);
    assert.ok(c.scansSent > 100, `the load ran (${c.scansSent} scans)`);
    assert.deepEqual(c.lost, [], "acknowledged scans lost");
    assert.deepEqual(c.appliedTwice, [], "scans applied twice");
    assert.deepEqual(c.visibleNeverAcked, [], "scans visible but never acknowledged");
    assert.deepEqual(c.statusMismatches, [], "statuses differing from the sequential model");
    assert.deepEqual(c.webhooks.missing, [], "webhooks missing");
    assert.deepEqual(c.webhooks.duplicated, [], "webhooks duplicated beyond at-least-once");
    assert.equal(c.unackedAtEnd, 0, "every scan acknowledged after the faults");
    assert.equal(c.deadLetters, 0, "dead letters");
    assert.equal(c.ok, true);
    for (const f of r.faults) assert.notEqual(f.recoverMs, undefined, `${f.name}: the carriers recovered within the window`);
  });
});
