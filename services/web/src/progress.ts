import { EtaChangeReason, type Eta } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import type { Shipment, ShipmentEvent } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { EtaReasonId, ExceptionId, StepId } from "./messages.js";

/** The progress indicator's steps, in order. */
export const STEPS: readonly StepId[] = ["created", "pickedUp", "inTransit", "outForDelivery", "delivered"];

/** Where a shipment stands on the progress indicator. Pure data, computed by {@link progressOf}. */
export interface Progress {
  /** Index into {@link STEPS} of the step the parcel is at (every earlier step is done). */
  readonly step: number;
  /** Delivered: every step is done. */
  readonly complete: boolean;
  /** What interrupts the normal progress, if anything; shown on the current step. */
  readonly exception: ExceptionId | undefined;
}

/** How far a scan of this kind takes a parcel. */
function stepOfKind(kind: ScanKind): number {
  switch (kind) {
    case ScanKind.PICKUP:
      return 1;
    case ScanKind.HUB_ARRIVAL:
    case ScanKind.HUB_DEPARTURE:
    case ScanKind.CUSTOMS:
      return 2;
    case ScanKind.OUT_FOR_DELIVERY:
    case ScanKind.DELIVERY_ATTEMPT:
    case ScanKind.PICKUP_POINT_ARRIVAL:
      return 3;
    case ScanKind.DELIVERED:
      return 4;
    default:
      return 0;
  }
}

/** Reasons that mean the parcel is behind its plan. */
const LATE_REASONS: ReadonlySet<EtaChangeReason> = new Set([
  EtaChangeReason.LATE_ARRIVAL,
  EtaChangeReason.MISSED_CUTOFF,
  EtaChangeReason.DISRUPTION,
]);

/** The current estimate: the shipment's, else its route's. */
export function currentEta(s: Shipment): Eta | undefined {
  return s.eta ?? s.route?.eta;
}

/** True when the estimate's window (or the estimate itself, without a window) is over. */
export function etaPassed(eta: Eta | undefined, now: number): boolean {
  const end = eta?.latest ?? eta?.estimatedArrival;
  return end !== undefined && timestampMs(end) < now;
}

/**
 * The progress of a shipment: the step follows the status (refined by the furthest scan for
 * parcels in transit), and exceptions come from the status (attempt, pickup point, returned,
 * expired, customs hold or another problem) or, for a parcel still moving, from being late: the
 * estimate was last moved for a late reason, or its window is over.
 */
export function progressOf(s: Shipment, events: readonly ShipmentEvent[], now: number): Progress {
  const furthest = events.reduce((max, e) => Math.max(max, stepOfKind(e.scanKind)), 0);
  switch (s.status) {
    case ShipmentStatus.DELIVERED:
      return { step: 4, complete: true, exception: undefined };
    case ShipmentStatus.OUT_FOR_DELIVERY:
      return { step: 3, complete: false, exception: delay(s, now) };
    case ShipmentStatus.FAILED_ATTEMPT:
      return { step: 3, complete: false, exception: "attempted" };
    case ShipmentStatus.AVAILABLE_FOR_PICKUP:
      return { step: 3, complete: false, exception: "readyForPickup" };
    case ShipmentStatus.RETURNED_TO_SENDER:
      return { step: Math.min(furthest, 3), complete: false, exception: "returned" };
    case ShipmentStatus.EXPIRED:
      return { step: Math.min(furthest, 3), complete: false, exception: "expired" };
    case ShipmentStatus.EXCEPTION: {
      const cause = [...events].reverse().find((e) => e.status === ShipmentStatus.EXCEPTION);
      return { step: Math.min(furthest, 3), complete: false, exception: cause?.scanKind === ScanKind.CUSTOMS ? "customsHold" : "problem" };
    }
    case ShipmentStatus.IN_TRANSIT:
      return { step: Math.max(1, Math.min(furthest, 2)), complete: false, exception: delay(s, now) };
    default:
      return { step: 0, complete: false, exception: undefined };
  }
}

function delay(s: Shipment, now: number): ExceptionId | undefined {
  return LATE_REASONS.has(s.etaChangeReason) || etaPassed(currentEta(s), now) ? "delayed" : undefined;
}

/** How the page explains the last change of the estimate; undefined for the first plan. */
export function etaReasonOf(reason: EtaChangeReason): EtaReasonId | undefined {
  switch (reason) {
    case EtaChangeReason.EARLY_ARRIVAL:
    case EtaChangeReason.EARLY_DEPARTURE:
      return "early";
    case EtaChangeReason.LATE_ARRIVAL:
    case EtaChangeReason.MISSED_CUTOFF:
      return "late";
    case EtaChangeReason.UNPLANNED_HUB:
      return "rerouted";
    case EtaChangeReason.DISRUPTION:
      return "disruption";
    case EtaChangeReason.DISRUPTION_CLEARED:
      return "disruptionCleared";
    default:
      return undefined;
  }
}
