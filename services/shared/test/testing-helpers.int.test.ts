import { readFileSync } from "node:fs";
import { strict as assert } from "node:assert";
import { getEventListeners } from "node:events";
import * as net from "node:net";
import { describe, it } from "vitest";
import { Redis } from "ioredis";
import pg from "pg";
import { getFreePort } from "../src/testing/free-port.js";
import { createTestSchema } from "../src/testing/postgres.js";
import { startRedisServer } from "../src/testing/redis-server.js";
import { testDatabaseUrl } from "../src/testing/test-servers.js";
import { uniqueName } from "../src/testing/unique.js";
import { waitFor, WaitForTimeoutError } from "../src/testing/wait-for.js";

describe("waitFor", () => {
  it("resolves with the first truthy value, retrying falsy results and throws", async () => {
    let n = 0;
    const value = await waitFor(
      () => {
        n++;
        if (n === 1) throw new Error("not yet");
        return n >= 3 ? { n } : null;
      },
      { intervalMs: 1 },
    );
    assert.deepEqual(value, { n: 3 });
  });

  it("fails after the deadline naming what it waited for and the last error", async () => {
    await assert.rejects(
      waitFor(() => Promise.reject(new Error("still down")), { timeoutMs: 100, intervalMs: 10, message: "the moon" }),
      (err: unknown) =>
        err instanceof WaitForTimeoutError &&
        /waiting for the moon; last error: Error: still down/.test(err.message) &&
        err.lastError instanceof Error,
    );
  });

  it("honours the deadline even when a probe never settles", async () => {
    const started = Date.now();
    await assert.rejects(waitFor(() => new Promise<boolean>(() => {}), { timeoutMs: 100 }), WaitForTimeoutError);
    assert.ok(Date.now() - started < 2000);
  });

  it("stops at once when its signal aborts", async () => {
    const controller = new AbortController();
    const waiting = waitFor(() => false, { timeoutMs: 10_000, signal: controller.signal });
    controller.abort(new Error("process exited"));
    await assert.rejects(waiting, /process exited/);
  });

  it("leaves no listener on its signal once it is over, however it ended", async () => {
    const exited = new AbortController();
    await waitFor(() => true, { signal: exited.signal });
    await assert.rejects(waitFor(() => false, { timeoutMs: 30, intervalMs: 5, signal: exited.signal }), WaitForTimeoutError);
    let n = 0;
    await waitFor(() => ++n >= 3, { intervalMs: 1, signal: exited.signal });
    assert.equal(getEventListeners(exited.signal, "abort").length, 0);
  });
});

describe("uniqueName", () => {
  it("returns distinct names safe for subjects, stream names and SQL identifiers", () => {
    const names = Array.from({ length: 500 }, () => uniqueName("Test-Prefix"));
    assert.equal(new Set(names).size, 500);
    for (const name of names) assert.match(name, /^test_prefix_[a-z0-9]+$/);
    assert.match(uniqueName("9lives"), /^t9lives_/);
    assert.ok(uniqueName("x".repeat(100)).length <= 63);
  });
});

describe("getFreePort", () => {
  it("returns a loopback port that can be bound", async () => {
    const port = await getFreePort();
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", resolve);
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("picks below the kernel's ephemeral range, so no outbound connection or listen(0) can take it", async () => {
    const [low] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    const ports = await Promise.all(Array.from({ length: 50 }, () => getFreePort()));
    for (const port of ports) assert.ok(port >= 15_000 && port < low!, `${port} is below the ephemeral range (from ${low})`);
    assert.equal(new Set(ports).size, ports.length, "no port handed out twice");
  });
});

describe("startRedisServer", () => {
  it("serves Redis on its own port, comes back empty after restart() and is gone after stop()", async () => {
    const redisServer = await startRedisServer();
    const client = new Redis(redisServer.url, { lazyConnect: true, maxRetriesPerRequest: null });
    try {
      await client.connect();
      await client.set("k", "v");
      assert.equal(await client.get("k"), "v");
      await redisServer.restart();
      // ioredis reconnects on its own; the new server has no persistence.
      assert.equal(await client.get("k"), null);
    } finally {
      client.disconnect();
      await redisServer.stop();
    }
    assert.equal(redisServer.isRunning(), false);
    await assert.rejects(
      new Promise<void>((resolve, reject) => {
        const socket = net.connect({ host: "127.0.0.1", port: redisServer.port }, () => {
          socket.destroy();
          resolve();
        });
        socket.on("error", reject);
      }),
      /ECONNREFUSED/,
    );
  });
});

describe("createTestSchema", () => {
  it("isolates unqualified tables in a unique schema and drops it", async () => {
    const a = await createTestSchema({ prefix: "iso" });
    const b = await createTestSchema({ prefix: "iso" });
    assert.notEqual(a.schema, b.schema);
    const poolA = new pg.Pool({ connectionString: a.connectionString, max: 1 });
    const poolB = new pg.Pool({ connectionString: b.connectionString, max: 1 });
    try {
      await poolA.query("CREATE TABLE shipments (id text PRIMARY KEY)");
      await poolA.query("INSERT INTO shipments VALUES ('s1')");
      await poolB.query("CREATE TABLE shipments (id text PRIMARY KEY)");
      assert.equal((await poolA.query("SELECT count(*)::int AS n FROM shipments")).rows[0].n, 1);
      assert.equal((await poolB.query("SELECT count(*)::int AS n FROM shipments")).rows[0].n, 0);
      const where = await poolA.query(
        "SELECT 1 FROM information_schema.tables WHERE table_name = 'shipments' AND table_schema = $1",
        [a.schema],
      );
      assert.equal(where.rowCount, 1);
    } finally {
      await poolA.end();
      await poolB.end();
      await a.drop();
      await b.drop();
    }
    const check = new pg.Client({ connectionString: testDatabaseUrl() });
    await check.connect();
    try {
      const left = await check.query("SELECT 1 FROM information_schema.schemata WHERE schema_name = ANY($1)", [
        [a.schema, b.schema],
      ]);
      assert.equal(left.rowCount, 0);
    } finally {
      await check.end();
    }
  });
});
