import * as assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { createFailOpenRedis } from "../src/redis/index.js";
import { startRedisServer, uniqueName, waitFor, type RedisServerHandle } from "../src/testing/index.js";

describe("createFailOpenRedis (real redis-server)", () => {
  let server: RedisServerHandle;
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    await server.stop();
  });

  it("fails fast while Redis is down, warns once per operation and interval, counts every failure, and recovers", async () => {
    const warnings: Array<{ op: unknown; msg: string }> = [];
    const counted: string[] = [];
    const prefix = `${uniqueName("fo")}:`;
    const r = createFailOpenRedis({
      url: server.url,
      keyPrefix: prefix,
      commandTimeoutMs: 500,
      log: { warn: (obj, msg) => warnings.push({ op: obj["op"], msg }) },
      degradedBehaviour: "the test goes on",
      onError: (op) => counted.push(op),
      warnIntervalMs: 60_000,
    });
    try {
      // No offline queue: a command before the connection is ready fails too (fail-open at start).
      await waitFor(() => r.redis.status === "ready", { timeoutMs: 10_000, message: "the first connection" });
      await r.redis.set("k", "v");
      assert.equal(await r.redis.get("k"), "v");
      const raw = await r.redis.keys("*");
      assert.deepEqual(raw, [`${prefix}k`], "keys carry the prefix");

      await server.kill();
      const started = Date.now();
      await assert.rejects(r.redis.get("k"));
      assert.ok(Date.now() - started < 3000, "a command fails fast instead of queueing while Redis is down");
      r.reportError("cache get", new Error("one"));
      r.reportError("cache get", new Error("two"));
      assert.deepEqual(counted.filter((op) => op === "cache get"), ["cache get", "cache get"], "every failure is counted");
      const getWarnings = warnings.filter((w) => w.op === "cache get");
      assert.equal(getWarnings.length, 1, "one warning per operation per interval");
      assert.match(getWarnings[0]!.msg, /redis unavailable; the test goes on \(fail-open\)/);

      await server.restart();
      await waitFor(async () => (await r.redis.set("k2", "v2").catch(() => undefined)) === "OK", {
        timeoutMs: 15_000,
        message: "the client reconnects after Redis comes back",
      });
    } finally {
      r.close();
    }
  });
});
