import * as assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { createPgPool, migrate, type Migration } from "../src/postgres/index.js";
import { createTestSchema, uniqueName, waitFor, type TestSchema } from "../src/testing/index.js";

describe("PostgreSQL toolkit (real PostgreSQL)", () => {
  let db: TestSchema;
  beforeAll(async () => {
    db = await createTestSchema({ prefix: "pgkit" });
  });
  afterAll(async () => {
    await db.drop();
  });

  const twoVersions = (table: string): Migration[] => [
    { version: 1, name: "table", sql: `CREATE TABLE ${table} (id int PRIMARY KEY)` },
    {
      version: 2,
      name: "column, with a parameterised statement",
      async up(client) {
        await client.query(`ALTER TABLE ${table} ADD COLUMN label text`);
        await client.query(`INSERT INTO ${table} (id, label) VALUES ($1, $2)`, [1, "seeded"]);
      },
    },
  ];

  it("applies each version once, even when eight replicas migrate at the same moment", async () => {
    const pools = Array.from({ length: 8 }, () => createPgPool({ connectionString: db.connectionString, max: 2 }));
    try {
      const table = uniqueName("kit");
      const runs = await Promise.all(pools.map((p) => migrate(p, { lockName: `kit:${table}`, migrations: twoVersions(table) })));
      assert.deepEqual(runs.flat().sort(), [1, 2], "versions 1 and 2 applied by exactly one replica each");
      const rows = await pools[0]!.query<{ label: string }>(`SELECT label FROM ${table}`);
      assert.deepEqual(rows.rows, [{ label: "seeded" }]);
      assert.deepEqual(await migrate(pools[0]!, { lockName: `kit:${table}`, migrations: twoVersions(table) }), []);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it("rolls a whole run back when one migration fails, recording nothing", async () => {
    const pool = createPgPool({ connectionString: db.connectionString, max: 1 });
    try {
      const table = uniqueName("kitfail");
      const broken: Migration[] = [...twoVersions(table), { version: 3, name: "broken", sql: "SELECT * FROM no_such_table" }];
      await assert.rejects(migrate(pool, { lockName: `kit:${table}`, ledger: `${table}_ledger`, migrations: broken }), /no_such_table/);
      const exists = await pool.query(`SELECT to_regclass($1) AS t`, [table]);
      assert.equal(exists.rows[0]?.t, null, "version 1's table was rolled back too");
      assert.deepEqual(await migrate(pool, { lockName: `kit:${table}`, ledger: `${table}_ledger`, migrations: twoVersions(table) }), [1, 2]);
      const ledger = await pool.query<{ version: number }>(`SELECT version FROM ${table}_ledger ORDER BY version`);
      assert.deepEqual(ledger.rows.map((r) => r.version), [1, 2], "the ledger table is the one named");
    } finally {
      await pool.end();
    }
  });

  it("keeps separate owners apart in one schema with their own ledgers, and creates a named schema", async () => {
    const pool = createPgPool({ connectionString: db.connectionString, max: 1 });
    const schema = uniqueName("kitschema");
    try {
      const mine: Migration[] = [{ version: 1, name: "mine", sql: `CREATE TABLE "${schema}".a (id int)` }];
      const theirs: Migration[] = [{ version: 1, name: "theirs", sql: `CREATE TABLE "${schema}".b (id int)` }];
      assert.deepEqual(await migrate(pool, { lockName: "a", schema, ledger: "a_migrations", migrations: mine }), [1]);
      assert.deepEqual(await migrate(pool, { lockName: "b", schema, ledger: "b_migrations", migrations: theirs }), [1]);
    } finally {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await pool.end();
    }
  });

  it("survives the server dropping an idle pooled connection, and reports it to onIdleError", async () => {
    const errors: Error[] = [];
    const app = uniqueName("kitidle");
    const pool = createPgPool({ connectionString: db.connectionString, max: 1, applicationName: app, onIdleError: (e) => errors.push(e) });
    const admin = createPgPool({ connectionString: db.connectionString, max: 1 });
    try {
      await pool.query("SELECT 1"); // one idle connection stays in the pool
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", [app]);
      await waitFor(() => errors.length > 0, { timeoutMs: 10_000, message: "the idle connection's error" });
      const again = await pool.query<{ one: number }>("SELECT 1 AS one");
      assert.equal(again.rows[0]?.one, 1, "the pool reconnects for the next query");
    } finally {
      await pool.end();
      await admin.end();
    }
  });

  it("survives the server dropping a checked-out connection between two queries of a transaction (no unhandled 'error' event)", async () => {
    const app = uniqueName("kitbusy");
    const pool = createPgPool({ connectionString: db.connectionString, max: 1, applicationName: app });
    const admin = createPgPool({ connectionString: db.connectionString, max: 1 });
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on("uncaughtException", onUncaught);
    try {
      const client = await pool.connect();
      await client.query("BEGIN");
      // The server goes away while the transaction is between statements (as pg_ctl stop -m fast does).
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", [app]);
      await waitFor(() => !(client as unknown as { _queryable: boolean })._queryable, { timeoutMs: 10_000, message: "the client to notice" });
      await assert.rejects(client.query("SELECT 1"), "the next statement reports the loss itself");
      client.release();
      const again = await pool.query<{ one: number }>("SELECT 1 AS one");
      assert.equal(again.rows[0]?.one, 1, "the dead client was dropped and the pool reconnects");
      assert.deepEqual(uncaught, [], "nothing reached the process as an uncaught error");
    } finally {
      process.off("uncaughtException", onUncaught);
      await pool.end();
      await admin.end();
    }
  });
});
