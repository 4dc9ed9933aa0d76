import type pg from "pg";
import { createPgPool, type PgTimeouts } from "@logistics/shared/postgres";
import type { ShipmentStore } from "../ports.js";
import { MAX_DOCUMENT_BYTES } from "../size.js";
import { applyEvents } from "./apply-batch.js";
import { applyEvent } from "./apply-one.js";
import type { ApplySettings } from "./apply-shared.js";
import { DocCache } from "./doc-cache.js";
import { migrate } from "./migrations.js";
import { detachPartitionsOlderThan, ensurePartitions, type EnsurePartitionsOptions } from "./partitions.js";
import { getShipment, listEvents, searchShipments } from "./reads.js";
import { buildSearchSql } from "./search-sql.js";

export { buildSearchSql };

/** {@link PostgresShipmentStoreOptions.documentCacheEntries} when left out. */
export const DEFAULT_DOCUMENT_CACHE_ENTRIES = 10_000;

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
  /** Connection and statement timeouts when the store creates the pool (`createPgPool`'s defaults when left out). */
  timeouts?: PgTimeouts;
  /** Run migrations and create partitions at start. Default true. */
  migrate?: boolean;
  /** Monthly partitions to keep ready ahead of now at start. Default 3. */
  partitionsAhead?: number;
  /** Attempts of one apply under version conflicts before ConflictError. Default 50. */
  maxAttempts?: number;
  /** Size limit of one document or event (JSON bytes). Default 256 KiB. */
  maxDocumentBytes?: number;
  /**
   * Documents `applyEvents` keeps in memory (least recently used evicted): a batch whose
   * documents are all kept skips reading them (one round trip instead of two). 0 keeps none.
   * Default 10,000 (tens of MB at a few KB of JSON per document; see the README).
   */
  documentCacheEntries?: number;
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

/**
 * Creates the PostgreSQL adapter of {@link ShipmentStore}: a `shipments` table (queried fields as
 * columns + the JSONB document + version), an event history partitioned by month, and an
 * `applied_events` dedupe table. Each apply is one transaction: claim the event id (a repeat
 * finds it claimed → duplicate), lock the document, derive (derive.ts), compare-and-set on
 * `version`, append history (apply-one.ts). `applyEvents` does the same for a whole batch in one
 * transaction (apply-batch.ts; group commit: one durable commit for many events), starting from
 * the documents it last wrote when it still holds them (doc-cache.ts). Conflicts (a
 * concurrent first insert, serialization failures, deadlocks) roll back and retry (a batch as a
 * whole). Reads and searches are plain queries on the pool (reads.ts).
 */
export async function createPostgresShipmentStore(options: PostgresShipmentStoreOptions): Promise<PostgresShipmentStore> {
  const ownPool = options.pool === undefined;
  const pool =
    options.pool ??
    createPgPool({
      ...options.timeouts,
      ...(options.connectionString !== undefined ? { connectionString: options.connectionString } : {}),
      max: options.maxConnections ?? 10,
      applicationName: "shipment-store",
      ...(options.onPoolError ? { onIdleError: options.onPoolError } : {}),
    });
  const settings: ApplySettings = { maxAttempts: options.maxAttempts ?? 50, maxBytes: options.maxDocumentBytes ?? MAX_DOCUMENT_BYTES };
  const docs = new DocCache(options.documentCacheEntries ?? DEFAULT_DOCUMENT_CACHE_ENTRIES);

  if (options.migrate ?? true) {
    try {
      await migrate(pool);
      await ensurePartitions(pool, options.partitionsAhead ?? 3);
    } catch (err) {
      if (ownPool) await pool.end();
      throw err;
    }
  }

  return {
    pool,

    applyEvent: (event) => applyEvent(pool, event, settings, docs),
    applyEvents: (events) => applyEvents(pool, events, settings, docs),

    getShipment: (trackingNumber) => getShipment(pool, trackingNumber),
    listEvents: (trackingNumber, page) => listEvents(pool, trackingNumber, page),
    searchShipments: (query) => searchShipments(pool, query),

    ensurePartitions: (monthsAhead, opts) => ensurePartitions(pool, monthsAhead, opts),
    detachPartitionsOlderThan: (cutoff) => detachPartitionsOlderThan(pool, cutoff),

    async close() {
      if (ownPool) await pool.end();
    },
  };
}
