/**
 * Bulk load of generated shipments into a PostgreSQL shipment store's tables with COPY: the rows
 * the store's batched apply writes for the same events (`shipments`: the queried columns and the
 * document; `shipment_events`: one history row per applied event, `applied_at` left to its
 * default; `applied_events`: one dedupe row per event). The secondary indexes can be dropped
 * before and rebuilt after the load (the same definitions, read back from the catalog), which is
 * how a bulk load is done; the primary keys stay.
 */
import { once } from "node:events";
import type { Writable } from "node:stream";
import { readFileSync } from "node:fs";
import pg from "pg";
import { eventKey, listPartitions } from "@logistics/tracking/store";
import { from as copyFrom } from "pg-copy-streams";
import type { GeneratedShipment, ShipmentGenerator } from "./generate.js";

/** COPY text format: backslash, tab, newline and carriage return escaped. */
export function copyText(s: string): string {
  return /[\\\t\n\r]/.test(s) ? s.replace(/\\/g, "\\\\").replace(/\t/g, "\\t").replace(/\n/g, "\\n").replace(/\r/g, "\\r") : s;
}

const nul = (v: string | number | undefined | null) => (v === undefined || v === null ? "\\N" : copyText(String(v)));

/** The three tables' COPY lines for one shipment: its row, one history line per event (in `s.events` order), its dedupe rows. */
export function copyLines(s: GeneratedShipment): { shipment: string; events: string[]; applied: string } {
  const d = s.doc;
  const shipment =
    [
      d.trackingNumber,
      nul(d.customerId),
      nul(d.carrierCode),
      d.status,
      d.updatedAt,
      nul(d.location?.latitude),
      nul(d.location?.longitude),
      d.version,
      copyText(JSON.stringify(d)),
    ].join("\t") +
    "\n";
  const events: string[] = [];
  let applied = "";
  s.events.forEach((e, i) => {
    const k = eventKey(e);
    events.push(`${copyText(k.eventId)}\t${k.trackingNumber}\t${k.eventTime}\t${e.type}\t${s.late[i] ? "t" : "f"}\t${copyText(s.payloads[i]!)}\n`);
    applied += `${copyText(k.eventId)}\t${k.trackingNumber}\t${k.eventTime}\n`;
  });
  return { shipment, events, applied };
}

const COLUMNS = {
  shipments: "(tracking_number, customer_id, carrier_code, status, updated_at, lat, lon, version, doc)",
  events: "(event_id, tracking_number, event_time, event_type, late, payload)",
  applied_events: "(event_id, tracking_number, event_time)",
} as const;

/** What a load did. */
export interface LoadStats {
  shipments: number;
  events: number;
  lateEvents: number;
  /** Wall time of generating and copying the rows. */
  copyMs: number;
  /**
   * CPU time of this process during `copyMs` (generating the shipments, deriving their documents
   * and writing the COPY text): the rest of the wall time is the server's (parsing, heap and
   * primary-key inserts, WAL) or waiting for a core.
   */
  generatorCpuMs: number;
  /** CPU time of the server processes running the COPYs (0 unless `localServer`). */
  serverCpuMs: number;
  /** COPY streams (connections) used: one per table and history partition with rows. */
  streams: number;
  /** Every table was empty and loaded with COPY FREEZE (see bulkLoad). */
  frozen: boolean;
  /** Wall time of rebuilding the dropped indexes (0 when none were dropped). */
  indexMs: number;
  /** Wall time of ANALYZE. */
  analyzeMs: number;
  /** Bytes of COPY text sent per table. */
  bytes: { shipments: number; shipment_events: number; applied_events: number };
}

/** Options of {@link bulkLoad}. */
export interface BulkLoadOptions {
  /** Drop the secondary indexes first and rebuild them after. Default true. */
  rebuildIndexes?: boolean;
  /** Called for every generated shipment (sampling query parameters). */
  onShipment?: (s: GeneratedShipment) => void;
  /** Progress, every `progressEvery` shipments. */
  onProgress?: (done: number, elapsedMs: number) => void;
  progressEvery?: number;
  /**
   * The server runs on this machine: read its COPY backends' CPU time from /proc (a remote
   * server's process ids mean nothing here). Default false.
   */
  localServer?: boolean;
  /** Asked after every chunk (with the shipments loaded so far): true ends the load there. */
  shouldStop?: (done: number) => boolean;
}

/** Definitions of the store's secondary (non-constraint) indexes on shipments and shipment_events. */
export async function secondaryIndexes(pool: pg.Pool): Promise<Array<{ name: string; table: string; def: string }>> {
  const res = await pool.query<{ name: string; table: string; def: string }>(
    `SELECT i.indexname AS name, i.tablename AS table, i.indexdef AS def FROM pg_indexes i
      WHERE i.schemaname = current_schema() AND i.tablename IN ('shipments', 'shipment_events')
        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)
      ORDER BY i.indexname`,
  );
  // The partitioned table's index is listed `ON ONLY`; rebuilt on the parent it must cascade.
  return res.rows.map((r) => ({ name: r.name, table: r.table, def: r.def.replace(" ON ONLY ", " ON ") }));
}

/**
 * Bytes a COPY stream may hold unsent before the generator waits for it. Waiting at every chunk
 * (the stream's own 16 KiB mark) made generating and copying take turns: the server idled while
 * the next chunk was generated, and the generator while the server parsed. A few chunks of slack
 * let both work at once; the server idles only for one chunk after each full drain.
 */
const MAX_BUFFERED_BYTES = 16 * 2 ** 20;

/** CPU seconds a local process has used (Linux /proc), or undefined when it cannot be read. */
function processCpuSeconds(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/**
 * One COPY into one table (a history partition, not the partitioned parent) on a connection of
 * its own, in a transaction. When the table is empty it is TRUNCATEd in that transaction and
 * loaded `FREEZE`: the rows are written frozen and all-visible (no hint-bit rewrite of every page
 * by the first reads, no freeze vacuum later), and under `wal_level = minimal` the load writes
 * no WAL (the files are synced at commit instead). On a table that holds rows, a plain COPY.
 */
class CopyTarget {
  private stream?: Writable;
  private pid = 0;
  private cpu0 = 0;
  private finished = false;
  frozen = false;
  private constructor(
    readonly table: string,
    private readonly client: pg.Client,
  ) {}

  static async open(connection: pg.ClientConfig, table: string, columns: string, local: boolean, onError: (err: Error) => void): Promise<CopyTarget> {
    const client = new pg.Client(connection);
    await client.connect();
    const t = new CopyTarget(table, client);
    try {
      if (local) {
        t.pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
        t.cpu0 = processCpuSeconds(t.pid) ?? 0;
      }
      await client.query("BEGIN");
      await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      t.frozen = !(await client.query<{ busy: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${table}) AS busy`)).rows[0]!.busy;
      if (t.frozen) await client.query(`TRUNCATE ${table}`);
      t.stream = client.query(copyFrom(`COPY ${table} ${columns} FROM STDIN${t.frozen ? " (FREEZE)" : ""}`));
      t.stream.on("error", onError);
      return t;
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
  }

  async write(chunk: string): Promise<void> {
    const s = this.stream!;
    s.write(chunk);
    if (s.writableLength > MAX_BUFFERED_BYTES) await once(s, "drain");
  }

  /** Ends the COPY and commits; returns the CPU seconds its server process used (0 when unknown). */
  async finish(): Promise<number> {
    const s = this.stream!;
    s.end();
    await once(s, "finish");
    await this.client.query("COMMIT");
    this.finished = true;
    const cpu = this.pid ? processCpuSeconds(this.pid) : undefined;
    return cpu === undefined ? 0 : cpu - this.cpu0;
  }

  async close(): Promise<void> {
    if (!this.finished) await this.client.query("ROLLBACK").catch(() => {});
    await this.client.end().catch(() => {});
  }
}

/**
 * Generates `count` shipments with `gen` and COPYs their rows into the store's tables (current
 * schema of `pool`'s connections; the store's migrations and the partitions covering the event
 * times must exist). One COPY stream per table and per history partition with rows (routed by
 * the event time's UTC month, as PostgreSQL would route them; months without a partition go to
 * the default partition), each on a connection of its own, fed in chunks (see {@link CopyTarget}).
 */
export async function bulkLoad(pool: pg.Pool, gen: ShipmentGenerator, count: number, o: BulkLoadOptions = {}): Promise<LoadStats> {
  const stats: LoadStats = {
    shipments: 0,
    events: 0,
    lateEvents: 0,
    copyMs: 0,
    generatorCpuMs: 0,
    serverCpuMs: 0,
    streams: 0,
    frozen: false,
    indexMs: 0,
    analyzeMs: 0,
    bytes: { shipments: 0, shipment_events: 0, applied_events: 0 },
  };
  const indexes = o.rebuildIndexes === false ? [] : await secondaryIndexes(pool);
  for (const ix of indexes) await pool.query(`DROP INDEX ${ix.name}`);
  const partitionOf = new Map((await listPartitions(pool)).map((name) => [name.slice(-6), name]));
  const connection = (pool as pg.Pool & { options: pg.ClientConfig }).options;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const targets = new Map<string, CopyTarget>();
  let failure: Error | undefined;
  let fail: (err: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => {
    fail = (err) => {
      failure ??= err;
      reject(err);
    };
  });
  failed.catch(() => {});
  const target = async (table: string, columns: string): Promise<CopyTarget> => {
    let t = targets.get(table);
    if (!t) {
      t = await CopyTarget.open(connection, table, columns, o.localServer ?? false, fail);
      targets.set(table, t);
    }
    return t;
  };
  try {
    const every = o.progressEvery ?? 50_000;
    const CHUNK = 500;
    for (let done = 0; done < count; ) {
      let sh = "";
      let ap = "";
      const ev = new Map<string, string>();
      const n = Math.min(CHUNK, count - done);
      for (let i = 0; i < n; i++) {
        const s = gen.generate();
        o.onShipment?.(s);
        const lines = copyLines(s);
        sh += lines.shipment;
        ap += lines.applied;
        s.events.forEach((e, j) => {
          const { eventTime } = eventKey(e);
          const table = partitionOf.get(eventTime.slice(0, 4) + eventTime.slice(5, 7)) ?? "shipment_events_default";
          ev.set(table, (ev.get(table) ?? "") + lines.events[j]!);
        });
        stats.events += s.events.length;
        stats.lateEvents += s.late.filter(Boolean).length;
      }
      stats.bytes.shipments += Buffer.byteLength(sh);
      stats.bytes.applied_events += Buffer.byteLength(ap);
      const writes = [
        target("shipments", COLUMNS.shipments).then((t) => t.write(sh)),
        target("applied_events", COLUMNS.applied_events).then((t) => t.write(ap)),
      ];
      for (const [table, text] of ev) {
        stats.bytes.shipment_events += Buffer.byteLength(text);
        writes.push(target(table, COLUMNS.events).then((t) => t.write(text)));
      }
      await Promise.race([Promise.all(writes), failed]);
      const before = done;
      done += n;
      stats.shipments = done;
      if (o.onProgress && Math.floor(done / every) !== Math.floor(before / every)) o.onProgress(done, performance.now() - t0);
      if (done < count && o.shouldStop?.(done)) break;
    }
    const cpu = await Promise.race([Promise.all([...targets.values()].map((t) => t.finish())), failed]);
    stats.serverCpuMs = cpu.reduce((a, b) => a + b, 0) * 1000;
    stats.streams = targets.size;
    stats.frozen = [...targets.values()].every((t) => t.frozen);
  } finally {
    await Promise.all([...targets.values()].map((t) => t.close()));
  }
  if (failure) throw failure;
  stats.copyMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  stats.generatorCpuMs = (cpu.user + cpu.system) / 1000;
  const t1 = performance.now();
  // Two builds at a time (the shipments' and the history's on separate connections): one build
  // is mostly one core, and an index build holds no lock another table's build needs.
  const queues = [indexes.filter((ix) => ix.table === "shipments"), indexes.filter((ix) => ix.table !== "shipments")];
  await Promise.all(
    queues.map(async (queue) => {
      for (const ix of queue) await pool.query(ix.def);
    }),
  );
  stats.indexMs = indexes.length ? performance.now() - t1 : 0;
  const t2 = performance.now();
  await pool.query("ANALYZE shipments, shipment_events, applied_events");
  stats.analyzeMs = performance.now() - t2;
  return stats;
}
