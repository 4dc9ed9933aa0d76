import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { RouteSchema, TransportMode } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentEventSchema, ShipmentSchema } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { legsOf, mapModelOf, scannedHubs } from "./journey.js";
import type { HubInfo } from "./page-config.js";
import { centralLongitude } from "./world-map.js";

const T = Date.UTC(2026, 11, 1);
const H = 3_600_000;
const t = (h: number) => timestampFromMs(T + h * H);
const route = create(RouteSchema, {
  legs: [
    { fromHub: "GRU", toHub: "LAX", mode: TransportMode.AIR, plannedDeparture: t(2), plannedArrival: t(14), actualDeparture: t(3), actualArrival: t(12) },
    { fromHub: "LAX", toHub: "NRT", mode: TransportMode.AIR, plannedDeparture: t(20), plannedArrival: t(32), actualDeparture: t(18) },
    { fromHub: "NRT", toHub: "JPTYO", mode: TransportMode.ROAD, plannedDeparture: t(36), plannedArrival: t(38) },
  ],
});
const hub = (code: string, city: string, latitude: number, longitude: number): [string, HubInfo] => [
  code,
  { code, name: code, city, countryCode: "", latitude, longitude, timeZone: "" },
];
const hubs = new Map([
  hub("GRU", "São Paulo", -23.4, -46.5),
  hub("LAX", "Los Angeles", 33.9, -118.4),
  hub("NRT", "Tokyo", 35.8, 140.4),
  hub("JPTYO", "Tokyo", 35.6, 139.8),
  hub("MEX", "Mexico City", 19.4, -99.1),
]);
const scan = (scanKind: ScanKind, hubCode: string) => create(ShipmentEventSchema, { scanKind, hubCode });

describe("legsOf", () => {
  it("shows actual times on travelled legs (with how early or late) and planned ones ahead", () => {
    const legs = legsOf(route);
    assert.deepEqual(legs.map((l) => l.state), ["done", "current", "upcoming"]);
    assert.deepEqual(legs[0]!.arrival, { ms: T + 12 * H, actual: true, deltaMs: -2 * H });
    assert.deepEqual(legs[1]!.departure, { ms: T + 18 * H, actual: true, deltaMs: -2 * H });
    assert.deepEqual(legs[1]!.arrival, { ms: T + 32 * H, actual: false, deltaMs: undefined });
    assert.equal(legs[2]!.mode, "road");
  });
});

describe("mapModelOf", () => {
  it("draws the route's legs plus the stretches the scans show off the plan", () => {
    // The parcel went GRU → MEX (not planned) and then joined the plan at LAX.
    const events = [scan(ScanKind.HUB_DEPARTURE, "GRU"), scan(ScanKind.HUB_ARRIVAL, "MEX"), scan(ScanKind.HUB_ARRIVAL, "LAX")];
    const s = create(ShipmentSchema, { route, currentHubCode: "LAX" });
    const m = mapModelOf(s, events, hubs);
    assert.deepEqual(scannedHubs(events), ["GRU", "MEX", "LAX"]);
    assert.deepEqual(
      m.lines.map((l) => [l.title, l.state]),
      [
        ["GRU → MEX", "done"],
        ["MEX → LAX", "done"],
        ["GRU → LAX", "done"],
        ["LAX → NRT", "current"],
        ["NRT → JPTYO", "upcoming"],
      ],
    );
    assert.equal(m.places.find((p) => p.key === "GRU")?.role, "origin");
    assert.equal(m.places.find((p) => p.key === "JPTYO")?.role, "destination");
    assert.deepEqual(m.current, { longitude: -118.4, latitude: 33.9 });
  });
});

describe("centralLongitude", () => {
  it("centres a trans-Pacific route on the Pacific, not on Greenwich", () => {
    const c = centralLongitude([-46.5, -118.4, 140.4]);
    assert.ok(c < -120 || c > 150, `centre ${c}`);
    assert.ok(Math.abs(centralLongitude([8, 12]) - 10) < 1e-9);
    assert.ok(Math.abs(Math.abs(centralLongitude([170, -170])) - 180) < 1e-9);
  });
});
