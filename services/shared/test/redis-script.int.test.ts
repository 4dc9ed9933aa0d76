import * as assert from "node:assert/strict";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, it } from "vitest";
import { defineScript } from "../src/redis/index.js";
import { startRedisServer, uniqueName, type RedisServerHandle } from "../src/testing/index.js";

/** Calls of each command since the last CONFIG RESETSTAT (`eval`, `evalsha`, `script|load`, ...). */
async function commandCalls(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info("commandstats");
  const calls = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1] as string, Number(m[2]));
  return calls;
}

describe("defineScript (a private redis-server)", () => {
  let server: RedisServerHandle;
  let admin: Redis;
  beforeAll(async () => {
    server = await startRedisServer();
    admin = new Redis(server.url, { lazyConnect: true });
    await admin.connect();
  });
  afterAll(async () => {
    admin?.disconnect();
    await server?.stop();
  });

  it.each([false, true])(
    "sends the script's text once, then only its SHA1, and again after a SCRIPT FLUSH (auto-pipelining %s)",
    async (autoPipelining) => {
      const prefix = `${uniqueName("scr")}:`;
      const redis = new Redis(server.url, { keyPrefix: prefix, enableAutoPipelining: autoPipelining, lazyConnect: true });
      await redis.connect();
      try {
        const add = defineScript(redis, "return redis.call('INCRBY', KEYS[1], ARGV[1])");
        await admin.config("RESETSTAT");
        const replies = await Promise.all(Array.from({ length: 50 }, () => add(["n"], [2])));
        assert.equal(Math.max(...replies.map(Number)), 100);
        assert.equal(await admin.get(`${prefix}n`), "100", "the key carries the client's prefix");
        const calls = await commandCalls(admin);
        assert.ok((calls.get("evalsha") ?? 0) >= 49, `EVALSHA calls: ${calls.get("evalsha")}`);
        const withText = (calls.get("eval") ?? 0) + (calls.get("script|load") ?? 0);
        assert.ok(withText <= 1, `the text was sent ${withText} times for 50 calls`);

        // A server that lost its scripts (restart, SCRIPT FLUSH) answers NOSCRIPT: the call still succeeds.
        await admin.script("FLUSH");
        assert.equal(Number(await add(["n"], [1])), 101);
        assert.equal(Number(await add(["n"], [1])), 102);
      } finally {
        redis.disconnect();
      }
    },
  );

  it("keeps one command per script text on a client shared by several users", async () => {
    const redis = new Redis(server.url, { keyPrefix: `${uniqueName("scr")}:`, lazyConnect: true });
    await redis.connect();
    try {
      const lua = "return ARGV[1] .. KEYS[1]";
      const a = defineScript(redis, lua);
      const b = defineScript(redis, lua);
      const other = defineScript(redis, "return 7");
      assert.equal(String(await a(["k"], ["x"])), `x${redis.options.keyPrefix}k`);
      assert.equal(String(await b(["k"], ["y"])), `y${redis.options.keyPrefix}k`);
      assert.equal(Number(await other([], [])), 7);
    } finally {
      redis.disconnect();
    }
  });
});
