import { create, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { EtaChangeReason, RouteSchema, TransportMode } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind, ScanSchema } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel, ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  ScanRecordedSchema,
  ShipmentCreatedSchema,
  ShipmentHandedOverSchema,
  ShipmentPartnerRemovedSchema,
} from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema, RouteUpdatedSchema } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { compareKeys } from "../../src/store/derive.js";
import { eventKey } from "../../src/store/events.js";
import type { ProjectedEvent, ShipmentDoc } from "../../src/store/ports.js";

/**
 * Events for store tests, built as the mesh builds them: the catalog's Protobuf messages (times in
 * epoch ms). One scan, creation, handover, partner removal or route event per call; ids and
 * tracking numbers as given.
 */

const HOUR = 3_600_000;

/** A time as proto JSON writes it (what the document's ETA and route hold). */
export function jsonTime(ms: number): string {
  return toJson(TimestampSchema, timestampFromMs(ms));
}

export type ScanEvent = Extract<ProjectedEvent, { type: "scan.recorded" }>;
export type RouteEvent = Extract<ProjectedEvent, { type: "route.planned" | "route.updated" }>;

/** A scan of `kind`; `extra` sets ingest's status or fields of the carrier's scan. */
export function scan(
  tn: string,
  id: string,
  ms: number,
  kind: ScanKind,
  extra: MessageInitShape<typeof ScanSchema> & { status?: ShipmentStatus } = {},
): ScanEvent {
  const { status, ...fields } = extra;
  const message = create(ScanRecordedSchema, {
    eventId: id,
    kind,
    status: status ?? ShipmentStatus.UNSPECIFIED,
    scan: create(ScanSchema, {
      eventId: id,
      trackingNumber: tn,
      carrierCode: "acme",
      eventTime: timestampFromMs(ms),
      rawStatus: { code: ScanKind[kind], text: `scan ${ScanKind[kind]}` },
      ...fields,
    } as MessageInitShape<typeof ScanSchema>),
  });
  return { type: "scan.recorded", message };
}

export function created(tn: string, id: string, ms: number, customerId: string, carrierCode = "acme", partners: string[] = []): ProjectedEvent {
  const message = create(ShipmentCreatedSchema, {
    eventId: id,
    trackingNumber: tn,
    createdAt: timestampFromMs(ms),
    shipmentId: `s-${tn}`,
    carrierCode,
    customerId,
    serviceLevel: ServiceLevel.STANDARD,
    origin: { countryCode: "DE", city: "Berlin", location: { latitude: 52.52, longitude: 13.405 } },
    partnerCarrierCodes: partners,
  });
  return { type: "shipment.created", message };
}

export type HandoverEvent = Extract<ProjectedEvent, { type: "shipment.handed_over" }>;

/** What ingest's handover and removal events of an "acme" shipment both carry. */
const partnerChange = (tn: string, id: string, partner: string, term: number) => ({
  eventId: id,
  trackingNumber: tn,
  shipmentId: `s-${tn}`,
  carrierCode: "acme",
  partnerCarrierCode: partner,
  partnerTerm: term,
  requestedByCarrierCode: "acme",
  region: "eu-west",
});

/** A handover of an "acme" shipment to `partner`, at `hubCode` when given, beginning the partner's term `term`. */
export function handedOver(tn: string, id: string, ms: number, partner: string, hubCode = "", term = 0): HandoverEvent {
  const message = create(ShipmentHandedOverSchema, { ...partnerChange(tn, id, partner, term), hubCode, handedOverAt: timestampFromMs(ms) });
  return { type: "shipment.handed_over", message };
}

export type PartnerRemovedEvent = Extract<ProjectedEvent, { type: "shipment.partner_removed" }>;

/** The removal of `partner` from an "acme" shipment, ending the partner's term `term`. */
export function partnerRemoved(tn: string, id: string, ms: number, partner: string, term = 0): PartnerRemovedEvent {
  const message = create(ShipmentPartnerRemovedSchema, { ...partnerChange(tn, id, partner, term), removedAt: timestampFromMs(ms) });
  return { type: "shipment.partner_removed", message };
}

/** A route event: its ETA and, with `legs`, a plan. */
export function route(
  tn: string,
  id: string,
  ms: number,
  etaMs: number,
  type: RouteEvent["type"] = "route.updated",
  plan: Omit<MessageInitShape<typeof RouteSchema>, "eta"> = {},
): RouteEvent {
  const r = create(RouteSchema, { ...plan, eta: { estimatedArrival: timestampFromMs(etaMs) } } as MessageInitShape<typeof RouteSchema>);
  return type === "route.planned"
    ? { type, message: create(RoutePlannedSchema, { eventId: id, trackingNumber: tn, plannedAt: timestampFromMs(ms), route: r }) }
    : {
        type,
        message: create(RouteUpdatedSchema, {
          eventId: id,
          trackingNumber: tn,
          updatedAt: timestampFromMs(ms),
          reason: EtaChangeReason.LATE_ARRIVAL,
          route: r,
        }),
      };
}

/** A route event carrying a plan: one leg per consecutive pair of `hubs`, an hour each. */
export function routeWithLegs(tn: string, id: string, ms: number, etaMs: number, hubs: string[], revision: number): RouteEvent {
  const legs = hubs.slice(1).map((toHub, i) => ({
    fromHub: hubs[i] as string,
    toHub,
    mode: i % 2 === 0 ? TransportMode.ROAD : TransportMode.AIR,
    plannedDeparture: timestampFromMs(ms + (2 * i + 1) * HOUR),
    plannedArrival: timestampFromMs(ms + (2 * i + 2) * HOUR),
    departureId: `dep_${hubs[i]}_${toHub}`,
  }));
  return route(tn, id, ms, etaMs, revision === 1 ? "route.planned" : "route.updated", {
    routeId: `r_${tn}`,
    legs,
    revision,
    plannedAt: timestampFromMs(ms),
  });
}

/** The plan a route event leaves in the document: its Route's proto JSON without the ETA. */
export function planOf(e: RouteEvent): ShipmentDoc["route"] {
  const { eta: _eta, ...plan } = toJson(RouteSchema, e.message.route ?? create(RouteSchema));
  return plan;
}

export function bySortKey(a: ProjectedEvent, b: ProjectedEvent): number {
  const [x, y] = [eventKey(a), eventKey(b)];
  return compareKeys(x.eventTime, x.eventId, y.eventTime, y.eventId);
}

export const idOf = (e: ProjectedEvent) => e.message.eventId;
