import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { GeoPoint, Place } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import { EtaChangeReason, type Eta, type Route } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import type { ScanRecorded, ShipmentCreated } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import type { RoutePlanned, RouteUpdated } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import type {
  EtaDoc,
  GeoPointDoc,
  PlaceDoc,
  RouteInput,
  RouteLegDoc,
  ScanInput,
  ShipmentCreatedInput,
} from "./store/ports.js";

/**
 * Translation of the mesh's Protobuf events into the shipment store's inputs. Pure: no I/O.
 * The store validates what comes out (patterns, ranges), so these functions only reshape; an
 * event missing something the store needs (a scan without event time, a route without an ETA)
 * raises {@link UnusableEventError}.
 */

/** An event that cannot become a store input (a required part is missing). */
export class UnusableEventError extends Error {
  override readonly name = "UnusableEventError";
  constructor(
    readonly eventType: string,
    readonly field: string,
  ) {
    super(`${eventType} without ${field} cannot be applied`);
  }
}

function iso(ts: Timestamp | undefined): string | undefined {
  return ts ? timestampDate(ts).toISOString() : undefined;
}

/** A GeoPoint as the store keeps it. */
export function pointDoc(p: GeoPoint | undefined): GeoPointDoc | undefined {
  return p ? { lat: p.latitude, lon: p.longitude } : undefined;
}

function placeDoc(p: Place | undefined): PlaceDoc | undefined {
  if (!p) return undefined;
  const location = pointDoc(p.location);
  return {
    countryCode: p.countryCode,
    city: p.city,
    ...(p.postalCode ? { postalCode: p.postalCode } : {}),
    ...(p.hubCode ? { hubCode: p.hubCode } : {}),
    ...(location ? { location } : {}),
  };
}

function etaDoc(e: Eta | undefined): EtaDoc | undefined {
  const estimatedArrival = iso(e?.estimatedArrival);
  if (!e || estimatedArrival === undefined) return undefined;
  const earliest = iso(e.earliest);
  const latest = iso(e.latest);
  return {
    estimatedArrival,
    ...(earliest ? { earliest } : {}),
    ...(latest ? { latest } : {}),
    ...(e.confidence ? { confidence: e.confidence } : {}),
  };
}

/**
 * The plan part of a route event's Route: its legs (hub codes as sent; the store rejects
 * malformed ones), revision (when non-zero) and planning time. Empty when there is no Route.
 */
function routePlan(r: Route | undefined): Pick<RouteInput, "legs" | "revision" | "plannedAt"> {
  if (!r) return {};
  const legs = r.legs.map((leg): RouteLegDoc => {
    const plannedDeparture = iso(leg.plannedDeparture);
    const plannedArrival = iso(leg.plannedArrival);
    const actualDeparture = iso(leg.actualDeparture);
    const actualArrival = iso(leg.actualArrival);
    return {
      fromHub: leg.fromHub,
      toHub: leg.toHub,
      mode: leg.mode,
      ...(plannedDeparture ? { plannedDeparture } : {}),
      ...(plannedArrival ? { plannedArrival } : {}),
      ...(leg.departureId ? { departureId: leg.departureId } : {}),
      ...(actualDeparture ? { actualDeparture } : {}),
      ...(actualArrival ? { actualArrival } : {}),
    };
  });
  const plannedAt = iso(r.plannedAt);
  return {
    legs,
    ...(r.revision ? { revision: r.revision } : {}),
    ...(plannedAt ? { plannedAt } : {}),
  };
}

/** A ScanRecorded event as a store input (event time = when the scan happened at the carrier). */
export function scanInput(e: ScanRecorded): ScanInput {
  const scan = e.scan;
  if (!scan) throw new UnusableEventError("ScanRecorded", "scan");
  const eventTime = iso(scan.eventTime);
  if (!eventTime) throw new UnusableEventError("ScanRecorded", "scan.event_time");
  const location = pointDoc(scan.location);
  const attributes = Object.keys(scan.attributes).length > 0 ? { ...scan.attributes } : undefined;
  return {
    type: "scan",
    eventId: e.eventId,
    trackingNumber: scan.trackingNumber,
    eventTime,
    carrierCode: scan.carrierCode,
    kind: e.kind,
    rawStatus: { code: scan.rawStatus?.code ?? "", text: scan.rawStatus?.text ?? "" },
    ...(e.status !== ShipmentStatus.UNSPECIFIED ? { status: e.status } : {}),
    ...(scan.hubCode ? { hubCode: scan.hubCode } : {}),
    ...(location ? { location } : {}),
    ...(scan.note ? { note: scan.note } : {}),
    ...(attributes ? { attributes } : {}),
  };
}

/**
 * A ShipmentCreated event as a store input. Event time is `created_at` (falling back to
 * `ready_time`, then to `fallbackTime`, the stream's timestamp).
 */
export function shipmentCreatedInput(e: ShipmentCreated, fallbackTime?: Date): ShipmentCreatedInput {
  const eventTime = iso(e.createdAt) ?? iso(e.readyTime) ?? fallbackTime?.toISOString();
  if (!eventTime) throw new UnusableEventError("ShipmentCreated", "created_at");
  const origin = placeDoc(e.origin);
  const destination = placeDoc(e.destination);
  return {
    type: "shipment_created",
    eventId: e.eventId,
    trackingNumber: e.trackingNumber,
    eventTime,
    shipmentId: e.shipmentId,
    carrierCode: e.carrierCode,
    customerId: e.customerId,
    serviceLevel: e.serviceLevel,
    ...(e.customerReference ? { customerReference: e.customerReference } : {}),
    ...(origin ? { origin } : {}),
    ...(destination ? { destination } : {}),
    ...(e.weightGrams ? { weightGrams: e.weightGrams } : {}),
  };
}

/**
 * A RoutePlanned event as a store input (event time = planned_at; reason INITIAL_PLAN), with the
 * route's legs, revision and planning time.
 */
export function routePlannedInput(e: RoutePlanned, fallbackTime?: Date): RouteInput {
  const eventTime = iso(e.plannedAt) ?? iso(e.route?.plannedAt) ?? fallbackTime?.toISOString();
  if (!eventTime) throw new UnusableEventError("RoutePlanned", "planned_at");
  const eta = etaDoc(e.route?.eta);
  if (!eta) throw new UnusableEventError("RoutePlanned", "route.eta");
  return {
    type: "route_planned",
    eventId: e.eventId,
    trackingNumber: e.trackingNumber,
    eventTime,
    eta,
    reason: EtaChangeReason.INITIAL_PLAN,
    ...(e.route?.routeId ? { routeId: e.route.routeId } : {}),
    ...routePlan(e.route),
  };
}

/** A RouteUpdated event as a store input (event time = updated_at), with the new route's legs, revision and planning time. */
export function routeUpdatedInput(e: RouteUpdated, fallbackTime?: Date): RouteInput {
  const eventTime = iso(e.updatedAt) ?? iso(e.route?.plannedAt) ?? fallbackTime?.toISOString();
  if (!eventTime) throw new UnusableEventError("RouteUpdated", "updated_at");
  const eta = etaDoc(e.route?.eta);
  if (!eta) throw new UnusableEventError("RouteUpdated", "route.eta");
  return {
    type: "route_updated",
    eventId: e.eventId,
    trackingNumber: e.trackingNumber,
    eventTime,
    eta,
    ...(e.reason !== EtaChangeReason.UNSPECIFIED ? { reason: e.reason } : {}),
    ...(e.route?.routeId ? { routeId: e.route.routeId } : {}),
    ...(e.detail ? { detail: e.detail } : {}),
    ...routePlan(e.route),
  };
}
