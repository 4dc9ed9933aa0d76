import { create } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { PlaceSchema, type GeoPoint, type Place } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import {
  EtaChangeReason,
  RouteLegSchema,
  RouteSchema,
  type Eta,
  type Route,
} from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { CarrierStatusSchema, ScanKind, type CarrierStatus } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel, ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  ShipmentEventKind,
  ShipmentEventSchema,
  ShipmentSchema,
  type Shipment,
  type ShipmentEvent,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { statusForKind } from "./store/derive.js";
import type {
  EtaDoc,
  GeoPointDoc,
  PlaceDoc,
  RouteDoc,
  RouteLegDoc,
  ShipmentDoc,
  ShipmentEventInput,
  StoredEvent,
  TimelineEntry,
} from "./store/ports.js";

/**
 * Rendering of the store's documents as the TrackingService's messages, and the public view
 * anonymous callers get. Pure: no I/O.
 */

/** Anonymous callers see positions rounded to this many degrees (about 11 km of latitude). */
export const PUBLIC_LOCATION_PRECISION_DEG = 0.1;

function ts(iso: string | undefined): Timestamp | undefined {
  return iso === undefined ? undefined : timestampFromDate(new Date(iso));
}

function point(p: GeoPointDoc | undefined): GeoPoint | undefined {
  return p ? { $typeName: "logistics.common.v1.GeoPoint", latitude: p.lat, longitude: p.lon } : undefined;
}

function place(p: PlaceDoc | undefined): Place | undefined {
  if (!p) return undefined;
  const location = point(p.location);
  return create(PlaceSchema, {
    countryCode: p.countryCode,
    city: p.city,
    postalCode: p.postalCode ?? "",
    hubCode: p.hubCode ?? "",
    ...(location ? { location } : {}),
  });
}

function eta(e: EtaDoc | undefined): Eta | undefined {
  if (!e) return undefined;
  return {
    $typeName: "logistics.common.v1.Eta",
    estimatedArrival: ts(e.estimatedArrival),
    earliest: ts(e.earliest),
    latest: ts(e.latest),
    confidence: e.confidence ?? 0,
  };
}

/** Actual times of one leg, as ISO strings. */
export interface LegActuals {
  departure?: string;
  arrival?: string;
}

/**
 * The actual times of a route's legs, read from the shipment's hub scans. The timeline (event-time
 * order) and the legs (travel order) are walked together: a leg's arrival is the first arrival scan
 * at its `toHub` after the previous leg's match, its departure the first departure scan at its
 * `fromHub` before that arrival. A leg without matching scans gets neither; a leg the parcel left but
 * has not reached yet gets only its departure. Pure.
 */
export function legActualsFromScans(legs: readonly RouteLegDoc[], timeline: readonly TimelineEntry[]): LegActuals[] {
  let from = 0;
  return legs.map((leg) => {
    const find = (kind: ScanKind, hub: string, start: number, end: number) => {
      for (let k = start; k < end; k++) {
        const e = timeline[k]!;
        if (e.kind === kind && e.hubCode === hub) return k;
      }
      return -1;
    };
    const arr = find(ScanKind.HUB_ARRIVAL, leg.toHub, from, timeline.length);
    const dep = find(ScanKind.HUB_DEPARTURE, leg.fromHub, from, arr < 0 ? timeline.length : arr);
    const out: LegActuals = {};
    if (dep >= 0) out.departure = timeline[dep]!.eventTime;
    if (arr >= 0) out.arrival = timeline[arr]!.eventTime;
    if (arr >= 0) from = arr + 1;
    else if (dep >= 0) from = dep + 1;
    return out;
  });
}

/**
 * The route plan with the ETA it came with (the document's `eta` is that same route event's). Each
 * leg's actual times come from the scans (see {@link legActualsFromScans}), falling back to what
 * routing recorded.
 */
function route(r: RouteDoc | undefined, trackingNumber: string, e: EtaDoc | undefined, timeline: readonly TimelineEntry[]): Route | undefined {
  if (!r) return undefined;
  const actuals = legActualsFromScans(r.legs, timeline);
  return create(RouteSchema, {
    routeId: r.routeId ?? "",
    trackingNumber,
    legs: r.legs.map((leg, i) =>
      create(RouteLegSchema, {
        fromHub: leg.fromHub,
        toHub: leg.toHub,
        mode: leg.mode,
        plannedDeparture: ts(leg.plannedDeparture),
        plannedArrival: ts(leg.plannedArrival),
        departureId: leg.departureId ?? "",
        actualDeparture: ts(actuals[i]?.departure ?? leg.actualDeparture),
        actualArrival: ts(actuals[i]?.arrival ?? leg.actualArrival),
      }),
    ),
    eta: eta(e),
    revision: r.revision ?? 0,
    plannedAt: ts(r.plannedAt),
  });
}

/** The hub of the newest (event time) timeline entry that had one. */
function currentHub(doc: ShipmentDoc): string {
  const timeline = doc.derivation.timeline;
  for (let i = timeline.length - 1; i >= 0; i--) {
    const hub = timeline[i]?.hubCode;
    if (hub) return hub;
  }
  return doc.hubCode ?? "";
}

/**
 * `Shipment.eta` of a document, without rendering the rest of it (what EtaChanged carries).
 * Routing's ETA is closed by the delivery; the proto leaves it unset after delivery.
 */
export function shipmentEta(doc: ShipmentDoc): Eta | undefined {
  return doc.status === ShipmentStatus.DELIVERED ? undefined : eta(doc.eta);
}

/** The full (internal) Shipment message for a store document. */
export function shipmentMessage(doc: ShipmentDoc): Shipment {
  const createdAt = doc.derivation.createdKey?.split("|")[0];
  const delivered = doc.status === ShipmentStatus.DELIVERED;
  return create(ShipmentSchema, {
    trackingNumber: doc.trackingNumber,
    shipmentId: doc.shipmentId ?? "",
    carrierCode: doc.carrierCode ?? "",
    customerId: doc.customerId ?? "",
    customerReference: doc.customerReference ?? "",
    serviceLevel: doc.serviceLevel ?? ServiceLevel.UNSPECIFIED,
    origin: place(doc.origin),
    destination: place(doc.destination),
    status: doc.status,
    lastCarrierStatus: doc.carrierStatus ? { code: doc.carrierStatus.code, text: doc.carrierStatus.text } : undefined,
    statusTime: ts(doc.statusTime),
    currentHubCode: currentHub(doc),
    currentLocation: point(doc.location),
    eta: shipmentEta(doc),
    route: route(doc.route, doc.trackingNumber, doc.eta, doc.derivation.timeline),
    etaChangeReason: doc.etaReason ?? EtaChangeReason.UNSPECIFIED,
    createdAt: ts(createdAt),
    updatedAt: ts(doc.updatedAt),
    deliveredAt: delivered ? ts(doc.statusTime) : undefined,
    version: BigInt(doc.version),
    eventCount: doc.derivation.eventIds.length,
  });
}

function roundCoord(v: number): number {
  return Math.round(v / PUBLIC_LOCATION_PRECISION_DEG) * PUBLIC_LOCATION_PRECISION_DEG;
}

function publicPoint(p: GeoPoint | undefined): GeoPoint | undefined {
  return p ? { ...p, latitude: Number(roundCoord(p.latitude).toFixed(1)), longitude: Number(roundCoord(p.longitude).toFixed(1)) } : undefined;
}

function publicPlace(p: Place | undefined): Place | undefined {
  return p ? create(PlaceSchema, { countryCode: p.countryCode, city: p.city, hubCode: p.hubCode }) : undefined;
}

/** The carrier's text without its raw code (carrier jargon stays internal). */
function publicCarrierStatus(c: CarrierStatus | undefined): CarrierStatus | undefined {
  return c ? create(CarrierStatusSchema, { text: c.text }) : undefined;
}

/**
 * The public view of a Shipment (what anonymous callers and callers without `shipments:read`
 * get): internal fields emptied, places reduced to country, city and hub, the position rounded
 * to {@link PUBLIC_LOCATION_PRECISION_DEG}, the carrier's raw code dropped. Returns a new message.
 */
export function publicShipment(s: Shipment): Shipment {
  return create(ShipmentSchema, {
    trackingNumber: s.trackingNumber,
    serviceLevel: s.serviceLevel,
    origin: publicPlace(s.origin),
    destination: publicPlace(s.destination),
    status: s.status,
    lastCarrierStatus: publicCarrierStatus(s.lastCarrierStatus),
    statusTime: s.statusTime,
    currentHubCode: s.currentHubCode,
    currentLocation: publicPoint(s.currentLocation),
    eta: s.eta,
    etaChangeReason: s.etaChangeReason,
    route: s.route ? { ...s.route, routeId: "" } : undefined,
    updatedAt: s.updatedAt,
    deliveredAt: s.deliveredAt,
    version: s.version,
  });
}

const SCAN_TEXT: Readonly<Record<ScanKind, string>> = {
  [ScanKind.UNSPECIFIED]: "Carrier update",
  [ScanKind.PICKUP]: "Picked up",
  [ScanKind.HUB_ARRIVAL]: "Arrived at hub",
  [ScanKind.HUB_DEPARTURE]: "Departed hub",
  [ScanKind.OUT_FOR_DELIVERY]: "Out for delivery",
  [ScanKind.DELIVERY_ATTEMPT]: "Delivery attempted",
  [ScanKind.DELIVERED]: "Delivered",
  [ScanKind.PICKUP_POINT_ARRIVAL]: "Available for pickup",
  [ScanKind.EXCEPTION]: "Exception",
  [ScanKind.CUSTOMS]: "Customs",
  [ScanKind.RETURN_TO_SENDER]: "Returned to sender",
  [ScanKind.CORRECTION]: "Status corrected",
  [ScanKind.INFO]: "Shipment information received",
};

const REASON_TEXT: Partial<Record<EtaChangeReason, string>> = {
  [EtaChangeReason.MISSED_CUTOFF]: "missed cut-off",
  [EtaChangeReason.LATE_ARRIVAL]: "late arrival",
  [EtaChangeReason.UNPLANNED_HUB]: "unplanned hub",
  [EtaChangeReason.DISRUPTION]: "disruption",
  [EtaChangeReason.DISRUPTION_CLEARED]: "disruption cleared",
  [EtaChangeReason.DELIVERED]: "delivered",
  [EtaChangeReason.EARLY_ARRIVAL]: "early arrival",
  [EtaChangeReason.EARLY_DEPARTURE]: "early departure",
};

function day(iso: string): string {
  return new Date(iso).toLocaleDateString("en-GB", { day: "numeric", month: "short", timeZone: "UTC" });
}

/** A one-line English summary of an event ("Arrived at hub FRA", "ETA moved to 14 Mar: missed cut-off"). */
export function describeEvent(e: ShipmentEventInput): string {
  switch (e.type) {
    case "shipment_created":
      return "Shipment information received";
    case "scan": {
      if (e.kind === ScanKind.CUSTOMS && e.status === ShipmentStatus.EXCEPTION) return "Held at customs";
      const text = SCAN_TEXT[e.kind] ?? "Carrier update";
      return e.hubCode && (e.kind === ScanKind.HUB_ARRIVAL || e.kind === ScanKind.HUB_DEPARTURE) ? `${text} ${e.hubCode}` : text;
    }
    case "route_planned":
      return `Route planned: ETA ${day(e.eta.estimatedArrival)}`;
    case "route_updated": {
      const reason = e.reason !== undefined ? REASON_TEXT[e.reason] : undefined;
      return `ETA moved to ${day(e.eta.estimatedArrival)}${reason ? `: ${reason}` : ""}`;
    }
  }
}

function eventKind(e: ShipmentEventInput): ShipmentEventKind {
  switch (e.type) {
    case "shipment_created":
      return ShipmentEventKind.CREATED;
    case "scan":
      return e.kind === ScanKind.CORRECTION ? ShipmentEventKind.STATUS_CORRECTED : ShipmentEventKind.SCAN;
    case "route_planned":
      return ShipmentEventKind.ROUTE_PLANNED;
    case "route_updated":
      return ShipmentEventKind.ROUTE_UPDATED;
  }
}

function eventStatus(e: ShipmentEventInput): ShipmentStatus {
  switch (e.type) {
    case "shipment_created":
      return ShipmentStatus.INFO_RECEIVED;
    case "scan":
      if (e.kind === ScanKind.INFO) return ShipmentStatus.INFO_RECEIVED;
      return e.status !== undefined && e.status !== ShipmentStatus.UNSPECIFIED ? e.status : statusForKind(e.kind);
    default:
      return ShipmentStatus.UNSPECIFIED;
  }
}

/** The full (internal) ShipmentEvent message for a history entry. */
export function shipmentEventMessage(s: StoredEvent): ShipmentEvent {
  const e = s.event;
  const scan = e.type === "scan" ? e : undefined;
  return create(ShipmentEventSchema, {
    eventId: s.eventId,
    kind: eventKind(e),
    eventTime: ts(s.eventTime),
    recordedAt: ts(s.appliedAt),
    status: eventStatus(e),
    scanKind: scan?.kind ?? ScanKind.UNSPECIFIED,
    carrierStatus: scan ? { code: scan.rawStatus.code, text: scan.rawStatus.text } : undefined,
    hubCode: scan?.hubCode ?? "",
    location: point(scan?.location),
    late: s.late,
    description: describeEvent(e),
  });
}

/**
 * True for the events customers see: creation, scans and corrections. Route planning events are
 * internal (customers see the shipment's current ETA instead of routing's revisions).
 */
export function isPublicEvent(e: Pick<ShipmentEvent, "kind">): boolean {
  return e.kind !== ShipmentEventKind.ROUTE_PLANNED && e.kind !== ShipmentEventKind.ROUTE_UPDATED;
}

/**
 * The public view of a ShipmentEvent: event id, recorded time, late flag and the carrier's raw code
 * emptied, position rounded. Callers leave out events that are not {@link isPublicEvent}.
 */
export function publicShipmentEvent(e: ShipmentEvent): ShipmentEvent {
  return create(ShipmentEventSchema, {
    kind: e.kind,
    eventTime: e.eventTime,
    status: e.status,
    scanKind: e.scanKind,
    carrierStatus: publicCarrierStatus(e.carrierStatus),
    hubCode: e.hubCode,
    location: publicPoint(e.location),
    description: e.description,
  });
}
