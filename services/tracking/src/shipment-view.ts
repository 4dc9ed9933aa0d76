import { create } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { GeoPointSchema, PlaceSchema, type GeoPoint, type Place } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import { EtaChangeReason, type Eta, type RouteLegJson, type Route } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { CarrierStatusSchema, ScanKind, type CarrierStatus } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel, ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  ShipmentEventKind,
  ShipmentEventSchema,
  ShipmentSchema,
  type Shipment,
  type ShipmentEvent,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { compareKeys, resolveScanStatus, trimmedIds } from "./store/derive.js";
import { carrierStatusFromDoc, etaFromDoc, fieldsAsKnown, placeFromDoc, routeFromDoc, timeFromDoc, type LegActuals } from "./store/doc-json.js";
import { eventTimestamp } from "./store/events.js";
import type { ProjectedEvent, ShipmentDoc, StoredEvent, TimelineEntry } from "./store/ports.js";

/**
 * Rendering of the store's documents and history as the TrackingService's messages, and the
 * public view anonymous callers get. The document's nested values are proto JSON, read as
 * `fromJson` reads them (store/doc-json.ts); history events are the mesh's messages already.
 * Pure: no I/O.
 */

/** Anonymous callers see positions rounded to this many degrees (about 11 km of latitude). */
export const PUBLIC_LOCATION_PRECISION_DEG = 0.1;

/** A document time (ISO-8601, the JSON form of a Timestamp) as a Timestamp. */
export function docTime(iso: string | undefined): Timestamp | undefined {
  return iso === undefined ? undefined : timeFromDoc(iso);
}

export type { LegActuals };

/**
 * The actual times of a route's legs, read from the shipment's hub scans. The timeline (event-time
 * order) and the legs (travel order) are walked together: a leg's arrival is the first arrival scan
 * at its `toHub` after the previous leg's match, its departure the first departure scan at its
 * `fromHub` before that arrival. A leg without matching scans gets neither; a leg the parcel left but
 * has not reached yet gets only its departure. Pure.
 */
export function legActualsFromScans(legs: ReadonlyArray<Pick<RouteLegJson, "fromHub" | "toHub">>, timeline: readonly TimelineEntry[]): LegActuals[] {
  let from = 0;
  return legs.map((leg) => {
    const find = (kind: ScanKind, hub: string | undefined, start: number, end: number) => {
      if (!hub) return -1;
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
function route(doc: ShipmentDoc): Route | undefined {
  const plan = doc.route;
  if (!plan) return undefined;
  const legs = plan.legs ?? [];
  const actuals = legActualsFromScans(legs, doc.derivation.timeline);
  return routeFromDoc(plan, doc.trackingNumber, doc.eta, legs, actuals);
}

/**
 * The hub of the newest (event time) timeline entry that had one, among the entries the document
 * keeps and the newest one a trim dropped (`derivation.trimmed.hubEntry`).
 */
function currentHub(doc: ShipmentDoc): string {
  const timeline = doc.derivation.timeline;
  const dropped = doc.derivation.trimmed?.hubEntry;
  for (let i = timeline.length - 1; i >= 0; i--) {
    const e = timeline[i] as TimelineEntry;
    if (!e.hubCode) continue;
    return dropped?.hubCode && compareKeys(dropped.eventTime, dropped.eventId, e.eventTime, e.eventId) > 0 ? dropped.hubCode : e.hubCode;
  }
  return dropped?.hubCode || doc.hubCode || "";
}

/**
 * `Shipment.eta` of a document, without rendering the rest of it (what EtaChanged carries).
 * Routing's ETA is closed by the delivery; the proto leaves it unset after delivery.
 */
export function shipmentEta(doc: ShipmentDoc): Eta | undefined {
  return doc.status === ShipmentStatus.DELIVERED || !doc.eta ? undefined : etaFromDoc(doc.eta);
}

/** Whether Shipment is still the message {@link shipmentMessage} builds as a literal (else `create` fills it in). */
const SHIPMENT_LITERAL = fieldsAsKnown(ShipmentSchema);

/**
 * The full (internal) Shipment message for a store document. Built as an object literal: what
 * `create(ShipmentSchema, …)` makes of the same values (unset message fields absent, `null` and
 * `undefined` scalars their zero value), at a fraction of its cost.
 */
export function shipmentMessage(doc: ShipmentDoc): Shipment {
  const createdAt = doc.derivation.createdKey?.split("|")[0];
  const delivered = doc.status === ShipmentStatus.DELIVERED;
  // In field order, as create() would run them (the first to throw is the same).
  const origin = doc.origin && placeFromDoc(doc.origin);
  const destination = doc.destination && placeFromDoc(doc.destination);
  const lastCarrierStatus = doc.carrierStatus && carrierStatusFromDoc(doc.carrierStatus);
  const statusTime = docTime(doc.statusTime);
  const currentHubCode = currentHub(doc);
  const currentLocation = doc.location && create(GeoPointSchema, doc.location);
  const eta = shipmentEta(doc);
  const plan = route(doc);
  const created = docTime(createdAt);
  const updatedAt = docTime(doc.updatedAt);
  const deliveredAt = delivered ? docTime(doc.statusTime) : undefined;
  const m: Shipment = {
    $typeName: ShipmentSchema.typeName,
    trackingNumber: doc.trackingNumber ?? "",
    shipmentId: doc.shipmentId ?? "",
    carrierCode: doc.carrierCode ?? "",
    customerId: doc.customerId ?? "",
    customerReference: doc.customerReference ?? "",
    serviceLevel: doc.serviceLevel ?? ServiceLevel.UNSPECIFIED,
    status: doc.status ?? ShipmentStatus.UNSPECIFIED,
    currentHubCode,
    version: BigInt(doc.version),
    eventCount: doc.derivation.eventIds.length + trimmedIds(doc),
    etaChangeReason: doc.etaReason ?? EtaChangeReason.UNSPECIFIED,
    partnerCarrierCodes: doc.partnerCarrierCodes ?? [],
    trimmedEventCount: doc.derivation.trimmed?.entries ?? 0,
  };
  if (origin != null) m.origin = origin;
  if (destination != null) m.destination = destination;
  if (lastCarrierStatus != null) m.lastCarrierStatus = lastCarrierStatus;
  if (statusTime) m.statusTime = statusTime;
  if (currentLocation != null) m.currentLocation = currentLocation;
  if (eta) m.eta = eta;
  if (plan) m.route = plan;
  if (created) m.createdAt = created;
  if (updatedAt) m.updatedAt = updatedAt;
  if (deliveredAt) m.deliveredAt = deliveredAt;
  return SHIPMENT_LITERAL ? m : create(ShipmentSchema, { ...m, $typeName: undefined });
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

/** One formatter for every summary: `toLocaleDateString` with options builds a new one per call. */
const DAY_FORMAT = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", timeZone: "UTC" });

function day(t: Timestamp | undefined): string {
  return t ? DAY_FORMAT.format(timestampDate(t)) : "?";
}

/**
 * The summary of a handover: to `partner` (or, when the reader may not see who, to "a partner
 * carrier"), at `hubCode` when there is one.
 */
export function describeHandover(partner: string | undefined, hubCode: string): string {
  return `Handed over to ${partner || "a partner carrier"}${hubCode ? ` at hub ${hubCode}` : ""}`;
}

/** A one-line English summary of an event ("Arrived at hub FRA", "ETA moved to 14 Mar: missed cut-off"). */
export function describeEvent(e: ProjectedEvent): string {
  switch (e.type) {
    case "shipment.created":
      return "Shipment information received";
    case "shipment.handed_over":
      return describeHandover(e.message.partnerCarrierCode, e.message.hubCode);
    case "shipment.partner_removed":
      return `Partner carrier ${e.message.partnerCarrierCode} removed`;
    case "scan.recorded": {
      const { kind, status } = e.message;
      const hubCode = e.message.scan?.hubCode;
      if (kind === ScanKind.CUSTOMS && status === ShipmentStatus.EXCEPTION) return "Held at customs";
      const text = SCAN_TEXT[kind] ?? "Carrier update";
      return hubCode && (kind === ScanKind.HUB_ARRIVAL || kind === ScanKind.HUB_DEPARTURE) ? `${text} ${hubCode}` : text;
    }
    case "route.planned":
      return `Route planned: ETA ${day(e.message.route?.eta?.estimatedArrival)}`;
    case "route.updated": {
      const reason = REASON_TEXT[e.message.reason];
      return `ETA moved to ${day(e.message.route?.eta?.estimatedArrival)}${reason ? `: ${reason}` : ""}`;
    }
  }
}

function eventKind(e: ProjectedEvent): ShipmentEventKind {
  switch (e.type) {
    case "shipment.created":
      return ShipmentEventKind.CREATED;
    case "shipment.handed_over":
      return ShipmentEventKind.HANDED_OVER;
    case "shipment.partner_removed":
      return ShipmentEventKind.PARTNER_REMOVED;
    case "scan.recorded":
      return e.message.kind === ScanKind.CORRECTION ? ShipmentEventKind.STATUS_CORRECTED : ShipmentEventKind.SCAN;
    case "route.planned":
      return ShipmentEventKind.ROUTE_PLANNED;
    case "route.updated":
      return ShipmentEventKind.ROUTE_UPDATED;
  }
}

function eventStatus(e: ProjectedEvent): ShipmentStatus {
  switch (e.type) {
    case "shipment.created":
      return ShipmentStatus.INFO_RECEIVED;
    case "scan.recorded":
      return resolveScanStatus(e.message.kind, e.message.status);
    default:
      return ShipmentStatus.UNSPECIFIED;
  }
}

/** The full (internal) ShipmentEvent message for a history entry. */
export function shipmentEventMessage(s: StoredEvent): ShipmentEvent {
  const e = s.event;
  const scanned = e.type === "scan.recorded" ? e.message : undefined;
  const handover = e.type === "shipment.handed_over" ? e.message : undefined;
  const removal = e.type === "shipment.partner_removed" ? e.message : undefined;
  return create(ShipmentEventSchema, {
    eventId: s.eventId,
    kind: eventKind(e),
    eventTime: eventTimestamp(e),
    recordedAt: s.appliedAt,
    status: eventStatus(e),
    scanKind: scanned?.kind ?? ScanKind.UNSPECIFIED,
    carrierStatus: scanned?.scan?.rawStatus,
    hubCode: scanned?.scan?.hubCode ?? handover?.hubCode ?? "",
    location: scanned?.scan?.location,
    late: s.late,
    description: describeEvent(e),
    partnerCarrierCode: handover?.partnerCarrierCode ?? removal?.partnerCarrierCode ?? "",
  });
}

/**
 * True for the events customers see: creation, scans, corrections and handovers. Route planning
 * events are internal (customers see the shipment's current ETA instead of routing's revisions),
 * and so are partner removals (which carriers may scan a parcel is the carriers' business).
 */
export function isPublicEvent(e: Pick<ShipmentEvent, "kind">): boolean {
  return e.kind !== ShipmentEventKind.ROUTE_PLANNED && e.kind !== ShipmentEventKind.ROUTE_UPDATED && e.kind !== ShipmentEventKind.PARTNER_REMOVED;
}

/**
 * The public view of a ShipmentEvent: event id, recorded time, late flag, the carrier's raw code
 * and a handover's partner carrier emptied (also from its description: partners are as internal
 * as the shipment's carrier), position rounded. Callers leave out events that are not
 * {@link isPublicEvent}.
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
    description: e.kind === ShipmentEventKind.HANDED_OVER ? describeHandover(undefined, e.hubCode) : e.description,
  });
}
