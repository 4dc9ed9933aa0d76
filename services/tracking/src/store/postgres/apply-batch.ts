import { named } from "@logistics/shared/postgres";
import type pg from "pg";
import { appliedResult, applyToDoc, duplicateResult } from "../derive.js";
import { atBatchIndex } from "../errors.js";
import type { ApplyResult, ProjectedEvent, ShipmentDoc } from "../ports.js";
import { assertJsonSize, assertSize } from "../size.js";
import { CAS_MISSED, CasMiss, checked, withConflictRetries, type ApplySettings, type CheckedEvent } from "./apply-shared.js";

/**
 * `applyEvents` of the PostgreSQL store: a whole batch in one statement when nothing conflicts
 * ({@link applyBatchOptimistic}: two round trips), else in one locking transaction
 * ({@link applyBatchLocked}) retried as a whole up to `maxAttempts` times. Every event is checked
 * before anything is written; a StoreError caused by one event carries its `batchIndex`.
 */
export async function applyEvents(pool: pg.Pool, inputs: readonly ProjectedEvent[], settings: ApplySettings): Promise<ApplyResult[]> {
  const events = inputs.map((e, i) => {
    try {
      return checked(e, settings.maxBytes);
    } catch (err) {
      throw atBatchIndex(err, i);
    }
  });
  if (events.length === 0) return [];
  return withConflictRetries(pool, settings.maxAttempts, {
    optimistic: (client) => applyBatchOptimistic(client, events, settings.maxBytes),
    locked: (client) => applyBatchLocked(client, events, settings.maxBytes),
    shipments: () => describeShipments([...new Set(events.map((e) => e.key.trackingNumber))].sort()),
  });
}

const byEventId = (a: CheckedEvent, b: CheckedEvent) => (a.key.eventId < b.key.eventId ? -1 : a.key.eventId > b.key.eventId ? 1 : 0);

/** Several tracking numbers, shortened for an error message. */
function describeShipments(tns: readonly string[]): string {
  return tns.length <= 3 ? tns.join(",") : `${tns.slice(0, 3).join(",")} (+${tns.length - 3} more)`;
}

/** What deriving a batch in memory produced (see {@link deriveBatch}). */
interface DerivedBatch {
  results: ApplyResult[];
  /** Changed documents in tracking-number order, each with its JSON and its version before the batch (-1: new). */
  changed: Array<{ doc: ShipmentDoc; json: string; prev: number }>;
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
  const changed = changedDocs.map((doc) => ({ doc, json: JSON.stringify(doc), prev: docs.get(doc.trackingNumber)?.version ?? -1 }));
  checkBatchSizes(events, results, changed, maxBytes);
  return { results, changed, history };
}

/**
 * The statement that writes a derived batch: every changed document (UPDATE compare-and-set on
 * the version for existing ones, INSERT ... ON CONFLICT DO NOTHING for new ones) and every
 * history row; with `claims`, also the event ids into `applied_events` (a plain INSERT: an id
 * another transaction claimed meanwhile fails the statement with a unique violation). The
 * documents written must be all of them, or the statement fails (`compare-and-set missed`),
 * so a single-statement transaction writes all of the batch or none of it.
 *
 * The rows go as JSON parameters (jsonb_to_recordset) rather than one array parameter per
 * column: the driver escapes every element of an array parameter, which for the documents cost
 * more client CPU than deriving them.
 */
async function writeBatch(client: pg.PoolClient, batch: DerivedBatch, claims: readonly CheckedEvent[] = []): Promise<void> {
  const docRows = batch.changed.map(
    ({ doc: d, json, prev }) =>
      `{"tracking_number":${JSON.stringify(d.trackingNumber)},"customer_id":${JSON.stringify(d.customerId ?? null)},` +
      `"carrier_code":${JSON.stringify(d.carrierCode ?? null)},"status":${d.status},"updated_at":${JSON.stringify(d.updatedAt)},` +
      `"lat":${d.location?.latitude ?? null},"lon":${d.location?.longitude ?? null},"version":${d.version},"prev":${prev},"doc":${json}}`,
  );
  const historyRows = batch.history.map(
    (h) =>
      `{"event_id":${JSON.stringify(h.event.key.eventId)},"tracking_number":${JSON.stringify(h.event.key.trackingNumber)},` +
      `"event_time":${JSON.stringify(h.event.key.eventTime)},"event_type":${JSON.stringify(h.event.event.type)},"late":${h.late},` +
      `"payload":${h.event.json}}`,
  );
  const res = await client.query<{ applied_at: Date }>(
    named(`WITH d AS (
       SELECT * FROM jsonb_to_recordset($1::jsonb)
         AS d(tracking_number text, customer_id text, carrier_code text, status smallint, updated_at timestamptz,
              lat float8, lon float8, version bigint, doc jsonb, prev bigint)),
     claim AS (
       INSERT INTO applied_events (event_id, tracking_number, event_time)
       SELECT * FROM unnest($3::text[], $4::text[], $5::timestamptz[]) ORDER BY 1
       RETURNING 1),
     upd AS (
       UPDATE shipments s SET customer_id = d.customer_id, carrier_code = d.carrier_code, status = d.status,
         updated_at = d.updated_at, lat = d.lat, lon = d.lon, version = d.version, doc = d.doc
       FROM d WHERE d.prev >= 0 AND s.tracking_number = d.tracking_number AND s.version = d.prev RETURNING 1),
     ins AS (
       INSERT INTO shipments (tracking_number, customer_id, carrier_code, status, updated_at, lat, lon, version, doc)
       SELECT tracking_number, customer_id, carrier_code, status, updated_at, lat, lon, version, doc
         FROM d WHERE d.prev < 0 ORDER BY tracking_number
       ON CONFLICT (tracking_number) DO NOTHING RETURNING 1),
     hist AS (
       INSERT INTO shipment_events (event_id, tracking_number, event_time, event_type, late, payload)
       SELECT event_id, tracking_number, event_time, event_type, late, payload FROM jsonb_to_recordset($2::jsonb)
         AS h(event_id text, tracking_number text, event_time timestamptz, event_type text, late boolean, payload jsonb)
       RETURNING 1)
     SELECT CASE WHEN w.docs = $6::int THEN w.docs
                 ELSE ('${CAS_MISSED}: ' || w.docs || ' of ' || $6::int)::int END AS docs,
            (SELECT count(*) FROM hist)::int AS events, (SELECT count(*) FROM claim)::int AS claims,
            now() AS applied_at
       FROM (SELECT ((SELECT count(*) FROM upd) + (SELECT count(*) FROM ins))::int AS docs) w`),
    [
      `[${docRows.join(",")}]`,
      `[${historyRows.join(",")}]`,
      claims.map((e) => e.key.eventId),
      claims.map((e) => e.key.trackingNumber),
      claims.map((e) => e.key.eventTime),
      batch.changed.length,
    ],
  );
  // now() is the transaction's start, so it is the history rows' applied_at (their default).
  const appliedAt = res.rows[0]?.applied_at;
  if (appliedAt) reportWrites(batch, appliedAt);
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
 * The first attempt at a batch, without a transaction block: two statements, two round trips.
 * 1. one read (one snapshot) of the documents and of which event ids are already applied;
 * 2. derive in memory;
 * 3. one statement (its own transaction) writes the documents with compare-and-set on their
 *    versions, the history and the claims of the new event ids (see {@link writeBatch}).
 * When another transaction wrote one of these shipments or claimed one of these ids after the
 * read, the statement fails and writes nothing (CasMiss or a unique violation); the caller then
 * takes the locking path ({@link applyBatchLocked}). The batch consumer hands one shipment's
 * events to one batch at a time, so that is rare.
 */
async function applyBatchOptimistic(client: pg.PoolClient, events: readonly CheckedEvent[], maxBytes: number): Promise<ApplyResult[]> {
  const ids = [...new Set(events.map((e) => e.key.eventId))];
  const tns = [...new Set(events.map((e) => e.key.trackingNumber))];
  const read = await client.query<{ tracking_number: string | null; event_id: string | null; doc: ShipmentDoc | null }>(
    named(`SELECT tracking_number, NULL AS event_id, doc FROM shipments WHERE tracking_number = ANY($1::text[])
     UNION ALL
     SELECT NULL, event_id, NULL FROM applied_events WHERE event_id = ANY($2::text[])`),
    [tns, ids],
  );
  const docs = new Map<string, ShipmentDoc>();
  const applied = new Set<string>();
  for (const r of read.rows) {
    if (r.tracking_number !== null && r.doc) docs.set(r.tracking_number, r.doc);
    else if (r.event_id !== null) applied.add(r.event_id);
  }
  const batch = deriveBatch(events, docs, (id) => !applied.has(id), maxBytes);
  const firstOf = new Map<string, CheckedEvent>();
  for (const e of events) if (!applied.has(e.key.eventId) && !firstOf.has(e.key.eventId)) firstOf.set(e.key.eventId, e);
  if (firstOf.size > 0) await writeBatch(client, batch, [...firstOf.values()].sort(byEventId));
  return batch.results;
}

/**
 * A batch in one transaction block, locking its documents (the path after a conflict):
 * 1. claim every distinct event id in `applied_events` with one multi-row INSERT ... ON
 *    CONFLICT DO NOTHING (ids sorted, so concurrent batches claim in the same order); an id
 *    not returned was applied by a committed transaction → duplicate;
 * 2. lock every affected document with one SELECT ... FOR UPDATE in tracking-number order
 *    (the same order in every batch, so batches cannot deadlock on documents);
 * 3. derive in memory; 4. write (see {@link writeBatch}).
 * A shipment created by a concurrent transaction after step 2 makes the INSERT miss: CasMiss,
 * and the caller retries the whole batch, which then finds and locks the row.
 */
async function applyBatchLocked(client: pg.PoolClient, events: readonly CheckedEvent[], maxBytes: number): Promise<ApplyResult[]> {
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
  const locked = await client.query<{ tracking_number: string; doc: ShipmentDoc }>(
    named(`SELECT tracking_number, doc FROM shipments WHERE tracking_number = ANY($1::text[])
      ORDER BY tracking_number FOR UPDATE`),
    [tns],
  );
  const batch = deriveBatch(events, new Map(locked.rows.map((r) => [r.tracking_number, r.doc])), (id) => claimed.has(id), maxBytes);
  if (batch.changed.length > 0) await writeBatch(client, batch);
  await client.query("COMMIT");
  return batch.results;
}

/**
 * Size limit of the batch's final documents; when one is over, finds the first event (in input
 * order) whose document crossed the limit and throws DocumentTooLargeError with its index.
 */
function checkBatchSizes(
  events: readonly CheckedEvent[],
  results: readonly ApplyResult[],
  changed: ReadonlyArray<{ doc: ShipmentDoc; json: string }>,
  maxBytes: number,
): void {
  const over = new Set<string>();
  for (const { doc, json } of changed) {
    try {
      assertJsonSize("document", json, maxBytes);
    } catch {
      over.add(doc.trackingNumber);
    }
  }
  if (over.size === 0) return;
  results.forEach((r, i) => {
    if (r.applied && over.has(r.after.trackingNumber)) {
      try {
        assertSize("document", r.after, maxBytes);
      } catch (err) {
        throw atBatchIndex(err, i);
      }
    }
  });
  throw new Error(`document over the size limit but no event of ${events.length} crossed it`);
}
