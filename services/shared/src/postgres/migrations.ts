import type pg from "pg";
import { inTransaction } from "./transaction.js";

/** One schema change. Versions are applied in ascending order, each exactly once. */
export interface Migration {
  readonly version: number;
  /** What it does, recorded with the version. */
  readonly name: string;
  /** The change as SQL text (several statements allowed), run inside the migration transaction… */
  readonly sql?: string;
  /** …or as a function, for changes that need parameters or depend on what they find. */
  readonly up?: (client: pg.PoolClient) => Promise<void>;
}

/** Options for {@link migrate}. */
export interface MigrateOptions {
  /**
   * Name of the advisory lock taken (transaction-scoped, `pg_advisory_xact_lock(hashtext(name))`)
   * around the whole run, so replicas starting together apply each version once. Use one name per
   * schema owner; other maintenance of the same tables (e.g. partitions) takes the same lock.
   */
  lockName: string;
  /**
   * Schema that holds the tables and the `schema_migrations` ledger; created if missing. Default:
   * none, i.e. the first schema of the connection's search_path.
   */
  schema?: string;
  /**
   * Name of the ledger table. Default `schema_migrations`. Owners whose tables may share a schema
   * with another owner's (no `schema` given) need a ledger of their own.
   */
  ledger?: string;
  migrations: readonly Migration[];
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** `"schema".table`, or `table` when no schema is given; the schema name is checked. */
export function qualify(schema: string | undefined, table: string): string {
  if (schema === undefined) return table;
  if (!IDENTIFIER.test(schema)) throw new RangeError(`invalid schema name ${JSON.stringify(schema)}`);
  return `"${schema}".${table}`;
}

/**
 * Applies the pending migrations in one transaction under the advisory lock `lockName`, recording
 * each in the ledger table `(version, name, applied_at)`. Idempotent and safe to run from many
 * replicas at once; a failing migration rolls the whole run back. Returns the versions applied.
 * Runs without the pool's statement timeout (a migration may rewrite a large table, and a replica
 * waits on the advisory lock for as long as another one migrates).
 */
export async function migrate(pool: pg.Pool, o: MigrateOptions): Promise<number[]> {
  const ledger = qualify(o.schema, o.ledger ?? "schema_migrations");
  return inTransaction(
    pool,
    async (client) => {
      if (o.schema !== undefined) await client.query(`CREATE SCHEMA IF NOT EXISTS "${o.schema}"`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${ledger} (
        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const done = await client.query<{ version: number }>(`SELECT version FROM ${ledger}`);
      const have = new Set(done.rows.map((r) => Number(r.version)));
      const applied: number[] = [];
      for (const m of [...o.migrations].sort((a, b) => a.version - b.version)) {
        if (have.has(m.version)) continue;
        if ((m.sql === undefined) === (m.up === undefined)) throw new Error(`migration ${m.version}: give exactly one of sql and up`);
        if (m.sql !== undefined) await client.query(m.sql);
        else await m.up?.(client);
        await client.query(`INSERT INTO ${ledger} (version, name) VALUES ($1, $2)`, [m.version, m.name]);
        applied.push(m.version);
      }
      return applied;
    },
    { lockName: o.lockName, untimed: true },
  );
}
