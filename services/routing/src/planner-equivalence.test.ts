/**
 * Pins the planner to the answers of its search before A*: a copy of that planner (Dijkstra on
 * arrival time, its predecessor choice among equal-arrival routes, alternatives, ETA) is kept
 * below as the reference, and both answer the same generated queries: every service level,
 * blocked windows, excluded lanes, an origin already processed, short horizons, and queries
 * without a route (same error). Random small networks with coarse schedules make routes that
 * arrive at the same time common, so the tie handling is exercised too.
 */
import assert from "node:assert/strict";
import { seededRandom } from "@logistics/shared/testing";
import { describe, it } from "vitest";
import { hubNetworkData } from "./data/hub-network-data.js";
import {
  createHubNetwork,
  nextDeparture,
  type Hub,
  type HubNetwork,
  type HubRecord,
  type Lane,
  type LaneRecord,
  type ModeName,
} from "./hub-network.js";
import {
  createPlanner,
  DEFAULT_HORIZON_MS,
  MODE_RELIABILITY,
  MODES_BY_SERVICE_LEVEL,
  NoRouteError,
  type BlockedWindow,
  type EtaEstimate,
  type PlannedLeg,
  type PlannedRoute,
  type Planner,
  type PlanQuery,
  type ServiceLevelName,
} from "./planner.js";

const MIN_MS = 60_000;
const DAY_MS = 24 * 60 * MIN_MS;

// ---- Reference: the planner before A*, copied unchanged (staticShortestPath left out) with its ----
// ---- helpers and heap, so that later changes to planner.ts are compared against it, not followed ----
// ---- (the heap's order among equal keys decides which of two equal-arrival routes it returns). ----

function createReferencePlanner(network: HubNetwork): Pick<Planner, "plan" | "planAlternatives"> {
  const n = network.hubs.length;
  const arrival = new Float64Array(n);
  const predLane = new Int32Array(n);
  const predDeparture = new Float64Array(n);
  const done = new Uint8Array(n);

  const plan = (query: PlanQuery): PlannedRoute => {
    const { origin, destination, readyAt } = query;
    const o = network.hubs[origin];
    const d = network.hubs[destination];
    if (!o || !d) throw new RangeError("origin or destination is not a hub of the network");
    const modes = modeMask(query.modes ?? MODES_BY_SERVICE_LEVEL.STANDARD);
    const horizonEnd = readyAt + (query.horizonMs ?? DEFAULT_HORIZON_MS);
    const blocked = indexBlocked(query.blocked ?? []);
    const excluded = query.excludedLanes;

    arrival.fill(Infinity);
    predLane.fill(-1);
    done.fill(0);
    arrival[origin] = readyAt;
    const heap = new MinHeap();
    heap.push(readyAt, origin);
    while (heap.size > 0) {
      const [t, u] = heap.pop();
      if (done[u] || t > arrival[u]!) continue;
      done[u] = 1;
      if (u === destination) break;
      const processed = u === origin && query.originProcessed ? t : t + network.hubs[u]!.processingMin * MIN_MS;
      for (const lane of network.outgoing[u]!) {
        if ((modes & MODE_BIT[lane.mode]) === 0 || done[lane.to] || excluded?.has(lane.id)) continue;
        const dep = firstUsableDeparture(lane, processed, blocked, horizonEnd);
        if (dep === undefined) continue;
        const arr = dep + lane.transitMin * MIN_MS;
        if (arr < arrival[lane.to]!) {
          arrival[lane.to] = arr;
          predLane[lane.to] = lane.id;
          predDeparture[lane.to] = dep;
          heap.push(arr, lane.to);
        }
      }
    }
    if (arrival[destination] === Infinity) {
      const days = Math.round((horizonEnd - readyAt) / DAY_MS);
      throw new NoRouteError(o.code, d.code, `nothing arrives within ${days} days with the allowed modes and disruptions`);
    }
    // The destination itself may be blocked when the parcel would be ready there: the window
    // only delays arrival (handled in the search), so no further check is needed here.
    const legs: PlannedLeg[] = [];
    for (let v = destination; v !== origin; ) {
      const lane = network.lanes[predLane[v]!]!;
      const departure = predDeparture[v]!;
      const u = lane.from;
      const readyAtU = u === origin && query.originProcessed ? arrival[u]! : arrival[u]! + network.hubs[u]!.processingMin * MIN_MS;
      legs.push({
        lane,
        from: network.hubs[u]!,
        to: network.hubs[v]!,
        readyAt: readyAtU,
        cutoff: departure - lane.cutoffMin * MIN_MS,
        departure,
        arrival: departure + lane.transitMin * MIN_MS,
        departureId: departureId(network, lane, departure),
      });
      v = u;
    }
    legs.reverse();
    const arrivalAtDestination = arrival[destination]!;
    const eta = estimateEta(legs, readyAt, arrivalAtDestination, d);
    return { origin: o, destination: d, readyAt, legs, arrival: arrivalAtDestination, eta };
  };

  const planAlternatives = (query: PlanQuery, alternatives: number): PlannedRoute[] => {
    const best = plan(query);
    if (alternatives <= 0) return [best];
    const found = new Map<string, PlannedRoute>([[signature(best), best]]);
    const tried = new Set<string>();
    const queue: PlannedRoute[] = [best];
    // Breadth-first over "exclude one more lane" sets, bounded so a request stays cheap.
    const exclusions: Set<number>[] = [];
    let budget = 40;
    while (queue.length > 0 && found.size < alternatives + 1 && budget > 0) {
      const base = queue.shift()!;
      const baseExcluded = exclusions.shift() ?? new Set<number>(query.excludedLanes ?? []);
      for (const leg of base.legs) {
        if (found.size >= alternatives + 1 || budget <= 0) break;
        const excludedLanes = new Set(baseExcluded).add(leg.lane.id);
        const key = [...excludedLanes].sort((a, b) => a - b).join(",");
        if (tried.has(key)) continue;
        tried.add(key);
        budget--;
        try {
          const alt = plan({ ...query, excludedLanes });
          const sig = signature(alt);
          if (!found.has(sig)) {
            found.set(sig, alt);
            queue.push(alt);
            exclusions.push(excludedLanes);
          }
        } catch (e) {
          if (!(e instanceof NoRouteError)) throw e;
        }
      }
    }
    const rest = [...found.values()]
      .filter((r) => r !== best)
      .sort((a, b) => a.eta.estimated - b.eta.estimated || a.legs.length - b.legs.length);
    return [best, ...rest.slice(0, alternatives)];
  };

  return { plan, planAlternatives };
}

const MODE_BIT: Readonly<Record<ModeName, number>> = { AIR: 1, SEA: 2, ROAD: 4, RAIL: 8 };

function modeMask(modes: ReadonlySet<ModeName>): number {
  let m = 0;
  for (const mode of modes) m |= MODE_BIT[mode];
  return m;
}

/**
 * The first departure of `lane` whose cut-off a parcel ready at `readyAt` makes, skipping
 * departures from a blocked origin hub and departures that would arrive at a blocked hub.
 * Undefined when none arrives before `horizonEnd`.
 */
function firstUsableDeparture(
  lane: Lane,
  readyAt: number,
  blocked: ReadonlyMap<number, readonly BlockedWindow[]>,
  horizonEnd: number,
): number | undefined {
  let dep = nextDeparture(lane, readyAt + lane.cutoffMin * MIN_MS);
  const fromWindows = blocked.get(lane.from);
  const toWindows = blocked.get(lane.to);
  for (let guard = 0; guard < 1000; guard++) {
    const arr = dep + lane.transitMin * MIN_MS;
    if (arr > horizonEnd) return undefined;
    const closedFrom = fromWindows && windowAt(fromWindows, dep);
    if (closedFrom) {
      if (closedFrom.endMs === Infinity) return undefined;
      dep = nextDeparture(lane, closedFrom.endMs);
      continue;
    }
    const closedTo = toWindows && windowAt(toWindows, arr);
    if (closedTo) {
      if (closedTo.endMs === Infinity) return undefined;
      dep = nextDeparture(lane, closedTo.endMs - lane.transitMin * MIN_MS);
      continue;
    }
    return dep;
  }
  return undefined;
}

function windowAt(windows: readonly BlockedWindow[], t: number): BlockedWindow | undefined {
  let hit: BlockedWindow | undefined;
  for (const w of windows) if (t >= w.startMs && t < w.endMs && (!hit || w.endMs > hit.endMs)) hit = w;
  return hit;
}

function indexBlocked(windows: readonly BlockedWindow[]): Map<number, BlockedWindow[]> {
  const m = new Map<number, BlockedWindow[]>();
  for (const w of windows) {
    let list = m.get(w.hub);
    if (!list) m.set(w.hub, (list = []));
    list.push(w);
  }
  return m;
}

/**
 * ETA at the destination hub (arrival plus its processing) and its window. Each connection's
 * slack (how long before the cut-off the parcel was ready) and each leg's mode reliability
 * give the probability of running to plan; missing the tightest connection costs the wait for
 * that lane's next departure, which sets the late end of the window.
 */
function estimateEta(legs: readonly PlannedLeg[], readyAt: number, arrival: number, destination: Hub): EtaEstimate {
  const estimated = arrival + destination.processingMin * MIN_MS;
  let p = 1;
  let tightest: PlannedLeg | undefined;
  for (const leg of legs) {
    const slackMin = Math.max(0, (leg.cutoff - leg.readyAt) / MIN_MS);
    p *= MODE_RELIABILITY[leg.lane.mode] * (1 - 0.5 * Math.exp(-slackMin / 90));
    if (!tightest || leg.cutoff - leg.readyAt < tightest.cutoff - tightest.readyAt) tightest = leg;
  }
  const missCost = tightest ? nextDeparture(tightest.lane, tightest.departure + MIN_MS) - tightest.departure : 0;
  const spread = Math.min(6 * 60 * MIN_MS, 0.05 * (estimated - readyAt));
  return {
    estimated,
    earliest: Math.round(estimated - spread),
    latest: Math.round(estimated + Math.max(spread, missCost)),
    confidence: Math.min(0.99, Math.max(0.05, Math.round(p * 1000) / 1000)),
  };
}

function departureId(network: HubNetwork, lane: Lane, departure: number): string {
  const iso = new Date(departure).toISOString(); // 2026-11-25T18:30:00.000Z
  const stamp = iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16);
  return `${network.hubs[lane.from]!.code}-${network.hubs[lane.to]!.code}-${lane.mode}-${stamp}`;
}

/** Identity of a route: its lanes and departures. */
function signature(r: PlannedRoute): string {
  return r.legs.map((l) => `${l.lane.id}@${l.departure}`).join(">");
}

/** A binary min-heap of (key, value) pairs. */
class MinHeap {
  private keys: number[] = [];
  private values: number[] = [];
  get size(): number {
    return this.keys.length;
  }
  push(key: number, value: number): void {
    const k = this.keys;
    const v = this.values;
    let i = k.length;
    k.push(key);
    v.push(value);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (k[p]! <= key) break;
      k[i] = k[p]!;
      v[i] = v[p]!;
      i = p;
    }
    k[i] = key;
    v[i] = value;
  }
  pop(): [number, number] {
    const k = this.keys;
    const v = this.values;
    const topK = k[0]!;
    const topV = v[0]!;
    const lastK = k.pop()!;
    const lastV = v.pop()!;
    if (k.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= k.length) break;
        const r = l + 1;
        const c = r < k.length && k[r]! < k[l]! ? r : l;
        if (k[c]! >= lastK) break;
        k[i] = k[c]!;
        v[i] = v[c]!;
        i = c;
      }
      k[i] = lastK;
      v[i] = lastV;
    }
    return [topK, topV];
  }
}

// ---- Generated queries: the planner against the reference. ----

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
const LEVELS: readonly ServiceLevelName[] = ["ECONOMY", "STANDARD", "EXPRESS", "OVERNIGHT"];
const BASE = Date.UTC(2026, 10, 23);

/** The route, or the NoRouteError's message. */
function outcome<T>(f: () => T): T | { noRoute: string } {
  try {
    return f();
  } catch (e) {
    if (e instanceof NoRouteError) return { noRoute: e.message };
    throw e;
  }
}

function randomQuery(net: HubNetwork, rnd: () => number): PlanQuery {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const hub = () => Math.floor(rnd() * net.hubs.length);
  const origin = hub();
  const destination = rnd() < 0.03 ? origin : hub();
  const readyAt = BASE + Math.floor(rnd() * 14 * 1440) * MIN_MS + (rnd() < 0.2 ? Math.floor(rnd() * MIN_MS) : 0);
  const q: Mutable<PlanQuery> = { origin, destination, readyAt };
  if (rnd() < 0.9) q.modes = MODES_BY_SERVICE_LEVEL[pick(LEVELS)];
  if (rnd() < 0.3) q.originProcessed = true;
  if (rnd() < 0.35) {
    const windows: BlockedWindow[] = [];
    for (let k = 1 + Math.floor(rnd() * 5); k > 0; k--) {
      const startMs = readyAt + Math.floor((rnd() * 6 - 1) * 1440) * MIN_MS;
      const r = rnd();
      windows.push({
        hub: r < 0.15 ? origin : r < 0.3 ? destination : hub(),
        startMs,
        endMs: rnd() < 0.2 ? Infinity : startMs + Math.floor(rnd() * 3 * 1440) * MIN_MS,
      });
    }
    q.blocked = windows;
  }
  if (rnd() < 0.35) {
    const excluded = new Set<number>();
    const near = [...net.outgoing[origin]!, ...net.lanes.filter((l) => l.to === destination)];
    for (let k = 1 + Math.floor(rnd() * 20); k > 0; k--) excluded.add((rnd() < 0.6 && near.length ? pick(near) : pick(net.lanes)).id);
    q.excludedLanes = excluded;
  }
  if (rnd() < 0.15) q.horizonMs = Math.floor(rnd() * 10 * 1440) * MIN_MS;
  return q;
}

/**
 * A small network where equal arrivals are common: departures, transit, cut-off and processing
 * times on a 6-hour grid (some zero), so many hubs are reached at the same time.
 */
function tieHeavyNetwork(rnd: () => number): HubNetwork {
  const hubs: HubRecord[] = Array.from({ length: 8 + Math.floor(rnd() * 20) }, (_, i) => ({
    code: `H${String(i).padStart(3, "0")}`,
    name: `Hub ${i}`,
    city: `City ${i}`,
    country: "DE",
    lat: 50,
    lon: 8,
    kind: "ROAD_HUB",
    timeZone: "Etc/UTC",
    continent: "EU",
    processingMin: rnd() < 0.5 ? 0 : 360 * Math.floor(1 + rnd() * 2),
  }));
  const modes: ModeName[] = ["AIR", "SEA", "ROAD", "RAIL"];
  const lanes: LaneRecord[] = [];
  for (let k = hubs.length * (2 + Math.floor(rnd() * 5)); k > 0; k--) {
    const from = Math.floor(rnd() * hubs.length);
    let to = Math.floor(rnd() * (hubs.length - 1));
    if (to >= from) to++;
    const departures = Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => 60 * 6 * Math.floor(rnd() * 4));
    lanes.push([
      hubs[from]!.code,
      hubs[to]!.code,
      modes[Math.floor(rnd() * modes.length)]!,
      100,
      rnd() < 0.05 ? 0 : 360 * (1 + Math.floor(rnd() * 4)),
      rnd() < 0.5 ? 0 : 360,
      rnd() < 0.7 ? 0b1111111 : 1 + Math.floor(rnd() * 127),
      departures,
    ]);
  }
  return createHubNetwork({ hubs, lanes });
}

/** Plans `count` generated queries (every `altEvery`-th with alternatives) with both planners. */
function compare(
  net: HubNetwork,
  rnd: () => number,
  count: number,
  altEvery: number,
): { noRoute: number; equalArrivalAlternatives: number } {
  const planner = createPlanner(net);
  const reference = createReferencePlanner(net);
  let noRoute = 0;
  let equalArrivalAlternatives = 0;
  for (let i = 0; i < count; i++) {
    const q = randomQuery(net, rnd);
    const expected = outcome(() => reference.plan(q));
    const shown = { ...q, excludedLanes: [...(q.excludedLanes ?? [])], modes: [...(q.modes ?? [])] };
    assert.deepStrictEqual(outcome(() => planner.plan(q)), expected, `query ${i}: ${JSON.stringify(shown)}`);
    if ("noRoute" in expected) noRoute++;
    if (i % altEvery === 0) {
      const k = 1 + (i % 3);
      const expectedAlternatives = outcome(() => reference.planAlternatives(q, k));
      assert.deepStrictEqual(outcome(() => planner.planAlternatives(q, k)), expectedAlternatives, `alternatives of query ${i}`);
      if (Array.isArray(expectedAlternatives)) {
        equalArrivalAlternatives += expectedAlternatives.filter((r, j) => j > 0 && r.arrival === expectedAlternatives[0]!.arrival).length;
      }
    }
  }
  return { noRoute, equalArrivalAlternatives };
}

describe("createPlanner: same answers as the Dijkstra planner it replaces", () => {
  it("on the hub network: plans, alternatives and missing routes", () => {
    const net = createHubNetwork(hubNetworkData);
    const { noRoute } = compare(net, seededRandom(20261123), 4000, 10);
    assert.ok(noRoute > 100, `queries without a route: ${noRoute}`);
  });

  it("on small networks where routes arriving at the same time are common", () => {
    const rnd = seededRandom(424242);
    let noRoute = 0;
    let equalArrivalAlternatives = 0;
    for (let k = 0; k < 25; k++) {
      const r = compare(tieHeavyNetwork(rnd), rnd, 200, 4);
      noRoute += r.noRoute;
      equalArrivalAlternatives += r.equalArrivalAlternatives;
    }
    assert.ok(noRoute > 100, `queries without a route: ${noRoute}`);
    assert.ok(equalArrivalAlternatives > 100, `alternatives arriving with the best route: ${equalArrivalAlternatives}`);
  });
});
