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
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import type { GeneratedShipment, ShipmentGenerator } from "./generate.js";

/** COPY text format: backslash, tab, newline and carriage return escaped. */
export function copyText(s: string): string {
  return /[\\\t\n\r]/.test(s) ? s.replace(/\\/g, "\\\\").replace(/\t/g, "\\t").replace(/\n/g, "\\n").replace(/\r/g, "\\r") : s;
}

const nul = (v: string | number | undefined | null) => (v === undefined || v === null ? "\\N" : copyText(String(v)));

/** The three tables' COPY lines for one shipment. */
export function copyLines(s: GeneratedShipment): { shipment: string; events: string; applied: string } {
  const d = s.doc;
  const shipment =
    [d.trackingNumber, nul(d.customerId), nul(d.carrierCode), d.status, d.updatedAt, nul(d.location?.lat), nul(d.location?.lon), d.version, copyText(JSON.stringify(d))].join("\t") +
    "\n";
  let events = "";
  let applied = "";
  s.events.forEach((e, i) => {
    events += `${copyText(e.eventId)}\t${e.trackingNumber}\t${e.eventTime}\t${e.type}\t${s.late[i] ? "t" : "f"}\t${copyText(JSON.stringify(e))}\n`;
    applied += `${copyText(e.eventId)}\t${e.trackingNumber}\t${e.eventTime}\n`;
  });
  return { shipment, events, applied };
}

const COPY_SQL = {
  shipment: "COPY shipments (tracking_number, customer_id, carrier_code, status, updated_at, lat, lon, version, doc) FROM STDIN",
  events: "COPY shipment_events (event_id, tracking_number, event_time, event_type, late, payload) FROM STDIN",
  applied: "COPY applied_events (event_id, tracking_number, event_time) FROM STDIN",
} as const;

/** What a load did. */
export interface LoadStats {
  shipments: number;
  events: number;
  lateEvents: number;
  /** Wall time of generating and copying the rows. */
  copyMs: number;
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
  /** Asked after every chunk (with the shipments loaded so far): true ends the load there. */
  shouldStop?: (done: number) => boolean;
}

/** Definitions of the store's secondary (non-constraint) indexes on shipments and shipment_events. */
export async function secondaryIndexes(pool: pg.Pool): Promise<Array<{ name: string; def: string }>> {
  const res = await pool.query<{ name: string; def: string }>(
    `SELECT i.indexname AS name, i.indexdef AS def FROM pg_indexes i
      WHERE i.schemaname = current_schema() AND i.tablename IN ('shipments', 'shipment_events')
        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)
      ORDER BY i.indexname`,
  );
  // The partitioned table's index is listed `ON ONLY`; rebuilt on the parent it must cascade.
  return res.rows.map((r) => ({ name: r.name, def: r.def.replace(" ON ONLY ", " ON ") }));
}

async function write(stream: Writable, chunk: string): Promise<void> {
  if (!stream.write(chunk)) await once(stream, "drain");
}

/**
 * Generates `count` shipments with `gen` and COPYs their rows into the store's tables (current
 * schema of `pool`'s connections; the store's migrations and the partitions covering the event
 * times must exist). Three COPY streams on three connections, fed in chunks.
 */
export async function bulkLoad(pool: pg.Pool, gen: ShipmentGenerator, count: number, o: BulkLoadOptions = {}): Promise<LoadStats> {
  const stats: LoadStats = {
    shipments: 0,
    events: 0,
    lateEvents: 0,
    copyMs: 0,
    indexMs: 0,
    analyzeMs: 0,
    bytes: { shipments: 0, shipment_events: 0, applied_events: 0 },
  };
  const indexes = o.rebuildIndexes === false ? [] : await secondaryIndexes(pool);
  for (const ix of indexes) await pool.query(`DROP INDEX ${ix.name}`);
  const t0 = performance.now();
  const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
  try {
    const [cs, ce, ca] = clients;
    const streams = {
      shipment: cs.query(copyFrom(COPY_SQL.shipment)),
      events: ce.query(copyFrom(COPY_SQL.events)),
      applied: ca.query(copyFrom(COPY_SQL.applied)),
    };
    const failed = new Promise<never>((_, reject) => {
      for (const s of Object.values(streams)) s.on("error", reject);
    });
    failed.catch(() => {});
    const every = o.progressEvery ?? 50_000;
    const CHUNK = 500;
    for (let done = 0; done < count; ) {
      let sh = "";
      let ev = "";
      let ap = "";
      const n = Math.min(CHUNK, count - done);
      for (let i = 0; i < n; i++) {
        const s = gen.generate();
        o.onShipment?.(s);
        const lines = copyLines(s);
        sh += lines.shipment;
        ev += lines.events;
        ap += lines.applied;
        stats.events += s.events.length;
        stats.lateEvents += s.late.filter(Boolean).length;
      }
      stats.bytes.shipments += Buffer.byteLength(sh);
      stats.bytes.shipment_events += Buffer.byteLength(ev);
      stats.bytes.applied_events += Buffer.byteLength(ap);
      await Promise.race([Promise.all([write(streams.shipment, sh), write(streams.events, ev), write(streams.applied, ap)]), failed]);
      const before = done;
      done += n;
      stats.shipments = done;
      if (o.onProgress && Math.floor(done / every) !== Math.floor(before / every)) o.onProgress(done, performance.now() - t0);
      if (done < count && o.shouldStop?.(done)) break;
    }
    await Promise.race([
      Promise.all(
        Object.values(streams).map(async (s) => {
          s.end();
          await once(s, "finish");
        }),
      ),
      failed,
    ]);
  } finally {
    for (const c of clients) c.release();
  }
  stats.copyMs = performance.now() - t0;
  const t1 = performance.now();
  for (const ix of indexes) await pool.query(ix.def);
  stats.indexMs = indexes.length ? performance.now() - t1 : 0;
  const t2 = performance.now();
  await pool.query("ANALYZE shipments, shipment_events, applied_events");
  stats.analyzeMs = performance.now() - t2;
  return stats;
}
