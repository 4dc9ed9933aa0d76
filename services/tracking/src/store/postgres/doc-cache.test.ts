import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import type { ShipmentDoc } from "../ports.js";
import { asStored, DocCache } from "./doc-cache.js";

const doc = (tn: string, version: number, extra: Partial<ShipmentDoc> = {}): ShipmentDoc => ({
  trackingNumber: tn,
  status: ShipmentStatus.IN_TRANSIT,
  updatedAt: "2026-11-20T08:00:00.000Z",
  version,
  derivation: { timeline: [], eventIds: Array.from({ length: version }, (_, i) => `${tn}-${i}`) },
  ...extra,
});

describe("DocCache", () => {
  it("keeps the most recently used entries up to its capacity", () => {
    const cache = new DocCache(2);
    cache.set("a", doc("a", 1), "10");
    cache.set("b", doc("b", 1), "11");
    assert.ok(cache.get("a"), "a is now the most recently used");
    cache.set("c", doc("c", 1), "12");
    assert.equal(cache.size, 2);
    assert.equal(cache.get("b"), undefined, "b was the least recently used");
    assert.equal(cache.get("a")?.xmin, "10");
    assert.equal(cache.get("c")?.xmin, "12");
  });

  it("keeps nothing at capacity 0", () => {
    const cache = new DocCache(0);
    cache.set("a", doc("a", 1), "10");
    assert.equal(cache.size, 0);
    assert.equal(cache.get("a"), undefined);
  });

  it("drops a lower version than the entry's, replaces an equal or higher one, and forgets on delete", () => {
    const cache = new DocCache(10);
    cache.set("a", doc("a", 3), "30");
    cache.set("a", doc("a", 2), "20");
    assert.equal(cache.get("a")?.xmin, "30", "the older of two writes finishing out of order");
    cache.set("a", doc("a", 3, { customerReference: "repaired" }), "31");
    assert.deepEqual([cache.get("a")?.xmin, cache.get("a")?.doc.customerReference], ["31", "repaired"], "a rewrite that kept the version");
    cache.set("a", doc("a", 4), "40");
    assert.equal(cache.get("a")?.xmin, "40");
    cache.delete(["a", "unknown"]);
    assert.equal(cache.get("a"), undefined);
    cache.set("a", doc("a", 1), "50");
    assert.equal(cache.get("a")?.xmin, "50", "after a delete any version is taken (a shipment deleted and created again)");
  });
});

describe("asStored", () => {
  it("keeps a document that is exactly its JSON, and parses the JSON of one that is not", () => {
    const plain = doc("a", 2, { origin: { city: "Berlin", location: { latitude: 52.5, longitude: 13.4 } }, weightGrams: 1200 });
    assert.equal(asStored(plain, JSON.stringify(plain)), plain);
    const odd: ShipmentDoc[] = [
      doc("a", 2, { destination: { city: "Paris", location: { latitude: 48.86, longitude: -0 } } }),
      doc("a", 2, { customerReference: undefined }),
      doc("a", 2, { weightGrams: Number.NaN }),
      doc("a", 2, { partnerCarrierCodes: [undefined as unknown as string] }),
      doc("a", 2, { origin: Object.assign(Object.create({ inherited: 1 }) as object, { city: "x" }) }),
    ];
    for (const d of odd) {
      const json = JSON.stringify(d);
      const stored = asStored(d, json);
      assert.notEqual(stored, d);
      assert.deepStrictEqual(stored, JSON.parse(json));
    }
  });
});
