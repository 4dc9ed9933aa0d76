import { clone, fromJson, toJson, type DescMessage, type JsonValue, type Message } from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { timestampFromDate, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  ScanRecordedSchema,
  ShipmentCreatedSchema,
  ShipmentHandedOverSchema,
  ShipmentPartnerRemovedSchema,
} from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema, RouteUpdatedSchema } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { scanRecordedJson } from "./event-json.js";
import { assertJsonSize, MAX_DOCUMENT_BYTES } from "./size.js";
import { InvalidEventError } from "./errors.js";
import type { ProjectedEvent, StoredEvent } from "./ports.js";

/**
 * The store's view of a {@link ProjectedEvent}: its key (id, shipment, event time), its stored
 * form (proto JSON, `toJson`) and back, and the few checks the store itself needs — what the
 * database could not hold or order. Everything else about an event's content is the contracts'
 * (protovalidate at the edge), not restated here.
 */

/** What the store orders and deduplicates an event by. */
export interface EventKey {
  readonly eventId: string;
  readonly trackingNumber: string;
  /** ISO-8601 UTC (`toISOString()`), so keys compare as strings; "" when the message has no time. */
  readonly eventTime: string;
}

/** The event types the store applies (their catalog names). */
export const EVENT_TYPES: ReadonlyArray<ProjectedEvent["type"]> = [
  "scan.recorded",
  "shipment.created",
  "shipment.handed_over",
  "shipment.partner_removed",
  "route.planned",
  "route.updated",
];

/** Latest time a timestamptz partition key may take here (PostgreSQL goes further; JavaScript dates do not). */
const MAX_TIME_MS = Date.UTC(9999, 11, 31);

const keys = new WeakMap<object, EventKey>();

/** Where each event type keeps its time (see {@link eventTimestamp}), for error messages. */
const TIME_FIELD: Readonly<Record<ProjectedEvent["type"], string>> = {
  "scan.recorded": "scan.event_time",
  "shipment.created": "created_at",
  "shipment.handed_over": "handed_over_at",
  "shipment.partner_removed": "removed_at",
  "route.planned": "planned_at",
  "route.updated": "updated_at",
};

/**
 * The event's own time: the scan's event time for a scan, `created_at` (else `ready_time`) for a
 * creation, `handed_over_at` for a handover, `removed_at` for a partner removal, `planned_at` /
 * `updated_at` (else the route's `planned_at`) for a route event.
 */
export function eventTimestamp(e: ProjectedEvent): Timestamp | undefined {
  switch (e.type) {
    case "scan.recorded":
      return e.message.scan?.eventTime;
    case "shipment.created":
      return e.message.createdAt ?? e.message.readyTime;
    case "shipment.handed_over":
      return e.message.handedOverAt;
    case "shipment.partner_removed":
      return e.message.removedAt;
    case "route.planned":
      return e.message.plannedAt ?? e.message.route?.plannedAt;
    case "route.updated":
      return e.message.updatedAt ?? e.message.route?.plannedAt;
  }
}

/** The event's key, computed once per message (memoized on it). */
export function eventKey(e: ProjectedEvent): EventKey {
  let key = keys.get(e.message);
  if (key) return key;
  const time = eventTimestamp(e);
  const ms = time ? timestampMs(time) : NaN;
  const eventTime = Number.isFinite(ms) && ms >= 0 && ms <= MAX_TIME_MS ? new Date(ms).toISOString() : "";
  const trackingNumber = e.type === "scan.recorded" ? (e.message.scan?.trackingNumber ?? "") : e.message.trackingNumber;
  key = { eventId: e.message.eventId, trackingNumber, eventTime };
  keys.set(e.message, key);
  return key;
}

/** The schema of each event type's message. */
const SCHEMAS: Readonly<Record<ProjectedEvent["type"], DescMessage>> = {
  "scan.recorded": ScanRecordedSchema,
  "shipment.created": ShipmentCreatedSchema,
  "shipment.handed_over": ShipmentHandedOverSchema,
  "shipment.partner_removed": ShipmentPartnerRemovedSchema,
  "route.planned": RoutePlannedSchema,
  "route.updated": RouteUpdatedSchema,
};

/**
 * The event's stored form: the proto JSON of its message. A Timestamp that proto JSON cannot
 * write (seconds outside years 1–9999, nanos outside [0, 1e9)) makes `toJson` throw; the event
 * still reaches the store with that field cleared, since the times the store orders and
 * checks by (the event time, a route's ETA) are refused by {@link checkEvent} before this runs,
 * and a consumer must not retry forever on a time no reader of the history needs.
 */
export function eventJson(e: ProjectedEvent): JsonValue {
  return storedForm(e).value;
}

/** The event as the history keeps it (`e`, or the copy with the times cleared) and its proto JSON. */
function storedForm(e: ProjectedEvent): { event: ProjectedEvent; value: JsonValue } {
  const schema = SCHEMAS[e.type];
  try {
    return { event: e, value: e.type === "scan.recorded" ? scanRecordedJson(e.message) : toJson(schema, e.message) };
  } catch (err) {
    const copy = clone(schema, e.message as Message);
    if (!clearUnencodableTimes(reflect(schema, copy))) throw err;
    return { event: { type: e.type, message: copy } as ProjectedEvent, value: toJson(schema, copy) };
  }
}

/** Seconds of 0001-01-01T00:00:00Z and of 9999-12-31T23:59:59Z: what proto JSON can write. */
const JSON_MIN_SECONDS = -62135596800n;
const JSON_MAX_SECONDS = 253402300799n;

/** Clears every set Timestamp field proto JSON cannot write, in `m` and its nested messages; whether it cleared one. */
function clearUnencodableTimes(m: ReflectMessage): boolean {
  let cleared = false;
  for (const f of m.fields) {
    if (!m.isSet(f)) continue;
    if (f.fieldKind === "message") {
      const v = m.get(f);
      if (f.message.typeName === "google.protobuf.Timestamp") {
        const t = v.message as unknown as Timestamp;
        if (t.seconds < JSON_MIN_SECONDS || t.seconds > JSON_MAX_SECONDS || t.nanos < 0 || t.nanos > 999_999_999) {
          m.clear(f);
          cleared = true;
        }
      } else if (clearUnencodableTimes(v)) {
        cleared = true;
      }
    } else if (f.fieldKind === "list" && f.listKind === "message") {
      for (const item of m.get(f)) if (clearUnencodableTimes(item as ReflectMessage)) cleared = true;
    }
  }
  return cleared;
}

/** An event back from its stored form (fields a newer writer added are ignored). */
export function eventFromJson(type: string, json: JsonValue): ProjectedEvent {
  switch (type) {
    case "scan.recorded":
      return { type, message: fromJson(ScanRecordedSchema, json, { ignoreUnknownFields: true }) };
    case "shipment.created":
      return { type, message: fromJson(ShipmentCreatedSchema, json, { ignoreUnknownFields: true }) };
    case "shipment.handed_over":
      return { type, message: fromJson(ShipmentHandedOverSchema, json, { ignoreUnknownFields: true }) };
    case "shipment.partner_removed":
      return { type, message: fromJson(ShipmentPartnerRemovedSchema, json, { ignoreUnknownFields: true }) };
    case "route.planned":
      return { type, message: fromJson(RoutePlannedSchema, json, { ignoreUnknownFields: true }) };
    case "route.updated":
      return { type, message: fromJson(RouteUpdatedSchema, json, { ignoreUnknownFields: true }) };
    default:
      throw new Error(`stored event of unknown type ${JSON.stringify(type)}`);
  }
}

/** A history entry from its stored parts: a history row's, or those a live notice carries. */
export function storedEvent(type: string, payload: JsonValue, late: boolean, appliedAt: Date): StoredEvent {
  const event = eventFromJson(type, payload);
  const { eventId, trackingNumber, eventTime } = eventKey(event);
  return { event, eventId, trackingNumber, eventTime, late, appliedAt: timestampFromDate(appliedAt) };
}

/**
 * NUL (U+0000) and unpaired UTF-16 surrogates: PostgreSQL text and jsonb cannot hold them (jsonb
 * rejects `\u0000` with "unsupported Unicode escape sequence"). In `JSON.stringify` output both
 * appear only as escapes (a well-formed pair is written as is), after an even run of backslashes.
 */
const UNSTORABLE_ESCAPE = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/i;
const UNSTORABLE = /[\u0000\p{Cs}]/u;

/** The path of the first string (or map key) in `v` the database cannot hold. */
function unstorablePath(v: unknown, path: string): string | undefined {
  if (typeof v === "string") return UNSTORABLE.test(v) ? path : undefined;
  if (typeof v !== "object" || v === null) return undefined;
  for (const [k, x] of Object.entries(v)) {
    const p = Array.isArray(v) ? `${path}[${k}]` : `${path}.${k}`;
    if (UNSTORABLE.test(k)) return p;
    const found = unstorablePath(x, p);
    if (found) return found;
  }
  return undefined;
}

/**
 * What the store itself must refuse before writing, and the event's stored JSON (serialized once,
 * for the size limit and the write): an event without id, tracking number or a usable event time
 * (the dedupe key, the document key and the partition key); a scan without its scan; a route
 * event without an ETA; a handover or partner removal without its partner carrier (what the
 * document records); a scan position that is not finite or not on the globe (the geo index would
 * fail on it); text the database cannot hold; an event over `maxBytes`. Throws
 * {@link InvalidEventError} naming the field, or DocumentTooLargeError.
 */
export function checkEvent(e: ProjectedEvent, maxBytes = MAX_DOCUMENT_BYTES): string {
  return checkStoredEvent(e, maxBytes).json;
}

/**
 * {@link checkEvent}, also returning the event as the history keeps it: `e` itself, or its copy
 * with the times proto JSON cannot write cleared ({@link eventJson}), which is what reading the
 * history back gives (so a caller can pass the stored event on without parsing `json`), and
 * `value`, the proto JSON that `json` is the text of (`toJson` of `stored`'s message; not to be
 * changed).
 */
export function checkStoredEvent(e: ProjectedEvent, maxBytes = MAX_DOCUMENT_BYTES): { json: string; stored: ProjectedEvent; value: JsonValue } {
  const key = eventKey(e);
  if (!key.eventId) throw new InvalidEventError("event_id", "is required");
  if (!key.trackingNumber) throw new InvalidEventError("tracking_number", "is required");
  if (!key.eventTime) throw new InvalidEventError(TIME_FIELD[e.type], "is missing or not a valid time");
  switch (e.type) {
    case "scan.recorded": {
      const at = e.message.scan?.location;
      if (at && !(Math.abs(at.latitude) <= 90 && Math.abs(at.longitude) <= 180)) {
        throw new InvalidEventError("scan.location", "must be a point with latitude in [-90, 90] and longitude in [-180, 180]");
      }
      break;
    }
    case "route.planned":
    case "route.updated": {
      const eta = e.message.route?.eta?.estimatedArrival;
      if (!eta) throw new InvalidEventError("route.eta.estimated_arrival", "is required");
      const ms = timestampMs(eta);
      if (!(Number.isFinite(ms) && ms >= 0 && ms <= MAX_TIME_MS)) {
        throw new InvalidEventError("route.eta.estimated_arrival", "must be a time from 1970 to 9999");
      }
      break;
    }
    case "shipment.handed_over":
    case "shipment.partner_removed":
      if (!e.message.partnerCarrierCode) throw new InvalidEventError("partner_carrier_code", "is required");
      break;
    case "shipment.created":
      break;
  }
  const { event: stored, value } = storedForm(e);
  const json = JSON.stringify(value);
  if (UNSTORABLE_ESCAPE.test(json)) {
    throw new InvalidEventError(unstorablePath(value, "event") ?? "event", "must not contain NUL characters or unpaired surrogates");
  }
  assertJsonSize("event", json, maxBytes);
  return { json, stored, value };
}
