import { toBinary } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { GeoPointSchema, PlaceSchema, type GeoPoint, type Place } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import { EtaSchema, RouteLegSchema, RouteSchema, type Eta, type Route, type RouteLeg } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { CarrierStatusSchema, type CarrierStatus } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentSchema, type Shipment } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { fieldsAsKnown } from "./store/doc-json.js";

/**
 * The binary Protobuf of a Shipment, written by hand: what the projector stores in the snapshot
 * cache for every shipment it changes. protobuf-es `toBinary` walks compiled field writers and
 * grows its buffer by doubling (three or four copies for a typical shipment of 600 bytes); this
 * measures the message first and writes it into one buffer of the exact size. The bytes are
 * exactly `toBinary(ShipmentSchema, s)`'s: fields in number order, zero values of implicit
 * presence left out, `-0` written. Whatever it was not written for (a negative or unsafe 64-bit
 * integer, a non-finite double, unknown fields, a value of the wrong type, a changed contract)
 * goes to `toBinary`, so the result, or the error, is always `toBinary`'s. Not reentrant (one
 * module-level buffer state), which synchronous code cannot be anyway.
 */

/** Thrown (never out of this module) for a value the hand-written path does not write. */
const SLOW: unique symbol = Symbol("slow");

function slow(): never {
  throw SLOW;
}

/** Sizes of the nested messages, in the order the write pass meets them; `taken` is the write pass's position. */
const sizes: number[] = [];
let taken = 0;
const EMPTY = Buffer.alloc(0);
/** The buffer being written (only during a call) and the write position in it. */
let buf: Buffer = EMPTY;
let pos = 0;

const INT32_MAX = 0x7fffffff;
const UINT32_MAX = 0xffffffff;

/** Bytes of a varint of a non-negative safe integer. */
function varintSize(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  let n = 4;
  for (let x = Math.floor(v / 0x10000000); x > 0; x = Math.floor(x / 0x80)) n++;
  return n;
}

function writeVarint(v: number): void {
  if (v < 0x80) {
    buf[pos++] = v;
    return;
  }
  while (v > 0x7fffffff) {
    buf[pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  while (v >= 0x80) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
}

/** A tag of a field number under 16 (one byte) or from 16 to 2047 (two). */
function writeTag(no: number, wireType: number): void {
  writeVarint(no * 8 + wireType);
}

const tagSize = (no: number) => (no < 16 ? 1 : 2);
const VARINT = 0;
const BIT64 = 1;
const DELIMITED = 2;

/** Size of a string field (tag, length, UTF-8 bytes); 0 for "" (implicit presence). */
function stringSize(no: number, s: unknown): number {
  if (typeof s !== "string") return slow();
  return s === "" ? 0 : tagSize(no) + itemSize(s);
}

/** Length prefix and UTF-8 bytes of a string (a list item is written even when empty). */
function itemSize(s: string): number {
  const len = utf8Length(s);
  return varintSize(len) + len;
}

function utf8Length(s: string): number {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, "utf8");
  return s.length;
}

function writeString(no: number, s: string): void {
  if (s === "") return;
  writeTag(no, DELIMITED);
  writeItem(s);
}

function writeItem(s: string): void {
  const len = utf8Length(s);
  writeVarint(len);
  if (len === s.length) {
    for (let i = 0; i < len; i++) buf[pos++] = s.charCodeAt(i);
  } else {
    // Lone surrogates become U+FFFD here as in TextEncoder (what toBinary uses), and in Buffer.byteLength.
    pos += buf.write(s, pos, "utf8");
  }
}

/** A non-negative int32 (enum values, nanos) or uint32 field's size; 0 for 0. */
function uintSize(no: number, v: unknown, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) return slow();
  return v === 0 ? 0 : tagSize(no) + varintSize(v);
}

function writeUint(no: number, v: number): void {
  if (v === 0) return;
  writeTag(no, VARINT);
  writeVarint(v);
}

/** An int64 or uint64 field (a bigint) as a safe non-negative number, or slow. */
function safeLong(v: unknown): number {
  if (typeof v !== "bigint") return slow();
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : slow();
}

function doubleSize(no: number, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v)) return slow();
  return Object.is(v, 0) ? 0 : tagSize(no) + 8;
}

function writeDouble(no: number, v: number): void {
  if (Object.is(v, 0)) return;
  writeTag(no, BIT64);
  pos = buf.writeDoubleLE(v, pos);
}

/** Checks a message value of type `typeName`; false when the field is unset. */
function isSet(m: unknown, typeName: string): boolean {
  if (m === undefined) return false;
  if (typeof m !== "object" || m === null || (m as { $typeName?: unknown }).$typeName !== typeName || "$unknown" in m) slow();
  return true;
}

/** Size of a message field whose body is `body` bytes; records `body` for the write pass at `at`. */
function fieldSize(no: number, at: number, body: number): number {
  sizes[at] = body;
  return tagSize(no) + varintSize(body) + body;
}

/** Reserves the slot of the next nested message's size (pre-order, as the write pass meets them). */
function reserve(): number {
  return sizes.push(0) - 1;
}

function writeField(no: number): void {
  writeTag(no, DELIMITED);
  writeVarint(sizes[taken++] as number);
}

// Timestamp: 1 seconds int64, 2 nanos int32. The size pass records the seconds as a number after the size.
function timestampField(no: number, t: Timestamp | undefined): number {
  if (!isSet(t, TimestampSchema.typeName)) return 0;
  const at = reserve();
  const m = t as Timestamp;
  const seconds = safeLong(m.seconds);
  sizes.push(seconds);
  return fieldSize(no, at, (seconds === 0 ? 0 : 1 + varintSize(seconds)) + uintSize(2, m.nanos, INT32_MAX));
}

function writeTimestamp(no: number, t: Timestamp | undefined): void {
  if (t === undefined) return;
  writeField(no);
  writeUint(1, sizes[taken++] as number);
  writeUint(2, t.nanos);
}

// GeoPoint: 1 latitude double, 2 longitude double.
function geoPointField(no: number, p: GeoPoint | undefined): number {
  if (!isSet(p, GeoPointSchema.typeName)) return 0;
  const at = reserve();
  const m = p as GeoPoint;
  return fieldSize(no, at, doubleSize(1, m.latitude) + doubleSize(2, m.longitude));
}

function writeGeoPoint(no: number, p: GeoPoint | undefined): void {
  if (p === undefined) return;
  writeField(no);
  writeDouble(1, p.latitude);
  writeDouble(2, p.longitude);
}

// Place: 1 countryCode, 2 postalCode, 3 city, 4 location GeoPoint, 5 hubCode.
function placeField(no: number, p: Place | undefined): number {
  if (!isSet(p, PlaceSchema.typeName)) return 0;
  const at = reserve();
  const m = p as Place;
  const body = stringSize(1, m.countryCode) + stringSize(2, m.postalCode) + stringSize(3, m.city) + geoPointField(4, m.location) + stringSize(5, m.hubCode);
  return fieldSize(no, at, body);
}

function writePlace(no: number, p: Place | undefined): void {
  if (p === undefined) return;
  writeField(no);
  writeString(1, p.countryCode);
  writeString(2, p.postalCode);
  writeString(3, p.city);
  writeGeoPoint(4, p.location);
  writeString(5, p.hubCode);
}

// CarrierStatus: 1 code, 2 text.
function carrierStatusField(no: number, c: CarrierStatus | undefined): number {
  if (!isSet(c, CarrierStatusSchema.typeName)) return 0;
  const at = reserve();
  const m = c as CarrierStatus;
  return fieldSize(no, at, stringSize(1, m.code) + stringSize(2, m.text));
}

function writeCarrierStatus(no: number, c: CarrierStatus | undefined): void {
  if (c === undefined) return;
  writeField(no);
  writeString(1, c.code);
  writeString(2, c.text);
}

// Eta: 1 estimatedArrival, 2 earliest, 3 latest (Timestamps), 4 confidence double.
function etaField(no: number, e: Eta | undefined): number {
  if (!isSet(e, EtaSchema.typeName)) return 0;
  const at = reserve();
  const m = e as Eta;
  const body = timestampField(1, m.estimatedArrival) + timestampField(2, m.earliest) + timestampField(3, m.latest) + doubleSize(4, m.confidence);
  return fieldSize(no, at, body);
}

function writeEta(no: number, e: Eta | undefined): void {
  if (e === undefined) return;
  writeField(no);
  writeTimestamp(1, e.estimatedArrival);
  writeTimestamp(2, e.earliest);
  writeTimestamp(3, e.latest);
  writeDouble(4, e.confidence);
}

// RouteLeg: 1 fromHub, 2 toHub, 3 mode enum, 4 plannedDeparture, 5 plannedArrival, 6 departureId,
// 7 actualDeparture, 8 actualArrival.
function legItem(no: number, l: RouteLeg): number {
  if (!isSet(l, RouteLegSchema.typeName)) slow();
  const at = reserve();
  const body =
    stringSize(1, l.fromHub) +
    stringSize(2, l.toHub) +
    uintSize(3, l.mode, INT32_MAX) +
    timestampField(4, l.plannedDeparture) +
    timestampField(5, l.plannedArrival) +
    stringSize(6, l.departureId) +
    timestampField(7, l.actualDeparture) +
    timestampField(8, l.actualArrival);
  return fieldSize(no, at, body);
}

function writeLeg(no: number, l: RouteLeg): void {
  writeField(no);
  writeString(1, l.fromHub);
  writeString(2, l.toHub);
  writeUint(3, l.mode);
  writeTimestamp(4, l.plannedDeparture);
  writeTimestamp(5, l.plannedArrival);
  writeString(6, l.departureId);
  writeTimestamp(7, l.actualDeparture);
  writeTimestamp(8, l.actualArrival);
}

// Route: 1 routeId, 2 trackingNumber, 3 legs, 4 eta, 5 revision uint32, 6 plannedAt.
function routeField(no: number, r: Route | undefined): number {
  if (!isSet(r, RouteSchema.typeName)) return 0;
  const at = reserve();
  const m = r as Route;
  let body = stringSize(1, m.routeId) + stringSize(2, m.trackingNumber);
  if (!Array.isArray(m.legs)) slow();
  for (const leg of m.legs) body += legItem(3, leg);
  body += etaField(4, m.eta) + uintSize(5, m.revision, UINT32_MAX) + timestampField(6, m.plannedAt);
  return fieldSize(no, at, body);
}

function writeRoute(no: number, r: Route | undefined): void {
  if (r === undefined) return;
  writeField(no);
  writeString(1, r.routeId);
  writeString(2, r.trackingNumber);
  for (const leg of r.legs) writeLeg(3, leg);
  writeEta(4, r.eta);
  writeUint(5, r.revision);
  writeTimestamp(6, r.plannedAt);
}

function shipmentSize(s: Shipment): number {
  if (!isSet(s, ShipmentSchema.typeName)) slow();
  const version = safeLong(s.version);
  let size =
    stringSize(1, s.trackingNumber) +
    stringSize(2, s.shipmentId) +
    stringSize(3, s.carrierCode) +
    stringSize(4, s.customerId) +
    stringSize(5, s.customerReference) +
    uintSize(6, s.serviceLevel, INT32_MAX) +
    placeField(7, s.origin) +
    placeField(8, s.destination) +
    uintSize(9, s.status, INT32_MAX) +
    carrierStatusField(10, s.lastCarrierStatus) +
    timestampField(11, s.statusTime) +
    stringSize(12, s.currentHubCode) +
    geoPointField(13, s.currentLocation) +
    etaField(14, s.eta) +
    routeField(15, s.route) +
    timestampField(16, s.createdAt) +
    timestampField(17, s.updatedAt) +
    timestampField(18, s.deliveredAt) +
    (version === 0 ? 0 : 2 + varintSize(version)) +
    uintSize(20, s.eventCount, UINT32_MAX) +
    uintSize(21, s.etaChangeReason, INT32_MAX);
  if (!Array.isArray(s.partnerCarrierCodes)) slow();
  for (const code of s.partnerCarrierCodes) {
    if (typeof code !== "string") slow();
    size += 2 + itemSize(code);
  }
  return size;
}

function writeShipment(s: Shipment): void {
  writeString(1, s.trackingNumber);
  writeString(2, s.shipmentId);
  writeString(3, s.carrierCode);
  writeString(4, s.customerId);
  writeString(5, s.customerReference);
  writeUint(6, s.serviceLevel);
  writePlace(7, s.origin);
  writePlace(8, s.destination);
  writeUint(9, s.status);
  writeCarrierStatus(10, s.lastCarrierStatus);
  writeTimestamp(11, s.statusTime);
  writeString(12, s.currentHubCode);
  writeGeoPoint(13, s.currentLocation);
  writeEta(14, s.eta);
  writeRoute(15, s.route);
  writeTimestamp(16, s.createdAt);
  writeTimestamp(17, s.updatedAt);
  writeTimestamp(18, s.deliveredAt);
  writeUint(19, Number(s.version));
  writeUint(20, s.eventCount);
  writeUint(21, s.etaChangeReason);
  for (const code of s.partnerCarrierCodes) {
    writeTag(22, DELIMITED);
    writeItem(code);
  }
}

/** Whether the contracts are still those this encoder was written for. */
const HAND_WRITTEN = fieldsAsKnown(TimestampSchema, GeoPointSchema, PlaceSchema, CarrierStatusSchema, EtaSchema, RouteLegSchema, RouteSchema, ShipmentSchema);

/** The hand-written encoding of `s`, or undefined when it is `toBinary`'s to write. */
function handWritten(s: Shipment): Buffer | undefined {
  if (!HAND_WRITTEN) return undefined;
  sizes.length = 0;
  taken = 0;
  let size: number;
  try {
    size = shipmentSize(s);
  } catch (err) {
    if (err === SLOW) return undefined;
    throw err;
  }
  buf = Buffer.allocUnsafe(size);
  pos = 0;
  writeShipment(s);
  const out = buf;
  buf = EMPTY;
  if (pos !== size) throw new Error(`shipment encoding wrote ${pos} of ${size} bytes`);
  return out;
}

/**
 * `toBinary(ShipmentSchema, s)`, as a Buffer. A small one may be a slice of Node's shared buffer
 * pool (`Buffer.allocUnsafe`): for passing on, not for keeping.
 */
export function shipmentBinary(s: Shipment): Buffer {
  const out = handWritten(s);
  if (out) return out;
  const bytes = toBinary(ShipmentSchema, s);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** {@link shipmentBinary} without the `toBinary` fallback (undefined where it would be taken): for tests to see it is not. */
export const HAND_WRITTEN_PATH = handWritten;
