import type pg from "pg";
import { createPgPool } from "@logistics/shared/postgres";
import { encodeCursor, checkPageSize, decodeCursor } from "../cursor.js";
import { applyToDoc, assertJsonSize, assertSize, MAX_DOCUMENT_BYTES, validateEvent } from "../derive.js";
import { atBatchIndex, ConflictError } from "../errors.js";
import type { ApplyResult, Page, PageRequest, ShipmentDoc, ShipmentEventInput, ShipmentQuery, ShipmentStore, StoredEvent } from "../ports.js";
import { normalizeQuery } from "../query.js";
import { migrate } from "./migrations.js";
import { detachPartitionsOlderThan, ensurePartitions, type EnsurePartitionsOptions } from "./partitions.js";
import { buildSearchSql } from "./search-sql.js";

export { buildSearchSql };

/** Options for {@link createPostgresShipmentStore}. */
export interface PostgresShipmentStoreOptions {
  /**
   * Connection string; its search_path decides the schema (tables go to the first entry, and it
   * must include `public`, where the cube/earthdistance extensions live). Ignored when `pool` is
   * given.
   */
  connectionString?: string;
  /** An existing pool to use (not closed by `close()`). */
  pool?: pg.Pool;
  /** Pool size when the store creates the pool. Default 10. */
  maxConnections?: number;
  /** Run migrations and create partitions at start. Default true. */
  migrate?: boolean;
  /** Monthly partitions to keep ready ahead of now at start. Default 3. */
  partitionsAhead?: number;
  /** Attempts of one apply under version conflicts before ConflictError. Default 50. */
  maxAttempts?: number;
  /** Size limit of one document or event (JSON bytes). Default 256 KiB. */
  maxDocumentBytes?: number;
  /**
   * Called when an idle pooled connection fails (server restart, network); the pool replaces it.
   * Only for a pool the store creates. Default: ignored (the next query reconnects).
   */
  onPoolError?: (err: Error) => void;
}

/** The PostgreSQL shipment store, with its maintenance operations. */
export interface PostgresShipmentStore extends ShipmentStore {
  readonly pool: pg.Pool;
  /** See partitions.ts {@link ensurePartitions}. */
  ensurePartitions(monthsAhead: number, opts?: EnsurePartitionsOptions): Promise<string[]>;
  /** See partitions.ts {@link detachPartitionsOlderThan}. */
  detachPartitionsOlderThan(cutoff: Date): Promise<string[]>;
}

const RETRYABLE = new Set(["40001", "40P01", "23505"]);

class CasMiss extends Error {}

/** How the batch write statement reports a compare-and-set miss (an integer cast of this text fails). */
const CAS_MISSED = "batch compare-and-set missed";

const byEventId = (a: ShipmentEventInput, b: ShipmentEventInput) => (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0);

/** The batch write statement failed because a document changed after it was read. */
function isCasMiss(err: unknown): boolean {
  return err instanceof CasMiss || (pgCode(err) === "22P02" && err instanceof Error && err.message.includes(CAS_MISSED));
}

function duplicateResult(doc: ShipmentDoc): ApplyResult {
  return { applied: false, duplicate: true, late: false, after: doc, statusChanged: false, etaChanged: false, version: doc.version };
}

/** Several tracking numbers, shortened for an error message. */
function describeShipments(tns: readonly string[]): string {
  return tns.length <= 3 ? tns.join(",") : `${tns.slice(0, 3).join(",")} (+${tns.length - 3} more)`;
}

function pgCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string" ? err.code : undefined;
}

interface EventRow {
  event_id: string;
  tracking_number: string;
  event_type: StoredEvent["type"];
  late: boolean;
  applied_at: Date;
  payload: ShipmentEventInput;
}

function toStoredEvent(r: EventRow): StoredEvent {
  return {
    eventId: r.event_id,
    trackingNumber: r.tracking_number,
    type: r.event_type,
    eventTime: r.payload.eventTime,
    late: r.late,
    appliedAt: r.applied_at.toISOString(),
    event: r.payload,
  };
}

/**
 * Creates the PostgreSQL adapter of {@link ShipmentStore}: a `shipments` table (queried fields as
 * columns + the JSONB document + version), an event history partitioned by month, and an
 * `applied_events` dedupe table. Each apply is one transaction: claim the event id (a repeat
 * finds it claimed → duplicate), lock the document, derive (derive.ts), compare-and-set on
 * `version`, append history. `applyEvents` does the same for a whole batch in one transaction
 * (group commit: one durable commit for many events). Conflicts (a concurrent first insert,
 * serialization failures, deadlocks) roll back and retry (a batch as a whole).
 */
export async function createPostgresShipmentStore(options: PostgresShipmentStoreOptions): Promise<PostgresShipmentStore> {
  const ownPool = options.pool === undefined;
  const pool =
    options.pool ??
    createPgPool({
      ...(options.connectionString !== undefined ? { connectionString: options.connectionString } : {}),
      max: options.maxConnections ?? 10,
      applicationName: "shipment-store",
      ...(options.onPoolError ? { onIdleError: options.onPoolError } : {}),
    });
  const maxAttempts = options.maxAttempts ?? 50;
  const maxBytes = options.maxDocumentBytes ?? MAX_DOCUMENT_BYTES;

  if (options.migrate ?? true) {
    try {
      await migrate(pool);
      await ensurePartitions(pool, options.partitionsAhead ?? 3);
    } catch (err) {
      if (ownPool) await pool.end();
      throw err;
    }
  }

  async function getShipment(trackingNumber: string): Promise<ShipmentDoc | undefined> {
    const res = await pool.query<{ doc: ShipmentDoc }>("SELECT doc FROM shipments WHERE tracking_number = $1", [trackingNumber]);
    return res.rows[0]?.doc;
  }

  async function applyOnce(client: pg.PoolClient, event: ShipmentEventInput): Promise<ApplyResult> {
    await client.query("BEGIN");
    // Claim the event id and lock the document in one round trip. A concurrent claim of the same
    // id waits for the other transaction, then finds the row (duplicate) or not (it rolled back).
    const claim = await client.query<{ claimed: number; doc: ShipmentDoc | null }>(
      `WITH claim AS (
         INSERT INTO applied_events (event_id, tracking_number, event_time) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING RETURNING event_id)
       SELECT (SELECT count(*) FROM claim)::int AS claimed,
              (SELECT doc FROM shipments WHERE tracking_number = $2 FOR UPDATE) AS doc`,
      [event.eventId, event.trackingNumber, event.eventTime],
    );
    const row = claim.rows[0];
    if (!row || row.claimed === 0) {
      await client.query("ROLLBACK");
      // Read on the connection already held: taking a second pooled connection here could
      // starve the pool when every connection is waiting the same way.
      const doc = (await client.query<{ doc: ShipmentDoc }>("SELECT doc FROM shipments WHERE tracking_number = $1", [event.trackingNumber]))
        .rows[0]?.doc;
      if (!doc) throw new Error(`event ${event.eventId} is recorded as applied but shipment ${event.trackingNumber} is missing`);
      return { applied: false, duplicate: true, late: false, after: doc, statusChanged: false, etaChanged: false, version: doc.version };
    }
    const before = row.doc ?? undefined;
    const derived = applyToDoc(before, event);
    if (derived.duplicate) {
      // Already part of the document (e.g. written before the dedupe row existed): keep the claim.
      await client.query("COMMIT");
      return { applied: false, duplicate: true, late: false, after: derived.doc, statusChanged: false, etaChanged: false, version: derived.doc.version };
    }
    const doc = derived.doc;
    assertSize("document", doc, maxBytes);
    const params = [
      doc.trackingNumber,
      doc.customerId ?? null,
      doc.carrierCode ?? null,
      doc.status,
      doc.updatedAt,
      doc.location?.lat ?? null,
      doc.location?.lon ?? null,
      doc.version,
      JSON.stringify(doc),
      event.eventId,
      event.eventTime,
      event.type,
      derived.late,
      JSON.stringify(event),
    ];
    // Compare-and-set the document and append history in one statement: the history row is
    // written only when the CAS matched, so rowCount 1 means both happened.
    const history = `INSERT INTO shipment_events (event_id, tracking_number, event_time, event_type, late, payload)
      SELECT $10::text, $1::text, $11::timestamptz, $12::text, $13::boolean, $14::jsonb WHERE EXISTS (SELECT 1 FROM w)`;
    const write = before
      ? await client.query(
          `WITH w AS (
             UPDATE shipments SET customer_id = $2, carrier_code = $3, status = $4, updated_at = $5, lat = $6, lon = $7,
               version = $8, doc = $9::jsonb
             WHERE tracking_number = $1 AND version = $15 RETURNING 1)
           ${history}`,
          [...params, before.version],
        )
      : await client.query(
          `WITH w AS (
             INSERT INTO shipments (tracking_number, customer_id, carrier_code, status, updated_at, lat, lon, version, doc)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) ON CONFLICT (tracking_number) DO NOTHING RETURNING 1)
           ${history}`,
          params,
        );
    if (write.rowCount !== 1) throw new CasMiss();
    await client.query("COMMIT");
    return {
      applied: true,
      duplicate: false,
      late: derived.late,
      ...(before ? { before } : {}),
      after: doc,
      statusChanged: derived.statusChanged,
      etaChanged: derived.etaChanged,
      version: doc.version,
    };
  }

  /** What deriving a batch in memory produced (see {@link deriveBatch}). */
  interface DerivedBatch {
    results: ApplyResult[];
    /** Changed documents in tracking-number order, each with its JSON and its version before the batch (-1: new). */
    changed: Array<{ doc: ShipmentDoc; json: string; prev: number }>;
    history: Array<{ event: ShipmentEventInput; late: boolean }>;
  }

  /**
   * Derives a batch in memory, in input order, from the documents before it and the set of
   * event ids it may apply (`fresh`: ids no committed transaction applied). A repeat within the
   * batch is a duplicate. Throws CasMiss when a duplicate's document is not among `docs` (it was
   * created by a transaction this read did not see: a retry sees it).
   */
  function deriveBatch(events: readonly ShipmentEventInput[], docs: ReadonlyMap<string, ShipmentDoc>, fresh: (id: string) => boolean): DerivedBatch {
    const current = new Map<string, ShipmentDoc>(docs);
    const seen = new Set<string>();
    const results: ApplyResult[] = [];
    const history: DerivedBatch["history"] = [];
    for (const event of events) {
      const before = current.get(event.trackingNumber);
      const repeat = seen.has(event.eventId);
      seen.add(event.eventId);
      if (repeat || !fresh(event.eventId)) {
        if (!before) throw new CasMiss();
        results.push(duplicateResult(before));
        continue;
      }
      const derived = applyToDoc(before, event);
      // Already part of the document (e.g. written before the dedupe row existed): keep the claim.
      if (derived.duplicate) {
        results.push(duplicateResult(derived.doc));
        continue;
      }
      current.set(event.trackingNumber, derived.doc);
      history.push({ event, late: derived.late });
      results.push({
        applied: true,
        duplicate: false,
        late: derived.late,
        ...(before ? { before } : {}),
        after: derived.doc,
        statusChanged: derived.statusChanged,
        etaChanged: derived.etaChanged,
        version: derived.doc.version,
      });
    }
    const changedDocs = [...current.values()].filter((doc) => doc !== docs.get(doc.trackingNumber));
    changedDocs.sort((a, b) => (a.trackingNumber < b.trackingNumber ? -1 : 1));
    // Every document is serialized once: for the size limit and, verbatim, inside the rows' JSON.
    const changed = changedDocs.map((doc) => ({ doc, json: JSON.stringify(doc), prev: docs.get(doc.trackingNumber)?.version ?? -1 }));
    checkBatchSizes(events, results, changed);
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
  function writeBatch(client: pg.PoolClient, batch: DerivedBatch, claims: readonly ShipmentEventInput[] = []): Promise<unknown> {
    const docRows = batch.changed.map(
      ({ doc: d, json, prev }) =>
        `{"tracking_number":${JSON.stringify(d.trackingNumber)},"customer_id":${JSON.stringify(d.customerId ?? null)},` +
        `"carrier_code":${JSON.stringify(d.carrierCode ?? null)},"status":${d.status},"updated_at":${JSON.stringify(d.updatedAt)},` +
        `"lat":${d.location?.lat ?? null},"lon":${d.location?.lon ?? null},"version":${d.version},"prev":${prev},"doc":${json}}`,
    );
    const historyRows = batch.history.map(
      (h) =>
        `{"event_id":${JSON.stringify(h.event.eventId)},"tracking_number":${JSON.stringify(h.event.trackingNumber)},` +
        `"event_time":${JSON.stringify(h.event.eventTime)},"event_type":${JSON.stringify(h.event.type)},"late":${h.late},` +
        `"payload":${JSON.stringify(h.event)}}`,
    );
    return client.query(
      `WITH d AS (
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
              (SELECT count(*) FROM hist)::int AS events, (SELECT count(*) FROM claim)::int AS claims
         FROM (SELECT ((SELECT count(*) FROM upd) + (SELECT count(*) FROM ins))::int AS docs) w`,
      [
        `[${docRows.join(",")}]`,
        `[${historyRows.join(",")}]`,
        claims.map((e) => e.eventId),
        claims.map((e) => e.trackingNumber),
        claims.map((e) => e.eventTime),
        batch.changed.length,
      ],
    );
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
  async function applyBatchOptimistic(client: pg.PoolClient, events: readonly ShipmentEventInput[]): Promise<ApplyResult[]> {
    const ids = [...new Set(events.map((e) => e.eventId))];
    const tns = [...new Set(events.map((e) => e.trackingNumber))];
    const read = await client.query<{ tracking_number: string | null; event_id: string | null; doc: ShipmentDoc | null }>(
      `SELECT tracking_number, NULL AS event_id, doc FROM shipments WHERE tracking_number = ANY($1::text[])
       UNION ALL
       SELECT NULL, event_id, NULL FROM applied_events WHERE event_id = ANY($2::text[])`,
      [tns, ids],
    );
    const docs = new Map<string, ShipmentDoc>();
    const applied = new Set<string>();
    for (const r of read.rows) {
      if (r.tracking_number !== null && r.doc) docs.set(r.tracking_number, r.doc);
      else if (r.event_id !== null) applied.add(r.event_id);
    }
    const batch = deriveBatch(events, docs, (id) => !applied.has(id));
    const firstOf = new Map<string, ShipmentEventInput>();
    for (const e of events) if (!applied.has(e.eventId) && !firstOf.has(e.eventId)) firstOf.set(e.eventId, e);
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
  async function applyBatchLocked(client: pg.PoolClient, events: readonly ShipmentEventInput[]): Promise<ApplyResult[]> {
    await client.query("BEGIN");
    const firstOf = new Map<string, ShipmentEventInput>();
    for (const e of events) if (!firstOf.has(e.eventId)) firstOf.set(e.eventId, e);
    const toClaim = [...firstOf.values()].sort(byEventId);
    const tns = [...new Set(events.map((e) => e.trackingNumber))].sort();
    // Two statements on purpose: the lock must see shipments created by a transaction whose
    // commit the claim waited for (a new statement takes a new snapshot under READ COMMITTED).
    const claim = await client.query<{ event_id: string }>(
      `INSERT INTO applied_events (event_id, tracking_number, event_time)
       SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) ORDER BY 1
       ON CONFLICT DO NOTHING RETURNING event_id`,
      [toClaim.map((e) => e.eventId), toClaim.map((e) => e.trackingNumber), toClaim.map((e) => e.eventTime)],
    );
    const claimed = new Set(claim.rows.map((r) => r.event_id));
    const locked = await client.query<{ tracking_number: string; doc: ShipmentDoc }>(
      `SELECT tracking_number, doc FROM shipments WHERE tracking_number = ANY($1::text[])
        ORDER BY tracking_number FOR UPDATE`,
      [tns],
    );
    const batch = deriveBatch(events, new Map(locked.rows.map((r) => [r.tracking_number, r.doc])), (id) => claimed.has(id));
    if (batch.changed.length > 0) await writeBatch(client, batch);
    await client.query("COMMIT");
    return batch.results;
  }

  /**
   * Size limit of the batch's final documents; when one is over, finds the first event (in input
   * order) whose document crossed the limit and throws DocumentTooLargeError with its index.
   */
  function checkBatchSizes(
    events: readonly ShipmentEventInput[],
    results: readonly ApplyResult[],
    changed: ReadonlyArray<{ doc: ShipmentDoc; json: string }>,
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

  return {
    pool,

    async applyEvent(input: ShipmentEventInput): Promise<ApplyResult> {
      const event = validateEvent(input, maxBytes);
      const client = await pool.connect();
      let broken = false;
      try {
        for (let attempt = 1; ; attempt++) {
          try {
            return await applyOnce(client, event);
          } catch (err) {
            await client.query("ROLLBACK").catch(() => {
              broken = true;
            });
            const retry = err instanceof CasMiss || RETRYABLE.has(pgCode(err) ?? "");
            if (!retry || broken) throw err;
            if (attempt >= maxAttempts) throw new ConflictError(event.trackingNumber, attempt);
          }
        }
      } finally {
        client.release(broken);
      }
    },

    async applyEvents(inputs: readonly ShipmentEventInput[]): Promise<ApplyResult[]> {
      const events = inputs.map((e, i) => {
        try {
          return validateEvent(e, maxBytes);
        } catch (err) {
          throw atBatchIndex(err, i);
        }
      });
      if (events.length === 0) return [];
      const client = await pool.connect();
      let broken = false;
      try {
        try {
          return await applyBatchOptimistic(client, events);
        } catch (err) {
          // Outside a transaction block: a failed statement rolled itself back.
          if (!(isCasMiss(err) || RETRYABLE.has(pgCode(err) ?? ""))) throw err;
        }
        for (let attempt = 2; ; attempt++) {
          try {
            return await applyBatchLocked(client, events);
          } catch (err) {
            await client.query("ROLLBACK").catch(() => {
              broken = true;
            });
            const retry = isCasMiss(err) || RETRYABLE.has(pgCode(err) ?? "");
            if (!retry || broken) throw err;
            if (attempt >= maxAttempts) {
              throw new ConflictError(describeShipments([...new Set(events.map((e) => e.trackingNumber))].sort()), attempt);
            }
          }
        }
      } finally {
        client.release(broken);
      }
    },

    getShipment,

    async listEvents(trackingNumber: string, page: PageRequest): Promise<Page<StoredEvent>> {
      const size = checkPageSize(page.pageSize);
      const after = decodeCursor(page.cursor);
      const params: unknown[] = [trackingNumber, size + 1];
      let cond = "";
      if (after) {
        params.push(after[0], after[1]);
        cond = "AND (event_time, event_id) > ($3::timestamptz, $4)";
      }
      const res = await pool.query<EventRow>(
        `SELECT event_id, tracking_number, event_type, late, applied_at, payload FROM shipment_events
          WHERE tracking_number = $1 ${cond} ORDER BY event_time, event_id LIMIT $2`,
        params,
      );
      const items = res.rows.slice(0, size).map(toStoredEvent);
      const last = items[items.length - 1];
      return res.rows.length > size && last ? { items, nextCursor: encodeCursor([last.eventTime, last.eventId]) } : { items };
    },

    async searchShipments(query: ShipmentQuery): Promise<Page<ShipmentDoc>> {
      const q = normalizeQuery(query);
      const { text, values } = buildSearchSql(q);
      const res = await pool.query<{ doc: ShipmentDoc }>(text, values);
      const items = res.rows.slice(0, q.pageSize).map((r) => r.doc);
      const last = items[items.length - 1];
      return res.rows.length > q.pageSize && last
        ? { items, nextCursor: encodeCursor([last.updatedAt, last.trackingNumber]) }
        : { items };
    },

    ensurePartitions: (monthsAhead, opts) => ensurePartitions(pool, monthsAhead, opts),
    detachPartitionsOlderThan: (cutoff) => detachPartitionsOlderThan(pool, cutoff),

    async close() {
      if (ownPool) await pool.end();
    },
  };
}
