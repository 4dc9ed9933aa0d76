/**
 * The hub network as the planner uses it: hubs, lanes between them and each lane's weekly
 * departure schedule, indexed for fast lookup. Pure data structures, no I/O.
 */

/** Kind of facility. */
export type HubKindName = "AIRPORT" | "SEAPORT" | "RAIL_TERMINAL" | "ROAD_HUB";

/** Transport mode of a lane. */
export type ModeName = "AIR" | "SEA" | "ROAD" | "RAIL";

/** Every mode, in a fixed order. */
export const ALL_MODES: readonly ModeName[] = Object.freeze(["AIR", "SEA", "ROAD", "RAIL"]);

/** A hub as stored in the network data. */
export interface HubRecord {
  /** Hub code, `^[A-Z0-9]{3,8}$` (IATA code for airports, UN/LOCODE style for ports). */
  readonly code: string;
  readonly name: string;
  readonly city: string;
  /** ISO 3166-1 alpha-2 country code. */
  readonly country: string;
  readonly lat: number;
  readonly lon: number;
  readonly kind: HubKindName;
  /** IANA time zone of the hub. */
  readonly timeZone: string;
  /** Continent code (EU, AS, AF, NA, SA, OC). */
  readonly continent: string;
  /** Minutes between a parcel's arrival and the earliest onward cut-off it can make. */
  readonly processingMin: number;
}

/**
 * A lane as stored in the network data, compact for a large generated file:
 * `[from, to, mode, distanceKm, transitMin, cutoffMin, daysMask, departureUtcMinutes]`.
 * `daysMask` has bit `d` set when the lane departs on UTC weekday `d` (0 = Sunday); on each such
 * day it departs at every listed UTC minute of the day. A parcel must be ready at the origin
 * hub `cutoffMin` minutes before a departure to make it.
 */
export type LaneRecord = readonly [
  from: string,
  to: string,
  mode: ModeName,
  distanceKm: number,
  transitMin: number,
  cutoffMin: number,
  daysMask: number,
  departureUtcMinutes: readonly number[],
];

/** The serialized network: what the generator writes and `createHubNetwork` reads. */
export interface HubNetworkData {
  readonly hubs: readonly HubRecord[];
  readonly lanes: readonly LaneRecord[];
}

/** A hub with its position in the network's arrays. */
export interface Hub extends HubRecord {
  readonly index: number;
}

/** A lane with its schedule expanded to the minutes of the week. */
export interface Lane {
  readonly id: number;
  readonly from: number;
  readonly to: number;
  readonly mode: ModeName;
  readonly distanceKm: number;
  readonly transitMin: number;
  readonly cutoffMin: number;
  /**
   * Departure times as minutes since the start of a UTC week, sorted ascending. Weeks are aligned
   * to the Unix epoch (a Thursday), so the minute of week of an instant is `epochMinute % 10080`.
   */
  readonly weekMinutes: Int32Array;
}

/** The indexed network. */
export interface HubNetwork {
  readonly hubs: readonly Hub[];
  readonly lanes: readonly Lane[];
  /** Lanes leaving each hub, by hub index. */
  readonly outgoing: readonly (readonly Lane[])[];
  /** The hub with this code, or undefined. */
  hub(code: string): Hub | undefined;
}

/** Minutes in a week. */
export const WEEK_MIN = 7 * 24 * 60;
const MIN_MS = 60_000;
/** 1970-01-01 (epoch minute 0) was a Thursday: UTC weekday 4. */
const EPOCH_WEEKDAY = 4;

/**
 * Builds the indexed network from its data. Throws when a code is duplicated or malformed, a lane
 * names an unknown hub, or a lane has no departures (data errors, caught at start-up).
 */
export function createHubNetwork(data: HubNetworkData): HubNetwork {
  const byCode = new Map<string, Hub>();
  const hubs = data.hubs.map((h, index) => {
    if (!/^[A-Z0-9]{3,8}$/.test(h.code)) throw new Error(`hub code ${JSON.stringify(h.code)} is malformed`);
    if (byCode.has(h.code)) throw new Error(`hub code ${h.code} is duplicated`);
    const hub: Hub = Object.freeze({ ...h, index });
    byCode.set(h.code, hub);
    return hub;
  });
  const outgoing: Lane[][] = hubs.map(() => []);
  const lanes = data.lanes.map(([from, to, mode, distanceKm, transitMin, cutoffMin, daysMask, minutes], id) => {
    const f = byCode.get(from);
    const t = byCode.get(to);
    if (!f || !t) throw new Error(`lane ${from}-${to} names an unknown hub`);
    const weekMinutes = expandSchedule(daysMask, minutes);
    if (weekMinutes.length === 0) throw new Error(`lane ${from}-${to} has no departures`);
    const lane: Lane = Object.freeze({ id, from: f.index, to: t.index, mode, distanceKm, transitMin, cutoffMin, weekMinutes });
    outgoing[f.index]!.push(lane);
    return lane;
  });
  return Object.freeze({
    hubs: Object.freeze(hubs),
    lanes: Object.freeze(lanes),
    outgoing: Object.freeze(outgoing.map((l) => Object.freeze(l))),
    hub: (code: string) => byCode.get(code),
  });
}

/** Expands a days mask and UTC minutes of day into sorted minutes of the (epoch-aligned) week. */
export function expandSchedule(daysMask: number, utcMinutesOfDay: readonly number[]): Int32Array {
  const out: number[] = [];
  for (let weekday = 0; weekday < 7; weekday++) {
    if ((daysMask & (1 << weekday)) === 0) continue;
    const dayOffset = (weekday - EPOCH_WEEKDAY + 7) % 7;
    for (const m of utcMinutesOfDay) out.push(dayOffset * 1440 + (((m % 1440) + 1440) % 1440));
  }
  return Int32Array.from([...new Set(out)].sort((a, b) => a - b));
}

/**
 * The first scheduled departure of `lane` at or after `notBeforeMs` (epoch ms), as epoch ms.
 * Departures fall on whole minutes.
 */
export function nextDeparture(lane: Lane, notBeforeMs: number): number {
  const t = Math.ceil(notBeforeMs / MIN_MS);
  const w = ((t % WEEK_MIN) + WEEK_MIN) % WEEK_MIN;
  let weekStart = t - w;
  const mins = lane.weekMinutes;
  let lo = 0;
  let hi = mins.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (mins[mid]! < w) lo = mid + 1;
    else hi = mid;
  }
  let m: number;
  if (lo < mins.length) m = mins[lo]!;
  else {
    weekStart += WEEK_MIN;
    m = mins[0]!;
  }
  return (weekStart + m) * MIN_MS;
}
