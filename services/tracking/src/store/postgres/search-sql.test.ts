import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { seededRandom } from "@logistics/shared/testing";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { normalizeQuery } from "../query.js";
import { buildSearchSql, coveringCells, GEO_CELLS_PER_DEGREE, geoCell, MAX_AREA_CELLS } from "./search-sql.js";

const R = 6378.168;
const rad = Math.PI / 180;

/** Great-circle distance on earthdistance's sphere, km. */
function distanceKm(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  const h = Math.sin(((b.lat - a.lat) * rad) / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(((b.lon - a.lon) * rad) / 2) ** 2;
  return 2 * R * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** A point at `km` from `c` in direction `bearing` (radians). */
function destination(c: { lat: number; lon: number }, km: number, bearing: number): { lat: number; lon: number } {
  const d = km / R;
  const lat1 = c.lat * rad;
  const lat2 = Math.asin(Math.sin(lat1) * Math.cos(d) + Math.cos(lat1) * Math.sin(d) * Math.cos(bearing));
  const lon2 = c.lon * rad + Math.atan2(Math.sin(bearing) * Math.sin(d) * Math.cos(lat1), Math.cos(d) - Math.sin(lat1) * Math.sin(lat2));
  let lon = lon2 / rad;
  while (lon > 180) lon -= 360;
  while (lon < -180) lon += 360;
  return { lat: lat2 / rad, lon };
}

describe("coveringCells", () => {
  it("covers every point within the radius, at the equator, near the poles and across the antimeridian", () => {
    const random = seededRandom(7);
    const centers = [
      { lat: 0, lon: 0 },
      { lat: 48.85, lon: 2.35 },
      { lat: -33.9, lon: 151.2 },
      { lat: 10, lon: 179.95 },
      { lat: -20, lon: -179.99 },
      { lat: 89.9, lon: 30 },
      { lat: -89.95, lon: -120 },
      { lat: 64.1, lon: -21.9 },
    ];
    for (const c of centers) {
      for (const km of [0.5, 10, 25, 60]) {
        const cells = coveringCells(c.lat, c.lon, km, 100_000);
        assert.ok(cells, `${JSON.stringify(c)} ${km} km`);
        const set = new Set(cells);
        for (let i = 0; i < 400; i++) {
          // Many points right at the rim, where a too-small cover would fail.
          const p = destination(c, km * (i % 2 ? 1 - 1e-9 : Math.sqrt(random())), random() * 2 * Math.PI);
          if (distanceKm(c, p) > km) continue;
          assert.ok(set.has(geoCell(p.lat, p.lon)), `${JSON.stringify(p)} within ${km} km of ${JSON.stringify(c)} is in a covering cell`);
        }
      }
    }
  });

  it("leaves out the cells of the circle's bounding box that the circle does not reach", () => {
    const random = seededRandom(9);
    let leftOut = 0;
    for (const c of [{ lat: 0.06, lon: 0.06 }, { lat: 48.85, lon: 2.35 }, { lat: -33.9, lon: 151.2 }, { lat: 10.06, lon: 179.95 }]) {
      const km = 25;
      const set = new Set(coveringCells(c.lat, c.lon, km));
      const rows = new Set([...set].map((cell) => Math.floor(cell / (360 * GEO_CELLS_PER_DEGREE + 1))));
      const cols = new Set([...set].map((cell) => cell % (360 * GEO_CELLS_PER_DEGREE + 1)));
      leftOut += rows.size * cols.size - set.size;
      for (let i = 0; i < 4000; i++) {
        const p = destination(c, km * 1.5 * Math.sqrt(random()), random() * 2 * Math.PI);
        if (!set.has(geoCell(p.lat, p.lon))) assert.ok(distanceKm(c, p) > km, `${JSON.stringify(p)} is within ${km} km of ${JSON.stringify(c)}`);
      }
    }
    assert.ok(leftOut >= 3, `${leftOut} cells left out`);
  });

  it("takes a few tens of cells for a city-sized radius and gives up on a continent", () => {
    assert.ok(coveringCells(48.85, 2.35, 25)!.length <= 30);
    assert.ok(coveringCells(0, 0, 25)!.length <= 20);
    assert.equal(coveringCells(48.85, 2.35, 2000), undefined);
    assert.ok(coveringCells(48.85, 2.35, 60)!.length <= MAX_AREA_CELLS);
  });

  it("numbers cells as the SQL function shipment_geo_cell(lat, lon, 8) does", () => {
    assert.equal(GEO_CELLS_PER_DEGREE, 8);
    assert.equal(geoCell(-90, -180), 0);
    assert.equal(geoCell(90, 180), 1440 * 2881 + 2880);
    assert.equal(geoCell(0.1, 0.1), 720 * 2881 + 1440);
  });
});

describe("buildSearchSql", () => {
  it("reads an area search cell by cell and a customer's search status by status, both in the contract's order", () => {
    const area = buildSearchSql(normalizeQuery({ near: { lat: 48.85, lon: 2.35, radiusKm: 25 }, pageSize: 20 }));
    assert.match(area.text, /unnest\(\$\d+::int\[\]\)/);
    assert.match(area.text, /shipment_geo_cell\(lat, lon, 8\) = k\.v/);
    assert.match(area.text, /ORDER BY top\.updated_at DESC, top\.tracking_number DESC$/);
    const customer = buildSearchSql(normalizeQuery({ customerId: "c-1", statuses: [ShipmentStatus.IN_TRANSIT, ShipmentStatus.IN_TRANSIT], pageSize: 20 }));
    assert.match(customer.text, /status = k\.v/);
    assert.ok(customer.values.some((v) => Array.isArray(v) && v.length === 1), "each status once");
  });

  it("searches a customer's area too wide for the grid status by status, with the area as a filter the GiST index cannot serve", () => {
    const wide = buildSearchSql(normalizeQuery({ customerId: "c-1", near: { lat: 0, lon: 0, radiusKm: 3000 }, pageSize: 20 }));
    assert.match(wide.text, /status = k\.v/);
    assert.match(wide.text, /customer_id = \$\d+/);
    assert.doesNotMatch(wide.text, /earth_box/);
    const carrier = buildSearchSql(normalizeQuery({ carrierCode: "acme", near: { lat: 0, lon: 0, radiusKm: 3000 }, pageSize: 20 }));
    assert.match(carrier.text, /earth_box/, "a carrier's (internal callers only) keeps the GiST box");
  });

  it("searches a continent-sized area and a search without customer, carrier or area in one plain query", () => {
    assert.doesNotMatch(buildSearchSql(normalizeQuery({ near: { lat: 0, lon: 0, radiusKm: 3000 }, pageSize: 20 })).text, /LATERAL/);
    assert.doesNotMatch(buildSearchSql(normalizeQuery({ updatedAfter: "2026-01-01T00:00:00Z", pageSize: 20 })).text, /LATERAL/);
  });
});
