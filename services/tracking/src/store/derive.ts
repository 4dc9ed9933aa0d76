import { equals, toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { CarrierStatusSchema, ScanKind, type CarrierStatusJson } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { PlaceSchema, type PlaceJson } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import { EtaChangeReason, EtaSchema, RouteSchema, type EtaJson, type RouteJson } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { etaFromDoc } from "./doc-json.js";
import { eventKey } from "./events.js";
import type { ApplyResult, HandoverEntry, ProjectedEvent, ShipmentDoc, StatusFold, TimelineEntry } from "./ports.js";

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
 * (eventTime, eventId) wins, for both together (its route, legs and all, replaces the previous
 * plan).
 * Location: the newest scan carrying one. Partner carriers: the newest creation's, then each
 * handover's in (eventTime, eventId) order, each carrier once, but for those a partner removal
 * ended: a partner's handovers and removals are ordered by their `partner_term` (ingest counts
 * them through its directory's compare-and-set), not by time, so a removal and a later handover
 * of the same partner mean the same in any arrival order and on any clock. A handover or
 * removal changes neither status nor ETA. So any arrival order of the same events converges to
 * the document an event-time-ordered apply produces (version = number of distinct events), except
 * `derivation.eventIds`, which records the order the events were applied in: version k is the
 * document after `eventIds[k - 1]`, so replaying the history in that order rebuilds every version.
 *
 * A document the store trimmed to stay within its size limit (trim-document.ts) folds the status
 * from `derivation.trimmed.fold`, the fold over the timeline entries it dropped; a scan older than
 * those arriving afterwards is folded after them (it sorts first among the kept entries), where
 * event-time order would have put it among them. Its `eventIds` may lack the oldest ids
 * (`trimmed.ids`): version k is then the document after `eventIds[k - 1 - trimmed.ids]`.
 */

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

/**
 * The status the timeline yields, the entry that set it and the last non-terminal status: the
 * fold over `timeline` in its order, continuing `from` (a trimmed document's fold over the entries
 * it dropped, which all came before) when given. A left fold, so folding a timeline in two parts,
 * the second from the first's result, is folding it whole.
 */
export function deriveStatus(timeline: readonly TimelineEntry[], from?: StatusFold): StatusFold {
  let status = from?.status ?? ShipmentStatus.UNSPECIFIED;
  let entry = from?.entry;
  let lastNonTerminal = from?.lastNonTerminal;
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
  // Literals, no optional property set to undefined: a fold is kept in trimmed documents as JSON.
  if (lastNonTerminal === undefined) return entry ? { status, entry } : { status };
  return entry ? { status, entry, lastNonTerminal } : { status, lastNonTerminal };
}

/** Event ids a trim dropped from the front of the document's `eventIds` (0 for nearly every document). */
export function trimmedIds(doc: ShipmentDoc): number {
  return doc.derivation.trimmed?.ids ?? 0;
}

/**
 * The id of the event that made version `version` of `doc` (1..doc.version), or undefined when
 * the document no longer lists it (a trim dropped it) or there is no such version.
 */
export function eventIdOfVersion(doc: ShipmentDoc, version: number): string | undefined {
  return version >= 1 && version <= doc.version ? doc.derivation.eventIds[version - 1 - trimmedIds(doc)] : undefined;
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
 * Applies an event (one {@link checkEvent} accepted) to a document, returning a new document (the
 * input is not modified). The parts of the event the document keeps are converted to proto JSON
 * here, once, or taken from `eventJson` when the caller has the event's proto JSON already
 * (`toJson` of its message, as {@link checkStoredEvent} makes it; it is not modified, but parts of
 * it become part of the document). Pure and deterministic: no clock, no I/O.
 */
export function applyToDoc(current: ShipmentDoc | undefined, event: ProjectedEvent, eventJson?: JsonValue): DeriveResult {
  const { eventId, trackingNumber, eventTime } = eventKey(event);
  if (current?.derivation.eventIds.includes(eventId)) {
    return { doc: current, duplicate: true, late: false, statusChanged: false, etaChanged: false };
  }
  const json = eventJson as JsonObject | undefined;
  const doc: ShipmentDoc = current
    ? copyForUpdate(current, eventId)
    : {
        trackingNumber,
        status: ShipmentStatus.UNSPECIFIED,
        updatedAt: eventTime,
        version: 0,
        derivation: { timeline: [], eventIds: [eventId] },
      };
  let late = false;

  switch (event.type) {
    case "shipment.created": {
      const m = event.message;
      const key = `${eventTime}|${eventId}`;
      const prev = doc.derivation.createdKey;
      late = prev !== undefined && key < prev;
      if (prev === undefined || key > prev) {
        doc.derivation.createdKey = key;
        doc.shipmentId = m.shipmentId;
        doc.customerId = m.customerId;
        doc.carrierCode = m.carrierCode;
        doc.serviceLevel = m.serviceLevel;
        setOptional(doc, "customerReference", m.customerReference || undefined);
        setOptional(doc, "origin", m.origin && ((json?.origin as PlaceJson | undefined) ?? toJson(PlaceSchema, m.origin)));
        setOptional(doc, "destination", m.destination && ((json?.destination as PlaceJson | undefined) ?? toJson(PlaceSchema, m.destination)));
        setOptional(doc, "weightGrams", m.weightGrams || undefined);
        setOptional(doc.derivation, "createdPartners", m.partnerCarrierCodes.length > 0 ? [...m.partnerCarrierCodes] : undefined);
        setOptional(doc, "partnerCarrierCodes", partnersOf(doc.derivation));
      }
      doc.derivation.timeline = withEntry(doc.derivation.timeline, { eventId, eventTime, kind: ScanKind.INFO, status: ShipmentStatus.INFO_RECEIVED });
      break;
    }
    case "shipment.handed_over":
    case "shipment.partner_removed": {
      const m = event.message;
      const list = event.type === "shipment.handed_over" ? "handovers" : "removals";
      const entries = doc.derivation[list] ?? [];
      const newest = entries[entries.length - 1];
      late = newest !== undefined && compareKeys(eventTime, eventId, newest.eventTime, newest.eventId) < 0;
      doc.derivation[list] = withEntry(entries, {
        eventId,
        eventTime,
        carrierCode: m.partnerCarrierCode,
        ...(m.partnerTerm > 0 ? { term: m.partnerTerm } : {}),
      });
      setOptional(doc, "partnerCarrierCodes", partnersOf(doc.derivation));
      if (doc.carrierCode === undefined && m.carrierCode) doc.carrierCode = m.carrierCode;
      break;
    }
    case "scan.recorded": {
      const m = event.message;
      const scan = m.scan;
      late = doc.lastScanTime !== undefined && eventTime < doc.lastScanTime;
      if (doc.lastScanTime === undefined || eventTime > doc.lastScanTime) doc.lastScanTime = eventTime;
      if (doc.carrierCode === undefined && scan?.carrierCode) doc.carrierCode = scan.carrierCode;
      const rawStatus = scan?.rawStatus
        ? (((json?.scan as JsonObject | undefined)?.rawStatus as CarrierStatusJson | undefined) ?? toJson(CarrierStatusSchema, scan.rawStatus))
        : {};
      doc.derivation.timeline = withEntry(doc.derivation.timeline, {
        eventId,
        eventTime,
        kind: m.kind,
        status: resolveScanStatus(m.kind, m.status),
        carrierStatus: rawStatus,
        ...(scan?.hubCode ? { hubCode: scan.hubCode } : {}),
      });
      const at = scan?.location;
      if (at && (doc.locationTime === undefined || compareKeys(eventTime, eventId, doc.locationTime, doc.locationEventId ?? "") > 0)) {
        doc.location = { latitude: roundCoordinate(at.latitude), longitude: roundCoordinate(at.longitude) };
        doc.locationTime = eventTime;
        doc.locationEventId = eventId;
      }
      break;
    }
    case "route.planned":
    case "route.updated": {
      const newer = doc.etaTime === undefined || compareKeys(eventTime, eventId, doc.etaTime, doc.etaEventId ?? "") > 0;
      late = !newer;
      if (newer) {
        const reason = event.type === "route.planned" ? EtaChangeReason.INITIAL_PLAN : event.message.reason;
        const route = event.message.route;
        const { eta, trackingNumber: _tn, ...plan } = route ? ((json?.route as RouteJson | undefined) ?? toJson(RouteSchema, route)) : ({} as RouteJson);
        setOptional(doc, "eta", eta);
        setOptional(doc, "etaReason", reason || undefined);
        doc.route = plan;
        doc.etaTime = eventTime;
        doc.etaEventId = eventId;
      }
      break;
    }
  }

  const derived = deriveStatus(doc.derivation.timeline, doc.derivation.trimmed?.fold);
  doc.status = derived.status;
  setOptional(doc, "statusTime", derived.entry?.eventTime);
  setOptional(doc, "statusEventId", derived.entry?.eventId);
  setOptional(doc, "carrierStatus", derived.entry?.carrierStatus);
  setOptional(doc, "hubCode", derived.entry?.hubCode);
  if (eventTime > doc.updatedAt) doc.updatedAt = eventTime;
  doc.version += 1;

  const beforeStatus = current?.status ?? ShipmentStatus.UNSPECIFIED;
  return {
    doc,
    duplicate: false,
    late,
    statusChanged: beforeStatus !== doc.status,
    etaChanged: current?.eta !== doc.eta && !sameEta(current?.eta, doc.eta),
  };
}

/**
 * Whether two stored ETAs say the same thing. Compared as messages, not as text: the same instant
 * can be written "…:00Z" or "…:00.000Z" (documents rewritten by migration 4 use the latter), and a
 * text comparison would publish an EtaChanged for an ETA that did not move.
 */
export function sameEta(a: EtaJson | undefined, b: EtaJson | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return equals(EtaSchema, etaFromDoc(a), etaFromDoc(b));
}

/** What a store reports for an event {@link applyToDoc} applied to `before` (not a duplicate). */
export function appliedResult(before: ShipmentDoc | undefined, derived: DeriveResult): ApplyResult {
  return {
    applied: true,
    duplicate: false,
    late: derived.late,
    ...(before ? { before } : {}),
    after: derived.doc,
    statusChanged: derived.statusChanged,
    etaChanged: derived.etaChanged,
    version: derived.doc.version,
  };
}

/** What a store reports for an event `doc` already holds. */
export function duplicateResult(doc: ShipmentDoc): ApplyResult {
  return { applied: false, duplicate: true, late: false, after: doc, statusChanged: false, etaChanged: false, version: doc.version };
}

/**
 * The copy {@link applyToDoc} changes: new top level and derivation, with `eventId` appended to a
 * copy of the event ids; everything else (places, ETA, route, the timeline and its entries, the
 * handovers and removals) is shared with `current`, because applying an event only ever replaces
 * those, never changes them in place (a new list is made by {@link withEntry}). A deep copy per
 * event was the largest CPU cost of a batch apply.
 */
function copyForUpdate(current: ShipmentDoc, eventId: string): ShipmentDoc {
  const d = current.derivation;
  return { ...current, derivation: { ...d, eventIds: [...d.eventIds, eventId] } };
}

/** The status a scan sets: ingest's normalized status, else the one its kind implies. */
export function resolveScanStatus(kind: ScanKind, explicit: ShipmentStatus): ShipmentStatus {
  if (kind === ScanKind.INFO) return ShipmentStatus.INFO_RECEIVED;
  if (explicit !== ShipmentStatus.UNSPECIFIED) return explicit;
  return statusForKind(kind);
}

/** A copy of a list kept in (eventTime, eventId) order, with `entry` in its place. */
function withEntry<T extends { eventTime: string; eventId: string }>(list: readonly T[], entry: T): T[] {
  let i = list.length;
  while (i > 0) {
    const prev = list[i - 1] as T;
    if (compareKeys(prev.eventTime, prev.eventId, entry.eventTime, entry.eventId) <= 0) break;
    i--;
  }
  if (i === list.length) return [...list, entry];
  const out = list.slice(0, i);
  out.push(entry);
  for (let k = i; k < list.length; k++) out.push(list[k] as T);
  return out;
}

/**
 * The document's partner carriers, undefined for none: the creation's (each of term 0), then the
 * handovers' in (eventTime, eventId) order. A carrier is listed once, where its newest term was
 * first added, and only while no removal ended that term (a removal's term is at least it).
 */
function partnersOf(d: { createdPartners?: string[]; handovers?: HandoverEntry[]; removals?: HandoverEntry[] }): string[] | undefined {
  const added: Array<readonly [string, number]> = (d.createdPartners ?? []).map((code) => [code, 0] as const);
  for (const h of d.handovers ?? []) added.push([h.carrierCode, h.term ?? 0]);
  const newest = new Map<string, number>();
  for (const [code, term] of added) if (term > (newest.get(code) ?? -1)) newest.set(code, term);
  const ended = new Map<string, number>();
  for (const r of d.removals ?? []) ended.set(r.carrierCode, Math.max(ended.get(r.carrierCode) ?? -1, r.term ?? 0));
  const codes: string[] = [];
  for (const [code, term] of added) {
    if (term !== newest.get(code) || term <= (ended.get(code) ?? -1) || codes.includes(code)) continue;
    codes.push(code);
  }
  return codes.length > 0 ? codes : undefined;
}

function setOptional<T extends object, K extends keyof T>(target: T, key: K, value: T[K] | undefined): void {
  if (value === undefined) delete target[key];
  else target[key] = value;
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
