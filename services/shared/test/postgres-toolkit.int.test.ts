import * as assert from "node:assert/strict";
import { afterAll, afterEach, beforeAll, beforeEach, describe, it } from "vitest";
import pg from "pg";
import { permanentFailureReason } from "../src/nats/permanent-failure.js";
import { createPgPool, databaseUnavailableReason, inTransaction, migrate, type Migration } from "../src/postgres/index.js";
import { createTestSchema, startBlackHole, startTcpProxy, uniqueName, waitFor, type TestSchema, type TcpProxy } from "../src/testing/index.js";

/** Far above the timeouts configured below: a failure later than this is a hang, not a timeout. */
const BOUND_MS = 15_000;

/** How `p` failed and after how long; fails the test if it does not fail within {@link BOUND_MS}. */
async function failure(p: Promise<unknown>): Promise<{ err: unknown; ms: number }> {
  const t0 = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`still waiting after ${BOUND_MS} ms`)), BOUND_MS)));
  try {
    await Promise.race([p, hang]);
  } catch (err) {
    if (err instanceof Error && err.message.startsWith("still waiting")) throw err;
    return { err, ms: performance.now() - t0 };
  } finally {
    clearTimeout(timer);
  }
  throw new Error("expected a failure");
}

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

  it("closes idle connections after idleTimeoutMs, and keeps them for the pool's life with 0", async () => {
    const closing = createPgPool({ connectionString: db.connectionString, max: 1, idleTimeoutMs: 150 });
    const keeping = createPgPool({ connectionString: db.connectionString, max: 1, idleTimeoutMs: 0 });
    try {
      const backend = async (pool: pg.Pool) => (await pool.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
      const kept = await backend(keeping);
      await backend(closing);
      // Both went idle at the same moment; the one with a timeout lets its connection go...
      await waitFor(() => closing.totalCount === 0, { message: "the idle connection closed", timeoutMs: 10_000 });
      // ...while the other still holds its backend, and reuses it.
      assert.equal(keeping.idleCount, 1);
      assert.equal(await backend(keeping), kept, "the same backend");
    } finally {
      await Promise.all([closing.end(), keeping.end()]);
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

  describe("timeouts", () => {
    it("fails a checkout against a server that accepts TCP and never answers after connectTimeoutMs, as unavailable, not poison", async () => {
      const hole = await startBlackHole();
      const pool = createPgPool({ connectionString: hole.postgresUrl, max: 1, connectTimeoutMs: 300 });
      try {
        // The first opens a connection into the hole; the second waits for the pool's only slot.
        const [opening, waiting] = await Promise.all([failure(pool.query("SELECT 1")), failure(pool.query("SELECT 1"))]);
        // Both time out at about the same moment. When the opening connection's timer fires
        // first, the pool hands its freed slot to the waiter, which opens a second connection
        // (one at a time) before its own timer fails it; so one or two, never more.
        assert.ok(hole.accepted() >= 1 && hole.accepted() <= 2, `${hole.accepted()} connections into the hole`);
        for (const { err, ms } of [opening, waiting]) {
          assert.ok(ms >= 250 && ms < BOUND_MS, `failed after ${Math.round(ms)} ms`);
          assert.match(databaseUnavailableReason(err) ?? String(err), /connect timeout/);
          assert.equal(permanentFailureReason(err), undefined);
        }
      } finally {
        // The hole first: a connection still opening into it would keep pool.end() waiting.
        await hole.close();
        await pool.end();
      }
    });

    it("cancels a statement waiting on a lock after statementTimeoutMs (SQLSTATE 57014), as unavailable, not poison", async () => {
      const table = uniqueName("kitlock");
      const pool = createPgPool({ connectionString: db.connectionString, max: 1, statementTimeoutMs: 500 });
      const holder = new pg.Client({ connectionString: db.connectionString });
      await holder.connect();
      try {
        await holder.query(`CREATE TABLE ${table} (id int PRIMARY KEY); INSERT INTO ${table} VALUES (1)`);
        await holder.query(`BEGIN; SELECT * FROM ${table} WHERE id = 1 FOR UPDATE`);
        const { err, ms } = await failure(pool.query(`UPDATE ${table} SET id = 2 WHERE id = 1`));
        assert.equal((err as { code?: unknown }).code, "57014");
        assert.ok(ms >= 450, `cancelled after ${Math.round(ms)} ms`);
        assert.match(databaseUnavailableReason(err) ?? "", /statement timeout \(SQLSTATE 57014\)/);
        assert.equal(permanentFailureReason(err), undefined);
        await holder.query("ROLLBACK");
        assert.equal((await pool.query(`UPDATE ${table} SET id = 2 WHERE id = 1`)).rowCount, 1, "the same statement succeeds once the lock is gone");
      } finally {
        await holder.query(`ROLLBACK; DROP TABLE IF EXISTS ${table}`).catch(() => {});
        await holder.end();
        await pool.end();
      }
    });

    describe("a server that stops answering on an open connection (queryTimeoutMs)", () => {
      const QUERY_TIMEOUT_MS = 800;
      const UNANSWERED = "the database did not answer within the query timeout";
      let proxy: TcpProxy;
      let pool: pg.Pool;
      let app: string;
      beforeEach(async () => {
        proxy = await startTcpProxy(db.connectionString);
        app = uniqueName("kitsilent");
        pool = createPgPool({ connectionString: proxy.url, max: 1, statementTimeoutMs: 300, queryTimeoutMs: QUERY_TIMEOUT_MS, applicationName: app });
      });
      afterEach(async () => {
        // The proxy first: a connection still waiting behind it would keep pool.end() waiting.
        await proxy.close();
        await pool.end();
      });

      const backend = async (marker: string) => (await pool.query<{ pid: number; marker: string }>("SELECT pg_backend_pid() AS pid, $1::text AS marker", [marker])).rows[0]!;

      it("fails a query on the idle pooled connection after about queryTimeoutMs, as unavailable, not poison, and never reuses the connection", async () => {
        const before = await backend("warm");
        assert.deepEqual([pool.totalCount, pool.idleCount], [1, 1], "one open connection, idle in the pool");
        proxy.blackHole();
        const { err, ms } = await failure(pool.query("SELECT 'stale' AS marker"));
        assert.equal((err as Error).message, "Query read timeout");
        assert.equal(databaseUnavailableReason(err), UNANSWERED);
        assert.equal(permanentFailureReason(err), undefined);
        assert.ok(ms >= QUERY_TIMEOUT_MS - 50 && ms < BOUND_MS, `failed after ${Math.round(ms)} ms`);
        assert.equal(pool.totalCount, 0, "the connection left the pool");
        proxy.forward();
        // The held query and its late answer belong to the closed connection alone.
        const after = await backend("fresh");
        assert.equal(after.marker, "fresh");
        assert.notEqual(after.pid, before.pid, "a new connection (a new backend) answered");
        assert.equal(proxy.accepted(), 2);
      });

      it("closes a checked-out connection whose query timed out, so a plain release() does not return it to the pool", async () => {
        const client = await pool.connect();
        const { pid } = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!;
        proxy.blackHole();
        const { err } = await failure(client.query("SELECT 'stale'"));
        assert.equal(databaseUnavailableReason(err), UNANSWERED);
        await assert.rejects(client.query("SELECT 1"), /not queryable/, "the client refuses further queries at once instead of queueing them behind the lost one");
        client.release();
        assert.deepEqual([pool.totalCount, pool.idleCount], [0, 0], "released without an error, still dropped");
        proxy.forward();
        assert.notEqual((await backend("next")).pid, pid);
      });

      it("fails a transaction whose server goes silent mid-way after about queryTimeoutMs, rolls it back and drops its connection", async () => {
        const table = uniqueName("kitsilent");
        await pool.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
        try {
          const { err, ms } = await failure(
            inTransaction(pool, async (c) => {
              await c.query(`INSERT INTO ${table} VALUES (1)`);
              proxy.blackHole();
              await c.query(`INSERT INTO ${table} VALUES (2)`);
            }),
          );
          assert.equal(databaseUnavailableReason(err), UNANSWERED);
          // The ROLLBACK after the timeout does not wait behind the lost statement a second time.
          assert.ok(ms >= QUERY_TIMEOUT_MS - 50 && ms < 2 * QUERY_TIMEOUT_MS, `failed after ${Math.round(ms)} ms`);
          assert.equal(pool.totalCount, 0, "the connection left the pool");
          proxy.forward();
          // The server sees the connection close once the path carries it, and aborts the transaction.
          const observer = createPgPool({ connectionString: db.connectionString, max: 1 });
          try {
            await waitFor(async () => (await observer.query("SELECT 1 FROM pg_stat_activity WHERE application_name = $1", [app])).rowCount === 0, {
              timeoutMs: BOUND_MS,
              message: "the transaction's backend to end",
            });
          } finally {
            await observer.end();
          }
          assert.equal((await pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]?.n, 0, "nothing of the transaction was committed");
        } finally {
          proxy.forward();
          await pool.query(`DROP TABLE IF EXISTS ${table}`);
        }
      });
    });

    it("bounds a query by queryTimeoutMs on the client, except in untimed transactions, and restores the bound after them", async () => {
      // A statement timeout above the query timeout, so the client's bound is what cuts the sleep.
      const pool = createPgPool({ connectionString: db.connectionString, max: 1, statementTimeoutMs: 10_000, queryTimeoutMs: 500 });
      try {
        const timedOut = (e: unknown) => databaseUnavailableReason(e) === "the database did not answer within the query timeout";
        await assert.rejects(pool.query("SELECT pg_sleep(1)"), timedOut);
        assert.equal(await inTransaction(pool, async (c) => (await c.query("SELECT pg_sleep(1)")).rowCount, { untimed: true }), 1);
        await assert.rejects(pool.query("SELECT pg_sleep(1)"), timedOut, "the bound is back after the untimed transaction");
        assert.equal((await pool.query("SELECT 1 AS one")).rows[0]?.one, 1);
      } finally {
        await pool.end();
      }
    });

    it("runs migrations and untimed transactions without the statement timeout, also while waiting for the advisory lock", async () => {
      const table = uniqueName("kitslow");
      const lockName = `kit:${table}`;
      const app = uniqueName("kitslowapp");
      const pool = createPgPool({ connectionString: db.connectionString, max: 2, statementTimeoutMs: 300, applicationName: app });
      const holder = new pg.Client({ connectionString: db.connectionString });
      await holder.connect();
      // Outside the holder's transaction, whose reads of pg_stat_activity would stay at their first snapshot.
      const observer = createPgPool({ connectionString: db.connectionString, max: 1 });
      try {
        await assert.rejects(pool.query("SELECT pg_sleep(1)"), (e: unknown) => (e as { code?: unknown }).code === "57014", "a plain statement is bounded");
        // A migration that runs longer than the statement timeout...
        const slow: Migration[] = [{ version: 1, name: "slow", sql: `SELECT pg_sleep(1); CREATE TABLE ${table} (id int)` }];
        // ...started while another replica holds the migration lock, for longer than the statement timeout too.
        await holder.query("BEGIN");
        await holder.query("SELECT pg_advisory_xact_lock(hashtext($1))", [lockName]);
        const run = migrate(pool, { lockName, ledger: `${table}_ledger`, migrations: slow });
        await waitFor(
          async () =>
            (
              await observer.query<{ n: number }>(
                "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock' AND clock_timestamp() - query_start > interval '600 milliseconds'",
                [app],
              )
            ).rows[0]?.n === 1,
          { timeoutMs: BOUND_MS, message: "the migration waiting on the advisory lock past the statement timeout" },
        );
        await holder.query("COMMIT");
        assert.deepEqual(await run, [1]);
        assert.equal(await inTransaction(pool, async (c) => (await c.query("SELECT pg_sleep(0.6)")).rowCount, { untimed: true }), 1);
        assert.equal((await pool.query("SHOW statement_timeout")).rows[0]?.statement_timeout, "300ms", "the pool's connections keep their timeout after an untimed transaction");
      } finally {
        await holder.query("ROLLBACK").catch(() => {});
        await holder.end();
        await observer.query(`DROP TABLE IF EXISTS ${table}; DROP TABLE IF EXISTS ${table}_ledger`).catch(() => {});
        await observer.end();
        await pool.end();
      }
    });
  });
});
