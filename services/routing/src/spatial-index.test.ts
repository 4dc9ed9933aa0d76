import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { hubNetworkData } from "./data/hub-network-data.js";
import { haversineKm } from "./geo.js";
import { createHubNetwork } from "./hub-network.js";
import { createSpatialIndex } from "./spatial-index.js";
import { seededRandom } from "@logistics/shared/testing";

const network = createHubNetwork(hubNetworkData);
const index = createSpatialIndex(network.hubs);

describe("createSpatialIndex", () => {
  it("finds Frankfurt airport nearest to Frankfurt's city centre", () => {
    const [first] = index.nearest({ lat: 50.11, lon: 8.68 }, { limit: 1 });
    assert.equal(first?.item.code, "FRA");
    assert.ok(first.distanceKm > 5 && first.distanceKm < 20);
  });

  it("agrees with a brute-force scan for random points, limits and kinds", () => {
    const rnd = seededRandom(42);
    for (let i = 0; i < 300; i++) {
      const point = { lat: rnd() * 180 - 90, lon: rnd() * 360 - 180 };
      const limit = 1 + Math.floor(rnd() * 10);
      const kind = rnd() < 0.5 ? "SEAPORT" : undefined;
      const maxDistanceKm = rnd() < 0.3 ? 2000 : undefined;
      const expected = network.hubs
        .filter((h) => !kind || h.kind === kind)
        .map((h) => ({ code: h.code, d: haversineKm(point, h) }))
        .filter((x) => maxDistanceKm === undefined || x.d <= maxDistanceKm)
        .sort((a, b) => a.d - b.d)
        .slice(0, limit);
      const got = index.nearest(point, { limit, ...(maxDistanceKm ? { maxDistanceKm } : {}), ...(kind ? { filter: (h) => h.kind === kind } : {}) });
      assert.deepEqual(got.map((g) => g.item.code), expected.map((e) => e.code), `query ${i} at ${point.lat},${point.lon}`);
    }
  });

  it("finds neighbours across the antimeridian", () => {
    const got = index.nearest({ lat: -18, lon: -179.9 }, { limit: 2 });
    assert.deepEqual(new Set(got.map((g) => g.item.code)), new Set(["FJSUV", "NAN"]));
  });

  it("returns nothing beyond max distance and everything within a radius, nearest first", () => {
    assert.deepEqual(index.nearest({ lat: -60, lon: -30 }, { limit: 5, maxDistanceKm: 100 }), []);
    const within = index.within({ lat: 51.9, lon: 4.3 }, 150);
    assert.ok(within.some((w) => w.item.code === "NLRTM") && within.some((w) => w.item.code === "AMS"));
    assert.ok(within.every((w, i) => w.distanceKm <= 150 && (i === 0 || within[i - 1]!.distanceKm <= w.distanceKm)));
  });
});

describe("the generated hub network", () => {
  it("has at least 150 hubs with valid codes on every continent", () => {
    assert.ok(network.hubs.length >= 150);
    assert.ok(network.hubs.every((h) => /^[A-Z0-9]{3,8}$/.test(h.code)));
    assert.deepEqual(new Set(network.hubs.map((h) => h.continent)), new Set(["EU", "AS", "AF", "NA", "SA", "OC"]));
    for (const kind of ["AIRPORT", "SEAPORT", "RAIL_TERMINAL", "ROAD_HUB"]) assert.ok(network.hubs.some((h) => h.kind === kind), kind);
  });

  it("has road lanes shorter than 800 km and air lanes only between airports", () => {
    for (const lane of network.lanes) {
      const from = network.hubs[lane.from]!;
      const to = network.hubs[lane.to]!;
      if (lane.mode === "ROAD") assert.ok(lane.distanceKm < 800 && from.continent === to.continent);
      if (lane.mode === "AIR") assert.ok(from.kind === "AIRPORT" && to.kind === "AIRPORT");
      if (lane.mode === "SEA") assert.ok(from.kind === "SEAPORT" && to.kind === "SEAPORT");
    }
  });

  it("uses valid IANA time zones", () => {
    for (const h of network.hubs) assert.doesNotThrow(() => new Intl.DateTimeFormat("en", { timeZone: h.timeZone }), h.code);
  });
});
