import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { createHubNetwork, nextDeparture, type HubNetworkData, type HubRecord, type LaneRecord } from "./hub-network.js";
import { createPlanner, MODES_BY_SERVICE_LEVEL, NoRouteError } from "./planner.js";

const DAILY = 0b1111111;
const hub = (code: string, lat: number, lon: number): HubRecord => ({
  code,
  name: `Hub ${code}`,
  city: code,
  country: "DE",
  lat,
  lon,
  kind: "ROAD_HUB",
  timeZone: "Etc/UTC",
  continent: "EU",
  processingMin: 60,
});
const at = (h: number, m = 0) => h * 60 + m;

/**
 * AAA → BBB (road, 10:00 and 18:00, 2 h) → DDD (air, 14:00, 3 h): the fast path.
 * AAA → DDD (air, 20:00, 25 h with a long stop-over): direct but slower.
 * AAA → CCC (road, 09:00, 1 h) → DDD (road, 12:00, 10 h): the slow path.
 * Every hub processes for 60 min; cut-offs are 30 min (road) and 60 min (air) before departure.
 */
const data: HubNetworkData = {
  hubs: [hub("AAA", 50, 8), hub("BBB", 51, 9), hub("CCC", 49, 9), hub("DDD", 50, 10)],
  lanes: [
    ["AAA", "BBB", "ROAD", 150, 120, 30, DAILY, [at(10), at(18)]],
    ["BBB", "DDD", "AIR", 300, 180, 60, DAILY, [at(14)]],
    ["AAA", "DDD", "AIR", 200, 1500, 60, DAILY, [at(20)]],
    ["AAA", "CCC", "ROAD", 100, 60, 30, DAILY, [at(9)]],
    ["CCC", "DDD", "ROAD", 700, 600, 30, DAILY, [at(12)]],
  ] satisfies LaneRecord[],
};
const network = createHubNetwork(data);
const planner = createPlanner(network);
const idx = (code: string) => network.hub(code)!.index;
const day1 = (h: number, m = 0) => Date.UTC(2026, 10, 23, h, m);
const day2 = (h: number, m = 0) => Date.UTC(2026, 10, 24, h, m);
const path = (legs: readonly { from: { code: string }; to: { code: string } }[]) =>
  legs.length ? [legs[0]!.from.code, ...legs.map((l) => l.to.code)].join(">") : "";

describe("nextDeparture", () => {
  it("returns the first scheduled departure at or after the given time, wrapping to the next day", () => {
    const lane = network.lanes[0]!;
    assert.equal(nextDeparture(lane, day1(9, 59)), day1(10));
    assert.equal(nextDeparture(lane, day1(10)), day1(10));
    assert.equal(nextDeparture(lane, day1(10, 1)), day1(18));
    assert.equal(nextDeparture(lane, day1(18, 1)), day2(10));
  });

  it("honours weekly schedules across the week boundary", () => {
    // Departs Sundays only (UTC weekday 0) at 06:00; 2026-11-23 is a Monday.
    const weekly = createHubNetwork({ hubs: data.hubs, lanes: [["AAA", "BBB", "SEA", 1, 1, 0, 1, [at(6)]]] }).lanes[0]!;
    assert.equal(nextDeparture(weekly, day1(0)), Date.UTC(2026, 10, 29, 6));
    assert.equal(nextDeparture(weekly, Date.UTC(2026, 10, 29, 6, 1)), Date.UTC(2026, 11, 6, 6));
  });
});

describe("createPlanner().plan", () => {
  it("finds the earliest arrival through processing times and cut-offs", () => {
    const r = planner.plan({ origin: idx("AAA"), destination: idx("DDD"), readyAt: day1(8) });
    assert.equal(path(r.legs), "AAA>BBB>DDD");
    assert.equal(r.legs[0]!.departure, day1(10));
    assert.equal(r.legs[1]!.departure, day1(14));
    assert.equal(r.arrival, day1(17));
    assert.equal(r.eta.estimated, day1(18), "ETA includes the destination hub's processing");
    assert.ok(r.eta.earliest <= r.eta.estimated && r.eta.estimated <= r.eta.latest);
    assert.ok(r.eta.confidence > 0 && r.eta.confidence < 1);
    assert.equal(r.legs[0]!.departureId, "AAA-BBB-ROAD-202611231000");
  });

  it("moves a parcel that misses a cut-off to the next departure", () => {
    // Ready 08:31 + 60 min processing = 09:31, one minute after the 10:00 departure's cut-off.
    const r = planner.plan({ origin: idx("AAA"), destination: idx("DDD"), readyAt: day1(8, 31) });
    assert.equal(path(r.legs), "AAA>BBB>DDD");
    assert.equal(r.legs[0]!.departure, day1(18));
    assert.equal(r.legs[1]!.departure, day2(14), "the connection waits for the next day's flight");
    assert.equal(r.arrival, day2(17));
  });

  it("skips the origin's processing when the parcel was already processed there", () => {
    const r = planner.plan({ origin: idx("AAA"), destination: idx("DDD"), readyAt: day1(9, 15), originProcessed: true });
    assert.equal(r.legs[0]!.departure, day1(10));
  });

  it("routes around a hub disrupted without an end", () => {
    const r = planner.plan({
      origin: idx("AAA"),
      destination: idx("DDD"),
      readyAt: day1(8),
      blocked: [{ hub: idx("BBB"), startMs: day1(0), endMs: Infinity }],
    });
    assert.ok(!r.legs.some((l) => l.from.code === "BBB" || l.to.code === "BBB"));
    assert.equal(path(r.legs), "AAA>DDD");
  });

  it("waits out a bounded disruption when that is still fastest", () => {
    const r = planner.plan({
      origin: idx("AAA"),
      destination: idx("DDD"),
      readyAt: day1(8),
      blocked: [{ hub: idx("BBB"), startMs: day1(11), endMs: day1(20) }],
    });
    // The 10:00 truck would arrive at 12:00, inside the window: the 18:00 truck arrives at 20:00.
    assert.equal(path(r.legs), "AAA>BBB>DDD");
    assert.equal(r.legs[0]!.departure, day1(18));
    assert.ok(r.legs.every((l) => !(l.arrival >= day1(11) && l.arrival < day1(20) && l.to.code === "BBB")));
  });

  it("uses only the modes of the service level", () => {
    const r = planner.plan({ origin: idx("AAA"), destination: idx("DDD"), readyAt: day1(8), modes: MODES_BY_SERVICE_LEVEL.ECONOMY });
    assert.equal(path(r.legs), "AAA>CCC>DDD");
    assert.ok(r.legs.every((l) => l.lane.mode !== "AIR"));
  });

  it("throws NoRouteError when no allowed mode connects the hubs", () => {
    assert.throws(
      () => planner.plan({ origin: idx("AAA"), destination: idx("DDD"), readyAt: day1(8), modes: new Set(["SEA"]) }),
      NoRouteError,
    );
  });

  it("throws NoRouteError when nothing arrives within the horizon", () => {
    assert.throws(
      () => planner.plan({ origin: idx("AAA"), destination: idx("DDD"), readyAt: day1(8), horizonMs: 3 * 3_600_000 }),
      NoRouteError,
    );
  });

  it("throws NoRouteError when the destination is closed indefinitely", () => {
    assert.throws(
      () =>
        planner.plan({
          origin: idx("AAA"),
          destination: idx("DDD"),
          readyAt: day1(8),
          blocked: [{ hub: idx("DDD"), startMs: day1(0), endMs: Infinity }],
        }),
      NoRouteError,
    );
  });

  it("among routes arriving at the same time, takes the one through the hub reached first (as Dijkstra did)", () => {
    // AAA → CCC (arrives 10:30) → DDD (12:00, 8 h) and AAA → BBB (arrives 12:00) → DDD (18:00, 2 h)
    // both arrive at 20:00. BBB is nearer the destination in transit time, so a goal-directed
    // search settles it first; the planner still returns the route through CCC, reached first.
    const tie = createHubNetwork({
      hubs: [hub("AAA", 50, 8), hub("BBB", 51, 9), hub("CCC", 49, 9), hub("DDD", 50, 10)],
      lanes: [
        ["AAA", "BBB", "ROAD", 150, 120, 30, DAILY, [at(10)]],
        ["AAA", "CCC", "ROAD", 100, 60, 30, DAILY, [at(9, 30)]],
        ["BBB", "DDD", "ROAD", 150, 120, 30, DAILY, [at(18)]],
        ["CCC", "DDD", "ROAD", 700, 480, 30, DAILY, [at(12)]],
      ],
    });
    const r = createPlanner(tie).plan({ origin: 0, destination: 3, readyAt: day1(8) });
    assert.equal(r.arrival, day1(20));
    assert.equal(path(r.legs), "AAA>CCC>DDD");
  });

  it("returns an empty route when origin and destination are the same hub", () => {
    const r = planner.plan({ origin: idx("AAA"), destination: idx("AAA"), readyAt: day1(8) });
    assert.equal(r.legs.length, 0);
    assert.equal(r.eta.estimated, day1(9));
  });
});

describe("createPlanner().planAlternatives", () => {
  it("returns distinct routes ordered by arrival, the best first", () => {
    const routes = planner.planAlternatives({ origin: idx("AAA"), destination: idx("DDD"), readyAt: day1(8) }, 2);
    assert.deepEqual(routes.map((r) => path(r.legs)), ["AAA>BBB>DDD", "AAA>DDD", "AAA>CCC>DDD"]);
    for (let i = 1; i < routes.length; i++) assert.ok(routes[i - 1]!.eta.estimated <= routes[i]!.eta.estimated);
  });

  it("returns fewer routes when fewer distinct ones exist", () => {
    const routes = planner.planAlternatives({ origin: idx("AAA"), destination: idx("DDD"), readyAt: day1(8) }, 5);
    assert.equal(routes.length, 3);
    assert.equal(new Set(routes.map((r) => path(r.legs))).size, 3);
  });
});

describe("createPlanner().staticShortestPath", () => {
  it("minimises the sum of transit times, ignoring schedules", () => {
    const p = planner.staticShortestPath(idx("AAA"), idx("DDD"))!;
    assert.equal(p.totalMin, 300);
    assert.deepEqual(p.lanes.map((l) => network.hubs[l.to]!.code), ["BBB", "DDD"]);
    assert.equal(planner.staticShortestPath(idx("DDD"), idx("AAA")), undefined);
  });
});
