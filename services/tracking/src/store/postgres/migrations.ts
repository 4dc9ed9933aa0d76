import type pg from "pg";
import { migrate as migrateSchema, type Migration } from "@logistics/shared/postgres";

export type { Migration };

/**
 * Advisory lock name taken (transaction-scoped) around migrations and partition maintenance, so
 * concurrent replicas starting at once do not race. One lock for the whole database, because the
 * `cube`/`earthdistance` extensions are database-wide.
 */
export const STORE_LOCK_NAME = "shipment-store";

/**
 * Autovacuum of `shipments` (migration 3). Every applied event rewrites the row and changes
 * indexed columns (`updated_at` at least), so no update is HOT: each leaves a dead tuple and new
 * entries in every index. The default 20% scale factor lets a fifth of the table (6 M rows at 30
 * days) die before vacuum starts; 1% keeps the dead rows near an hour of traffic, and the higher
 * cost limit lets one worker keep up with peak update rates.
 */
export const SHIPMENTS_AUTOVACUUM =
  "autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 10000, autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_limit = 2000";

/**
 * Autovacuum of `applied_events` (migration 3): insert-only, ~12 M rows a day; vacuuming every
 * 2% of new rows sets the visibility map and freezes in small steps rather than one
 * anti-wraparound pass over the whole table.
 */
export const APPLIED_EVENTS_AUTOVACUUM = "autovacuum_vacuum_insert_scale_factor = 0.02";

/**
 * Autovacuum of every `shipment_events` partition (migration 3 for the existing ones,
 * ensurePartitions for each new month: reloptions are per partition, a partitioned parent has
 * none to inherit). Insert-only: vacuum in 2% steps sets the visibility map and freezes while the
 * month is hot, so a closed month never needs an anti-wraparound pass of its own; analyze at 2%
 * keeps the current month's statistics following its growth.
 */
export const PARTITION_AUTOVACUUM = "autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02";

/**
 * The store's schema. Tables are created in the connection's current schema (the first entry of
 * its search_path); the extensions live in `public`, which the search_path must include.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "shipments, events, dedupe",
    sql: `
      CREATE EXTENSION IF NOT EXISTS cube WITH SCHEMA public;
      CREATE EXTENSION IF NOT EXISTS earthdistance WITH SCHEMA public;

      CREATE TABLE shipments (
        tracking_number text PRIMARY KEY,
        customer_id     text,
        carrier_code    text,
        status          smallint NOT NULL,
        updated_at      timestamptz NOT NULL,
        lat             double precision,
        lon             double precision,
        version         bigint NOT NULL,
        doc             jsonb NOT NULL
      );
      CREATE INDEX shipments_customer_status_updated_idx
        ON shipments (customer_id, status, updated_at DESC, tracking_number DESC);
      CREATE INDEX shipments_carrier_status_idx ON shipments (carrier_code, status);
      CREATE INDEX shipments_updated_idx ON shipments (updated_at DESC, tracking_number DESC);
      CREATE INDEX shipments_geo_idx ON shipments USING gist (ll_to_earth(lat, lon))
        WHERE lat IS NOT NULL AND lon IS NOT NULL;

      -- A partitioned table's unique constraints must include the partition key, so event-id
      -- dedupe lives in this small unpartitioned table.
      CREATE TABLE applied_events (
        event_id        text PRIMARY KEY,
        tracking_number text NOT NULL,
        event_time      timestamptz NOT NULL
      );

      CREATE TABLE shipment_events (
        event_id        text NOT NULL,
        tracking_number text NOT NULL,
        event_time      timestamptz NOT NULL,
        event_type      text NOT NULL,
        late            boolean NOT NULL,
        applied_at      timestamptz NOT NULL DEFAULT now(),
        payload         jsonb NOT NULL,
        PRIMARY KEY (event_id, event_time)
      ) PARTITION BY RANGE (event_time);
      CREATE INDEX shipment_events_tracking_idx ON shipment_events (tracking_number, event_time, event_id);
      -- Catches events outside every monthly partition (very old or far future); partition
      -- maintenance moves its rows into a month's partition when that partition is created.
      CREATE TABLE shipment_events_default PARTITION OF shipment_events DEFAULT;
    `,
  },
  {
    version: 2,
    name: "searches read a page per key: area grid cells, carrier status in sort order",
    // A search used to read every match and sort it: every shipment inside the radius (GiST), or
    // every shipment of a carrier and status ((carrier_code, status)). These indexes are led by a
    // key the search pins and then the searches' order, so buildSearchSql (search-sql.ts) reads
    // page-size entries per key (grid cell, status) and merges them. Built in the migration
    // transaction (writes wait while it builds): on a large live store, create them CONCURRENTLY
    // by hand first, under these names, and this migration finds them.
    sql: `
      CREATE FUNCTION shipment_geo_cell(lat float8, lon float8) RETURNS integer
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        RETURN floor((lat + 90) * 4)::integer * 1441 + floor((lon + 180) * 4)::integer;
      CREATE INDEX IF NOT EXISTS shipments_geo_cell_updated_idx
        ON shipments (shipment_geo_cell(lat, lon), updated_at DESC, tracking_number DESC) INCLUDE (lat, lon)
        WHERE lat IS NOT NULL AND lon IS NOT NULL;
      CREATE INDEX IF NOT EXISTS shipments_carrier_status_updated_idx
        ON shipments (carrier_code, status, updated_at DESC, tracking_number DESC);
      DROP INDEX IF EXISTS shipments_carrier_status_idx;
    `,
  },
  {
    version: 3,
    name: "autovacuum settings of the hot tables and of every history partition",
    up: async (client) => {
      await client.query(`ALTER TABLE shipments SET (${SHIPMENTS_AUTOVACUUM})`);
      await client.query(`ALTER TABLE applied_events SET (${APPLIED_EVENTS_AUTOVACUUM})`);
      const parts = await client.query<{ name: string }>(
        `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'shipment_events'::regclass`,
      );
      for (const { name } of parts.rows) await client.query(`ALTER TABLE ${name} SET (${PARTITION_AUTOVACUUM})`);
    },
  },
];

/**
 * Applies the store's pending migrations (see {@link MIGRATIONS}) under {@link STORE_LOCK_NAME};
 * idempotent and safe to run from many replicas at once. Returns the versions it applied.
 */
export function migrate(pool: pg.Pool, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  return migrateSchema(pool, { lockName: STORE_LOCK_NAME, migrations });
}
