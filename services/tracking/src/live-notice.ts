import type { JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { eventKey, storedEvent } from "./store/events.js";
import type { ApplyResult, ProjectedEvent, ShipmentDoc, StoredEvent } from "./store/ports.js";

/*
 * The content of a "shipment changed" notice (live-updates.ts). On the wire it is UTF-8 text,
 * either the version alone (`12`, what every notice was before notices carried data) or
 *
 *   {"version":12,"doc":{...},"events":[{"type":"scan.recorded","late":false,"appliedAt":1764750000123,"event":{...}}]}
 *
 * with `doc` the document at `version` as the store wrote it, and `events` the history entries of
 * versions `version - events.length + 1 .. version` in that order: each event's catalog type, its
 * `late` flag, its `appliedAt` (epoch milliseconds) and its stored proto JSON. That is everything
 * a watcher needs to step from the version before to `version` (shipment-history.ts
 * `stepsBetween`) without reading the store. The projector builds it from the JSON the store
 * wrote (`ApplyResult.stored`), so nothing is serialized twice.
 */

/** Largest notice that carries data; a larger change is announced by its version alone. */
export const MAX_NOTICE_BYTES = 64 * 1024;

/**
 * A committed change as the projector hands it to the notifier: what the store wrote, as JSON
 * (for other replicas) and as objects (for this replica's own watchers, {@link localNotice}).
 */
export interface NoticeChange {
  /** The shipment's newest document. */
  readonly doc: ShipmentDoc;
  /**
   * That document as written; undefined for a version the store reported no JSON for (a
   * shipment's earlier version in an apply that merged several batches: only its last document
   * is written), serialized when the notice is sent.
   */
  readonly docJson: string | undefined;
  /** The events of the versions up to the document's, oldest first, as the history holds them. */
  readonly events: ReadonlyArray<{
    readonly type: string;
    readonly late: boolean;
    readonly appliedAt: Date;
    readonly json: string;
    readonly event: ProjectedEvent;
  }>;
}

/** A notice as received. */
export interface LiveNotice {
  /** The version the shipment reached; absent when the notice could not be read at all. */
  readonly version?: number;
  /**
   * The change, when the notice carried one and it checked out: the document at `version` and
   * the history entries of versions `version - events.length + 1 .. version`, oldest first.
   */
  readonly change?: { readonly doc: ShipmentDoc; readonly events: readonly StoredEvent[] };
}

/**
 * The change a notice can carry for one shipment of a committed apply: `applied` are the
 * shipment's applied events with their results, in the order applied, `doc` its newest document.
 * Undefined when they are not one run of versions ending at `doc` with what the store wrote (an
 * adapter that does not report its writes, a document another call wrote): then the notice
 * carries the version only.
 */
export function noticeChange(
  doc: ShipmentDoc,
  applied: ReadonlyArray<{ readonly event: ProjectedEvent; readonly result: ApplyResult }>,
): NoticeChange | undefined {
  const last = applied[applied.length - 1]?.result;
  if (!last || last.after !== doc) return undefined;
  // A shipment whose events came in several of the batches one apply merged has a notice per
  // batch; only the last carries the JSON the store wrote. The others still carry their change
  // (a version-only notice sent every watcher of the shipment to the store, then to its history).
  const docJson = last.stored?.docJson;
  const first = doc.version - applied.length + 1;
  const events: Array<NoticeChange["events"][number]> = [];
  for (const [i, { event, result }] of applied.entries()) {
    if (!result.stored || result.version !== first + i) return undefined;
    events.push({ type: event.type, late: result.late, appliedAt: result.stored.appliedAt, json: result.stored.eventJson, event: result.stored.event });
  }
  return { doc, docJson, events };
}

/**
 * The notice of `version` as this replica's own watchers take it, without a trip through NATS
 * and JSON: the same document object the projector wrote (so whatever is rendered from it once,
 * e.g. the Shipment message of the cache refresh, is shared) and the stored events as they read
 * back from the history. No size limit applies: nothing is sent.
 */
export function localNotice(version: number, change?: NoticeChange): LiveNotice {
  if (!change) return { version };
  const events = change.events.map(({ event, late, appliedAt }): StoredEvent => {
    const { eventId, trackingNumber, eventTime } = eventKey(event);
    return { event, eventId, trackingNumber, eventTime, late, appliedAt: timestampFromDate(appliedAt) };
  });
  return { version, change: { doc: change.doc, events } };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The notice of `version`: with `change` when that fits in `maxBytes`, else the version alone. */
export function encodeNotice(version: number, change?: NoticeChange, maxBytes = MAX_NOTICE_BYTES): Uint8Array {
  if (change) {
    const events = change.events.map(
      (e) => `{"type":${JSON.stringify(e.type)},"late":${e.late},"appliedAt":${e.appliedAt.getTime()},"event":${e.json}}`,
    );
    const data = encoder.encode(`{"version":${version},"doc":${change.docJson ?? JSON.stringify(change.doc)},"events":[${events.join(",")}]}`);
    if (data.length <= maxBytes) return data;
  }
  return encoder.encode(String(version));
}

const isVersion = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v > 0;
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * A notice about `trackingNumber` from its wire form. What does not check out is dropped, never
 * trusted: a change whose document is of another shipment or version, whose events do not match
 * the document's `derivation.eventIds`, or that does not parse leaves the version only, and text
 * without a readable version leaves nothing.
 */
export function decodeNotice(trackingNumber: string, data: Uint8Array): LiveNotice {
  const text = decoder.decode(data);
  if (!text.startsWith("{")) {
    const version = Number(text);
    return isVersion(version) ? { version } : {};
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return {};
  }
  if (!isRecord(parsed) || !isVersion(parsed.version)) return {};
  const version = parsed.version;
  const change = readChange(trackingNumber, version, parsed.doc, parsed.events);
  return change ? { version, change } : { version };
}

function readChange(trackingNumber: string, version: number, doc: unknown, events: unknown): LiveNotice["change"] {
  if (!isRecord(doc) || doc.trackingNumber !== trackingNumber || doc.version !== version) return undefined;
  const ids = isRecord(doc.derivation) ? doc.derivation.eventIds : undefined;
  // A trimmed document lists the ids of its newest versions only (derivation.trimmed.ids dropped).
  const trimmed = isRecord(doc.derivation) && isRecord(doc.derivation.trimmed) ? doc.derivation.trimmed.ids : 0;
  if (
    !Array.isArray(ids) ||
    typeof trimmed !== "number" ||
    !Number.isSafeInteger(trimmed) ||
    trimmed < 0 ||
    ids.length + trimmed !== version ||
    !Array.isArray(events) ||
    events.length === 0 ||
    events.length > ids.length
  ) {
    return undefined;
  }
  const first = ids.length - events.length;
  const out: StoredEvent[] = [];
  for (const [i, e] of events.entries()) {
    if (!isRecord(e) || typeof e.type !== "string" || typeof e.late !== "boolean" || !Number.isSafeInteger(e.appliedAt)) return undefined;
    const appliedAt = new Date(e.appliedAt as number);
    let stored: StoredEvent;
    try {
      stored = storedEvent(e.type, e.event as JsonValue, e.late, appliedAt);
    } catch {
      return undefined;
    }
    if (stored.eventId !== ids[first + i] || stored.trackingNumber !== trackingNumber) return undefined;
    out.push(stored);
  }
  return { doc: doc as unknown as ShipmentDoc, events: out };
}
