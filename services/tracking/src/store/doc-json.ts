import { fromJson, ScalarType, type DescEnum, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { TimestampSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import { getTextEncoding } from "@bufbuild/protobuf/wire";
import { GeoPointSchema, PlaceSchema, type GeoPoint, type Place } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import {
  EtaSchema,
  RouteLegSchema,
  RouteSchema,
  type Eta,
  type Route,
  type RouteLeg,
  type TransportMode,
} from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { CarrierStatusSchema, ScanSchema, type CarrierStatus } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ScanRecordedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { ShipmentSchema } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";

/**
 * The document's proto JSON values (places, carrier status, ETA, route, times) as messages,
 * without protobuf-es reflection: rendering a document is on every applied event's path, and
 * `fromJson` (a descriptor walk, an ISO-8601 regex and `Date.parse` per Timestamp) was most of
 * its cost. Each reader handles the forms the store writes (what `toJson` produces: JSON names,
 * strings, finite numbers, enum names, `Z` times) and hands anything else (a proto field name,
 * a null, an offset time, "NaN", a number as a string, a key it does not know…) to `fromJson`,
 * so the result, or the error, is always exactly `fromJson`'s. Pure.
 */

const TIMESTAMP = TimestampSchema.typeName;
const checkUtf8 = getTextEncoding().checkUtf8;

/** Mark of a value the fast path does not handle. */
const SLOW = Symbol("slow");
type Slow = typeof SLOW;

/** A string field's value as `fromJson` reads it, or SLOW. */
function str(v: unknown): string | Slow {
  return typeof v === "string" && checkUtf8(v) ? v : SLOW;
}

/** A double field's value (a finite JSON number), or SLOW. */
function dbl(v: unknown): number | Slow {
  return typeof v === "number" && Number.isFinite(v) ? v : SLOW;
}

/** The two ASCII digits of `s` at `at` as a number, or -1. */
function twoDigits(s: string, at: number): number {
  const a = s.charCodeAt(at) - 48;
  const b = s.charCodeAt(at + 1) - 48;
  return a >>> 0 > 9 || b >>> 0 > 9 ? -1 : a * 10 + b;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
/** Nanoseconds per unit of a fraction of 1 to 9 digits, by its length. */
const FRACTION_SCALE = [0, 1e8, 1e7, 1e6, 1e5, 1e4, 1e3, 100, 10, 1];

/**
 * `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` with a valid calendar date and time (years 0001–9999) as a
 * Timestamp, or SLOW for anything else (offsets, leap seconds, `24:00:00`, day 31 of a 30-day
 * month: whatever `Date.parse` might read its own way).
 */
function fastTime(v: unknown): Timestamp | Slow {
  if (typeof v !== "string") return SLOW;
  const len = v.length;
  if (len < 20 || len > 30 || v.charCodeAt(len - 1) !== 90 /* Z */) return SLOW;
  if (v.charCodeAt(4) !== 45 || v.charCodeAt(7) !== 45 || v.charCodeAt(10) !== 84 || v.charCodeAt(13) !== 58 || v.charCodeAt(16) !== 58) {
    return SLOW;
  }
  const century = twoDigits(v, 0);
  const yy = twoDigits(v, 2);
  const month = twoDigits(v, 5);
  const day = twoDigits(v, 8);
  const hour = twoDigits(v, 11);
  const minute = twoDigits(v, 14);
  const second = twoDigits(v, 17);
  if (century < 0 || yy < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) {
    return SLOW;
  }
  const year = century * 100 + yy;
  if (year < 1) return SLOW;
  if (day > (DAYS_IN_MONTH[month - 1] as number) && !(month === 2 && day === 29 && ((year % 4 === 0 && year % 100 !== 0) || year % 400 === 0))) {
    return SLOW;
  }
  let nanos = 0;
  if (len > 20) {
    // ".f{1,9}Z"
    if (v.charCodeAt(19) !== 46 /* . */ || len === 21) return SLOW;
    for (let i = 20; i < len - 1; i++) {
      const d = v.charCodeAt(i) - 48;
      if (d >>> 0 > 9) return SLOW;
      nanos = nanos * 10 + d;
    }
    nanos *= FRACTION_SCALE[len - 21] as number;
  }
  // Days from 1970-01-01 (the civil-calendar algorithm of H. Hinnant, for years from 0).
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = (((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) | 0) + day - 1;
  const days = era * 146097 + yoe * 365 + ((yoe / 4) | 0) - ((yoe / 100) | 0) + doy - 719468;
  return { $typeName: TIMESTAMP, seconds: BigInt(days * 86400 + hour * 3600 + minute * 60 + second), nanos };
}

/** A document time (the proto JSON of a Timestamp) as a Timestamp; exactly `fromJson(TimestampSchema, v)`. */
export function timeFromDoc(v: string): Timestamp {
  const t = FAST ? fastTime(v) : SLOW;
  return t === SLOW ? fromJson(TimestampSchema, v) : t;
}

/** A plain object (what a JSON message is), or undefined. */
function record(v: unknown): Record<string, unknown> | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function fastGeoPoint(v: unknown): GeoPoint | Slow {
  const o = record(v);
  if (!o) return SLOW;
  const m: GeoPoint = { $typeName: GeoPointSchema.typeName, latitude: 0, longitude: 0 };
  for (const k in o) {
    if (k !== "latitude" && k !== "longitude") return SLOW;
    const d = dbl(o[k]);
    if (d === SLOW) return SLOW;
    m[k] = d;
  }
  return m;
}

function fastPlace(v: unknown): Place | Slow {
  const o = record(v);
  if (!o) return SLOW;
  const m: Place = { $typeName: PlaceSchema.typeName, countryCode: "", postalCode: "", city: "", hubCode: "" };
  for (const k in o) {
    const x = o[k];
    switch (k) {
      case "countryCode":
      case "postalCode":
      case "city":
      case "hubCode": {
        const s = str(x);
        if (s === SLOW) return SLOW;
        m[k] = s;
        break;
      }
      case "location": {
        const p = fastGeoPoint(x);
        if (p === SLOW) return SLOW;
        m.location = p;
        break;
      }
      default:
        return SLOW;
    }
  }
  return m;
}

/** A Place of the document; exactly `fromJson(PlaceSchema, v)`. */
export function placeFromDoc(v: JsonValue | object): Place {
  const m = FAST ? fastPlace(v) : SLOW;
  return m === SLOW ? fromJson(PlaceSchema, v as JsonValue) : m;
}

function fastCarrierStatus(v: unknown): CarrierStatus | Slow {
  const o = record(v);
  if (!o) return SLOW;
  const m: CarrierStatus = { $typeName: CarrierStatusSchema.typeName, code: "", text: "" };
  for (const k in o) {
    if (k !== "code" && k !== "text") return SLOW;
    const s = str(o[k]);
    if (s === SLOW) return SLOW;
    m[k] = s;
  }
  return m;
}

/** A CarrierStatus of the document; exactly `fromJson(CarrierStatusSchema, v)`. */
export function carrierStatusFromDoc(v: JsonValue | object): CarrierStatus {
  const m = FAST ? fastCarrierStatus(v) : SLOW;
  return m === SLOW ? fromJson(CarrierStatusSchema, v as JsonValue) : m;
}

function fastEta(v: unknown): Eta | Slow {
  const o = record(v);
  if (!o) return SLOW;
  const m: Eta = { $typeName: EtaSchema.typeName, confidence: 0 };
  for (const k in o) {
    const x = o[k];
    switch (k) {
      case "estimatedArrival":
      case "earliest":
      case "latest": {
        const t = fastTime(x);
        if (t === SLOW) return SLOW;
        m[k] = t;
        break;
      }
      case "confidence": {
        const d = dbl(x);
        if (d === SLOW) return SLOW;
        m.confidence = d;
        break;
      }
      default:
        return SLOW;
    }
  }
  return m;
}

/** An Eta of the document; exactly `fromJson(EtaSchema, v)`. */
export function etaFromDoc(v: JsonValue | object): Eta {
  const m = FAST ? fastEta(v) : SLOW;
  return m === SLOW ? fromJson(EtaSchema, v as JsonValue) : m;
}

const INT32_MIN = -0x80000000;
const INT32_MAX = 0x7fffffff;

/** Enum numbers by proto JSON name and proto name, as `fromJson` reads them. */
function enumNumbers(e: DescEnum): Map<string, number> {
  const numbers = new Map<string, number>();
  for (const value of e.values) numbers.set(value.jsonName, value.number);
  for (const value of e.values) numbers.set(value.name, value.number);
  return numbers;
}

const MODE_FIELD = RouteLegSchema.field.mode;
const MODES = MODE_FIELD?.fieldKind === "enum" ? enumNumbers(MODE_FIELD.enum) : new Map<string, number>();

/** An (open) enum field's value: a known name or an int32, or SLOW. */
function transportMode(v: unknown): TransportMode | Slow {
  if (typeof v === "string") return (MODES.get(v) as TransportMode | undefined) ?? SLOW;
  return typeof v === "number" && Number.isInteger(v) && v >= INT32_MIN && v <= INT32_MAX ? (v as TransportMode) : SLOW;
}

/** Actual times of one leg, as ISO strings (see shipment-view.ts `legActualsFromScans`). */
export interface LegActuals {
  departure?: string;
  arrival?: string;
}

/** A leg of the document's plan with the actual times of the scans put in (see {@link routeFromDoc}). */
function fastLeg(v: unknown, actual: LegActuals | undefined): RouteLeg | Slow {
  const o = record(v);
  if (!o) return SLOW;
  const m: RouteLeg = { $typeName: RouteLegSchema.typeName, fromHub: "", toHub: "", mode: 0, departureId: "" };
  for (const k in o) {
    const x = o[k];
    switch (k) {
      case "fromHub":
      case "toHub":
      case "departureId": {
        const s = str(x);
        if (s === SLOW) return SLOW;
        m[k] = s;
        break;
      }
      case "mode": {
        const e = transportMode(x);
        if (e === SLOW) return SLOW;
        m.mode = e;
        break;
      }
      case "plannedDeparture":
      case "plannedArrival":
      case "actualDeparture":
      case "actualArrival": {
        const t = fastTime(x);
        if (t === SLOW) return SLOW;
        m[k] = t;
        break;
      }
      default:
        return SLOW;
    }
  }
  if (actual?.departure) {
    const t = fastTime(actual.departure);
    if (t === SLOW) return SLOW;
    m.actualDeparture = t;
  }
  if (actual?.arrival) {
    const t = fastTime(actual.arrival);
    if (t === SLOW) return SLOW;
    m.actualArrival = t;
  }
  return m;
}

function fastRoute(
  plan: Record<string, unknown>,
  trackingNumber: string,
  eta: object | undefined,
  legs: readonly unknown[],
  actuals: readonly LegActuals[],
): Route | Slow {
  const tn = str(trackingNumber);
  if (tn === SLOW || !Array.isArray(legs)) return SLOW;
  const m: Route = { $typeName: RouteSchema.typeName, routeId: "", trackingNumber: tn, legs: [], revision: 0 };
  let planEta: unknown;
  let hasPlanEta = false;
  for (const k in plan) {
    const x = plan[k];
    switch (k) {
      case "routeId": {
        const s = str(x);
        if (s === SLOW) return SLOW;
        m.routeId = s;
        break;
      }
      case "revision":
        if (!(typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= 0xffffffff)) return SLOW;
        m.revision = x;
        break;
      case "plannedAt": {
        const t = fastTime(x);
        if (t === SLOW) return SLOW;
        m.plannedAt = t;
        break;
      }
      case "eta":
        planEta = x;
        hasPlanEta = true;
        break;
      case "trackingNumber":
      case "legs":
        // Replaced by the document's tracking number and the legs given (the slow path's spread).
        break;
      default:
        return SLOW;
    }
  }
  if (eta || hasPlanEta) {
    const read = fastEta(eta ? eta : planEta);
    if (read === SLOW) return SLOW;
    m.eta = read;
  }
  for (let i = 0; i < legs.length; i++) {
    const leg = fastLeg(legs[i], actuals[i]);
    if (leg === SLOW) return SLOW;
    m.legs.push(leg);
  }
  return m;
}

/**
 * The Route of a document's plan: `plan` with the document's tracking number, its ETA (`eta`, else
 * the plan's own) and its legs, each with the actual times of the scans (`actuals[i]`, where set)
 * over what routing recorded. Exactly what `fromJson(RouteSchema, …)` makes of that JSON.
 */
export function routeFromDoc(
  plan: object,
  trackingNumber: string,
  eta: object | undefined,
  legs: readonly object[],
  actuals: readonly LegActuals[],
): Route {
  const m = FAST ? fastRoute(plan as Record<string, unknown>, trackingNumber, eta, legs, actuals) : SLOW;
  if (m !== SLOW) return m;
  return fromJson(RouteSchema, {
    ...plan,
    trackingNumber,
    ...(eta ? { eta } : {}),
    legs: legs.map((leg, i) => {
      const { departure, arrival } = actuals[i] ?? {};
      return { ...leg, ...(departure ? { actualDeparture: departure } : {}), ...(arrival ? { actualArrival: arrival } : {}) };
    }),
  } as JsonValue);
}

/**
 * A message's fields as code that reads or writes them by hand assumes them: number, name (the
 * JSON name, which must be the property name too) and type (scalar type, enum or message type
 * name, `[…]` for a list), in declaration order.
 */
function fieldSignature(schema: DescMessage): string {
  return schema.fields
    .map((f) => {
      const value = f.scalar !== undefined ? ScalarType[f.scalar] : (f.enum ?? f.message)?.typeName;
      const type = f.fieldKind === "map" ? `map<${ScalarType[f.mapKey]},${value}>` : value;
      const name = f.jsonName === f.localName && !f.oneof ? f.localName : `?${f.localName}`;
      return `${f.number}:${name}:${f.fieldKind === "list" ? `[${type}]` : type}`;
    })
    .join(" ");
}

/**
 * The contracts' messages as this package's hand-written readers and writers know them
 * (`fieldSignature`): the document readers here, the Shipment literal of shipment-view.ts, the
 * Shipment encoder of shipment-binary.ts and the ScanRecorded writer of event-json.ts. Should a contract change (a field added, renamed,
 * renumbered or retyped), {@link fieldsAsKnown} is false for it and that code falls back to
 * protobuf-es (and a unit test fails, to have the code updated).
 */
export const KNOWN_FIELDS: ReadonlyMap<DescMessage, string> = new Map<DescMessage, string>([
  [TimestampSchema, "1:seconds:INT64 2:nanos:INT32"],
  [GeoPointSchema, "1:latitude:DOUBLE 2:longitude:DOUBLE"],
  [PlaceSchema, "1:countryCode:STRING 2:postalCode:STRING 3:city:STRING 4:location:logistics.common.v1.GeoPoint 5:hubCode:STRING"],
  [CarrierStatusSchema, "1:code:STRING 2:text:STRING"],
  [
    EtaSchema,
    "1:estimatedArrival:google.protobuf.Timestamp 2:earliest:google.protobuf.Timestamp 3:latest:google.protobuf.Timestamp 4:confidence:DOUBLE",
  ],
  [
    RouteLegSchema,
    "1:fromHub:STRING 2:toHub:STRING 3:mode:logistics.common.v1.TransportMode 4:plannedDeparture:google.protobuf.Timestamp " +
      "5:plannedArrival:google.protobuf.Timestamp 6:departureId:STRING 7:actualDeparture:google.protobuf.Timestamp 8:actualArrival:google.protobuf.Timestamp",
  ],
  [
    RouteSchema,
    "1:routeId:STRING 2:trackingNumber:STRING 3:legs:[logistics.common.v1.RouteLeg] 4:eta:logistics.common.v1.Eta 5:revision:UINT32 " +
      "6:plannedAt:google.protobuf.Timestamp",
  ],
  [
    ScanSchema,
    "1:eventId:STRING 2:trackingNumber:STRING 3:carrierCode:STRING 4:rawStatus:logistics.common.v1.CarrierStatus 5:eventTime:google.protobuf.Timestamp " +
      "6:hubCode:STRING 7:location:logistics.common.v1.GeoPoint 8:note:STRING 9:attributes:map<STRING,STRING>",
  ],
  [
    ScanRecordedSchema,
    "1:eventId:STRING 2:scan:logistics.common.v1.Scan 3:status:logistics.common.v1.ShipmentStatus 4:kind:logistics.common.v1.ScanKind " +
      "5:recordedAt:google.protobuf.Timestamp 6:region:STRING",
  ],
  [
    ShipmentSchema,
    "1:trackingNumber:STRING 2:shipmentId:STRING 3:carrierCode:STRING 4:customerId:STRING 5:customerReference:STRING " +
      "6:serviceLevel:logistics.common.v1.ServiceLevel 7:origin:logistics.common.v1.Place 8:destination:logistics.common.v1.Place " +
      "9:status:logistics.common.v1.ShipmentStatus 10:lastCarrierStatus:logistics.common.v1.CarrierStatus 11:statusTime:google.protobuf.Timestamp " +
      "12:currentHubCode:STRING 13:currentLocation:logistics.common.v1.GeoPoint 14:eta:logistics.common.v1.Eta 15:route:logistics.common.v1.Route " +
      "16:createdAt:google.protobuf.Timestamp 17:updatedAt:google.protobuf.Timestamp 18:deliveredAt:google.protobuf.Timestamp 19:version:UINT64 " +
      "20:eventCount:UINT32 21:etaChangeReason:logistics.common.v1.EtaChangeReason 22:partnerCarrierCodes:[STRING] 23:trimmedEventCount:UINT32",
  ],
]);

/** Whether every schema is a proto3 message (implicit presence, no prototype) with the fields {@link KNOWN_FIELDS} records. */
export function fieldsAsKnown(...schemas: DescMessage[]): boolean {
  return schemas.every((schema) => schema.file.edition === 999 /* EDITION_PROTO3 */ && fieldSignature(schema) === KNOWN_FIELDS.get(schema));
}

/** Whether the contracts are still those the readers above were written for. */
const FAST = fieldsAsKnown(TimestampSchema, GeoPointSchema, PlaceSchema, CarrierStatusSchema, EtaSchema, RouteLegSchema, RouteSchema);

const orUndefined = <T>(v: T | Slow): T | undefined => (v === SLOW ? undefined : v);

/** The readers' own paths alone, undefined where they defer to `fromJson`: for tests to see them taken. */
export const FAST_PATHS = {
  time: (v: unknown) => orUndefined(fastTime(v)),
  place: (v: unknown) => orUndefined(fastPlace(v)),
  carrierStatus: (v: unknown) => orUndefined(fastCarrierStatus(v)),
  eta: (v: unknown) => orUndefined(fastEta(v)),
  route: (plan: object, trackingNumber: string, eta: object | undefined, legs: readonly object[], actuals: readonly LegActuals[]) =>
    orUndefined(fastRoute(plan as Record<string, unknown>, trackingNumber, eta, legs, actuals)),
};
