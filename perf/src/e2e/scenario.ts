/**
 * The end-to-end scenario's traffic: realistic shipments, each scanned along its planned route
 * (pickup, arrival and departure at every hub, customs in the destination country, out for
 * delivery, delivered: 7–13 scans, 10–16 events in tracking with the creation and the route's
 * plan and delivery), created at the rate that keeps the offered scan rate steady. Event times are
 * the plan's own times (a few days ago), so routing sees parcels on schedule and re-plans none of
 * them: its work per scan is the read and compare it does for nearly every real scan.
 *
 * The plans come from routing's own planner over the same hub network and the same query the
 * service runs at creation (no disruptions exist in a perf run), so the scans follow exactly the
 * route routing stored. Pure apart from planning: everything is computed before the clock starts.
 */
import {
  createHubNetwork,
  createPlanner,
  createSpatialIndex,
  hubNetworkData,
  MODES_BY_SERVICE_LEVEL,
  type ServiceLevelName,
} from "@logistics/routing";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";

type LatLon = { latitude: number; longitude: number };

/** An origin–destination pair with a service level. */
export interface LaneSpec {
  readonly origin: { countryCode: string; city: string; location: LatLon };
  readonly destination: { countryCode: string; city: string; location: LatLon };
  readonly level: ServiceLevelName;
}

/** Lanes of 1–3 legs (domestic and intercontinental, all service levels but overnight). */
export const LANES: readonly LaneSpec[] = [
  lane(["DE", "Frankfurt", 50.11, 8.68], ["US", "Chicago", 41.88, -87.63], "EXPRESS"),
  lane(["CN", "Shanghai", 31.23, 121.47], ["GB", "London", 51.51, -0.13], "STANDARD"),
  lane(["BR", "São Paulo", -23.55, -46.63], ["JP", "Tokyo", 35.68, 139.69], "EXPRESS"),
  lane(["AU", "Sydney", -33.87, 151.21], ["ZA", "Johannesburg", -26.2, 28.05], "STANDARD"),
  lane(["US", "New York", 40.71, -74.0], ["US", "Los Angeles", 34.05, -118.24], "STANDARD"),
  lane(["JP", "Tokyo", 35.68, 139.69], ["KR", "Seoul", 37.57, 126.98], "EXPRESS"),
  lane(["DE", "Frankfurt", 50.11, 8.68], ["FR", "Paris", 48.86, 2.35], "STANDARD"),
];

function lane(o: [string, string, number, number], d: [string, string, number, number], level: ServiceLevelName): LaneSpec {
  return {
    origin: { countryCode: o[0], city: o[1], location: { latitude: o[2], longitude: o[3] } },
    destination: { countryCode: d[0], city: d[1], location: { latitude: d[2], longitude: d[3] } },
    level,
  };
}

/** One scan of a shipment's script. */
export interface ScriptedScan {
  readonly code: string;
  readonly text: string;
  readonly hubCode?: string;
  readonly location?: LatLon;
  /** Event time (epoch ms): the plan's time for this step. */
  readonly eventTimeMs: number;
}

/** A shipment template: a lane, its ready time and the scans along its planned route. */
export interface ShipmentTemplate {
  readonly lane: LaneSpec;
  readonly serviceLevel: ServiceLevel;
  readonly readyAtMs: number;
  readonly hubs: readonly string[];
  readonly scans: readonly ScriptedScan[];
}

const HOUR = 3_600_000;
const MIN = 60_000;

const LEVELS: Record<ServiceLevelName, ServiceLevel> = {
  ECONOMY: ServiceLevel.ECONOMY,
  STANDARD: ServiceLevel.STANDARD,
  EXPRESS: ServiceLevel.EXPRESS,
  OVERNIGHT: ServiceLevel.OVERNIGHT,
};

/**
 * Plans every lane at `readyTimes` ready times (hours apart, ending days before `nowMs`) and turns
 * each plan into a scan script. Every fourth template is held at customs before clearance.
 */
export function shipmentTemplates(nowMs: number, readyTimes = 4, hourUtc?: number): ShipmentTemplate[] {
  const network = createHubNetwork(hubNetworkData);
  const planner = createPlanner(network);
  const spatial = createSpatialIndex(network.hubs);
  const nearest = (l: LatLon) => spatial.nearest({ lat: l.latitude, lon: l.longitude }, { limit: 1 })[0]!.item;
  // Whole hours, five days back: every planned time lies in the past (scans may not be from the
  // future) and well inside ingest's 30-day window.
  // With `hourUtc`, the latest such hour of that time of day: the routes (and so the traffic) then
  // do not change with the hour the run starts at.
  let base = Math.floor((nowMs - 5 * 24 * HOUR) / HOUR) * HOUR;
  if (hourUtc !== undefined) base -= (((new Date(base).getUTCHours() - hourUtc) % 24) + 24) % 24 * HOUR;
  const out: ShipmentTemplate[] = [];
  for (let r = 0; r < readyTimes; r++) {
    for (const l of LANES) {
      const readyAtMs = base + r * 5 * HOUR;
      const route = planner.plan({
        origin: nearest(l.origin.location).index,
        destination: nearest(l.destination.location).index,
        readyAt: readyAtMs,
        modes: MODES_BY_SERVICE_LEVEL[l.level],
      });
      const held = out.length % 4 === 3;
      const scans: ScriptedScan[] = [];
      scans.push({ code: "PU", text: "Picked up", location: l.origin.location, eventTimeMs: readyAtMs - 2 * HOUR });
      const first = route.legs[0]!.from;
      scans.push({ code: "AR", text: "Arrived at hub", hubCode: first.code, eventTimeMs: readyAtMs });
      const international = l.origin.countryCode !== l.destination.countryCode;
      let cleared = false;
      route.legs.forEach((leg, i) => {
        scans.push({ code: "DP", text: "Departed hub", hubCode: leg.from.code, eventTimeMs: leg.departure });
        scans.push({ code: "AR", text: "Arrived at hub", hubCode: leg.to.code, eventTimeMs: leg.arrival });
        if (international && !cleared && leg.to.country === l.destination.countryCode) {
          cleared = true;
          const next = route.legs[i + 1]?.departure ?? leg.arrival + 2 * HOUR;
          const gap = Math.max(2 * MIN, Math.min(60 * MIN, (next - leg.arrival) / 2));
          if (held) scans.push({ code: "CH", text: "Held at customs", hubCode: leg.to.code, eventTimeMs: leg.arrival + gap / 2 });
          scans.push({ code: "CU", text: "Customs clearance completed", hubCode: leg.to.code, eventTimeMs: leg.arrival + gap });
        }
      });
      scans.push({ code: "OD", text: "Out for delivery", location: l.destination.location, eventTimeMs: route.arrival + 2 * HOUR });
      scans.push({ code: "DL", text: "Delivered", location: l.destination.location, eventTimeMs: route.arrival + 4 * HOUR });
      out.push({
        lane: l,
        serviceLevel: LEVELS[l.level],
        readyAtMs,
        hubs: [first.code, ...route.legs.map((x) => x.to.code)],
        scans,
      });
    }
  }
  return out;
}

/** One planned action of the open-loop schedule, at an intended time relative to the window start. */
export type Action =
  | { readonly kind: "create"; readonly at: number; readonly shipment: number }
  | { readonly kind: "scan"; readonly at: number; readonly shipment: number; readonly step: number };

/** The whole run's traffic, known before it starts. */
export interface Schedule {
  /** Actions sorted by intended time (ms relative to the measured window's start; warm-up is negative). */
  readonly actions: readonly Action[];
  /** Template index per shipment. */
  readonly templateOf: readonly number[];
  /** Scans whose intended time is inside the measured window [0, windowMs). */
  readonly scansInWindow: number;
  /** Scans before it (the ramp). */
  readonly warmupScans: number;
  /** Shipments created whose creation falls inside the window. */
  readonly shipmentsCreatedInWindow: number;
  /** When the first action is due (ms, negative: the warm-up starts before the window). */
  readonly startsAt: number;
}

export interface ScheduleOptions {
  /** Scans per second offered in steady state. */
  readonly rate: number;
  /** Measured window (ms). */
  readonly windowMs: number;
  /** Scans per template (its script length), in template order. */
  readonly scansPerTemplate: readonly number[];
  /** Wall-clock gap between two scans of one shipment (ms). */
  readonly scanGapMs: number;
  /** Time between a shipment's creation and its first scan (ms). */
  readonly createLeadMs: number;
  /**
   * Warm-up at the full rate before the window (ms), after the ramp: lets fresh processes reach
   * steady state (optimized code, pools and caches filled, any backlog of the ramp drained) so
   * that the window measures the rate sustained, not a cold start. Default 0.
   */
  readonly warmupMs?: number;
}

/**
 * Builds the open-loop schedule. Shipments start at a constant rate of `rate / mean scans per
 * shipment`; each gets its template's scans `scanGapMs` apart. Starts are taken back far enough
 * before the window (one shipment lifetime, plus `warmupMs` at the full rate) that the scan rate
 * is already steady when the window opens: the ramp and the warm-up are not measured. Creations continue to the window's end; scans due
 * after it are not sent.
 */
export function buildSchedule(o: ScheduleOptions): Schedule {
  const per = o.scansPerTemplate;
  if (per.length === 0 || o.rate <= 0) throw new Error("buildSchedule needs templates and a positive rate");
  const meanScans = per.reduce((a, b) => a + b, 0) / per.length;
  const maxScans = Math.max(...per);
  const startInterval = (meanScans / o.rate) * 1000; // ms between two shipment starts
  const lifetime = o.createLeadMs + (maxScans - 1) * o.scanGapMs;
  const firstStart = -Math.ceil((lifetime + Math.max(0, o.warmupMs ?? 0)) / startInterval) * startInterval;
  const actions: Action[] = [];
  const templateOf: number[] = [];
  let scansInWindow = 0;
  let warmupScans = 0;
  let createdInWindow = 0;
  for (let k = 0; ; k++) {
    const created = firstStart + k * startInterval;
    if (created >= o.windowMs) break;
    const t = k % per.length;
    const firstScan = created + o.createLeadMs;
    templateOf.push(t);
    actions.push({ kind: "create", at: created, shipment: k });
    if (created >= 0) createdInWindow++;
    for (let j = 0; j < per[t]!; j++) {
      const at = firstScan + j * o.scanGapMs;
      if (at >= o.windowMs) break;
      actions.push({ kind: "scan", at, shipment: k, step: j });
      if (at >= 0) scansInWindow++;
      else warmupScans++;
    }
  }
  actions.sort((a, b) => a.at - b.at || (a.kind === "create" ? -1 : 1));
  return { actions, templateOf, scansInWindow, warmupScans, shipmentsCreatedInWindow: createdInWindow, startsAt: actions[0]?.at ?? 0 };
}

/**
 * Open-loop pacing that catches up: everything whose intended time has come is due now, however
 * late the timer fired, so a slow event loop delays sends but never drops them from the offered
 * load. Returns the index one past the last due action.
 */
export function dueUntil(actions: readonly { at: number }[], from: number, nowRel: number): number {
  let i = from;
  while (i < actions.length && actions[i]!.at <= nowRel) i++;
  return i;
}
