import { toJson, type DescEnum, type JsonObject } from "@bufbuild/protobuf";
import { TimestampSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import { GeoPointSchema } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import { CarrierStatusSchema, ScanSchema, type CarrierStatus, type Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ScanRecordedSchema, type ScanRecorded } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { fieldsAsKnown } from "./doc-json.js";

/**
 * The proto JSON of a ScanRecorded (the store's stored form of nine events in ten), written by
 * hand: `toJson` walks compiled field writers and formats each Timestamp through a Date and
 * `toISOString`, several microseconds per scan. The result is exactly `toJson(ScanRecordedSchema,
 * m)` (same keys in the same order, so the same text); whatever it was not written for (a value
 * of the wrong type, a time proto JSON cannot write, a non-finite coordinate, a `__proto__`
 * attribute, a changed contract) goes to `toJson`, so the result, or the error, is always its.
 */

/** Thrown (never out of this module) for a value the hand-written path does not write. */
const SLOW: unique symbol = Symbol("slow");

function slow(): never {
  throw SLOW;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : slow();
}

/** Seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the times proto JSON writes. */
const MIN_SECONDS = -62135596800;
const MAX_SECONDS = 253402300799;

/** "00" to "99". */
const TWO_DIGITS = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, "0"));

/**
 * A Timestamp as proto JSON writes it: UTC, `Z`, the fraction in 0, 3, 6 or 9 digits (the
 * fewest that hold the nanoseconds).
 */
function timeJson(t: Timestamp): string {
  if (t.$typeName !== TimestampSchema.typeName || typeof t.seconds !== "bigint") slow();
  const seconds = Number(t.seconds);
  const nanos = t.nanos;
  if (!(seconds >= MIN_SECONDS && seconds <= MAX_SECONDS) || !Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) slow();
  const days = Math.floor(seconds / 86400);
  const ofDay = seconds - days * 86400;
  // The civil date of a day count from 1970-01-01 (H. Hinnant's algorithm).
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const hour = Math.floor(ofDay / 3600);
  const minute = Math.floor((ofDay % 3600) / 60);
  const second = ofDay % 60;
  let fraction = "";
  if (nanos > 0) {
    const digits = String(nanos + 1_000_000_000).slice(1);
    fraction = digits.endsWith("000000") ? `.${digits.slice(0, 3)}` : digits.endsWith("000") ? `.${digits.slice(0, 6)}` : `.${digits}`;
  }
  return (
    `${TWO_DIGITS[Math.floor(year / 100)]}${TWO_DIGITS[year % 100]}-${TWO_DIGITS[month]}-${TWO_DIGITS[day]}` +
    `T${TWO_DIGITS[hour]}:${TWO_DIGITS[minute]}:${TWO_DIGITS[second]}${fraction}Z`
  );
}

/** An enum value's JSON: its name, or the number for a value the enum does not declare. */
function enumJson(e: DescEnum, v: unknown): string | number {
  if (typeof v !== "number") slow();
  return e.value[v]?.jsonName ?? v;
}

/** A double's JSON: finite numbers only here ("NaN" and the infinities are toJson's). */
function double(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) ? v : slow();
}

/** Checks a set message field of type `typeName`; false when it is unset. */
function isSet(m: unknown, typeName: string): boolean {
  if (m === undefined) return false;
  if (typeof m !== "object" || m === null || (m as { $typeName?: unknown }).$typeName !== typeName) slow();
  return true;
}

function carrierStatusJson(c: CarrierStatus): JsonObject {
  const json: JsonObject = {};
  if (str(c.code) !== "") json.code = c.code;
  if (str(c.text) !== "") json.text = c.text;
  return json;
}

function scanJson(s: Scan): JsonObject {
  const json: JsonObject = {};
  if (str(s.eventId) !== "") json.eventId = s.eventId;
  if (str(s.trackingNumber) !== "") json.trackingNumber = s.trackingNumber;
  if (str(s.carrierCode) !== "") json.carrierCode = s.carrierCode;
  if (isSet(s.rawStatus, CarrierStatusSchema.typeName)) json.rawStatus = carrierStatusJson(s.rawStatus as CarrierStatus);
  if (isSet(s.eventTime, TimestampSchema.typeName)) json.eventTime = timeJson(s.eventTime as Timestamp);
  if (str(s.hubCode) !== "") json.hubCode = s.hubCode;
  const at = s.location;
  if (isSet(at, GeoPointSchema.typeName) && at) {
    const point: JsonObject = {};
    if (!Object.is(double(at.latitude), 0)) point.latitude = at.latitude;
    if (!Object.is(double(at.longitude), 0)) point.longitude = at.longitude;
    json.location = point;
  }
  if (str(s.note) !== "") json.note = s.note;
  const attributes = s.attributes;
  if (typeof attributes !== "object" || attributes === null) slow();
  const keys = Object.keys(attributes);
  if (keys.length > 0) {
    const map: JsonObject = {};
    for (const k of keys) {
      if (k === "__proto__") slow();
      map[k] = str(attributes[k]);
    }
    json.attributes = map;
  }
  return json;
}

const STATUS = ScanRecordedSchema.field.status?.enum;
const KIND = ScanRecordedSchema.field.kind?.enum;

function scanRecordedJsonByHand(m: ScanRecorded): JsonObject {
  if (!isSet(m, ScanRecordedSchema.typeName) || !STATUS || !KIND) slow();
  const json: JsonObject = {};
  if (str(m.eventId) !== "") json.eventId = m.eventId;
  if (isSet(m.scan, ScanSchema.typeName)) json.scan = scanJson(m.scan as Scan);
  if (m.status !== 0) json.status = enumJson(STATUS, m.status);
  if (m.kind !== 0) json.kind = enumJson(KIND, m.kind);
  if (isSet(m.recordedAt, TimestampSchema.typeName)) json.recordedAt = timeJson(m.recordedAt as Timestamp);
  if (str(m.region) !== "") json.region = m.region;
  return json;
}

/** Whether the contracts are still those this writer was written for. */
const HAND_WRITTEN = fieldsAsKnown(ScanRecordedSchema, ScanSchema, CarrierStatusSchema, GeoPointSchema, TimestampSchema);

/** The hand-written JSON of `m`, or undefined when it is `toJson`'s to write. */
function handWritten(m: ScanRecorded): JsonObject | undefined {
  if (!HAND_WRITTEN) return undefined;
  try {
    return scanRecordedJsonByHand(m);
  } catch (err) {
    if (err === SLOW) return undefined;
    throw err;
  }
}

/** `toJson(ScanRecordedSchema, m)`. */
export function scanRecordedJson(m: ScanRecorded): JsonObject {
  return handWritten(m) ?? (toJson(ScanRecordedSchema, m) as JsonObject);
}

/** {@link scanRecordedJson} without the `toJson` fallback (undefined where it would be taken): for tests to see it is not. */
export const HAND_WRITTEN_PATH = handWritten;
