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

/** The events that become webhooks, exactly as tracking publishes them. */
export type NotificationEvent = StatusChanged | EtaChanged;

/** One way an event can be delivered: its notification type and the JSON bodies for it. */
export interface WebhookBody {
  readonly type: NotificationEventType;
  /** For subscriptions of the shipment's customer, internal services and operators. */
  readonly body: string;
  /** For subscriptions owned by a carrier: without the shipper's `customer_id` and the internal `shipment_id`. */
  readonly carrierBody: string;
}

/** Event time of the change (status_time / changed_at): orders deliveries of one shipment version. */
export function eventTimeOf(e: NotificationEvent): Timestamp | undefined {
  return e.$typeName === "logistics.events.v1.StatusChanged" ? e.statusTime : e.changedAt;
}

/**
 * The notification types `e` can be delivered as, in preference order, with their bodies: a
 * StatusChanged is `status_changed`, and `exception` too when the new status is exceptional; an
 * EtaChanged is `eta_changed`.
 */
export function webhookBodies(e: NotificationEvent): WebhookBody[] {
  const shipment = {
    tracking_number: e.trackingNumber,
    shipment_id: e.shipmentId,
    customer_id: e.customerId,
    carrier_code: e.carrierCode,
    shipment_version: Number(e.version),
  };
  let data: Record<string, unknown>;
  let createdAt: string | null;
  const types: NotificationEventType[] = [];
  if (e.$typeName === "logistics.events.v1.StatusChanged") {
    data = {
      ...shipment,
      previous_status: enumName(ShipmentStatusSchema, e.previousStatus, "SHIPMENT_STATUS_"),
      status: enumName(ShipmentStatusSchema, e.status, "SHIPMENT_STATUS_"),
      status_time: iso(e.statusTime),
      carrier_status: e.carrierStatus ? { code: e.carrierStatus.code, text: e.carrierStatus.text } : null,
      hub_code: e.hubCode || null,
      location: e.location ? { latitude: e.location.latitude, longitude: e.location.longitude } : null,
    };
    createdAt = iso(e.recordedAt);
    types.push(NotificationEventType.STATUS_CHANGED);
    if (isExceptionStatus(e.status)) types.push(NotificationEventType.EXCEPTION);
  } else {
    data = {
      ...shipment,
      previous_eta: eta(e.previousEta),
      eta: eta(e.eta),
      reason: enumName(EtaChangeReasonSchema, e.reason, "ETA_CHANGE_REASON_"),
    };
    createdAt = iso(e.changedAt);
    types.push(NotificationEventType.ETA_CHANGED);
  }
  const carrierData = forCarrier(data);
  return types.map((type) => ({
    type,
    body: envelope(e.eventId, type, createdAt, data),
    carrierBody: envelope(e.eventId, type, createdAt, carrierData),
  }));
}

/** The `data` fields a carrier's subscription never receives: the shipper's account and internal ids. */
const NOT_FOR_CARRIERS = ["customer_id", "shipment_id"] as const;

function forCarrier(data: Record<string, unknown>): Record<string, unknown> {
  const copy = { ...data };
  for (const k of NOT_FOR_CARRIERS) delete copy[k];
  return copy;
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
