import { EtaChangeReason, TransportMode } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel, ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { DocumentTooLargeError, InvalidEventError } from "./errors.js";
import type {
  CarrierStatusDoc,
  EtaDoc,
  GeoPointDoc,
  PlaceDoc,
  RouteDoc,
  RouteInput,
  RouteLegDoc,
  ShipmentDoc,
  ShipmentEventInput,
  TimelineEntry,
} from "./ports.js";

/**
 * The shipment derivation rules: one pure module used by every adapter.
 *
 * Status is a function of the SET of applied scans, folded in (eventTime, eventId) order:
 * - INFO scans and the creation event only ever yield INFO_RECEIVED, and only while the status is
 *   still unset or INFO_RECEIVED;
 * - a scan without a status (kind UNSPECIFIED, no explicit status) changes nothing;
 * - once DELIVERED, RETURNED_TO_SENDER or EXPIRED is reached, later scans are ignored except a
 *   CORRECTION scan, which sets its explicit status (or, without one, the last non-terminal
 *   status before it, or IN_TRANSIT);
 * - otherwise the newer scan's status wins.
 * Because the fold runs over event time, an older scan arriving after newer ones (flagged `late`)
 * never moves a shipment backwards; a late terminal scan still makes the shipment terminal, as it
 * would have in event-time order. ETA and route plan: the route event with the newest
 * (eventTime, eventId) wins, for both together (its legs replace the previous plan's; an event
 * without a plan removes `route`).
 * Location: the newest scan carrying one. So any arrival order of the same events converges to
 * the document an event-time-ordered apply produces (version = number of distinct events), except
 * `derivation.eventIds`, which records the order the events were applied in: version k is the
 * document after `eventIds[k - 1]`, so replaying the history in that order rebuilds every version.
 */

/** Default limit for one stored document or event, in UTF-8 bytes of its JSON. */
export const MAX_DOCUMENT_BYTES = 256 * 1024;

/** The most legs a route event may carry. */
export const MAX_ROUTE_LEGS = 64;

const TERMINAL: ReadonlySet<ShipmentStatus> = new Set([
  ShipmentStatus.DELIVERED,
  ShipmentStatus.RETURNED_TO_SENDER,
  ShipmentStatus.EXPIRED,
]);

/** True for DELIVERED, RETURNED_TO_SENDER and EXPIRED. */
export function isTerminal(status: ShipmentStatus): boolean {
  return TERMINAL.has(status);
}

/** The status a scan of `kind` implies when ingest gave none. */
export function statusForKind(kind: ScanKind): ShipmentStatus {
  switch (kind) {
    case ScanKind.PICKUP:
    case ScanKind.HUB_ARRIVAL:
    case ScanKind.HUB_DEPARTURE:
    case ScanKind.CUSTOMS:
      return ShipmentStatus.IN_TRANSIT;
    case ScanKind.OUT_FOR_DELIVERY:
      return ShipmentStatus.OUT_FOR_DELIVERY;
    case ScanKind.DELIVERY_ATTEMPT:
      return ShipmentStatus.FAILED_ATTEMPT;
    case ScanKind.DELIVERED:
      return ShipmentStatus.DELIVERED;
    case ScanKind.PICKUP_POINT_ARRIVAL:
      return ShipmentStatus.AVAILABLE_FOR_PICKUP;
    case ScanKind.EXCEPTION:
      return ShipmentStatus.EXCEPTION;
    case ScanKind.RETURN_TO_SENDER:
      return ShipmentStatus.RETURNED_TO_SENDER;
    case ScanKind.INFO:
      return ShipmentStatus.INFO_RECEIVED;
    case ScanKind.CORRECTION:
    case ScanKind.UNSPECIFIED:
      return ShipmentStatus.UNSPECIFIED;
  }
}

/** Orders two (eventTime, eventId) keys; times are normalized ISO strings. */
export function compareKeys(aTime: string, aId: string, bTime: string, bId: string): number {
  if (aTime !== bTime) return aTime < bTime ? -1 : 1;
  if (aId !== bId) return aId < bId ? -1 : 1;
  return 0;
}

/** The status the timeline yields, and the entry that set it. */
export function deriveStatus(timeline: readonly TimelineEntry[]): { status: ShipmentStatus; entry?: TimelineEntry } {
  let status = ShipmentStatus.UNSPECIFIED;
  let entry: TimelineEntry | undefined;
  let lastNonTerminal: ShipmentStatus | undefined;
  for (const e of timeline) {
    if (e.kind === ScanKind.INFO) {
      if (status === ShipmentStatus.UNSPECIFIED || status === ShipmentStatus.INFO_RECEIVED) {
        status = ShipmentStatus.INFO_RECEIVED;
        entry = e;
      }
      continue;
    }
    if (e.kind === ScanKind.CORRECTION) {
      status = e.status !== ShipmentStatus.UNSPECIFIED ? e.status : (lastNonTerminal ?? ShipmentStatus.IN_TRANSIT);
      entry = e;
    } else {
      if (e.status === ShipmentStatus.UNSPECIFIED || isTerminal(status)) continue;
      status = e.status;
      entry = e;
    }
    if (!isTerminal(status)) lastNonTerminal = status;
  }
  return entry ? { status, entry } : { status };
}

/** What {@link applyToDoc} computed. */
export interface DeriveResult {
  doc: ShipmentDoc;
  /** The event id was already in the document; `doc` is the input unchanged. */
  duplicate: boolean;
  late: boolean;
  statusChanged: boolean;
  etaChanged: boolean;
}

/**
 * Applies a validated event (see {@link validateEvent}) to a document, returning a new document
 * (the input is not modified). Pure and deterministic: no clock, no I/O.
 */
export function applyToDoc(current: ShipmentDoc | undefined, event: ShipmentEventInput): DeriveResult {
  if (current?.derivation.eventIds.includes(event.eventId)) {
    return { doc: current, duplicate: true, late: false, statusChanged: false, etaChanged: false };
  }
  const doc: ShipmentDoc = current
    ? copyForUpdate(current)
    : {
        trackingNumber: event.trackingNumber,
        status: ShipmentStatus.UNSPECIFIED,
        updatedAt: event.eventTime,
        version: 0,
        derivation: { timeline: [], eventIds: [] },
      };
  let late = false;

  switch (event.type) {
    case "shipment_created": {
      const key = `${event.eventTime}|${event.eventId}`;
      const prev = doc.derivation.createdKey;
      late = prev !== undefined && key < prev;
      if (prev === undefined || key > prev) {
        doc.derivation.createdKey = key;
        doc.shipmentId = event.shipmentId;
        doc.customerId = event.customerId;
        doc.carrierCode = event.carrierCode;
        doc.serviceLevel = event.serviceLevel;
        setOptional(doc, "customerReference", event.customerReference);
        setOptional(doc, "origin", event.origin);
        setOptional(doc, "destination", event.destination);
        setOptional(doc, "weightGrams", event.weightGrams);
      }
      insertEntry(doc.derivation.timeline, {
        eventId: event.eventId,
        eventTime: event.eventTime,
        kind: ScanKind.INFO,
        status: ShipmentStatus.INFO_RECEIVED,
      });
      break;
    }
    case "scan": {
      late = doc.lastScanTime !== undefined && event.eventTime < doc.lastScanTime;
      if (doc.lastScanTime === undefined || event.eventTime > doc.lastScanTime) doc.lastScanTime = event.eventTime;
      if (doc.carrierCode === undefined) doc.carrierCode = event.carrierCode;
      insertEntry(doc.derivation.timeline, {
        eventId: event.eventId,
        eventTime: event.eventTime,
        kind: event.kind,
        status: resolveScanStatus(event.kind, event.status),
        carrierStatus: event.rawStatus,
        ...(event.hubCode ? { hubCode: event.hubCode } : {}),
      });
      if (
        event.location &&
        (doc.locationTime === undefined ||
          compareKeys(event.eventTime, event.eventId, doc.locationTime, doc.locationEventId ?? "") > 0)
      ) {
        doc.location = event.location;
        doc.locationTime = event.eventTime;
        doc.locationEventId = event.eventId;
      }
      break;
    }
    case "route_planned":
    case "route_updated": {
      const newer =
        doc.etaTime === undefined || compareKeys(event.eventTime, event.eventId, doc.etaTime, doc.etaEventId ?? "") > 0;
      late = !newer;
      if (newer) {
        doc.eta = event.eta;
        setOptional(doc, "etaReason", event.reason);
        setOptional(doc, "route", routeOf(event));
        doc.etaTime = event.eventTime;
        doc.etaEventId = event.eventId;
      }
      break;
    }
  }

  const derived = deriveStatus(doc.derivation.timeline);
  doc.status = derived.status;
  setOptional(doc, "statusTime", derived.entry?.eventTime);
  setOptional(doc, "statusEventId", derived.entry?.eventId);
  setOptional(doc, "carrierStatus", derived.entry?.carrierStatus);
  setOptional(doc, "hubCode", derived.entry?.hubCode);
  if (event.eventTime > doc.updatedAt) doc.updatedAt = event.eventTime;
  doc.derivation.eventIds.push(event.eventId);
  doc.version += 1;

  const beforeStatus = current?.status ?? ShipmentStatus.UNSPECIFIED;
  return {
    doc,
    duplicate: false,
    late,
    statusChanged: beforeStatus !== doc.status,
    etaChanged: current?.eta !== doc.eta && JSON.stringify(current?.eta ?? null) !== JSON.stringify(doc.eta ?? null),
  };
}

/**
 * The copy {@link applyToDoc} changes: new top level, derivation and derivation arrays; nested
 * values (places, ETA, route, timeline entries) are shared with `current`, because applying an
 * event only ever replaces them, never changes them in place. A deep copy per event was the
 * largest CPU cost of a batch apply.
 */
function copyForUpdate(current: ShipmentDoc): ShipmentDoc {
  const d = current.derivation;
  return { ...current, derivation: { ...d, timeline: [...d.timeline], eventIds: [...d.eventIds] } };
}

/** The route plan a route event carries, or undefined when it carries none. */
function routeOf(event: RouteInput): RouteDoc | undefined {
  if (event.legs === undefined && event.revision === undefined && event.plannedAt === undefined) return undefined;
  return {
    legs: event.legs ?? [],
    ...(event.routeId !== undefined ? { routeId: event.routeId } : {}),
    ...(event.revision !== undefined ? { revision: event.revision } : {}),
    ...(event.plannedAt !== undefined ? { plannedAt: event.plannedAt } : {}),
  };
}

function resolveScanStatus(kind: ScanKind, explicit: ShipmentStatus | undefined): ShipmentStatus {
  if (kind === ScanKind.INFO) return ShipmentStatus.INFO_RECEIVED;
  if (explicit !== undefined && explicit !== ShipmentStatus.UNSPECIFIED) return explicit;
  return statusForKind(kind);
}

function insertEntry(timeline: TimelineEntry[], entry: TimelineEntry): void {
  let i = timeline.length;
  while (i > 0) {
    const prev = timeline[i - 1] as TimelineEntry;
    if (compareKeys(prev.eventTime, prev.eventId, entry.eventTime, entry.eventId) <= 0) break;
    i--;
  }
  timeline.splice(i, 0, entry);
}

function setOptional<K extends keyof ShipmentDoc>(doc: ShipmentDoc, key: K, value: ShipmentDoc[K] | undefined): void {
  if (value === undefined) delete doc[key];
  else doc[key] = value;
}

/** Throws DocumentTooLargeError when `value`'s JSON exceeds `limit` UTF-8 bytes. */
export function assertSize(what: "document" | "event", value: unknown, limit = MAX_DOCUMENT_BYTES): void {
  assertJsonSize(what, JSON.stringify(value), limit);
}

/** {@link assertSize} for JSON already serialized (so a writer serializes a document once). */
export function assertJsonSize(what: "document" | "event", json: string, limit = MAX_DOCUMENT_BYTES): void {
  // A UTF-16 code unit is at most 3 UTF-8 bytes: count the bytes only when that could exceed the limit.
  if (json.length * 3 <= limit) return;
  const bytes = utf8Length(json);
  if (bytes > limit) throw new DocumentTooLargeError(what, bytes, limit);
}

function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      // A surrogate pair: 4 bytes for 2 UTF-16 units.
      n += 2;
      i++;
    } else n += 2;
  }
  return n;
}

// ---- validation: the edge where unknown input becomes a typed event ----

const TRACKING_NUMBER = /^[A-Z0-9]{8,30}$/;
const EVENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const CARRIER_CODE = /^[a-z][a-z0-9-]{1,31}$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * NUL (U+0000) and unpaired UTF-16 surrogates: PostgreSQL text and jsonb cannot hold them (jsonb
 * rejects `\u0000` with "unsupported Unicode escape sequence"), so an event carrying one could
 * never be written. The edge rejects them (logistics.common.v1.text); the store names the field.
 */
const UNSTORABLE = /[\u0000\p{Cs}]/u;

function storable(v: string, path: string): string {
  if (UNSTORABLE.test(v)) throw new InvalidEventError(path, "must not contain NUL characters or unpaired surrogates");
  return v;
}

function str(o: Record<string, unknown>, field: string, path: string, opts: { re?: RegExp; max?: number; optional?: boolean } = {}): string | undefined {
  const v = o[field];
  if (v === undefined || v === null || v === "") {
    if (opts.optional) return undefined;
    throw new InvalidEventError(path, "is required");
  }
  if (typeof v !== "string") throw new InvalidEventError(path, "must be a string");
  if (opts.re && !opts.re.test(v)) throw new InvalidEventError(path, `must match ${String(opts.re)}`);
  if (opts.max !== undefined && v.length > opts.max) throw new InvalidEventError(path, `must be at most ${opts.max} characters`);
  return storable(v, path);
}

function reqStr(o: Record<string, unknown>, field: string, path: string, opts: { re?: RegExp; max?: number } = {}): string {
  return str(o, field, path, opts) as string;
}

function time(v: unknown, path: string): string {
  if (typeof v !== "string" && typeof v !== "number") throw new InvalidEventError(path, "must be an ISO-8601 time");
  const ms = typeof v === "number" ? v : Date.parse(v);
  if (!Number.isFinite(ms) || ms < 0 || ms > Date.UTC(9999, 11, 31)) throw new InvalidEventError(path, "is not a valid time");
  return new Date(ms).toISOString();
}

function optTime(o: Record<string, unknown>, field: string, path: string): string | undefined {
  return o[field] === undefined ? undefined : time(o[field], path);
}

function enumValue<E extends number>(values: Record<string, string | number>, v: unknown, path: string, optional: boolean): E | undefined {
  if (v === undefined && optional) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || typeof values[v] !== "string") {
    throw new InvalidEventError(path, `unknown enum value ${JSON.stringify(v)}`);
  }
  return v as E;
}

/** Validates a point; NaN, infinities and out-of-range coordinates are rejected. */
export function validatePoint(v: unknown, path: string): GeoPointDoc {
  if (!isRecord(v)) throw new InvalidEventError(path, "must be an object {lat, lon}");
  const { lat, lon } = v;
  if (typeof lat !== "number" || !Number.isFinite(lat) || lat < -90 || lat > 90) {
    throw new InvalidEventError(`${path}.lat`, "must be a number in [-90, 90]");
  }
  if (typeof lon !== "number" || !Number.isFinite(lon) || lon < -180 || lon > 180) {
    throw new InvalidEventError(`${path}.lon`, "must be a number in [-180, 180]");
  }
  return { lat: roundCoordinate(lat), lon: roundCoordinate(lon) };
}

/**
 * A coordinate rounded to 1e-7 degrees (about 1 cm), as stored. Any double the contracts allow
 * is a valid degree, but PostgreSQL's float arithmetic refuses results that underflow (a
 * longitude of 5e-324 made `ll_to_earth` fail with "value out of range: underflow" on every
 * retry); no receiver is more precise than a centimetre.
 */
export function roundCoordinate(degrees: number): number {
  return Math.round(degrees * 1e7) / 1e7 || 0;
}

function place(v: unknown, path: string): PlaceDoc | undefined {
  if (v === undefined) return undefined;
  if (!isRecord(v)) throw new InvalidEventError(path, "must be an object");
  const postalCode = str(v, "postalCode", `${path}.postalCode`, { optional: true });
  const hubCode = str(v, "hubCode", `${path}.hubCode`, { optional: true });
  return {
    countryCode: reqStr(v, "countryCode", `${path}.countryCode`, { re: /^[A-Z]{2}$/ }),
    city: reqStr(v, "city", `${path}.city`),
    ...(postalCode !== undefined ? { postalCode } : {}),
    ...(hubCode !== undefined ? { hubCode } : {}),
    ...(v["location"] !== undefined ? { location: validatePoint(v["location"], `${path}.location`) } : {}),
  };
}

function eta(v: unknown, path: string): EtaDoc {
  if (!isRecord(v)) throw new InvalidEventError(path, "is required");
  const earliest = optTime(v, "earliest", `${path}.earliest`);
  const latest = optTime(v, "latest", `${path}.latest`);
  const confidence = v["confidence"];
  if (confidence !== undefined && (typeof confidence !== "number" || !(confidence >= 0 && confidence <= 1))) {
    throw new InvalidEventError(`${path}.confidence`, "must be a number in [0, 1]");
  }
  return {
    estimatedArrival: time(v["estimatedArrival"], `${path}.estimatedArrival`),
    ...(earliest !== undefined ? { earliest } : {}),
    ...(latest !== undefined ? { latest } : {}),
    ...(confidence !== undefined ? { confidence } : {}),
  };
}

const HUB_CODE = /^[A-Z0-9]{3,8}$/;
const DEPARTURE_ID = /^[A-Za-z0-9_-]{1,64}$/;

function routeLeg(v: unknown, path: string): RouteLegDoc {
  if (!isRecord(v)) throw new InvalidEventError(path, "must be an object");
  const plannedDeparture = optTime(v, "plannedDeparture", `${path}.plannedDeparture`);
  const plannedArrival = optTime(v, "plannedArrival", `${path}.plannedArrival`);
  const departureId = str(v, "departureId", `${path}.departureId`, { re: DEPARTURE_ID, optional: true });
  const actualDeparture = optTime(v, "actualDeparture", `${path}.actualDeparture`);
  const actualArrival = optTime(v, "actualArrival", `${path}.actualArrival`);
  return {
    fromHub: reqStr(v, "fromHub", `${path}.fromHub`, { re: HUB_CODE }),
    toHub: reqStr(v, "toHub", `${path}.toHub`, { re: HUB_CODE }),
    mode: enumValue<TransportMode>(TransportMode, v["mode"] ?? TransportMode.UNSPECIFIED, `${path}.mode`, false) as TransportMode,
    ...(plannedDeparture !== undefined ? { plannedDeparture } : {}),
    ...(plannedArrival !== undefined ? { plannedArrival } : {}),
    ...(departureId !== undefined ? { departureId } : {}),
    ...(actualDeparture !== undefined ? { actualDeparture } : {}),
    ...(actualArrival !== undefined ? { actualArrival } : {}),
  };
}

function routeLegs(v: unknown, path: string): RouteLegDoc[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new InvalidEventError(path, "must be an array");
  if (v.length > MAX_ROUTE_LEGS) throw new InvalidEventError(path, `must have at most ${MAX_ROUTE_LEGS} legs`);
  return v.map((leg: unknown, i) => routeLeg(leg, `${path}[${i}]`));
}

function carrierStatus(v: unknown, path: string): CarrierStatusDoc {
  if (!isRecord(v)) throw new InvalidEventError(path, "is required");
  const text = v["text"] ?? "";
  if (typeof text !== "string") throw new InvalidEventError(`${path}.text`, "must be a string");
  return { code: reqStr(v, "code", `${path}.code`, { max: 64 }), text: storable(text, `${path}.text`) };
}

/**
 * Checks an event from the outside world and returns a normalized copy (times as
 * `toISOString()`, only known fields, no `undefined` values). Throws {@link InvalidEventError}
 * naming the field, or {@link DocumentTooLargeError} when the event itself exceeds `maxBytes`.
 */
export function validateEvent(input: unknown, maxBytes = MAX_DOCUMENT_BYTES): ShipmentEventInput {
  if (!isRecord(input)) throw new InvalidEventError("event", "must be an object");
  const base = {
    eventId: reqStr(input, "eventId", "eventId", { re: EVENT_ID }),
    trackingNumber: reqStr(input, "trackingNumber", "trackingNumber", { re: TRACKING_NUMBER }),
    eventTime: time(input["eventTime"], "eventTime"),
  };
  let out: ShipmentEventInput;
  switch (input["type"]) {
    case "shipment_created": {
      const customerReference = str(input, "customerReference", "customerReference", { optional: true });
      const origin = place(input["origin"], "origin");
      const destination = place(input["destination"], "destination");
      const weight = input["weightGrams"];
      if (weight !== undefined && (typeof weight !== "number" || !Number.isInteger(weight) || weight < 0)) {
        throw new InvalidEventError("weightGrams", "must be a non-negative integer");
      }
      out = {
        type: "shipment_created",
        ...base,
        shipmentId: reqStr(input, "shipmentId", "shipmentId", { max: 128 }),
        carrierCode: reqStr(input, "carrierCode", "carrierCode", { re: CARRIER_CODE }),
        customerId: reqStr(input, "customerId", "customerId", { max: 128 }),
        serviceLevel: enumValue<ServiceLevel>(ServiceLevel, input["serviceLevel"], "serviceLevel", false) as ServiceLevel,
        ...(customerReference !== undefined ? { customerReference } : {}),
        ...(origin ? { origin } : {}),
        ...(destination ? { destination } : {}),
        ...(weight !== undefined ? { weightGrams: weight as number } : {}),
      };
      break;
    }
    case "scan": {
      const status = enumValue<ShipmentStatus>(ShipmentStatus, input["status"], "status", true);
      const hubCode = str(input, "hubCode", "hubCode", { re: HUB_CODE, optional: true });
      const note = str(input, "note", "note", { optional: true });
      const attrs = input["attributes"];
      let attributes: Record<string, string> | undefined;
      if (attrs !== undefined) {
        if (!isRecord(attrs)) throw new InvalidEventError("attributes", "must be a string map");
        attributes = {};
        for (const [k, val] of Object.entries(attrs)) {
          const path = `attributes[${JSON.stringify(k)}]`;
          if (typeof val !== "string") throw new InvalidEventError(path, "must be a string");
          storable(k, path);
          attributes[k] = storable(val, path);
        }
      }
      out = {
        type: "scan",
        ...base,
        carrierCode: reqStr(input, "carrierCode", "carrierCode", { re: CARRIER_CODE }),
        kind: enumValue<ScanKind>(ScanKind, input["kind"], "kind", false) as ScanKind,
        rawStatus: carrierStatus(input["rawStatus"], "rawStatus"),
        ...(status !== undefined ? { status } : {}),
        ...(hubCode !== undefined ? { hubCode } : {}),
        ...(input["location"] !== undefined ? { location: validatePoint(input["location"], "location") } : {}),
        ...(note !== undefined ? { note } : {}),
        ...(attributes ? { attributes } : {}),
      };
      break;
    }
    case "route_planned":
    case "route_updated": {
      const reason = enumValue<EtaChangeReason>(EtaChangeReason, input["reason"], "reason", true);
      const routeId = str(input, "routeId", "routeId", { optional: true, max: 128 });
      const detail = str(input, "detail", "detail", { optional: true });
      const legs = routeLegs(input["legs"], "legs");
      const revision = input["revision"];
      if (revision !== undefined && (typeof revision !== "number" || !Number.isInteger(revision) || revision < 0 || revision > 0xffffffff)) {
        throw new InvalidEventError("revision", "must be a non-negative 32-bit integer");
      }
      const plannedAt = optTime(input, "plannedAt", "plannedAt");
      out = {
        type: input["type"],
        ...base,
        eta: eta(input["eta"], "eta"),
        ...(reason !== undefined ? { reason } : {}),
        ...(routeId !== undefined ? { routeId } : {}),
        ...(detail !== undefined ? { detail } : {}),
        ...(legs !== undefined ? { legs } : {}),
        ...(revision !== undefined ? { revision: revision as number } : {}),
        ...(plannedAt !== undefined ? { plannedAt } : {}),
      };
      break;
    }
    default:
      throw new InvalidEventError("type", `unknown event type ${JSON.stringify(input["type"])}`);
  }
  assertSize("event", out, maxBytes);
  return out;
}
