import { compareKeys, deriveStatus } from "./derive.js";
import { DocumentTooLargeError } from "./errors.js";
import type { ShipmentDoc, TimelineEntry, TrimmedHistory } from "./ports.js";
import { fitsLimit, utf8Length } from "./size.js";

/**
 * How a shipment document stays within the store's size limit however many events its shipment
 * gets. Ingest's per-shipment scan budget keeps documents far below the limit, but it forgets a
 * shipment 30 days after its last accepted scan and grants everything while Redis is down; before
 * this, the event that took a document past the limit was refused, and with it every later event
 * of the shipment, so its tracking stood still for good.
 *
 * A document over the limit drops what grows with every event, oldest first: timeline entries (the
 * oldest in (eventTime, eventId) order, their effect on the status kept in
 * `derivation.trimmed.fold`) down to the newest {@link MIN_TIMELINE_ENTRIES}, then the oldest
 * `eventIds` (version order) down to the newest {@link MIN_EVENT_IDS}, then timeline entries down
 * to the newest one, then event ids down to the ones the caller must keep. At the default limit
 * the first step is all it takes until a shipment has some 5,000 events; the floors matter for
 * documents whose other parts fill most of the limit, and for small limits.
 *
 * Status, its time and carrier status, location, ETA, route, partners, version and the event
 * count are untouched: they are the document's own fields. What the trim loses: the actual times
 * of route legs travelled during the dropped scans (Shipment.route then shows routing's recorded
 * times), and, once ids are dropped, the versions before them can no longer be rebuilt from the
 * history (shipment-history.ts). The history rows stay: ListShipmentEvents still returns every
 * event.
 *
 * A trim cuts the document to {@link TRIM_TARGET} of the limit, so the next few hundred scans fit
 * before another one. Pure.
 */

/** Share of the limit a trimmed document is cut down to. */
export const TRIM_TARGET = 0.75;

/** Newest timeline entries kept before any event id is dropped: the current hub and the recent legs' actual times. */
export const MIN_TIMELINE_ENTRIES = 32;

/**
 * Newest event ids kept before the timeline goes below {@link MIN_TIMELINE_ENTRIES}: a watcher
 * holding a version up to this many behind still gets each change rather than a snapshot.
 */
export const MIN_EVENT_IDS = 256;

/** Rounds of {@link trimDocument} one fit may take (each serializes the document once; one or two suffice). */
const MAX_ROUNDS = 4;

/**
 * `doc` as it may be written within `maxBytes`: itself and `json` (its JSON) when they fit (one
 * length comparison for a document under a third of the limit), else the document trimmed to
 * {@link TRIM_TARGET} of the limit, or as far as it goes when that is still within the limit,
 * with its JSON. The newest `keepIds` event ids are never dropped (at least one is kept): the
 * versions the caller is writing, which its change notices name. Throws DocumentTooLargeError
 * when even the trimmed document is over the limit (what it cannot drop is: a huge route plan,
 * places, handovers).
 */
export function fitDocument(doc: ShipmentDoc, json: string, maxBytes: number, keepIds: number): { doc: ShipmentDoc; json: string } {
  if (fitsLimit(json, maxBytes)) return { doc, json };
  const target = Math.floor(maxBytes * TRIM_TARGET);
  let bytes = utf8Length(json);
  for (let round = 0; round < MAX_ROUNDS && bytes > target; round++) {
    const next = trimDocument(doc, bytes - target, keepIds);
    if (!next) break;
    doc = next;
    json = JSON.stringify(doc);
    bytes = utf8Length(json);
  }
  if (bytes > maxBytes) throw new DocumentTooLargeError("document", bytes, maxBytes);
  return { doc, json };
}

/**
 * A copy of `doc` without its oldest timeline entries and event ids, dropping until their JSON
 * adds up to `excess` bytes or nothing more may go (order and floors: see the module comment);
 * undefined when nothing may. The dropped entries are folded into `derivation.trimmed`; the rest
 * of the document is shared with `doc`, which is not changed. The copy's JSON may come out a
 * little over `doc`'s minus `excess` (the fold keeps the entry that set the status).
 */
export function trimDocument(doc: ShipmentDoc, excess: number, keepIds: number): ShipmentDoc | undefined {
  const d = doc.derivation;
  const timeline = d.timeline;
  const mustKeep = Math.max(1, keepIds);
  let freed = 0;
  let entries = 0;
  let ids = 0;
  // Each item's JSON plus its comma.
  const dropEntries = (keep: number) => {
    for (; freed < excess && timeline.length - entries > keep; entries++) freed += utf8Length(JSON.stringify(timeline[entries])) + 1;
  };
  const dropIds = (keep: number) => {
    for (; freed < excess && d.eventIds.length - ids > keep; ids++) freed += utf8Length(JSON.stringify(d.eventIds[ids])) + 1;
  };
  dropEntries(MIN_TIMELINE_ENTRIES);
  dropIds(Math.max(MIN_EVENT_IDS, mustKeep));
  dropEntries(1);
  dropIds(mustKeep);
  if (entries === 0 && ids === 0) return undefined;

  const prev = d.trimmed;
  const dropped = timeline.slice(0, entries);
  const trimmed: TrimmedHistory = {
    entries: (prev?.entries ?? 0) + entries,
    ids: (prev?.ids ?? 0) + ids,
    fold: entries > 0 ? deriveStatus(dropped, prev?.fold) : (prev?.fold ?? deriveStatus([])),
  };
  let hubEntry = prev?.hubEntry;
  for (let i = dropped.length - 1; i >= 0; i--) {
    const e = dropped[i] as TimelineEntry;
    if (!e.hubCode) continue;
    if (!hubEntry || compareKeys(e.eventTime, e.eventId, hubEntry.eventTime, hubEntry.eventId) > 0) hubEntry = e;
    break;
  }
  if (hubEntry) trimmed.hubEntry = hubEntry;
  return {
    ...doc,
    derivation: {
      ...d,
      timeline: entries > 0 ? timeline.slice(entries) : timeline,
      eventIds: ids > 0 ? d.eventIds.slice(ids) : d.eventIds,
      trimmed,
    },
  };
}
