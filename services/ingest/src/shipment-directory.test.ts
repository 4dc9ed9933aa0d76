import * as assert from "node:assert/strict";
import type { KV } from "@nats-io/kv";
import { describe, it } from "vitest";
import { encodeParties } from "./scan-ownership.js";
import { createKvShipmentDirectory, DirectoryUnavailableError } from "./shipment-directory.js";

const parties = { shipmentId: "shp_1", carrier: "acme", partners: [], customer: "cust-1" };
/** A bucket whose direct gets come from a replica that has not caught up: every key is missing. */
const behindReplica = { get: async () => null } as unknown as KV;

describe("createKvShipmentDirectory", () => {
  it("confirms a miss with the leader before calling a tracking number unknown (a replica behind after a partition)", async () => {
    const asked: string[] = [];
    const dir = createKvShipmentDirectory({
      kv: behindReplica,
      cacheSize: 10,
      cacheTtlMs: 60_000,
      readFromLeader: async (tn) => {
        asked.push(tn);
        return tn === "KNOWN0001" ? { value: encodeParties(parties), revision: 7 } : undefined;
      },
    });
    const found = await dir.lookup(["KNOWN0001", "NOPE00001"]);
    assert.equal(found.get("KNOWN0001")?.carrier, "acme");
    assert.equal(found.has("NOPE00001"), false);
    assert.deepEqual(asked.sort(), ["KNOWN0001", "NOPE00001"]);
    await dir.lookup(["KNOWN0001"]);
    assert.equal(asked.length, 2, "the confirmed entry is cached like any other");
  });

  it("answers unavailable, not unknown, when the leader cannot be asked", async () => {
    const dir = createKvShipmentDirectory({
      kv: behindReplica,
      cacheSize: 10,
      cacheTtlMs: 60_000,
      readFromLeader: async () => {
        throw new Error("timeout");
      },
    });
    await assert.rejects(dir.lookup(["KNOWN0001"]), DirectoryUnavailableError);
  });

  it("drops cached entries once their TTL has passed instead of keeping them until the cache is full", async () => {
    let t = 1000;
    const kv = { get: async () => ({ operation: "PUT", value: encodeParties(parties), revision: 1 }) } as unknown as KV;
    const dir = createKvShipmentDirectory({ kv, cacheSize: 1000, cacheTtlMs: 120_000, now: () => t });
    await dir.lookup(Array.from({ length: 100 }, (_, i) => `OLD${String(i).padStart(6, "0")}`));
    assert.equal(dir.cached, 100);
    t = 61_000;
    await dir.lookup(["NEW0000001"]);
    assert.equal(dir.cached, 101, "entries within their TTL stay");
    t = 122_000;
    await dir.lookup(["NEW0000002"]);
    assert.equal(dir.cached, 2, "expired entries are gone, not only unserved");
  });
});
