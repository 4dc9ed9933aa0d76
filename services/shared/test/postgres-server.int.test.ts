import * as assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, it } from "vitest";
import { startPostgresServer, type PostgresServerHandle } from "../src/testing/index.js";

// As root, PostgreSQL runs as the postgres user, who may not reach the folder asked for (a
// checkout under /root). Kept data must then go where it is kept, not to a temporary folder.
describe.skipIf(userInfo().uid !== 0)("startPostgresServer as root (real PostgreSQL)", () => {
  const root = mkdtempSync(join(tmpdir(), "pg-reach-"));
  chmodSync(root, 0o755); // mkdtemp makes it 0700: nobody but root could reach anything inside
  const servers: PostgresServerHandle[] = [];
  afterAll(async () => {
    for (const s of servers) await s.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it("puts a cluster the postgres user cannot reach in fallbackDataDir, and finds it there again", async () => {
    // A parent only root may enter, like /root.
    const closed = join(root, "home");
    mkdirSync(closed, { mode: 0o700 });
    chmodSync(closed, 0o700);
    const asked = join(closed, "checkout", "postgres");
    // Its parents do not exist yet: they are made, traversable, only when the fallback is needed.
    const fallback = join(root, "var", "tmp", "postgres");

    const first = await startPostgresServer({ dataDir: asked, fallbackDataDir: fallback, databases: ["kept"], durable: false });
    servers.push(first);
    assert.equal(first.dataDir, fallback);
    const c1 = new pg.Client({ connectionString: first.url });
    await c1.connect();
    await c1.query("CREATE TABLE survives (n int); INSERT INTO survives VALUES (42)");
    await c1.end();
    await first.stop();
    assert.ok(existsSync(join(fallback, "PG_VERSION")), "the cluster is kept after stop()");

    const second = await startPostgresServer({ dataDir: asked, fallbackDataDir: fallback, databases: ["kept"], durable: false });
    servers.push(second);
    assert.equal(second.dataDir, fallback);
    const c2 = new pg.Client({ connectionString: second.url });
    await c2.connect();
    const r = await c2.query<{ n: number }>("SELECT n FROM survives");
    await c2.end();
    assert.deepEqual(r.rows, [{ n: 42 }]);
  });

  it("without fallbackDataDir, uses a temporary cluster that stop() removes", async () => {
    const closed = join(root, "home2");
    mkdirSync(closed, { mode: 0o700 });
    chmodSync(closed, 0o700);
    const s = await startPostgresServer({ dataDir: join(closed, "postgres"), durable: false });
    servers.push(s);
    assert.notEqual(s.dataDir, join(closed, "postgres"));
    await s.stop();
    assert.equal(existsSync(s.dataDir), false);
  });
});
