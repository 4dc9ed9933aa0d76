import * as assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, it } from "vitest";
import { ensureServerBinaries, provideMeshServers } from "../src/infra.js";

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });

describe("provideMeshServers", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "infra-test-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("with nothing configured starts private PostgreSQL (cube, earthdistance), NATS with JetStream and Redis, and stops them", async () => {
    const data = join(dir, "private");
    const servers = await provideMeshServers({ database: "infra", dataDir: data, env: {} });
    const ports = [servers.databaseUrl, servers.natsUrl, servers.redisUrl].map((u) => Number(new URL(u).port));
    try {
      for (const p of ports) assert.ok(![5432, 4222, 6379].includes(p), `private servers use free ports, not ${p}`);
      assert.deepEqual(Object.keys(servers.pids).sort(), ["nats", "postgres", "redis"]);
      const c = new pg.Client({ connectionString: servers.databaseUrl });
      await c.connect();
      try {
        await c.query("CREATE EXTENSION IF NOT EXISTS cube; CREATE EXTENSION IF NOT EXISTS earthdistance");
        const { rows } = await c.query<{ km: number }>("SELECT earth_distance(ll_to_earth(50.03, 8.57), ll_to_earth(41.98, -87.90)) / 1000 AS km");
        assert.ok(Math.abs(rows[0]!.km - 6980) < 50, `FRA-ORD great circle ≈ 6980 km, got ${rows[0]!.km}`);
      } finally {
        await c.end();
      }
      const nc = await connect({ servers: servers.natsUrl });
      try {
        const info = await (await jetstreamManager(nc)).getAccountInfo();
        assert.ok(info.limits !== undefined, "JetStream answers");
      } finally {
        await nc.close();
      }
      const redis = new Redis(servers.redisUrl, { lazyConnect: true });
      await redis.connect();
      assert.equal(await redis.ping(), "PONG");
      redis.disconnect();
      assert.ok(servers.healthy());
    } finally {
      await servers.stop();
    }
    for (const p of ports) assert.equal(await accepts(p), false, `port ${p} is free after stop()`);
    assert.equal(existsSync(data), false, "a non-persistent data folder is removed");
  });

  it("with DATABASE_URL, NATS_URL and REDIS_URL set starts nothing and hands them on as given", async () => {
    const env = { DATABASE_URL: "postgres://u@db.example:5432/x", NATS_URL: "nats://nats.example:4222", REDIS_URL: "redis://cache.example:6379" };
    const servers = await provideMeshServers({ database: "infra", dataDir: join(dir, "given"), env });
    assert.deepEqual(servers.env, env);
    assert.deepEqual(servers.pids, {});
    assert.ok(servers.summary.every((l) => l.includes("started nothing")));
    await servers.stop();
    assert.equal(existsSync(join(dir, "given")), false, "no data folder when nothing is started");
  });

  it("says exactly how to get a missing nats-server / redis-server when it may not install them", async () => {
    await assert.rejects(ensureServerBinaries(["nats-server", "redis-server"], { install: false, log: () => {}, path: dir }), (e: Error) => {
      assert.match(e.message, /nats-server .*apt-get install nats-server.*brew install nats-server.*NATS_URL/s);
      assert.match(e.message, /redis-server .*apt-get install redis-server.*REDIS_URL/s);
      return true;
    });
  });
});
