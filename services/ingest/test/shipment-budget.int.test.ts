import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Redis } from "ioredis";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { createRedisScanAdmission } from "../src/redis-scan-admission.js";
import type { AdmissionItem } from "../src/scan-ingestor.js";

/** The shipment budgets of the admission script on the tests' Redis (unique key prefix). */
describe("the Redis shipment budget (real Redis)", () => {
  const prefix = `${uniqueName("budget")}:`;
  let redis: Redis;
  const errors: string[] = [];
  beforeAll(() => {
    redis = new Redis(process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379", { keyPrefix: prefix });
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys.map((k) => k.slice(prefix.length)));
    redis.disconnect();
  });

  let n = 0;
  /** A new scan of `shipment` costing `cost` bytes. */
  const charge = (shipment: string, cost: number): AdmissionItem => ({ id: `scan-${++n}`, shipment, cost });

  it("grants charges in order up to the limit, renews the account's lifetime, and takes back what is refunded", async () => {
    const admission = createRedisScanAdmission({
      redis,
      dedupeTtlSeconds: 60,
      budget: { limitBytes: 1000, ttlSeconds: 3600 },
      onError: (op) => errors.push(op),
      settleLingerMs: 10,
    });
    const verdicts = await admission.admit([
      charge("TN1", 600),
      charge("TN2", 900),
      charge("TN1", 300),
      charge("TN1", 200), // 1,100 > 1,000
      charge("TN1", 100), // exactly 1,000
    ]);
    assert.deepEqual(verdicts, ["charged", "charged", "charged", "full", "charged"]);
    assert.equal(await redis.get("budget:TN1"), "1000");
    const ttl = await redis.ttl("budget:TN1");
    assert.ok(ttl > 3500 && ttl <= 3600, String(ttl));

    // A refund rides on the next round and is applied before its charges.
    admission.settle([], [{ shipment: "TN1", cost: 300 }]);
    assert.deepEqual(await admission.admit([charge("TN1", 300)]), ["charged"]);
    // Refunded to nothing, the account goes (sent alone after the settlement's linger).
    admission.settle([], [{ shipment: "TN2", cost: 900 }]);
    await waitFor(async () => (await redis.exists("budget:TN2")) === 0, { timeoutMs: 5_000, message: "the refund deletes the emptied account" });
    // A scan stored before is not charged again.
    const stored = charge("TN3", 10);
    admission.settle([stored.id], []);
    assert.deepEqual(await admission.admit([stored, charge("TN3", 10)]), ["seen", "charged"]);
    assert.equal(await redis.get("budget:TN3"), "10");
    assert.deepEqual(errors, []);
    admission.close();
  });

  it("admits everything uncharged while Redis cannot be reached (fails open), and says so", async () => {
    const down = new Redis("redis://127.0.0.1:1", { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    const failures: string[] = [];
    const admission = createRedisScanAdmission({
      redis: down,
      dedupeTtlSeconds: 60,
      budget: { limitBytes: 1000, ttlSeconds: 60 },
      onError: (op) => failures.push(op),
    });
    assert.deepEqual(await admission.admit([charge("TN1", 5000)]), ["free"]);
    assert.deepEqual(failures, ["admission"]);
    admission.close();
    down.disconnect();
  });
});
