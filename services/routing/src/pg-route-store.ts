import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { EtaSchema, RouteSchema, type EtaChangeReason } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { DisruptionSchema } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { createPgPool, migrate, named, qualify, type Migration, type PgTimeouts } from "@logistics/shared/postgres";
import type pg from "pg";
import { createDisruptionCache, DEFAULT_DISRUPTION_CACHE_MS, type ActiveDisruptionRow } from "./disruption-cache.js";
import type { ServiceLevelName } from "./planner.js";
import {
  ConcurrentUpdateError,
  type ChangedShipments,
  type RevisionWrite,
  type RouteRevision,
  type RouteStore,
  type ShipmentWrite,
  type ShipmentRoute,
  type StoredDisruption,
  type StoredEtaRevision,
} from "./route-store.js";

/** Options for {@link createPgRouteStore}. */
export interface PgRouteStoreOptions {
  /** PostgreSQL connection string. */
  connectionString: string;
  /**
   * Schema holding the tables; created if missing. Default: none, i.e. the connection's
   * `search_path` decides (tests pass a per-test schema that way).
   */
  schema?: string;
  /** Pool size. Default 10. */
  maxConnections?: number;
  /** Connection and statement timeouts of the pool (`createPgPool`'s defaults when left out). */
  timeouts?: PgTimeouts;
  /**
   * How long the active disruptions are served from memory, ms, while this store listens for
   * changes to them (a trigger notifies every change, whichever replica or session made it; a
   * change made through this store forgets them at once); the bound on their staleness should a
   * notification be lost unnoticed. 0: read at every call. Default {@link DEFAULT_DISRUPTION_CACHE_MS}.
   */
  disruptionCacheMs?: number;
}

/** The channel the disruptions trigger notifies, with the table's schema as payload. */
export const DISRUPTIONS_CHANNEL = "routing_disruptions";

/** Delays before listening again after the listening connection was lost, ms (the last repeats). */
const RELISTEN_DELAYS_MS = [100, 1_000, 5_000];

/** The PostgreSQL route store with its pool. */
export interface PgRouteStore extends RouteStore {
  /** Ends the pool. */
  close(): Promise<void>;
}

/**
 * A {@link RouteStore} on PostgreSQL: `routing_shipments` (current route as JSONB, the hub codes
 * it touches in a GIN-indexed array), `routing_eta_history` (one row per revision) and
 * `routing_disruptions`. The schema is versioned and migrated at start under an advisory lock, so
 * replicas starting together do not race. Revisions are written with optimistic concurrency
 * (`WHERE revision = expected`).
 */
export async function createPgRouteStore(opts: PgRouteStoreOptions): Promise<PgRouteStore> {
  const q = (table: string) => qualify(opts.schema, table);
  const S = q("routing_shipments");
  const H = q("routing_eta_history");
  const D = q("routing_disruptions");
  /**
   * The revision writes of `$1` (a `jsonb_to_recordset` of {@link revisionRecord}s) as CTEs of one
   * statement, so one transaction: the route rows whose revision still is the expected one move on
   * (`u`), and exactly those get their ETA history row.
   */
  const revisionWrites = `t AS (
           SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(tracking_number text, expected integer, route jsonb, hubs text[],
             last_event_id text, last_reason integer, last_detail text, avoided text[], delivered boolean, eta jsonb,
             revised_at timestamptz)
         ), u AS (
           UPDATE ${S} AS s SET revision = s.revision + 1, route = t.route, hubs = t.hubs, last_event_id = t.last_event_id,
             last_reason = t.last_reason, last_detail = t.last_detail, previous_eta = s.route -> 'eta',
             avoided_disruptions = t.avoided, delivered = s.delivered OR t.delivered, updated_at = now()
           FROM t WHERE s.tracking_number = t.tracking_number AND s.revision = t.expected
           RETURNING s.tracking_number, s.revision
         ), h AS (
           INSERT INTO ${H} (tracking_number, revision, eta, reason, detail, revised_at)
           SELECT t.tracking_number, u.revision, t.eta, t.last_reason, t.last_detail, t.revised_at FROM t JOIN u USING (tracking_number)
         )`;
  /**
   * The read of `getChanged`, its tracking numbers and known revisions in parameters `$n` and
   * `$n+1`: the route documents of shipments the caller holds at their stored revision stay in the
   * database.
   */
  const readChanged = (n: number) => `SELECT k.rev IS NOT DISTINCT FROM s.revision AS unchanged, s.tracking_number, s.region, s.route_id, s.revision,
           s.origin_hub, s.destination_hub, s.service_level, s.ready_at, s.delivered, s.last_event_id, s.last_reason,
           s.last_detail, s.avoided_disruptions,
           CASE WHEN k.rev IS NOT DISTINCT FROM s.revision THEN NULL ELSE s.route END AS route,
           CASE WHEN k.rev IS NOT DISTINCT FROM s.revision THEN NULL ELSE s.previous_eta END AS previous_eta
         FROM unnest($${n}::text[], $${n + 1}::int[]) AS k(tracking_number, rev) JOIN ${S} s USING (tracking_number)`;

  const cacheMs = Math.max(0, opts.disruptionCacheMs ?? DEFAULT_DISRUPTION_CACHE_MS);
  // One more connection than asked for while listening: it is held by the listener.
  const max = (opts.maxConnections ?? 10) + (cacheMs > 0 ? 1 : 0);
  const pool = createPgPool({ ...opts.timeouts, connectionString: opts.connectionString, max, applicationName: "routing" });
  let tableSchema: string;
  try {
    // Routing may share a schema with other owners (no DATABASE_SCHEMA): its own ledger table.
    await migrate(pool, { lockName: "routing-schema", ledger: "routing_schema_migrations", ...(opts.schema ? { schema: opts.schema } : {}), migrations: routingMigrations(S, H, D, q("routing_disruptions_notify")) });
    // The schema the disruptions table resolved to: the payload of its notifications.
    const res = await pool.query(
      `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass`,
      [D],
    );
    tableSchema = (res.rows[0] as { nspname: string }).nspname;
  } catch (e) {
    await pool.end();
    throw e;
  }

  const readActive = async (at: Date): Promise<ActiveDisruptionRow[]> => {
    const res = await pool.query(
      `SELECT hubs, body, (extract(epoch FROM ends_at) * 1000000)::bigint AS ends_us FROM ${D}
       WHERE cleared_at IS NULL AND (ends_at IS NULL OR ends_at > $1)`,
      [at],
    );
    return (res.rows as Array<DisruptionRow & { ends_us: string | null }>).map((row) => ({
      stored: rowToDisruption(row),
      endsUs: row.ends_us === null ? undefined : BigInt(row.ends_us),
    }));
  };
  const disruptions = createDisruptionCache({ load: readActive, ttlMs: cacheMs });
  const listener = cacheMs > 0 ? listenForDisruptions(pool, tableSchema, disruptions) : undefined;
  await listener?.started;

  const store: PgRouteStore = {
    async get(trackingNumber) {
      const res = await pool.query(`SELECT * FROM ${S} WHERE tracking_number = $1`, [trackingNumber]);
      return res.rows[0] ? rowToShipment(res.rows[0] as ShipmentRow) : undefined;
    },

    async getChanged(trackingNumbers, known) {
      if (trackingNumbers.length === 0) return { changed: new Map(), unchanged: new Set() };
      const res = await pool.query(named(readChanged(1)), readValues(trackingNumbers, known));
      return changedOf(res.rows as ChangedRow[]);
    },

    async saveRevisions(writes) {
      if (writes.length === 0) return new Set();
      const res = await pool.query(named(`WITH ${revisionWrites} SELECT tracking_number FROM u`), [JSON.stringify(writes.map(revisionRecord))]);
      return conflictsOf(writes, res.rows as Array<{ tracking_number: string }>);
    },

    async saveRevisionsAndGetChanged(writes, trackingNumbers, known) {
      if (writes.length === 0) return { ...(await store.getChanged(trackingNumbers, known)), conflicts: new Set<string>() };
      if (trackingNumbers.length === 0) return { changed: new Map(), unchanged: new Set(), conflicts: await store.saveRevisions(writes) };
      // One statement, one snapshot: the read sees the other shipments as the writes found them.
      // The stored ones come with every row read, or alone on a row of nulls when none was read.
      const res = await pool.query(
        named(`WITH ${revisionWrites}, r AS (${readChanged(2)})
         SELECT (SELECT array_agg(tracking_number) FROM u) AS stored, r.* FROM (SELECT) AS one LEFT JOIN r ON true`),
        [JSON.stringify(writes.map(revisionRecord)), ...readValues(trackingNumbers, known)],
      );
      const rows = res.rows as Array<ChangedRow & { stored: string[] | null }>;
      const stored = (rows[0]?.stored ?? []).map((tracking_number) => ({ tracking_number }));
      return { ...changedOf(rows.filter((r) => r.tracking_number !== null)), conflicts: conflictsOf(writes, stored) };
    },

    async createMany(writes) {
      if (writes.length === 0) return new Set();
      const res = await pool.query(
        named(`WITH t AS (
           SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(tracking_number text, region text, route_id text, revision integer,
             origin_hub text, destination_hub text, service_level text, ready_at timestamptz, route jsonb, hubs text[],
             last_event_id text, last_reason integer, last_detail text, avoided text[], eta jsonb, revised_at timestamptz)
         ), i AS (
           INSERT INTO ${S} (tracking_number, region, route_id, revision, origin_hub, destination_hub, service_level,
             ready_at, route, hubs, last_event_id, last_reason, last_detail, avoided_disruptions)
           SELECT tracking_number, region, route_id, revision, origin_hub, destination_hub, service_level, ready_at, route,
             hubs, last_event_id, last_reason, last_detail, avoided FROM t
           ON CONFLICT (tracking_number) DO NOTHING
           RETURNING tracking_number
         ), h AS (
           INSERT INTO ${H} (tracking_number, revision, eta, reason, detail, revised_at)
           SELECT t.tracking_number, 1, t.eta, t.last_reason, t.last_detail, t.revised_at FROM t JOIN i USING (tracking_number)
           WHERE t.revision = 1
         )
         SELECT tracking_number FROM i`),
        [JSON.stringify(writes.map(shipmentRecord))],
      );
      return new Set((res.rows as Array<{ tracking_number: string }>).map((r) => r.tracking_number));
    },

    async create(s, first) {
      const c = await pool.connect();
      try {
        await c.query("BEGIN");
        const res = await c.query(
          `INSERT INTO ${S} (tracking_number, region, route_id, revision, origin_hub, destination_hub, service_level,
             ready_at, route, hubs, last_event_id, last_reason, last_detail, avoided_disruptions)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)
           ON CONFLICT (tracking_number) DO NOTHING`,
          [
            s.trackingNumber,
            s.region,
            s.routeId,
            first ? 1 : 0,
            s.originHub,
            s.destinationHub,
            s.serviceLevel,
            s.readyAt,
            first ? toJson(RouteSchema, first.route) : null,
            hubsOf(first),
            s.lastEventId ?? null,
            first?.reason ?? 0,
            first?.detail ?? "",
            [...(first?.avoidedDisruptions ?? [])],
          ],
        );
        if (res.rowCount === 1 && first) {
          await c.query(`INSERT INTO ${H} (tracking_number, revision, eta, reason, detail, revised_at) VALUES ($1,1,$2,$3,$4,$5)`, [
            s.trackingNumber,
            etaJson(first),
            first.reason,
            first.detail,
            first.revisedAt,
          ]);
        }
        await c.query("COMMIT");
        return res.rowCount === 1;
      } catch (e) {
        await c.query("ROLLBACK").catch(() => {});
        throw e;
      } finally {
        c.release();
      }
    },

    async saveRevision(trackingNumber, expectedRevision, r) {
      const c = await pool.connect();
      try {
        await c.query("BEGIN");
        const res = await c.query(
          `UPDATE ${S} SET revision = revision + 1, route = $3, hubs = $4, last_event_id = $5, last_reason = $6,
             last_detail = $7, previous_eta = route -> 'eta', avoided_disruptions = $8,
             delivered = delivered OR $9, updated_at = now()
           WHERE tracking_number = $1 AND revision = $2`,
          [
            trackingNumber,
            expectedRevision,
            toJson(RouteSchema, r.route),
            hubsOf(r),
            r.eventId,
            r.reason,
            r.detail,
            [...r.avoidedDisruptions],
            r.delivered ?? false,
          ],
        );
        if (res.rowCount !== 1) throw new ConcurrentUpdateError(trackingNumber);
        await c.query(`INSERT INTO ${H} (tracking_number, revision, eta, reason, detail, revised_at) VALUES ($1,$2,$3,$4,$5,$6)`, [
          trackingNumber,
          expectedRevision + 1,
          etaJson(r),
          r.reason,
          r.detail,
          r.revisedAt,
        ]);
        await c.query("COMMIT");
      } catch (e) {
        await c.query("ROLLBACK").catch(() => {});
        throw e;
      } finally {
        c.release();
      }
    },

    async etaHistory(trackingNumber) {
      const res = await pool.query(`SELECT * FROM ${H} WHERE tracking_number = $1 ORDER BY revision`, [trackingNumber]);
      return (res.rows as HistoryRow[]).map(
        (row): StoredEtaRevision => ({
          revision: row.revision,
          eta: row.eta === null ? undefined : fromJson(EtaSchema, row.eta),
          reason: row.reason as EtaChangeReason,
          detail: row.detail,
          revisedAt: row.revised_at,
        }),
      );
    },

    async findTouchingHubs(hubCodes) {
      const res = await pool.query(`SELECT * FROM ${S} WHERE NOT delivered AND hubs && $1::text[] ORDER BY tracking_number`, [
        [...hubCodes],
      ]);
      return (res.rows as ShipmentRow[]).map(rowToShipment);
    },

    async findAvoiding(disruptionId) {
      const res = await pool.query(
        `SELECT * FROM ${S} WHERE NOT delivered AND avoided_disruptions @> ARRAY[$1]::text[] ORDER BY tracking_number`,
        [disruptionId],
      );
      return (res.rows as ShipmentRow[]).map(rowToShipment);
    },

    async saveDisruption({ disruption, hubCodes }) {
      await pool.query(
        `INSERT INTO ${D} (disruption_id, hubs, starts_at, ends_at, cleared_at, body) VALUES ($1,$2,$3,$4,$5,$6)
         ON CONFLICT (disruption_id) DO NOTHING`,
        [
          disruption.disruptionId,
          [...hubCodes],
          disruption.startsAt ? timestampDate(disruption.startsAt) : null,
          disruption.endsAt ? timestampDate(disruption.endsAt) : null,
          disruption.clearedAt ? timestampDate(disruption.clearedAt) : null,
          toJson(DisruptionSchema, disruption),
        ],
      );
      disruptions.invalidate();
    },

    async getDisruption(id) {
      const res = await pool.query(`SELECT * FROM ${D} WHERE disruption_id = $1`, [id]);
      return res.rows[0] ? rowToDisruption(res.rows[0] as DisruptionRow) : undefined;
    },

    async clearDisruption(id, at) {
      const res = await pool.query(
        `UPDATE ${D} SET cleared_at = $2,
           body = jsonb_set(body, '{clearedAt}', to_jsonb($3::text))
         WHERE disruption_id = $1 AND cleared_at IS NULL RETURNING *`,
        [id, at, at.toISOString()],
      );
      disruptions.invalidate();
      if (res.rows[0]) return { disruption: rowToDisruption(res.rows[0] as DisruptionRow), changed: true };
      const existing = await pool.query(`SELECT * FROM ${D} WHERE disruption_id = $1`, [id]);
      return existing.rows[0] ? { disruption: rowToDisruption(existing.rows[0] as DisruptionRow), changed: false } : undefined;
    },

    activeDisruptions: (at) => disruptions.active(at),

    async close() {
      await listener?.close();
      await pool.end();
    },
  };
  return store;
}

/**
 * Listens on a connection of its own (checked out of `pool` for good) for the disruptions
 * trigger's notifications of `schema`, each forgetting what `cache` holds. The cache is used only
 * while listening: from the LISTEN on, and not from the moment the connection is lost until it
 * listens again (then with nothing held, as changes may have been missed meanwhile).
 */
function listenForDisruptions(pool: pg.Pool, schema: string, cache: ReturnType<typeof createDisruptionCache>) {
  let closed = false;
  let client: pg.PoolClient | undefined;
  let timer: NodeJS.Timeout | undefined;
  let failures = 0;
  const onNotification = (n: pg.Notification) => {
    if (n.channel === DISRUPTIONS_CHANNEL && n.payload === schema) cache.invalidate();
  };
  const drop = (c: pg.PoolClient, err?: Error) => {
    if (client !== c) return;
    client = undefined;
    cache.watching(false);
    c.removeListener("notification", onNotification);
    // Destroyed, never back in the pool: the session still listens.
    c.release(err ?? true);
    if (!closed) timer = setTimeout(() => void listen(), RELISTEN_DELAYS_MS[Math.min(failures++, RELISTEN_DELAYS_MS.length - 1)]);
  };
  const listen = async () => {
    timer = undefined;
    let c: pg.PoolClient;
    try {
      c = await pool.connect();
    } catch {
      if (!closed) timer = setTimeout(() => void listen(), RELISTEN_DELAYS_MS[Math.min(failures++, RELISTEN_DELAYS_MS.length - 1)]);
      return;
    }
    if (closed) return c.release(true);
    client = c;
    c.on("notification", onNotification);
    c.once("error", (err) => drop(c, err));
    c.once("end", () => drop(c));
    try {
      await c.query(`LISTEN ${DISRUPTIONS_CHANNEL}`);
    } catch (err) {
      drop(c, err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (client !== c) return;
    failures = 0;
    cache.watching(true);
  };
  return {
    started: listen(),
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      if (client) drop(client);
    },
  };
}

interface ShipmentRow {
  tracking_number: string;
  region: string;
  route_id: string;
  revision: number;
  origin_hub: string;
  destination_hub: string;
  service_level: string;
  ready_at: Date;
  route: JsonValue | null;
  delivered: boolean;
  last_event_id: string | null;
  last_reason: number;
  last_detail: string;
  previous_eta: JsonValue | null;
  avoided_disruptions: string[];
}

interface HistoryRow {
  revision: number;
  eta: JsonValue | null;
  reason: number;
  detail: string;
  revised_at: Date;
}

interface DisruptionRow {
  hubs: string[];
  body: JsonValue;
}

type ChangedRow = ShipmentRow & { unchanged: boolean };

function readValues(trackingNumbers: readonly string[], known: ReadonlyMap<string, number>): [readonly string[], Array<number | null>] {
  return [trackingNumbers, trackingNumbers.map((tn) => known.get(tn) ?? null)];
}

function changedOf(rows: readonly ChangedRow[]): ChangedShipments {
  const changed = new Map<string, ShipmentRoute>();
  const unchanged = new Set<string>();
  for (const row of rows) {
    if (row.unchanged) unchanged.add(row.tracking_number);
    else changed.set(row.tracking_number, rowToShipment(row));
  }
  return { changed, unchanged };
}

/** The tracking numbers of `writes` that were not stored. */
function conflictsOf(writes: readonly RevisionWrite[], stored: ReadonlyArray<{ tracking_number: string }>): Set<string> {
  const done = new Set(stored.map((r) => r.tracking_number));
  return new Set(writes.map((w) => w.trackingNumber).filter((tn) => !done.has(tn)));
}

/** The hub codes a revision's route touches (the GIN-indexed `hubs` column). */
function hubsOf(r: RouteRevision | undefined): string[] {
  if (!r) return [];
  const codes = new Set<string>();
  for (const leg of r.route.legs) codes.add(leg.fromHub).add(leg.toHub);
  return [...codes];
}

function etaJson(r: RouteRevision): JsonValue | null {
  return r.route.eta ? toJson(EtaSchema, r.route.eta) : null;
}

/** A revision as a row of the `jsonb_to_recordset` input of `saveRevisions`. */
function revisionRecord({ trackingNumber, expectedRevision, revision: r }: RevisionWrite) {
  return {
    tracking_number: trackingNumber,
    expected: expectedRevision,
    route: toJson(RouteSchema, r.route),
    hubs: hubsOf(r),
    last_event_id: r.eventId,
    last_reason: r.reason,
    last_detail: r.detail,
    avoided: r.avoidedDisruptions,
    delivered: r.delivered ?? false,
    eta: etaJson(r),
    revised_at: r.revisedAt.toISOString(),
  };
}

/** A new shipment as a row of the `jsonb_to_recordset` input of `createMany`. */
function shipmentRecord({ shipment: s, first }: ShipmentWrite) {
  return {
    tracking_number: s.trackingNumber,
    region: s.region,
    route_id: s.routeId,
    revision: first ? 1 : 0,
    origin_hub: s.originHub,
    destination_hub: s.destinationHub,
    service_level: s.serviceLevel,
    ready_at: s.readyAt.toISOString(),
    route: first ? toJson(RouteSchema, first.route) : null,
    hubs: hubsOf(first),
    last_event_id: s.lastEventId ?? null,
    last_reason: first?.reason ?? 0,
    last_detail: first?.detail ?? "",
    avoided: first?.avoidedDisruptions ?? [],
    eta: first ? etaJson(first) : null,
    revised_at: first ? first.revisedAt.toISOString() : null,
  };
}

function rowToShipment(row: ShipmentRow): ShipmentRoute {
  return {
    trackingNumber: row.tracking_number,
    region: row.region,
    routeId: row.route_id,
    revision: row.revision,
    originHub: row.origin_hub,
    destinationHub: row.destination_hub,
    serviceLevel: row.service_level as ServiceLevelName,
    readyAt: row.ready_at,
    route: row.route === null ? undefined : fromJson(RouteSchema, row.route),
    delivered: row.delivered,
    lastEventId: row.last_event_id ?? undefined,
    lastReason: row.last_reason as EtaChangeReason,
    lastDetail: row.last_detail,
    previousEta: row.previous_eta === null ? undefined : fromJson(EtaSchema, row.previous_eta),
    avoidedDisruptions: row.avoided_disruptions,
  };
}

function rowToDisruption(row: DisruptionRow): StoredDisruption {
  return { disruption: fromJson(DisruptionSchema, row.body), hubCodes: row.hubs };
}

/**
 * Routing's schema, versioned (see `migrate` in @logistics/shared/postgres). Version 1 is the
 * original schema, written with IF NOT EXISTS so a database created before versioning is adopted
 * as it is; later versions only ALTER.
 */
function routingMigrations(S: string, H: string, D: string, notify: string): Migration[] {
  return [
    {
      version: 1,
      name: "routes, ETA history, disruptions",
      sql: `
        CREATE TABLE IF NOT EXISTS ${S} (
          tracking_number text PRIMARY KEY,
          region text NOT NULL,
          route_id text NOT NULL,
          revision integer NOT NULL,
          origin_hub text NOT NULL,
          destination_hub text NOT NULL,
          service_level text NOT NULL,
          ready_at timestamptz NOT NULL,
          route jsonb,
          hubs text[] NOT NULL DEFAULT '{}',
          delivered boolean NOT NULL DEFAULT false,
          last_event_id text,
          last_reason integer NOT NULL DEFAULT 0,
          last_detail text NOT NULL DEFAULT '',
          previous_eta jsonb,
          avoided_disruptions text[] NOT NULL DEFAULT '{}',
          updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS routing_shipments_hubs_idx ON ${S} USING gin (hubs) WHERE NOT delivered;
        CREATE INDEX IF NOT EXISTS routing_shipments_avoided_idx ON ${S} USING gin (avoided_disruptions) WHERE NOT delivered;
        CREATE TABLE IF NOT EXISTS ${H} (
          tracking_number text NOT NULL,
          revision integer NOT NULL,
          eta jsonb,
          reason integer NOT NULL,
          detail text NOT NULL,
          revised_at timestamptz NOT NULL,
          PRIMARY KEY (tracking_number, revision)
        );
        CREATE TABLE IF NOT EXISTS ${D} (
          disruption_id text PRIMARY KEY,
          hubs text[] NOT NULL,
          starts_at timestamptz NOT NULL,
          ends_at timestamptz,
          cleared_at timestamptz,
          body jsonb NOT NULL
        );`,
    },
    {
      version: 2,
      name: "notify changes of disruptions",
      // Per statement, whatever it changed: replicas forget the active disruptions they hold.
      sql: `
        CREATE OR REPLACE FUNCTION ${notify}() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
          PERFORM pg_notify('${DISRUPTIONS_CHANNEL}', TG_TABLE_SCHEMA);
          RETURN NULL;
        END
        $fn$;
        DROP TRIGGER IF EXISTS routing_disruptions_notify ON ${D};
        CREATE TRIGGER routing_disruptions_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${D}
          FOR EACH STATEMENT EXECUTE FUNCTION ${notify}();`,
    },
  ];
}
