import { named } from "@logistics/shared/postgres";
import type pg from "pg";
import { appliedResult, applyToDoc, duplicateResult } from "../derive.js";
import { atBatchIndex, DocumentTooLargeError } from "../errors.js";
import type { ApplyResult, ProjectedEvent, ShipmentDoc } from "../ports.js";
import { fitsLimit } from "../size.js";
import { fitDocument } from "../trim-document.js";
import { CAS_MISSED, CasMiss, checked, withConflictRetries, type ApplySettings, type CheckedEvent } from "./apply-shared.js";
import { asStored, DocCache } from "./doc-cache.js";

/**
 * `applyEvents` of the PostgreSQL store: a whole batch in one statement when nothing conflicts
 * ({@link applyBatchOptimistic}: one round trip when `cache` holds the current document of every
 * shipment the batch changes, else two), else in one locking transaction ({@link applyBatchLocked})
 * retried as a whole up to `maxAttempts` times. Every event is checked before anything is
 * written; a StoreError caused by one event carries its `batchIndex`. A batch that fails leaves
 * none of its shipments in `cache`, nor does the optimistic try before the locking path starts.
 */
export async function applyEvents(
  pool: pg.Pool,
  inputs: readonly ProjectedEvent[],
  settings: ApplySettings,
  cache: DocCache = new DocCache(0),
): Promise<ApplyResult[]> {
  const events = inputs.map((e, i) => {
    try {
      return checked(e, settings.maxBytes);
    } catch (err) {
      throw atBatchIndex(err, i);
    }
  });
  if (events.length === 0) return [];
  const tns = () => new Set(events.map((e) => e.key.trackingNumber));
  try {
    return await withConflictRetries(pool, settings.maxAttempts, {
      optimistic: async (client) => {
        try {
          return await applyBatchOptimistic(client, events, settings.maxBytes, cache);
        } catch (err) {
          cache.delete(tns());
          throw err;
        }
      },
      locked: (client) => applyBatchLocked(client, events, settings.maxBytes, cache),
      shipments: () => describeShipments([...tns()].sort()),
    });
  } catch (err) {
    cache.delete(tns());
    throw err;
  }
}

const byEventId = (a: CheckedEvent, b: CheckedEvent) => (a.key.eventId < b.key.eventId ? -1 : a.key.eventId > b.key.eventId ? 1 : 0);

/** Several tracking numbers, shortened for an error message. */
function describeShipments(tns: readonly string[]): string {
  return tns.length <= 3 ? tns.join(",") : `${tns.slice(0, 3).join(",")} (+${tns.length - 3} more)`;
}

/** What deriving a batch in memory produced (see {@link deriveBatch}). */
interface DerivedBatch {
  results: ApplyResult[];
  /**
   * Changed documents in tracking-number order, each with its JSON, its version before the batch
   * (-1: new) and the `xmin` of the row that held the document before (when known).
   */
  changed: Array<{ doc: ShipmentDoc; json: string; prev: number; prevXmin: string | null }>;
  /** The history rows, each with the position of its event's result in `results`. */
  history: Array<{ event: CheckedEvent; late: boolean; result: number }>;
}

/**
 * Derives a batch in memory, in input order, from the documents before it and the set of
 * event ids it may apply (`fresh`: ids no committed transaction applied). A repeat within the
 * batch is a duplicate. Throws CasMiss when a duplicate's document is not among `docs` (it was
 * created by a transaction this read did not see: a retry sees it).
 */
function deriveBatch(
  events: readonly CheckedEvent[],
  docs: ReadonlyMap<string, ShipmentDoc>,
  xmins: ReadonlyMap<string, string>,
  fresh: (id: string) => boolean,
  maxBytes: number,
): DerivedBatch {
  const current = new Map<string, ShipmentDoc>(docs);
  const seen = new Set<string>();
  const results: ApplyResult[] = [];
  const history: DerivedBatch["history"] = [];
  for (const event of events) {
    const { eventId, trackingNumber } = event.key;
    const before = current.get(trackingNumber);
    const repeat = seen.has(eventId);
    seen.add(eventId);
    if (repeat || !fresh(eventId)) {
      if (!before) throw new CasMiss();
      results.push(duplicateResult(before));
      continue;
    }
    const derived = applyToDoc(before, event.event, event.value);
    // Already part of the document (e.g. written before the dedupe row existed): keep the claim.
    if (derived.duplicate) {
      results.push(duplicateResult(derived.doc));
      continue;
    }
    current.set(trackingNumber, derived.doc);
    history.push({ event, late: derived.late, result: results.length });
    results.push(appliedResult(before, derived));
  }
  const changedDocs = [...current.values()].filter((doc) => doc !== docs.get(doc.trackingNumber));
  changedDocs.sort((a, b) => (a.trackingNumber < b.trackingNumber ? -1 : 1));
  // Every document is serialized once: for the size limit and, verbatim, inside the rows' JSON.
  const changed = changedDocs.map((doc) => ({
    doc,
    json: JSON.stringify(doc),
    prev: docs.get(doc.trackingNumber)?.version ?? -1,
    prevXmin: xmins.get(doc.trackingNumber) ?? null,
  }));
  fitBatchSizes(results, changed, maxBytes);
  return { results, changed, history };
}

/**
 * What one snapshot showed of a batch's shipments: their documents with their rows' `xmin`, and
 * which of the batch's event ids `applied_events` holds.
 */
interface Snapshot {
  docs: Map<string, ShipmentDoc>;
  xmins: Map<string, string>;
  applied: Set<string>;
}

/** The rows of a read of a batch's shipments (`tracking_number`, `doc`, `xmin`) and applied ids (`event_id`). */
type SnapshotRow = { tracking_number: string | null; event_id: string | null; doc: ShipmentDoc | null; xmin: string | null };

function snapshotOf(rows: readonly SnapshotRow[]): Snapshot {
  const snapshot: Snapshot = { docs: new Map(), xmins: new Map(), applied: new Set() };
  for (const r of rows) {
    if (r.tracking_number !== null && r.doc) {
      snapshot.docs.set(r.tracking_number, r.doc);
      if (r.xmin !== null) snapshot.xmins.set(r.tracking_number, r.xmin);
    } else if (r.event_id !== null) snapshot.applied.add(r.event_id);
  }
  return snapshot;
}

/** What {@link writeBatch} did: wrote the batch (the rows' new `xmin`), or nothing, and read this. */
type WriteOutcome = { written: true; xmin: string | undefined } | { written: false; snapshot: Snapshot };

/**
 * The statement that writes a derived batch: every changed document (UPDATE compare-and-set on
 * the version and the row's `xmin` for existing ones, INSERT ... ON CONFLICT DO NOTHING for new
 * ones) and every history row; with `claims`, also the event ids into `applied_events` (a plain
 * INSERT: an id another transaction claimed meanwhile fails the statement with a unique
 * violation). The documents written must be all of them, or the statement fails
 * (`compare-and-set missed`), so a single-statement transaction writes all of the batch or none
 * of it.
 *
 * The statement first checks, in its snapshot, that every document is still the one derived from
 * (same version and `xmin`; no row yet for a new one). If one is not, it writes nothing and
 * answers instead what a read would: the documents of `readBack.tns` and which of
 * `readBack.ids` are applied, from that snapshot, so that the caller can derive again without
 * another round trip for the read. A document changed after the snapshot (a concurrent writer)
 * still fails the statement. The `xmin` is what makes a cached document safe to start from: every
 * committed UPDATE of the row gives it a new one, also an UPDATE that leaves `version` alone (a
 * migration, a repair by hand), and a deleted row is no row.
 *
 * The rows go as JSON parameters (jsonb_to_recordset) rather than one array parameter per
 * column: the driver escapes every element of an array parameter, which for the documents cost
 * more client CPU than deriving them.
 */
async function writeBatch(
  client: pg.PoolClient,
  batch: DerivedBatch,
  claims: readonly CheckedEvent[] = [],
  readBack: { tns: readonly string[]; ids: readonly string[] } = { tns: [], ids: [] },
): Promise<WriteOutcome> {
  const docRows = batch.changed.map(
    ({ doc: d, json, prev, prevXmin }) =>
      `{"tracking_number":${JSON.stringify(d.trackingNumber)},"customer_id":${JSON.stringify(d.customerId ?? null)},` +
      `"carrier_code":${JSON.stringify(d.carrierCode ?? null)},"status":${d.status},"updated_at":${JSON.stringify(d.updatedAt)},` +
      `"lat":${d.location?.latitude ?? null},"lon":${d.location?.longitude ?? null},"version":${d.version},"prev":${prev},` +
      `"prev_xmin":${prevXmin === null ? null : JSON.stringify(prevXmin)},"doc":${json}}`,
  );
  const historyRows = batch.history.map(
    (h) =>
      `{"event_id":${JSON.stringify(h.event.key.eventId)},"tracking_number":${JSON.stringify(h.event.key.trackingNumber)},` +
      `"event_time":${JSON.stringify(h.event.key.eventTime)},"event_type":${JSON.stringify(h.event.event.type)},"late":${h.late},` +
      `"payload":${h.event.json}}`,
  );
  const res = await client.query<SnapshotRow & { applied_at: Date | null; written: boolean }>(
    named(`WITH d AS (
       SELECT * FROM jsonb_to_recordset($1::jsonb)
         AS d(tracking_number text, customer_id text, carrier_code text, status smallint, updated_at timestamptz,
              lat float8, lon float8, version bigint, doc jsonb, prev bigint, prev_xmin text)),
     gate AS (
       SELECT NOT EXISTS (
         SELECT 1 FROM d LEFT JOIN shipments s ON s.tracking_number = d.tracking_number
          WHERE CASE WHEN d.prev < 0 THEN s.tracking_number IS NOT NULL
                     ELSE s.tracking_number IS NULL OR s.version <> d.prev
                          OR (d.prev_xmin IS NOT NULL AND NOT s.xmin = d.prev_xmin::xid) END) AS ok),
     claim AS (
       INSERT INTO applied_events (event_id, tracking_number, event_time)
       SELECT * FROM unnest($3::text[], $4::text[], $5::timestamptz[]) WHERE (SELECT ok FROM gate) ORDER BY 1
       RETURNING 1),
     upd AS (
       UPDATE shipments s SET customer_id = d.customer_id, carrier_code = d.carrier_code, status = d.status,
         updated_at = d.updated_at, lat = d.lat, lon = d.lon, version = d.version, doc = d.doc
       FROM d WHERE (SELECT ok FROM gate) AND d.prev >= 0 AND s.tracking_number = d.tracking_number AND s.version = d.prev
         AND (d.prev_xmin IS NULL OR s.xmin = d.prev_xmin::xid)
       RETURNING s.xmin),
     ins AS (
       INSERT INTO shipments (tracking_number, customer_id, carrier_code, status, updated_at, lat, lon, version, doc)
       SELECT tracking_number, customer_id, carrier_code, status, updated_at, lat, lon, version, doc
         FROM d WHERE (SELECT ok FROM gate) AND d.prev < 0 ORDER BY tracking_number
       ON CONFLICT (tracking_number) DO NOTHING RETURNING xmin),
     hist AS (
       INSERT INTO shipment_events (event_id, tracking_number, event_time, event_type, late, payload)
       SELECT event_id, tracking_number, event_time, event_type, late, payload FROM jsonb_to_recordset($2::jsonb)
         AS h(event_id text, tracking_number text, event_time timestamptz, event_type text, late boolean, payload jsonb)
       WHERE (SELECT ok FROM gate)
       RETURNING 1)
     SELECT true AS written,
            CASE WHEN w.docs = $6::int THEN w.docs ELSE ('${CAS_MISSED}: ' || w.docs || ' of ' || $6::int)::int END AS docs,
            now() AS applied_at, (SELECT xmin FROM upd UNION ALL SELECT xmin FROM ins LIMIT 1)::text AS xmin,
            NULL::text AS tracking_number, NULL::jsonb AS doc, NULL::text AS event_id
       FROM (SELECT ((SELECT count(*) FROM upd) + (SELECT count(*) FROM ins))::int AS docs) w
      WHERE (SELECT ok FROM gate)
     UNION ALL
     SELECT false, NULL, NULL, s.xmin::text, s.tracking_number, s.doc, NULL FROM shipments s
      WHERE s.tracking_number = ANY($7::text[]) AND NOT (SELECT ok FROM gate)
     UNION ALL
     SELECT false, NULL, NULL, NULL, NULL, NULL, a.event_id FROM applied_events a
      WHERE a.event_id = ANY($8::text[]) AND NOT (SELECT ok FROM gate)`),
    [
      `[${docRows.join(",")}]`,
      `[${historyRows.join(",")}]`,
      claims.map((e) => e.key.eventId),
      claims.map((e) => e.key.trackingNumber),
      claims.map((e) => e.key.eventTime),
      batch.changed.length,
      readBack.tns,
      readBack.ids,
    ],
  );
  const summary = res.rows.find((r) => r.written);
  if (!summary) return { written: false, snapshot: snapshotOf(res.rows) };
  // now() is the transaction's start, so it is the history rows' applied_at (their default).
  if (summary.applied_at) reportWrites(batch, summary.applied_at);
  return { written: true, xmin: summary.xmin ?? undefined };
}

/** Sets {@link ApplyResult.stored} on the batch's applied results: the JSON it wrote, serialized once. */
function reportWrites(batch: DerivedBatch, appliedAt: Date): void {
  const docJson = new Map(batch.changed.map((c) => [c.doc, c.json]));
  for (const h of batch.history) {
    const r = batch.results[h.result] as ApplyResult;
    const json = docJson.get(r.after);
    r.stored = { eventJson: h.event.json, event: h.event.stored, appliedAt, ...(json !== undefined ? { docJson: json } : {}) };
  }
}

/**
 * The first attempt at a batch, without a transaction block: one or two statements, rarely three.
 * 1. the documents: from `cache` for a shipment whose cached document does not list one of the
 *    batch's events for it (so that the batch changes it and the write checks it, see 3); the
 *    others, and which of their events' ids are already applied, in one read (one snapshot),
 *    left out when there are none;
 * 2. derive in memory;
 * 3. one statement (its own transaction) writes the documents, with compare-and-set on their
 *    versions and rows' `xmin`, the history and the claims of the new event ids (see
 *    {@link writeBatch}). If a document is not the one derived from (another replica wrote it
 *    since this process cached it, or since the read), the statement writes nothing and answers
 *    with a read of the whole batch instead: derive again from that and write once more.
 * When another transaction writes one of these shipments or claims one of these ids while the
 * statement runs, or the second write finds a document changed too, the statement fails and
 * writes nothing (CasMiss or a unique violation); the caller then takes the locking path
 * ({@link applyBatchLocked}). The batch consumer hands one shipment's events to one batch at a
 * time, so that is rare.
 *
 * A cached document lists every event applied to it (`derivation.eventIds`): an event it lists
 * is a duplicate (derive.ts says so) and is not claimed; one it does not list is claimed, and the
 * claim fails if another transaction applied it meanwhile. A shipment all of whose events the
 * cached document lists (a redelivery) is read instead, so that no result reports a document the
 * write did not check.
 */
async function applyBatchOptimistic(client: pg.PoolClient, events: readonly CheckedEvent[], maxBytes: number, cache: DocCache): Promise<ApplyResult[]> {
  const tns = [...new Set(events.map((e) => e.key.trackingNumber))];
  const ids = [...new Set(events.map((e) => e.key.eventId))];
  /** The documents taken from the cache; the write must change each of them. */
  const fromCache = new Map<string, ShipmentDoc>();
  let known: Snapshot = { docs: new Map(), xmins: new Map(), applied: new Set() };
  if (cache.capacity > 0) {
    for (const e of events) {
      const tn = e.key.trackingNumber;
      if (fromCache.has(tn)) continue;
      const hit = cache.get(tn);
      if (hit && !hit.doc.derivation.eventIds.includes(e.key.eventId)) {
        fromCache.set(tn, hit.doc);
        known.docs.set(tn, hit.doc);
        known.xmins.set(tn, hit.xmin);
      }
    }
  }
  if (fromCache.size < tns.length) {
    const read = await client.query<SnapshotRow>(
      named(`SELECT tracking_number, NULL AS event_id, doc, xmin::text AS xmin FROM shipments WHERE tracking_number = ANY($1::text[])
       UNION ALL
       SELECT NULL, event_id, NULL, NULL FROM applied_events WHERE event_id = ANY($2::text[])`),
      fromCache.size === 0
        ? [tns, ids]
        : [tns.filter((tn) => !fromCache.has(tn)), [...new Set(events.filter((e) => !fromCache.has(e.key.trackingNumber)).map((e) => e.key.eventId))]],
    );
    const found = snapshotOf(read.rows);
    for (const [tn, doc] of found.docs) known.docs.set(tn, doc);
    for (const [tn, xmin] of found.xmins) known.xmins.set(tn, xmin);
    known.applied = found.applied;
  }
  for (let attempt = 1; ; attempt++) {
    const { docs, xmins, applied } = known;
    const batch = deriveBatch(events, docs, xmins, (id) => !applied.has(id), maxBytes);
    if (fromCache.size > 0 && batch.changed.filter((c) => fromCache.has(c.doc.trackingNumber)).length < fromCache.size) {
      // A cached document the write would not check (its new event was a repeat of another
      // shipment's in this batch, or an id the read found applied): the locking path decides.
      throw new CasMiss();
    }
    const firstOf = new Map<string, CheckedEvent>();
    for (const e of events) {
      const id = e.key.eventId;
      if (applied.has(id) || firstOf.has(id) || fromCache.get(e.key.trackingNumber)?.derivation.eventIds.includes(id)) continue;
      firstOf.set(id, e);
    }
    if (firstOf.size === 0) {
      remember(cache, batch, docs, xmins, undefined);
      return batch.results;
    }
    const outcome = await writeBatch(client, batch, [...firstOf.values()].sort(byEventId), attempt === 1 ? { tns, ids } : undefined);
    if (outcome.written) {
      remember(cache, batch, docs, xmins, outcome.xmin);
      return batch.results;
    }
    if (attempt > 1) throw new CasMiss();
    cache.delete(tns);
    fromCache.clear();
    known = outcome.snapshot;
  }
}

/**
 * Caches what a committed batch showed: each document it wrote (with the rows' new `xmin`) and
 * each one it read and left as it was (with the `xmin` it was read with).
 */
function remember(
  cache: DocCache,
  batch: DerivedBatch,
  docs: ReadonlyMap<string, ShipmentDoc>,
  xmins: ReadonlyMap<string, string>,
  written: string | undefined,
): void {
  if (cache.capacity <= 0) return;
  const changed = new Set<string>();
  for (const c of batch.changed) {
    changed.add(c.doc.trackingNumber);
    if (written !== undefined) cache.set(c.doc.trackingNumber, asStored(c.doc, c.json), written);
  }
  for (const [tn, doc] of docs) {
    const xmin = xmins.get(tn);
    if (!changed.has(tn) && xmin !== undefined) cache.set(tn, doc, xmin);
  }
}

/**
 * A batch in one transaction block, locking its documents (the path after a conflict):
 * 1. claim every distinct event id in `applied_events` with one multi-row INSERT ... ON
 *    CONFLICT DO NOTHING (ids sorted, so concurrent batches claim in the same order); an id
 *    not returned was applied by a committed transaction → duplicate;
 * 2. lock every affected document with one SELECT ... FOR UPDATE in tracking-number order
 *    (the same order in every batch, so batches cannot deadlock on documents);
 * 3. derive in memory; 4. write (see {@link writeBatch}); after the commit, cache the documents.
 * A shipment created by a concurrent transaction after step 2 makes the INSERT miss: CasMiss,
 * and the caller retries the whole batch, which then finds and locks the row.
 */
async function applyBatchLocked(client: pg.PoolClient, events: readonly CheckedEvent[], maxBytes: number, cache: DocCache): Promise<ApplyResult[]> {
  await client.query("BEGIN");
  const firstOf = new Map<string, CheckedEvent>();
  for (const e of events) if (!firstOf.has(e.key.eventId)) firstOf.set(e.key.eventId, e);
  const toClaim = [...firstOf.values()].sort(byEventId);
  const tns = [...new Set(events.map((e) => e.key.trackingNumber))].sort();
  // Two statements on purpose: the lock must see shipments created by a transaction whose
  // commit the claim waited for (a new statement takes a new snapshot under READ COMMITTED).
  const claim = await client.query<{ event_id: string }>(
    named(`INSERT INTO applied_events (event_id, tracking_number, event_time)
     SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) ORDER BY 1
     ON CONFLICT DO NOTHING RETURNING event_id`),
    [toClaim.map((e) => e.key.eventId), toClaim.map((e) => e.key.trackingNumber), toClaim.map((e) => e.key.eventTime)],
  );
  const claimed = new Set(claim.rows.map((r) => r.event_id));
  const locked = await client.query<{ tracking_number: string; doc: ShipmentDoc; xmin: string }>(
    named(`SELECT tracking_number, doc, xmin::text AS xmin FROM shipments WHERE tracking_number = ANY($1::text[])
      ORDER BY tracking_number FOR UPDATE`),
    [tns],
  );
  const docs = new Map(locked.rows.map((r) => [r.tracking_number, r.doc]));
  const xmins = new Map(locked.rows.map((r) => [r.tracking_number, r.xmin]));
  const batch = deriveBatch(events, docs, xmins, (id) => claimed.has(id), maxBytes);
  let xmin: string | undefined;
  if (batch.changed.length > 0) {
    const outcome = await writeBatch(client, batch);
    // A shipment another transaction created after the lock.
    if (!outcome.written) throw new CasMiss();
    xmin = outcome.xmin;
  }
  await client.query("COMMIT");
  remember(cache, batch, docs, xmins, xmin);
  return batch.results;
}

/**
 * Keeps every document the batch writes within the size limit: one over it is trimmed
 * (trim-document.ts: its oldest timeline entries, then event ids, keeping the ids of this batch's
 * events) and becomes the `after` of the shipment's results that ended at it. Only the documents
 * written are fitted, one length comparison each when under a third of the limit; the documents
 * of a shipment's earlier events in the batch are never written and stay as derived. A document
 * that cannot fit even trimmed fails the batch: DocumentTooLargeError with the index of the first
 * event (input order) after which its shipment's document could not be fitted.
 */
function fitBatchSizes(results: ApplyResult[], changed: DerivedBatch["changed"], maxBytes: number): void {
  let unfit: Set<string> | undefined;
  for (const c of changed) {
    if (fitsLimit(c.json, maxBytes)) continue;
    let fitted: { doc: ShipmentDoc; json: string };
    try {
      fitted = fitDocument(c.doc, c.json, maxBytes, c.doc.version - Math.max(c.prev, 0));
    } catch (err) {
      if (!(err instanceof DocumentTooLargeError)) throw err;
      (unfit ??= new Set()).add(c.doc.trackingNumber);
      continue;
    }
    for (const r of results) if (r.after === c.doc) r.after = fitted.doc;
    c.doc = fitted.doc;
    c.json = fitted.json;
  }
  if (!unfit) return;
  const prev = new Map(changed.map((c) => [c.doc.trackingNumber, Math.max(c.prev, 0)]));
  results.forEach((r, i) => {
    if (!r.applied || !unfit.has(r.after.trackingNumber)) return;
    try {
      fitDocument(r.after, JSON.stringify(r.after), maxBytes, r.version - (prev.get(r.after.trackingNumber) ?? 0));
    } catch (err) {
      throw atBatchIndex(err, i);
    }
  });
  throw new Error("a document over the size limit, though every one of its batch's events could be fitted");
}
