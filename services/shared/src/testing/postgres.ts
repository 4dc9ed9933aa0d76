import pg from "pg";
import { testDatabaseUrl } from "./test-servers.js";
import { uniqueName } from "./unique.js";

/** Options for {@link createTestSchema}. */
export interface TestSchemaOptions {
  /** Server to use. Default: the test database (`DATABASE_URL`, see {@link testDatabaseUrl}). */
  connectionString?: string;
  /** Schema name prefix; a unique suffix is appended. Default "t". */
  prefix?: string;
}

/** A schema created for one test by {@link createTestSchema}. */
export interface TestSchema {
  /** The schema name (lowercase `[a-z0-9_]`, unquoted-identifier safe). */
  readonly schema: string;
  /**
   * The input connection string with `options=-c search_path=<schema>,public`, so every
   * connection made with it creates and finds tables in the test schema (and still sees
   * extensions installed in `public`).
   */
  readonly connectionString: string;
  /** Drops the schema and everything in it (`DROP SCHEMA ... CASCADE`). Idempotent. */
  drop(): Promise<void>;
}

/**
 * Creates a uniquely named schema in a real PostgreSQL database so tests can run in parallel
 * with each other (and with anything else using the database) without seeing each other's
 * tables. Close every pool that used the returned connection string before `drop()`, or the drop
 * waits for their locks.
 */
export async function createTestSchema(opts: TestSchemaOptions = {}): Promise<TestSchema> {
  const base = opts.connectionString ?? testDatabaseUrl();
  const schema = uniqueName(opts.prefix ?? "t");
  await withClient(base, (c) => c.query(`CREATE SCHEMA "${schema}"`));

  const url = new URL(base);
  url.searchParams.set("options", `-c search_path=${schema},public`);
  let dropped = false;
  return {
    schema,
    connectionString: url.toString(),
    async drop() {
      if (dropped) return;
      dropped = true;
      await withClient(base, (c) => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
    },
  };
}

async function withClient<T>(connectionString: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
