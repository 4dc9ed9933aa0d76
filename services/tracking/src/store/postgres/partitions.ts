import type pg from "pg";
import { inTransaction } from "@logistics/shared/postgres";
import { PARTITION_AUTOVACUUM, STORE_LOCK_NAME } from "./migrations.js";

/** Options for {@link ensurePartitions}. */
export interface EnsurePartitionsOptions {
  /** Also make sure this many past months exist (for late events). Default 1. */
  monthsBehind?: number;
  /** "Now" for the month arithmetic. Default: the current time. */
  now?: Date;
}

const PARTITION = /^shipment_events_p(\d{4})(\d{2})$/;

/** `shipment_events_pYYYYMM`: the hot partition holding events of that UTC month. */
export function partitionName(year: number, month0: number): string {
  return `shipment_events_p${year}${String(month0 + 1).padStart(2, "0")}`;
}

/** `shipment_events_archive_YYYYMM`: a detached month, no longer part of shipment_events. */
export function archiveName(year: number, month0: number): string {
  return `shipment_events_archive_${year}${String(month0 + 1).padStart(2, "0")}`;
}

function monthStart(year: number, month0: number): Date {
  return new Date(Date.UTC(year, month0, 1));
}

/** Under the store's lock, like its migrations, and like them without the statement timeout: moving rows and attaching or detaching partitions may take long. */
function inLockedTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  return inTransaction(pool, fn, { lockName: STORE_LOCK_NAME, untimed: true });
}

/** Names of the current monthly partitions of shipment_events (in the current schema). */
export async function listPartitions(pool: pg.Pool | pg.PoolClient): Promise<string[]> {
  const res = await pool.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'shipment_events'::regclass ORDER BY c.relname`,
  );
  return res.rows.map((r) => r.name).filter((n) => PARTITION.test(n));
}

/**
 * Makes sure monthly partitions exist from `monthsBehind` months before `now` to `monthsAhead`
 * months after it (UTC months). Rows that landed in the default partition for a month being
 * created are moved into it first, so creating a partition never fails on existing data.
 * Idempotent; serialized across replicas by an advisory lock. Returns the partitions created.
 */
export async function ensurePartitions(pool: pg.Pool, monthsAhead: number, opts: EnsurePartitionsOptions = {}): Promise<string[]> {
  const now = opts.now ?? new Date();
  const behind = opts.monthsBehind ?? 1;
  return inLockedTransaction(pool, async (client) => {
    const existing = new Set(await listPartitions(client));
    const created: string[] = [];
    for (let offset = -behind; offset <= monthsAhead; offset++) {
      const from = monthStart(now.getUTCFullYear(), now.getUTCMonth() + offset);
      const to = monthStart(from.getUTCFullYear(), from.getUTCMonth() + 1);
      const name = partitionName(from.getUTCFullYear(), from.getUTCMonth());
      if (existing.has(name)) continue;
      const range = [from.toISOString(), to.toISOString()];
      await client.query(`CREATE TABLE ${name} (LIKE shipment_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS) WITH (${PARTITION_AUTOVACUUM})`);
      await client.query(
        `WITH moved AS (
           DELETE FROM shipment_events_default WHERE event_time >= $1 AND event_time < $2 RETURNING *)
         INSERT INTO ${name} SELECT * FROM moved`,
        range,
      );
      await client.query(
        `ALTER TABLE shipment_events ATTACH PARTITION ${name} FOR VALUES FROM ('${range[0]}') TO ('${range[1]}')`,
      );
      created.push(name);
    }
    return created;
  });
}

/**
 * Detaches every monthly partition whose whole month lies before `cutoff` and renames it to
 * `shipment_events_archive_YYYYMM`: its events leave the hot table (and its indexes) but stay in
 * the database for archiving or dropping. Returns the archive table names.
 *
 * Event-id dedupe rows in `applied_events` are kept, so a redelivered ancient event is still
 * recognised as a duplicate.
 */
export async function detachPartitionsOlderThan(pool: pg.Pool, cutoff: Date): Promise<string[]> {
  return inLockedTransaction(pool, async (client) => {
    const archived: string[] = [];
    for (const name of await listPartitions(client)) {
      const m = PARTITION.exec(name) as RegExpExecArray;
      const year = Number(m[1]);
      const month0 = Number(m[2]) - 1;
      if (monthStart(year, month0 + 1).getTime() > cutoff.getTime()) continue;
      const archive = archiveName(year, month0);
      await client.query(`ALTER TABLE shipment_events DETACH PARTITION ${name}`);
      await client.query(`ALTER TABLE ${name} RENAME TO ${archive}`);
      archived.push(archive);
    }
    return archived;
  });
}
