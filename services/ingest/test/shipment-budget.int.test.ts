import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Redis } from "ioredis";
import { uniqueName } from "@logistics/shared/testing";
import { createRedisShipmentBudget } from "../src/shipment-budget.js";

/** The shipment budget's scripts on the tests' Redis (unique key prefix). */
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

  it("grants charges in order up to the limit, renews the account's lifetime, and takes back what is released", async () => {
    const budget = createRedisShipmentBudget({ redis, limitBytes: 1000, ttlSeconds: 3600, onError: (op) => errors.push(op) });
    const granted = await budget.reserve([
      { shipment: "TN1", cost: 600 },
      { shipment: "TN2", cost: 900 },
      { shipment: "TN1", cost: 300 },
      { shipment: "TN1", cost: 200 }, // 1,100 > 1,000
      { shipment: "TN1", cost: 100 }, // exactly 1,000
    ]);
    assert.deepEqual(granted, [true, true, true, false, true]);
    assert.equal(await redis.get("budget:TN1"), "1000");
    const ttl = await redis.ttl("budget:TN1");
    assert.ok(ttl > 3500 && ttl <= 3600, String(ttl));

    budget.release([{ shipment: "TN1", cost: 300 }]);
    const after = await budget.reserve([{ shipment: "TN1", cost: 300 }]);
    assert.deepEqual(after, [true]);
    // Released to nothing, the account goes.
    budget.release([{ shipment: "TN2", cost: 900 }]);
    assert.deepEqual(await budget.reserve([{ shipment: "TN3", cost: 1 }]), [true]); // a round trip after the release
    assert.equal(await redis.exists("budget:TN2"), 0);
    assert.deepEqual(errors, []);
  });

  it("grants everything while Redis cannot be reached (fails open), and says so", async () => {
    const down = new Redis("redis://127.0.0.1:1", { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    const failures: string[] = [];
    const budget = createRedisShipmentBudget({ redis: down, limitBytes: 1000, ttlSeconds: 60, onError: (op) => failures.push(op) });
    assert.deepEqual(await budget.reserve([{ shipment: "TN1", cost: 5000 }]), [true]);
    assert.deepEqual(failures, ["budget_reserve"]);
    down.disconnect();
  });
});
