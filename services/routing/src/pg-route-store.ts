import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { EtaSchema, RouteSchema, type EtaChangeReason } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { DisruptionSchema } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { createPgPool, migrate, named, qualify, type Migration, type PgTimeouts } from "@logistics/shared/postgres";
import type { ServiceLevelName } from "./planner.js";
import {
  ConcurrentUpdateError,
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
}

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
  const pool = createPgPool({ ...opts.timeouts, connectionString: opts.connectionString, max: opts.maxConnections ?? 10, applicationName: "routing" });
  try {
    // Routing may share a schema with other owners (no DATABASE_SCHEMA): its own ledger table.
    await migrate(pool, { lockName: "routing-schema", ledger: "routing_schema_migrations", ...(opts.schema ? { schema: opts.schema } : {}), migrations: routingMigrations(S, H, D) });
  } catch (e) {
    await pool.end();
    throw e;
  }

  return {
    async get(trackingNumber) {
      const res = await pool.query(`SELECT * FROM ${S} WHERE tracking_number = $1`, [trackingNumber]);
      return res.rows[0] ? rowToShipment(res.rows[0] as ShipmentRow) : undefined;
    },

    async getChanged(trackingNumbers, known) {
      const changed = new Map<string, ShipmentRoute>();
      const unchanged = new Set<string>();
      if (trackingNumbers.length === 0) return { changed, unchanged };
      // The route documents of shipments the caller holds at their stored revision stay in the database.
      const res = await pool.query(
        named(`SELECT k.rev IS NOT DISTINCT FROM s.revision AS unchanged, s.tracking_number, s.region, s.route_id, s.revision,
           s.origin_hub, s.destination_hub, s.service_level, s.ready_at, s.delivered, s.last_event_id, s.last_reason,
           s.last_detail, s.avoided_disruptions,
           CASE WHEN k.rev IS NOT DISTINCT FROM s.revision THEN NULL ELSE s.route END AS route,
           CASE WHEN k.rev IS NOT DISTINCT FROM s.revision THEN NULL ELSE s.previous_eta END AS previous_eta
         FROM unnest($1::text[], $2::int[]) AS k(tracking_number, rev) JOIN ${S} s USING (tracking_number)`),
        [trackingNumbers, trackingNumbers.map((tn) => known.get(tn) ?? null)],
      );
      for (const row of res.rows as Array<ShipmentRow & { unchanged: boolean }>) {
        if (row.unchanged) unchanged.add(row.tracking_number);
        else changed.set(row.tracking_number, rowToShipment(row));
      }
      return { changed, unchanged };
    },

    async saveRevisions(writes) {
      if (writes.length === 0) return new Set();
      // One statement, so one transaction: the route rows whose revision still is the expected
      // one move on, and exactly those get their ETA history row.
      const res = await pool.query(
        named(`WITH t AS (
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
         )
         SELECT tracking_number FROM u`),
        [JSON.stringify(writes.map(revisionRecord))],
      );
      const stored = new Set((res.rows as Array<{ tracking_number: string }>).map((r) => r.tracking_number));
      return new Set(writes.map((w) => w.trackingNumber).filter((tn) => !stored.has(tn)));
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
      if (res.rows[0]) return { disruption: rowToDisruption(res.rows[0] as DisruptionRow), changed: true };
      const existing = await pool.query(`SELECT * FROM ${D} WHERE disruption_id = $1`, [id]);
      return existing.rows[0] ? { disruption: rowToDisruption(existing.rows[0] as DisruptionRow), changed: false } : undefined;
    },

    async activeDisruptions(at) {
      const res = await pool.query(`SELECT * FROM ${D} WHERE cleared_at IS NULL AND (ends_at IS NULL OR ends_at > $1)`, [at]);
      return (res.rows as DisruptionRow[]).map(rowToDisruption);
    },

    close: () => pool.end(),
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
function routingMigrations(S: string, H: string, D: string): Migration[] {
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
  ];
}
