import type { DescEnum } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Eta } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { EtaChangeReasonSchema } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ShipmentStatus, ShipmentStatusSchema } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import type { EtaChanged, StatusChanged } from "@logistics/shared/gen/logistics/events/v1/tracking_events_pb.js";
import { NotificationEventType } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";

/**
 * The JSON bodies POSTed to webhooks (documented in the README). Pure: events in, strings out.
 *
 * Envelope, version `2026-11-01`:
 * `{"version","id","type","created_at","data":{...}}` where `id` is the mesh-wide event id
 * (receivers deduplicate by it) and `type` is `shipment.status_changed`, `shipment.exception` or
 * `shipment.eta_changed`. Enum values are lowercase names without their prefix (`in_transit`),
 * timestamps RFC 3339 UTC strings, `shipment_version` a number that grows with every change of
 * the shipment (receivers can drop anything older than what they have).
 */
export const WEBHOOK_BODY_VERSION = "2026-11-01";

/** The `type` of a webhook body, by notification event type. */
export const WEBHOOK_TYPES: Readonly<Record<number, string>> = Object.freeze({
  [NotificationEventType.STATUS_CHANGED]: "shipment.status_changed",
  [NotificationEventType.EXCEPTION]: "shipment.exception",
  [NotificationEventType.ETA_CHANGED]: "shipment.eta_changed",
});

/** Statuses that make a status change an EXCEPTION notification too. */
export function isExceptionStatus(status: ShipmentStatus): boolean {
  return status === ShipmentStatus.EXCEPTION || status === ShipmentStatus.FAILED_ATTEMPT;
}

/** What the delivery pipeline needs from one event, whatever its kind. */
export interface WebhookEvent {
  readonly eventId: string;
  readonly trackingNumber: string;
  readonly customerId: string;
  readonly carrierCode: string;
  /** Shipment version after the change: orders deliveries per shipment. */
  readonly version: bigint;
  /** Event time of the change (status_time / changed_at), for ordering ties. */
  readonly eventTime: Date;
  /**
   * The notification types this event can be delivered as, in preference order, with their bodies:
   * `body` for subscriptions of the shipment's customer, internal services and operators,
   * `carrierBody` (without the shipper's `customer_id` and the internal `shipment_id`) for
   * subscriptions owned by a carrier.
   */
  readonly bodies: ReadonlyArray<{ readonly type: NotificationEventType; readonly body: string; readonly carrierBody: string }>;
}

/** The `data` fields a carrier's subscription never receives: the shipper's account and internal ids. */
const NOT_FOR_CARRIERS = ["customer_id", "shipment_id"] as const;

function forCarrier(data: Record<string, unknown>): Record<string, unknown> {
  const copy = { ...data };
  for (const k of NOT_FOR_CARRIERS) delete copy[k];
  return copy;
}

/** The webhook event(s) of a StatusChanged: status_changed always, exception when the new status is exceptional. */
export function statusChangedEvent(e: StatusChanged): WebhookEvent {
  const data = {
    tracking_number: e.trackingNumber,
    shipment_id: e.shipmentId,
    customer_id: e.customerId,
    carrier_code: e.carrierCode,
    shipment_version: Number(e.version),
    previous_status: enumName(ShipmentStatusSchema, e.previousStatus, "SHIPMENT_STATUS_"),
    status: enumName(ShipmentStatusSchema, e.status, "SHIPMENT_STATUS_"),
    status_time: iso(e.statusTime),
    carrier_status: e.carrierStatus ? { code: e.carrierStatus.code, text: e.carrierStatus.text } : null,
    hub_code: e.hubCode || null,
    location: e.location ? { latitude: e.location.latitude, longitude: e.location.longitude } : null,
  };
  const created = iso(e.recordedAt);
  const types = [NotificationEventType.STATUS_CHANGED];
  if (isExceptionStatus(e.status)) types.push(NotificationEventType.EXCEPTION);
  return {
    eventId: e.eventId,
    trackingNumber: e.trackingNumber,
    customerId: e.customerId,
    carrierCode: e.carrierCode,
    version: e.version,
    eventTime: e.statusTime ? timestampDate(e.statusTime) : new Date(0),
    bodies: types.map((type) => ({
      type,
      body: envelope(e.eventId, type, created, data),
      carrierBody: envelope(e.eventId, type, created, forCarrier(data)),
    })),
  };
}

/** The webhook event of an EtaChanged. */
export function etaChangedEvent(e: EtaChanged): WebhookEvent {
  const data = {
    tracking_number: e.trackingNumber,
    shipment_id: e.shipmentId,
    customer_id: e.customerId,
    carrier_code: e.carrierCode,
    shipment_version: Number(e.version),
    previous_eta: eta(e.previousEta),
    eta: eta(e.eta),
    reason: enumName(EtaChangeReasonSchema, e.reason, "ETA_CHANGE_REASON_"),
  };
  const type = NotificationEventType.ETA_CHANGED;
  return {
    eventId: e.eventId,
    trackingNumber: e.trackingNumber,
    customerId: e.customerId,
    carrierCode: e.carrierCode,
    version: e.version,
    eventTime: e.changedAt ? timestampDate(e.changedAt) : new Date(0),
    bodies: [
      { type, body: envelope(e.eventId, type, iso(e.changedAt), data), carrierBody: envelope(e.eventId, type, iso(e.changedAt), forCarrier(data)) },
    ],
  };
}

function envelope(id: string, type: NotificationEventType, createdAt: string | null, data: object): string {
  return JSON.stringify({ version: WEBHOOK_BODY_VERSION, id, type: WEBHOOK_TYPES[type], created_at: createdAt, data });
}

function eta(v: Eta | undefined) {
  if (!v) return null;
  return {
    estimated_arrival: iso(v.estimatedArrival),
    earliest: iso(v.earliest),
    latest: iso(v.latest),
    confidence: v.confidence,
  };
}

function iso(ts: Timestamp | undefined): string | null {
  return ts ? timestampDate(ts).toISOString() : null;
}

function enumName(schema: DescEnum, value: number, prefix: string): string {
  const name = schema.value[value]?.name ?? `${prefix}UNKNOWN_${value}`;
  return name.slice(prefix.length).toLowerCase();
}
