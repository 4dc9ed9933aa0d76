import type { JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type pg from "pg";
import { createPgPool } from "@logistics/shared/postgres";
import { encodeCursor, checkPageSize, decodeCursor } from "../cursor.js";
import { eventFromJson, eventKey } from "../events.js";
import type { Page, PageRequest, ShipmentDoc, ShipmentQuery, ShipmentStore, StoredEvent } from "../ports.js";
import { MAX_DOCUMENT_BYTES } from "../size.js";
import { applyEvents } from "./apply-batch.js";
import { applyEvent } from "./apply-one.js";
import type { ApplySettings } from "./apply-shared.js";
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

interface EventRow {
  event_id: string;
  tracking_number: string;
  event_type: string;
  late: boolean;
  applied_at: Date;
  payload: JsonValue;
}

function toStoredEvent(r: EventRow): StoredEvent {
  const event = eventFromJson(r.event_type, r.payload);
  return {
    event,
    eventId: r.event_id,
    trackingNumber: r.tracking_number,
    eventTime: eventKey(event).eventTime,
    late: r.late,
    appliedAt: timestampFromDate(r.applied_at),
  };
}

/**
 * Creates the PostgreSQL adapter of {@link ShipmentStore}: a `shipments` table (queried fields as
 * columns + the JSONB document + version), an event history partitioned by month, and an
 * `applied_events` dedupe table. Each apply is one transaction: claim the event id (a repeat
 * finds it claimed → duplicate), lock the document, derive (derive.ts), compare-and-set on
 * `version`, append history (apply-one.ts). `applyEvents` does the same for a whole batch in one
 * transaction (apply-batch.ts; group commit: one durable commit for many events). Conflicts (a
 * concurrent first insert, serialization failures, deadlocks) roll back and retry (a batch as a
 * whole). Reads and searches are plain queries on the pool.
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
  const settings: ApplySettings = { maxAttempts: options.maxAttempts ?? 50, maxBytes: options.maxDocumentBytes ?? MAX_DOCUMENT_BYTES };

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

  return {
    pool,

    applyEvent: (event) => applyEvent(pool, event, settings),
    applyEvents: (events) => applyEvents(pool, events, settings),

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
