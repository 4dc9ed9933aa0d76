/** Deviation of a parcel from its planned route, judged from one hub scan. Pure. */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { EtaChangeReason, RouteLegSchema, type Route, type RouteLeg } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import type { Hub, HubNetwork } from "./hub-network.js";
import { legToProto, msOf } from "./route-mapping.js";

const MIN_MS = 60_000;

/** A hub scan, reduced to what deviation detection needs. */
export interface HubScan {
  readonly kind: ScanKind;
  readonly hub: Hub;
  /** When the scan happened (epoch ms). */
  readonly at: number;
}

/** A deviation and where to re-plan from. */
export interface Deviation {
  readonly reason: EtaChangeReason;
  readonly detail: string;
  /** Hub the new plan starts at. */
  readonly origin: Hub;
  /** When the parcel is (or will be) at `origin` (epoch ms). */
  readonly readyAt: number;
  /** The parcel needs no more processing at `origin` (it was scanned leaving it). */
  readonly originProcessed: boolean;
  /**
   * Legs already travelled, kept in front of the new plan, with the actual time of the scan that
   * caused the re-plan set on its leg (actual times of earlier re-plans are kept).
   */
  readonly prefix: readonly RouteLeg[];
}

/** A copy of `leg` with its actual arrival set (not when it would precede the leg's actual departure). */
function arrived(leg: RouteLeg, at: number): RouteLeg {
  if (leg.actualDeparture && msOf(leg.actualDeparture) > at) return leg;
  return create(RouteLegSchema, { ...leg, actualArrival: timestampFromMs(at) });
}

/**
 * Compares a hub scan with the route:
 * - an arrival at a hub that is not on the route → UNPLANNED_HUB, re-plan from there;
 * - an arrival later than the planned arrival plus `toleranceMs` → LATE_ARRIVAL, and one earlier
 *   than the planned arrival minus `toleranceMs` → EARLY_ARRIVAL: re-plan from that hub at the
 *   scan time, keeping the legs up to it (the arrived leg with its actual arrival);
 * - a departure from a hub that is not on the route → UNPLANNED_HUB;
 * - a departure later than the planned departure plus `toleranceMs` → MISSED_CUTOFF, and one
 *   earlier than the planned departure minus `toleranceMs` → EARLY_DEPARTURE: the parcel left on
 *   another departure of the same lane, so the leg is moved to the scan time (with its actual
 *   departure) and the rest is re-planned from the next hub at the new arrival.
 * Anything else (within the tolerance either way, other scan kinds) is no deviation: an early
 * parcel is re-planned as surely as a late one, so the ETA never lags behind the scans.
 */
export function detectDeviation(network: HubNetwork, route: Route, scan: HubScan, toleranceMs: number): Deviation | undefined {
  const { hub, at } = scan;
  const legs = route.legs;
  if (scan.kind === ScanKind.HUB_ARRIVAL) {
    const j = legs.findIndex((l) => l.toHub === hub.code);
    if (j < 0) {
      if (legs[0]?.fromHub === hub.code) return undefined;
      return {
        reason: EtaChangeReason.UNPLANNED_HUB,
        detail: `scanned at ${hub.code}, which is not on the planned route`,
        origin: hub,
        readyAt: at,
        originProcessed: false,
        prefix: [],
      };
    }
    const plannedArrival = msOf(legs[j]!.plannedArrival);
    const late = at > plannedArrival + toleranceMs;
    if (!late && at >= plannedArrival - toleranceMs) return undefined;
    const minutes = Math.round(Math.abs(at - plannedArrival) / MIN_MS);
    return {
      reason: late ? EtaChangeReason.LATE_ARRIVAL : EtaChangeReason.EARLY_ARRIVAL,
      detail: `arrived at ${hub.code} ${minutes} min ${late ? "after" : "before"} the planned arrival`,
      origin: hub,
      readyAt: at,
      originProcessed: false,
      prefix: [...legs.slice(0, j), arrived(legs[j]!, at)],
    };
  }
  if (scan.kind !== ScanKind.HUB_DEPARTURE) return undefined;
  const j = legs.findIndex((l) => l.fromHub === hub.code);
  if (j < 0) {
    return {
      reason: EtaChangeReason.UNPLANNED_HUB,
      detail: `departed from ${hub.code}, which is not on the planned route`,
      origin: hub,
      readyAt: at,
      originProcessed: true,
      prefix: [],
    };
  }
  const planned = legs[j]!;
  const plannedDeparture = msOf(planned.plannedDeparture);
  const late = at > plannedDeparture + toleranceMs;
  if (!late && at >= plannedDeparture - toleranceMs) return undefined;
  const reason = late ? EtaChangeReason.MISSED_CUTOFF : EtaChangeReason.EARLY_DEPARTURE;
  const detail = late
    ? `missed cut-off of departure ${planned.departureId} at ${hub.code}`
    : `left ${hub.code} ${Math.round((plannedDeparture - at) / MIN_MS)} min before departure ${planned.departureId}`;
  const next = network.hub(planned.toHub);
  const lane = next && network.outgoing[hub.index]!.find((l) => l.to === next.index);
  if (!next || !lane) {
    return { reason, detail, origin: hub, readyAt: at, originProcessed: true, prefix: legs.slice(0, j) };
  }
  const arrival = at + lane.transitMin * MIN_MS;
  const moved = legToProto({
    lane,
    from: hub,
    to: next,
    readyAt: at,
    cutoff: at,
    departure: at,
    arrival,
    departureId: `${planned.departureId}-${late ? "late" : "early"}`.slice(0, 64),
  });
  moved.actualDeparture = timestampFromMs(at);
  return {
    reason,
    detail,
    origin: next,
    readyAt: arrival,
    originProcessed: false,
    prefix: [...legs.slice(0, j), moved],
  };
}
