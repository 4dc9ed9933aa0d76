/**
 * Route planning over the time-dependent, scheduled hub network. Pure: no I/O, no clock.
 *
 * Earliest-arrival search keyed on the time a parcel reaches each hub. At a hub the parcel first
 * goes through the hub's processing time; it then takes, on each outgoing lane, the first
 * departure whose cut-off (`cutoffMin` before departure) it still makes; a parcel that misses a
 * cut-off waits for the next departure. Because waiting is allowed, arrival times are monotone in
 * departure readiness (FIFO), so a label-setting search on arrival time is exact.
 *
 * The search is goal-directed (A*): a hub's heap key is its arrival time plus a lower bound on
 * the time still needed to reach the destination (see {@link remainingLowerBounds}), so it
 * settles few hubs away from the destination's direction. The route returned is the one a plain
 * Dijkstra on arrival time (the planner before A*) returns, including among routes that arrive at
 * the same time; see `reconstruct` in {@link createPlanner}.
 */
import { ALL_MODES, nextDeparture, type Hub, type HubNetwork, type Lane, type ModeName } from "./hub-network.js";

const MIN_MS = 60_000;
const DAY_MS = 24 * 60 * MIN_MS;

/** Default planning horizon: a route must arrive within 60 days of the ready time. */
export const DEFAULT_HORIZON_MS = 60 * DAY_MS;

/** Service levels as the planner sees them. */
export type ServiceLevelName = "ECONOMY" | "STANDARD" | "EXPRESS" | "OVERNIGHT";

/**
 * Modes each service level may use: ECONOMY never flies; EXPRESS and OVERNIGHT fly and truck but
 * do not sail (a weekly vessel cannot be time-definite); STANDARD uses everything.
 */
export const MODES_BY_SERVICE_LEVEL: Readonly<Record<ServiceLevelName, ReadonlySet<ModeName>>> = Object.freeze({
  ECONOMY: new Set<ModeName>(["ROAD", "RAIL", "SEA"]),
  STANDARD: new Set<ModeName>(ALL_MODES),
  EXPRESS: new Set<ModeName>(["AIR", "ROAD", "RAIL"]),
  OVERNIGHT: new Set<ModeName>(["AIR", "ROAD"]),
});

/**
 * Probability that a leg of each mode runs to schedule; with the connection slack it drives the
 * ETA confidence.
 */
export const MODE_RELIABILITY: Readonly<Record<ModeName, number>> = Object.freeze({
  AIR: 0.97,
  ROAD: 0.98,
  RAIL: 0.95,
  SEA: 0.92,
});

/** A hub that cannot be used from `startMs` until `endMs` (exclusive; Infinity when open-ended). */
export interface BlockedWindow {
  readonly hub: number;
  readonly startMs: number;
  readonly endMs: number;
}

/** What to plan. */
export interface PlanQuery {
  /** Hub index where the parcel is. */
  readonly origin: number;
  /** Hub index of the destination. */
  readonly destination: number;
  /** When the parcel is at the origin hub (epoch ms). */
  readonly readyAt: number;
  /** Modes that may be used. Default: all. */
  readonly modes?: ReadonlySet<ModeName>;
  /**
   * Disrupted hubs: no departure from and no arrival at a hub inside one of its windows; a parcel
   * already there waits for the window to end.
   */
  readonly blocked?: readonly BlockedWindow[];
  /** Lane ids that must not be used (how alternatives are found). */
  readonly excludedLanes?: ReadonlySet<number>;
  /** The parcel has already been processed at the origin (re-plan after a departure scan). */
  readonly originProcessed?: boolean;
  /** Latest acceptable arrival is `readyAt + horizonMs`. Default {@link DEFAULT_HORIZON_MS}. */
  readonly horizonMs?: number;
}

/** One leg of a planned route. */
export interface PlannedLeg {
  readonly lane: Lane;
  readonly from: Hub;
  readonly to: Hub;
  /** When the parcel is processed and ready at `from` (epoch ms). */
  readonly readyAt: number;
  /** Cut-off of the departure taken (epoch ms): `departure - lane.cutoffMin`. */
  readonly cutoff: number;
  readonly departure: number;
  readonly arrival: number;
  /** Identifier of the departure: lane and departure minute, e.g. `FRA-ORD-AIR-202611251830`. */
  readonly departureId: string;
}

/** The uncertainty window of an ETA. */
export interface EtaEstimate {
  /** Best estimate of delivery readiness at the destination hub (epoch ms). */
  readonly estimated: number;
  readonly earliest: number;
  readonly latest: number;
  /** Probability (0-1) that the parcel arrives within [earliest, latest]. */
  readonly confidence: number;
}

/** A planned route. */
export interface PlannedRoute {
  readonly origin: Hub;
  readonly destination: Hub;
  readonly readyAt: number;
  readonly legs: readonly PlannedLeg[];
  /** Arrival at the destination hub (epoch ms); `readyAt` when no legs. */
  readonly arrival: number;
  readonly eta: EtaEstimate;
}

/** The result of a static (schedule-free) shortest path. */
export interface StaticPath {
  readonly lanes: readonly Lane[];
  /** Sum of the lanes' transit minutes. */
  readonly totalMin: number;
}

/** Raised when no route reaches the destination within the planning horizon. */
export class NoRouteError extends Error {
  override readonly name = "NoRouteError";
  constructor(
    readonly origin: string,
    readonly destination: string,
    readonly reason: string,
  ) {
    super(`no route from ${origin} to ${destination}: ${reason}`);
  }
}

/** The planner over one network. */
export interface Planner {
  readonly network: HubNetwork;
  /** The earliest-arrival route. Throws {@link NoRouteError}. */
  plan(query: PlanQuery): PlannedRoute;
  /**
   * The best route plus up to `alternatives` others, ordered by ETA. Alternatives come from
   * excluding each lane of the best route in turn (and, when more are wanted, each lane of the
   * alternatives found so far); every returned route differs from the others in at least one
   * leg. Throws {@link NoRouteError} when there is no route at all.
   */
  planAlternatives(query: PlanQuery, alternatives: number): PlannedRoute[];
  /** Plain Dijkstra with static weights (lane transit minutes), for comparison; undefined when unreachable. */
  staticShortestPath(origin: number, destination: number, modes?: ReadonlySet<ModeName>): StaticPath | undefined;
}

/** A query with its defaults applied and its sets indexed, as the search uses it. */
interface Search {
  readonly origin: number;
  readonly destination: number;
  readonly readyAt: number;
  readonly modes: number;
  readonly horizonEnd: number;
  readonly blocked: ReadonlyMap<number, readonly BlockedWindow[]>;
  readonly excluded: ReadonlySet<number> | undefined;
  readonly originProcessed: boolean;
}

/** Creates a planner over `network`. */
export function createPlanner(network: HubNetwork): Planner {
  const n = network.hubs.length;
  const arrival = new Float64Array(n);
  const predLane = new Int32Array(n);
  const predDeparture = new Float64Array(n);
  const done = new Uint8Array(n);
  const flat = flatLanes(network);
  // Lower bounds by destination and mode mask, computed on first use: at most one array of one
  // float per hub for each destination and mask (252 hubs × 4 service levels: about 2 MB).
  const bounds: (Float64Array | undefined)[] = [];
  const boundsTo = (destination: number, modes: number): Float64Array =>
    (bounds[destination * 16 + modes] ??= remainingLowerBounds(flat, destination, modes));

  /** When the parcel, arrived at `u` at `t`, is ready to leave it. */
  const processedAt = (s: Search, u: number, t: number) =>
    u === s.origin && s.originProcessed ? t : t + network.hubs[u]!.processingMin * MIN_MS;

  /**
   * Fills `arrival` (exact for every settled hub), `done` and the predecessors. Without `bound`:
   * Dijkstra on arrival time, stopping when the destination is settled (the planner's search
   * before A*, kept operation for operation as the reference for ties). With `bound`: A* on
   * arrival + bound, which skips hubs that cannot reach the destination within the horizon or
   * before its best arrival found so far, and, after settling the destination at T, goes on
   * settling every hub whose key is T too, so that every hub with arrival + bound <= T is settled
   * with its exact arrival (what `reconstruct` needs).
   */
  const search = (s: Search, bound: Float64Array | undefined): void => {
    const { origin, destination, modes, horizonEnd, blocked, excluded } = s;
    arrival.fill(Infinity);
    predLane.fill(-1);
    done.fill(0);
    arrival[origin] = s.readyAt;
    const heap = new MinHeap();
    heap.push(s.readyAt, origin);
    while (heap.size > 0) {
      const [key, u] = heap.pop();
      if (bound && key > arrival[destination]!) break; // only reached once the destination is settled
      if (done[u] || key > arrival[u]! + (bound ? bound[u]! : 0)) continue;
      done[u] = 1;
      if (u === destination) {
        if (bound) continue;
        break;
      }
      const processed = processedAt(s, u, arrival[u]!);
      for (let k = flat.outStart[u]!, end = flat.outStart[u + 1]!; k < end; k++) {
        const id = flat.outLanes[k]!;
        const v = flat.to[id]!;
        if ((modes & flat.modeBit[id]!) === 0 || done[v] || excluded?.has(id)) continue;
        const toGo = bound ? bound[v]! : 0;
        // Departure is at least the cut-off after `processed`: skip before looking it up.
        if (bound && (toGo === Infinity || processed + flat.minMs[id]! + toGo > Math.min(horizonEnd, arrival[destination]!))) continue;
        const lane = network.lanes[id]!;
        const dep = firstUsableDeparture(lane, processed, blocked, horizonEnd);
        if (dep === undefined) continue;
        const arr = dep + lane.transitMin * MIN_MS;
        if (arr < arrival[v]! && (!bound || arr + toGo <= Math.min(horizonEnd, arrival[destination]!))) {
          arrival[v] = arr;
          predLane[v] = lane.id;
          predDeparture[v] = dep;
          heap.push(arr + toGo, v);
        }
      }
    }
  };

  /**
   * Sets the predecessors along the route to the predecessors Dijkstra would have chosen, from
   * the exact arrivals of an A* search; false when that choice cannot be told from the arrivals.
   *
   * Dijkstra keeps, for a hub v, the first relaxation that reaches v at its earliest arrival:
   * among the lanes u→v that do, the one from the hub u it settled first, i.e. with the earliest
   * arrival at u (and, from one hub, the first of its outgoing lanes). Every such u arrives before
   * v and has arrival + bound <= T, so the A* search settled it with its exact arrival. Two such
   * hubs arriving at the same time were settled in an order only Dijkstra's heap knows: then the
   * caller runs Dijkstra itself. So it does when a u arrives at the same time as v (lanes taking
   * no time at all): Dijkstra may have settled u after v, and the walk back could loop.
   */
  const reconstruct = (s: Search): boolean => {
    const { origin, destination, modes, horizonEnd, blocked, excluded } = s;
    for (let v = destination; v !== origin; ) {
      const av = arrival[v]!;
      let best: Lane | undefined;
      let bestAt = Infinity;
      let bestDep = 0;
      for (let k = flat.inStart[v]!, end = flat.inStart[v + 1]!; k < end; k++) {
        const lane = network.lanes[flat.inLanes[k]!]!;
        const u = lane.from;
        if (!done[u] || (modes & MODE_BIT[lane.mode]) === 0 || excluded?.has(lane.id)) continue;
        const au = arrival[u]!;
        if (au > bestAt || au + (lane.cutoffMin + lane.transitMin) * MIN_MS > av) continue;
        const dep = firstUsableDeparture(lane, processedAt(s, u, au), blocked, horizonEnd);
        if (dep === undefined || dep + lane.transitMin * MIN_MS !== av) continue;
        if (au === av) return false;
        if (au < bestAt) {
          best = lane;
          bestAt = au;
          bestDep = dep;
        } else if (u !== best!.from) return false;
      }
      if (!best) return false; // not expected: v's own A* predecessor qualifies
      predLane[v] = best.id;
      predDeparture[v] = bestDep;
      v = best.from;
    }
    return true;
  };

  const plan = (query: PlanQuery): PlannedRoute => {
    const { origin, destination, readyAt } = query;
    const o = network.hubs[origin];
    const d = network.hubs[destination];
    if (!o || !d) throw new RangeError("origin or destination is not a hub of the network");
    const s: Search = {
      origin,
      destination,
      readyAt,
      modes: modeMask(query.modes ?? MODES_BY_SERVICE_LEVEL.STANDARD),
      horizonEnd: readyAt + (query.horizonMs ?? DEFAULT_HORIZON_MS),
      blocked: indexBlocked(query.blocked ?? []),
      excluded: query.excludedLanes,
      originProcessed: query.originProcessed === true,
    };
    search(s, boundsTo(destination, s.modes));
    if (arrival[destination] === Infinity) {
      const days = Math.round((s.horizonEnd - readyAt) / DAY_MS);
      throw new NoRouteError(o.code, d.code, `nothing arrives within ${days} days with the allowed modes and disruptions`);
    }
    if (!reconstruct(s)) search(s, undefined);
    // The destination itself may be blocked when the parcel would be ready there: the window
    // only delays arrival (handled in the search), so no further check is needed here.
    const legs: PlannedLeg[] = [];
    for (let v = destination; v !== origin; ) {
      const lane = network.lanes[predLane[v]!]!;
      const departure = predDeparture[v]!;
      const u = lane.from;
      legs.push({
        lane,
        from: network.hubs[u]!,
        to: network.hubs[v]!,
        readyAt: processedAt(s, u, arrival[u]!),
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

  const staticShortestPath = (
    origin: number,
    destination: number,
    modes: ReadonlySet<ModeName> = MODES_BY_SERVICE_LEVEL.STANDARD,
  ): StaticPath | undefined => {
    const mask = modeMask(modes);
    const dist = new Float64Array(n).fill(Infinity);
    const pred = new Int32Array(n).fill(-1);
    const seen = new Uint8Array(n);
    dist[origin] = 0;
    const heap = new MinHeap();
    heap.push(0, origin);
    while (heap.size > 0) {
      const [t, u] = heap.pop();
      if (seen[u]) continue;
      seen[u] = 1;
      if (u === destination) break;
      for (const lane of network.outgoing[u]!) {
        if ((mask & MODE_BIT[lane.mode]) === 0) continue;
        const nd = t + lane.transitMin;
        if (nd < dist[lane.to]!) {
          dist[lane.to] = nd;
          pred[lane.to] = lane.id;
          heap.push(nd, lane.to);
        }
      }
    }
    if (dist[destination] === Infinity) return undefined;
    const lanes: Lane[] = [];
    for (let v = destination; v !== origin; v = network.lanes[pred[v]!]!.from) lanes.push(network.lanes[pred[v]!]!);
    return { lanes: lanes.reverse(), totalMin: dist[destination]! };
  };

  return { network, plan, planAlternatives, staticShortestPath };
}

const MODE_BIT: Readonly<Record<ModeName, number>> = { AIR: 1, SEA: 2, ROAD: 4, RAIL: 8 };

function modeMask(modes: ReadonlySet<ModeName>): number {
  let m = 0;
  for (const mode of modes) m |= MODE_BIT[mode];
  return m;
}

/**
 * The lanes as flat arrays by lane id (compact for the search's inner loops), and each hub's
 * outgoing and incoming lane ids: hub u's outgoing lanes are `outLanes[outStart[u]]` up to
 * (excluding) `outLanes[outStart[u + 1]]`, in `network.outgoing` order; its incoming lanes
 * likewise, those from one hub in that hub's outgoing order.
 */
interface FlatLanes {
  readonly outStart: Int32Array;
  readonly outLanes: Int32Array;
  readonly inStart: Int32Array;
  readonly inLanes: Int32Array;
  readonly from: Int32Array;
  readonly to: Int32Array;
  readonly modeBit: Uint8Array;
  /** Cut-off plus transit (ms): the least time from ready at `from` to arrival at `to`. */
  readonly minMs: Float64Array;
  /** `from`'s processing time plus `minMs`: the least time from arrival at `from` to arrival at `to`. */
  readonly minFromArrivalMs: Float64Array;
}

function flatLanes(network: HubNetwork): FlatLanes {
  const n = network.hubs.length;
  const count = network.lanes.length;
  const outStart = new Int32Array(n + 1);
  const outLanes = new Int32Array(count);
  const inStart = new Int32Array(n + 1);
  const inLanes = new Int32Array(count);
  const from = new Int32Array(count);
  const to = new Int32Array(count);
  const modeBit = new Uint8Array(count);
  const minMs = new Float64Array(count);
  const minFromArrivalMs = new Float64Array(count);
  let k = 0;
  for (let u = 0; u < n; u++) {
    outStart[u] = k;
    for (const lane of network.outgoing[u]!) {
      outLanes[k++] = lane.id;
      inStart[lane.to + 1]!++;
    }
  }
  outStart[n] = k;
  for (let v = 0; v < n; v++) inStart[v + 1]! += inStart[v]!;
  const fill = inStart.slice(0, n);
  for (const id of outLanes) inLanes[fill[network.lanes[id]!.to]!++] = id;
  for (const lane of network.lanes) {
    from[lane.id] = lane.from;
    to[lane.id] = lane.to;
    modeBit[lane.id] = MODE_BIT[lane.mode];
    minMs[lane.id] = (lane.cutoffMin + lane.transitMin) * MIN_MS;
    minFromArrivalMs[lane.id] = minMs[lane.id]! + network.hubs[lane.from]!.processingMin * MIN_MS;
  }
  return { outStart, outLanes, inStart, inLanes, from, to, modeBit, minMs, minFromArrivalMs };
}

/**
 * For every hub u, a lower bound (ms) on the time from the parcel's arrival at u to its arrival at
 * `destination` over lanes of the `modes` mask: the static shortest path where a lane u→v weighs
 * u's processing time plus the lane's cut-off and transit times (a departure is at least the
 * cut-off after the parcel is processed; waiting for the departure only adds). Infinity where the
 * destination cannot be reached. Blocked windows and excluded lanes only delay or remove options,
 * so the bound holds for every query to `destination` with that mask. It overestimates only at
 * an origin already processed, which the search settles first whatever its key. Consistent: for
 * every lane u→v of the mask, bound(u) <= weight(u→v) + bound(v) <= arrival(v) - arrival(u) + bound(v).
 */
function remainingLowerBounds(flat: FlatLanes, destination: number, modes: number): Float64Array {
  const dist = new Float64Array(flat.inStart.length - 1).fill(Infinity);
  dist[destination] = 0;
  const heap = new MinHeap();
  heap.push(0, destination);
  while (heap.size > 0) {
    const [t, v] = heap.pop();
    if (t > dist[v]!) continue;
    for (let k = flat.inStart[v]!, end = flat.inStart[v + 1]!; k < end; k++) {
      const id = flat.inLanes[k]!;
      if ((modes & flat.modeBit[id]!) === 0) continue;
      const u = flat.from[id]!;
      const nd = t + flat.minFromArrivalMs[id]!;
      if (nd < dist[u]!) {
        dist[u] = nd;
        heap.push(nd, u);
      }
    }
  }
  return dist;
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
