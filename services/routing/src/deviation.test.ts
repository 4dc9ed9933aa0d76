import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { EtaChangeReason, RouteSchema, TransportMode } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { detectDeviation } from "./deviation.js";
import { createHubNetwork, type HubRecord } from "./hub-network.js";
import { msOf } from "./route-mapping.js";

const hub = (code: string): HubRecord => ({
  code, name: code, city: code, country: "DE", lat: 50, lon: 8, kind: "ROAD_HUB", timeZone: "Etc/UTC", continent: "EU", processingMin: 60,
});
const network = createHubNetwork({
  hubs: [hub("AAA"), hub("BBB"), hub("CCC"), hub("XXX")],
  lanes: [
    ["AAA", "BBB", "ROAD", 100, 120, 30, 127, [600]],
    ["BBB", "CCC", "ROAD", 100, 90, 30, 127, [840]],
  ],
});
const T = Date.UTC(2026, 10, 23);
const H = 3_600_000;
const leg = (from: string, to: string, dep: number, arr: number) => ({
  fromHub: from,
  toHub: to,
  mode: TransportMode.ROAD,
  plannedDeparture: timestampFromMs(dep),
  plannedArrival: timestampFromMs(arr),
  departureId: `${from}-${to}-ROAD-x`,
});
const route = create(RouteSchema, { legs: [leg("AAA", "BBB", T + 10 * H, T + 12 * H), leg("BBB", "CCC", T + 14 * H, T + 15.5 * H)] });
const at = (code: string) => network.hub(code)!;
const TOL = 30 * 60_000;

describe("detectDeviation", () => {
  it("ignores arrivals and departures within the tolerance", () => {
    assert.equal(detectDeviation(network, route, { kind: ScanKind.HUB_ARRIVAL, hub: at("BBB"), at: T + 12 * H + TOL }, TOL), undefined);
    assert.equal(detectDeviation(network, route, { kind: ScanKind.HUB_DEPARTURE, hub: at("BBB"), at: T + 14 * H - TOL }, TOL), undefined);
    assert.equal(detectDeviation(network, route, { kind: ScanKind.HUB_ARRIVAL, hub: at("BBB"), at: T + 12 * H - TOL }, TOL), undefined);
    assert.equal(detectDeviation(network, route, { kind: ScanKind.HUB_ARRIVAL, hub: at("AAA"), at: T + 9 * H }, TOL), undefined);
    assert.equal(detectDeviation(network, route, { kind: ScanKind.CUSTOMS, hub: at("XXX"), at: T }, TOL), undefined);
  });

  it("reports a late arrival and keeps the legs up to the hub", () => {
    const d = detectDeviation(network, route, { kind: ScanKind.HUB_ARRIVAL, hub: at("BBB"), at: T + 13 * H }, TOL)!;
    assert.equal(d.reason, EtaChangeReason.LATE_ARRIVAL);
    assert.equal(d.origin.code, "BBB");
    assert.equal(d.readyAt, T + 13 * H);
    assert.equal(d.prefix.length, 1);
    assert.match(d.detail, /60 min after/);
  });

  it("reports an early arrival, keeping the arrived leg with its actual arrival", () => {
    const d = detectDeviation(network, route, { kind: ScanKind.HUB_ARRIVAL, hub: at("BBB"), at: T + 10.5 * H }, TOL)!;
    assert.equal(d.reason, EtaChangeReason.EARLY_ARRIVAL);
    assert.equal(d.origin.code, "BBB");
    assert.equal(d.readyAt, T + 10.5 * H);
    assert.match(d.detail, /90 min before the planned arrival/);
    assert.equal(d.prefix.length, 1);
    assert.equal(msOf(d.prefix[0]!.actualArrival), T + 10.5 * H);
    assert.equal(msOf(d.prefix[0]!.plannedArrival), T + 12 * H, "the plan stays for comparison");
    assert.equal(route.legs[0]!.actualArrival, undefined, "the stored route is not modified");
  });

  it("sets the actual arrival on a late arrival's leg too, keeping earlier actual times", () => {
    const departed = create(RouteSchema, { legs: [{ ...route.legs[0]!, actualDeparture: timestampFromMs(T + 10 * H) }, route.legs[1]!] });
    const d = detectDeviation(network, departed, { kind: ScanKind.HUB_ARRIVAL, hub: at("BBB"), at: T + 13 * H }, TOL)!;
    assert.equal(msOf(d.prefix[0]!.actualDeparture), T + 10 * H);
    assert.equal(msOf(d.prefix[0]!.actualArrival), T + 13 * H);
  });

  it("moves an early departure to the scan time and re-plans from the next hub", () => {
    const d = detectDeviation(network, route, { kind: ScanKind.HUB_DEPARTURE, hub: at("BBB"), at: T + 12.5 * H }, TOL)!;
    assert.equal(d.reason, EtaChangeReason.EARLY_DEPARTURE);
    assert.match(d.detail, /left BBB 90 min before departure BBB-CCC-ROAD-x/);
    assert.equal(d.origin.code, "CCC");
    assert.equal(d.readyAt, T + 12.5 * H + 90 * 60_000);
    assert.equal(d.prefix.length, 2);
    assert.equal(msOf(d.prefix[1]!.actualDeparture), T + 12.5 * H);
    assert.equal(d.prefix[1]!.departureId, "BBB-CCC-ROAD-x-early");
  });

  it("reports an unplanned hub for an arrival or departure off the route", () => {
    const a = detectDeviation(network, route, { kind: ScanKind.HUB_ARRIVAL, hub: at("XXX"), at: T + 11 * H }, TOL)!;
    assert.equal(a.reason, EtaChangeReason.UNPLANNED_HUB);
    assert.equal(a.origin.code, "XXX");
    assert.equal(a.originProcessed, false);
    const d = detectDeviation(network, route, { kind: ScanKind.HUB_DEPARTURE, hub: at("XXX"), at: T + 11 * H }, TOL)!;
    assert.equal(d.reason, EtaChangeReason.UNPLANNED_HUB);
    assert.equal(d.originProcessed, true);
  });

  it("moves a late departure to the scan time and re-plans from the next hub", () => {
    const d = detectDeviation(network, route, { kind: ScanKind.HUB_DEPARTURE, hub: at("BBB"), at: T + 20 * H }, TOL)!;
    assert.equal(d.reason, EtaChangeReason.MISSED_CUTOFF);
    assert.match(d.detail, /missed cut-off of departure BBB-CCC-ROAD-x at BBB/);
    assert.equal(d.origin.code, "CCC");
    assert.equal(d.readyAt, T + 20 * H + 90 * 60_000);
    assert.equal(d.prefix.length, 2);
    assert.equal(msOf(d.prefix[1]!.plannedDeparture), T + 20 * H);
    assert.equal(msOf(d.prefix[1]!.actualDeparture), T + 20 * H);
  });
});
