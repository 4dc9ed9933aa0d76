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
 * grows a new buffer by doubling (three or four allocations and copies for a typical shipment of
 * 600 bytes); this writes in one pass into a scratch buffer kept between calls (a nested
 * message's length is reserved as one byte and widened in the rare case it is 128 or more) and
 * copies the result out once. The bytes are exactly `toBinary(ShipmentSchema, s)`'s: fields in
 * number order, zero values of implicit presence left out, `-0` written. Whatever it was not
 * written for (a negative or unsafe 64-bit integer, a non-finite double, unknown fields, a value
 * of the wrong type, a changed contract) goes to `toBinary`, so the result, or the error, is
 * always `toBinary`'s. Not reentrant (module-level buffer state), which synchronous code cannot be.
 */

/** Thrown (never out of this module) for a value the hand-written path does not write. */
const SLOW: unique symbol = Symbol("slow");

function slow(): never {
  throw SLOW;
}

/** The scratch buffer (grown as needed, kept) and the write position in it. */
let buf = Buffer.allocUnsafeSlow(4096);
let pos = 0;

/** Room for `n` more bytes. */
function ensure(n: number): void {
  if (pos + n <= buf.length) return;
  let size = buf.length * 2;
  while (size < pos + n) size *= 2;
  const grown = Buffer.allocUnsafeSlow(size);
  buf.copy(grown, 0, 0, pos);
  buf = grown;
}

const INT32_MAX = 0x7fffffff;
const UINT32_MAX = 0xffffffff;
const VARINT = 0;
const BIT64 = 1;
const DELIMITED = 2;

/** A varint of a non-negative safe integer (room checked by the caller: at most 8 bytes). */
function varint(v: number): void {
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

/** A tag (field numbers up to 2047: two bytes at most). */
function tag(no: number, wireType: number): void {
  ensure(2);
  varint(no * 8 + wireType);
}

/** A string field; nothing for "" (implicit presence). */
function stringField(no: number, s: unknown): void {
  if (typeof s !== "string") slow();
  if (s === "") return;
  tag(no, DELIMITED);
  stringItem(s);
}

/** The length and UTF-8 bytes of a string (a list item is written even when empty). */
function stringItem(s: string): void {
  const n = s.length;
  if (n < 0x80) {
    // ASCII in one pass (a one-byte length); anything else starts again below.
    ensure(n + 1);
    const b = buf;
    let p = pos;
    b[p++] = n;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) break;
      b[p++] = c;
    }
    if (i === n) {
      pos = p;
      return;
    }
  }
  // Lone surrogates become U+FFFD in Buffer.byteLength and Buffer.write as in TextEncoder (what toBinary uses).
  const len = Buffer.byteLength(s, "utf8");
  ensure(len + 5);
  varint(len);
  pos += buf.write(s, pos, "utf8");
}

/** A non-negative int32 (enum values, nanos) or uint32 field; nothing for 0. */
function uintField(no: number, v: unknown, max: number): void {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) slow();
  if (v === 0) return;
  tag(no, VARINT);
  ensure(5);
  varint(v);
}

/** An int64 or uint64 field (a bigint) of a safe non-negative value; nothing for 0. */
function longField(no: number, v: unknown): void {
  if (typeof v !== "bigint") slow();
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) slow();
  if (n === 0) return;
  tag(no, VARINT);
  ensure(8);
  varint(n);
}

/** A finite double field; nothing for 0 (but -0 is written). */
function doubleField(no: number, v: unknown): void {
  if (typeof v !== "number" || !Number.isFinite(v)) slow();
  if (Object.is(v, 0)) return;
  tag(no, BIT64);
  ensure(8);
  pos = buf.writeDoubleLE(v, pos);
}

/**
 * Starts a message field of type `typeName` when set (its tag and a one-byte length to fill in);
 * -1 when unset.
 */
function begin(no: number, m: unknown, typeName: string): number {
  if (m === undefined) return -1;
  if (typeof m !== "object" || m === null || (m as { $typeName?: unknown }).$typeName !== typeName || (m as { $unknown?: unknown }).$unknown !== undefined) slow();
  tag(no, DELIMITED);
  ensure(1);
  return pos++;
}

/** Ends the message field {@link begin} started at `at`: its length, widened when over one byte. */
function end(at: number): void {
  const len = pos - at - 1;
  if (len < 0x80) {
    buf[at] = len;
    return;
  }
  let extra = 1;
  for (let x = len >>> 14; x > 0; x >>>= 7) extra++;
  ensure(extra);
  buf.copy(buf, at + 1 + extra, at + 1, pos);
  const after = pos + extra;
  pos = at;
  varint(len);
  pos = after;
}

// Timestamp: 1 seconds int64, 2 nanos int32.
function timestamp(no: number, t: Timestamp | undefined): void {
  const at = begin(no, t, TimestampSchema.typeName);
  if (at < 0) return;
  const m = t as Timestamp;
  longField(1, m.seconds);
  uintField(2, m.nanos, INT32_MAX);
  end(at);
}

// GeoPoint: 1 latitude double, 2 longitude double.
function geoPoint(no: number, p: GeoPoint | undefined): void {
  const at = begin(no, p, GeoPointSchema.typeName);
  if (at < 0) return;
  const m = p as GeoPoint;
  doubleField(1, m.latitude);
  doubleField(2, m.longitude);
  end(at);
}

// Place: 1 countryCode, 2 postalCode, 3 city, 4 location GeoPoint, 5 hubCode.
function place(no: number, p: Place | undefined): void {
  const at = begin(no, p, PlaceSchema.typeName);
  if (at < 0) return;
  const m = p as Place;
  stringField(1, m.countryCode);
  stringField(2, m.postalCode);
  stringField(3, m.city);
  geoPoint(4, m.location);
  stringField(5, m.hubCode);
  end(at);
}

// CarrierStatus: 1 code, 2 text.
function carrierStatus(no: number, c: CarrierStatus | undefined): void {
  const at = begin(no, c, CarrierStatusSchema.typeName);
  if (at < 0) return;
  const m = c as CarrierStatus;
  stringField(1, m.code);
  stringField(2, m.text);
  end(at);
}

// Eta: 1 estimatedArrival, 2 earliest, 3 latest (Timestamps), 4 confidence double.
function eta(no: number, e: Eta | undefined): void {
  const at = begin(no, e, EtaSchema.typeName);
  if (at < 0) return;
  const m = e as Eta;
  timestamp(1, m.estimatedArrival);
  timestamp(2, m.earliest);
  timestamp(3, m.latest);
  doubleField(4, m.confidence);
  end(at);
}

// RouteLeg: 1 fromHub, 2 toHub, 3 mode enum, 4 plannedDeparture, 5 plannedArrival, 6 departureId,
// 7 actualDeparture, 8 actualArrival.
function leg(no: number, l: RouteLeg): void {
  const at = begin(no, l, RouteLegSchema.typeName);
  if (at < 0) slow();
  stringField(1, l.fromHub);
  stringField(2, l.toHub);
  uintField(3, l.mode, INT32_MAX);
  timestamp(4, l.plannedDeparture);
  timestamp(5, l.plannedArrival);
  stringField(6, l.departureId);
  timestamp(7, l.actualDeparture);
  timestamp(8, l.actualArrival);
  end(at);
}

// Route: 1 routeId, 2 trackingNumber, 3 legs, 4 eta, 5 revision uint32, 6 plannedAt.
function route(no: number, r: Route | undefined): void {
  const at = begin(no, r, RouteSchema.typeName);
  if (at < 0) return;
  const m = r as Route;
  stringField(1, m.routeId);
  stringField(2, m.trackingNumber);
  if (!Array.isArray(m.legs)) slow();
  for (const l of m.legs) leg(3, l);
  eta(4, m.eta);
  uintField(5, m.revision, UINT32_MAX);
  timestamp(6, m.plannedAt);
  end(at);
}

function shipment(s: Shipment): void {
  if (typeof s !== "object" || s === null || s.$typeName !== ShipmentSchema.typeName || s.$unknown !== undefined) slow();
  stringField(1, s.trackingNumber);
  stringField(2, s.shipmentId);
  stringField(3, s.carrierCode);
  stringField(4, s.customerId);
  stringField(5, s.customerReference);
  uintField(6, s.serviceLevel, INT32_MAX);
  place(7, s.origin);
  place(8, s.destination);
  uintField(9, s.status, INT32_MAX);
  carrierStatus(10, s.lastCarrierStatus);
  timestamp(11, s.statusTime);
  stringField(12, s.currentHubCode);
  geoPoint(13, s.currentLocation);
  eta(14, s.eta);
  route(15, s.route);
  timestamp(16, s.createdAt);
  timestamp(17, s.updatedAt);
  timestamp(18, s.deliveredAt);
  longField(19, s.version);
  uintField(20, s.eventCount, UINT32_MAX);
  uintField(21, s.etaChangeReason, INT32_MAX);
  if (!Array.isArray(s.partnerCarrierCodes)) slow();
  for (const code of s.partnerCarrierCodes) {
    if (typeof code !== "string") slow();
    tag(22, DELIMITED);
    stringItem(code);
  }
  uintField(23, s.trimmedEventCount, UINT32_MAX);
}

/** Whether the contracts are still those this encoder was written for. */
const HAND_WRITTEN = fieldsAsKnown(TimestampSchema, GeoPointSchema, PlaceSchema, CarrierStatusSchema, EtaSchema, RouteLegSchema, RouteSchema, ShipmentSchema);

/** The hand-written encoding of `s`, or undefined when it is `toBinary`'s to write. */
function handWritten(s: Shipment): Buffer | undefined {
  if (!HAND_WRITTEN) return undefined;
  pos = 0;
  try {
    shipment(s);
  } catch (err) {
    if (err === SLOW) return undefined;
    throw err;
  }
  const out = Buffer.allocUnsafe(pos);
  buf.copy(out, 0, 0, pos);
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
