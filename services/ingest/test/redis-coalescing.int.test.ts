import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Redis } from "ioredis";
import { createFailOpenRedis, type FailOpenRedis } from "@logistics/shared/redis";
import { startRedisServer, uniqueName, waitFor, type RedisServerHandle } from "@logistics/shared/testing";
import { createRedisRateLimiter } from "../src/redis-rate-limiter.js";
import { createRedisScanAdmission } from "../src/redis-scan-admission.js";
import type { AdmissionItem } from "../src/scan-ingestor.js";

/**
 * Calls of `command` the server has executed so far (INFO commandstats), e.g. "mget". "script"
 * counts the Lua script runs that succeeded, sent as EVALSHA or EVAL (a first EVALSHA that finds
 * no script answers NOSCRIPT and is sent again as EVAL: one run).
 */
async function commandCalls(admin: Redis, command: string): Promise<number> {
  const info = await admin.info("commandstats");
  const ok = (c: string) => {
    const m = new RegExp(`^cmdstat_${c}:calls=(\\d+)(?:.*?failed_calls=(\\d+))?`, "m").exec(info);
    return m ? Number(m[1]) - Number(m[2] ?? 0) : 0;
  };
  return command === "script" ? ok("eval") + ok("evalsha") : ok(command);
}

/** Counts, on the private server, the `commands` that `fn` makes it execute. */
async function counting<T>(admin: Redis, commands: readonly string[], fn: () => Promise<T>): Promise<{ result: T; calls: Record<string, number> }> {
  const before = await Promise.all(commands.map((c) => commandCalls(admin, c)));
  const result = await fn();
  const after = await Promise.all(commands.map((c) => commandCalls(admin, c)));
  return { result, calls: Object.fromEntries(commands.map((c, i) => [c, (after[i] as number) - (before[i] as number)])) };
}

describe("ingest's Redis adapters coalesce concurrent calls (private redis-server, commands counted by INFO commandstats)", () => {
  let server: RedisServerHandle;
  let admin: Redis;
  let client: FailOpenRedis;
  const errors: string[] = [];
  const prefix = `${uniqueName("coalesce")}:`;

  beforeAll(async () => {
    server = await startRedisServer();
    admin = new Redis(server.url, { keyPrefix: prefix });
    client = createFailOpenRedis({
      url: server.url,
      keyPrefix: prefix,
      commandTimeoutMs: 500,
      log: { warn: () => {} },
      degradedBehaviour: "the test goes on",
      onError: (op) => errors.push(op),
      autoPipelining: true,
    });
    await waitFor(() => client.redis.status === "ready", { timeoutMs: 10_000, message: "the adapters' client connects" });
  });
  afterAll(async () => {
    client?.close();
    admin?.disconnect();
    await server?.stop();
  });

  /** Items of a batch of scans of one shipment, without budget costs. */
  const items = (ids: readonly string[], shipment = "TN1", cost = 0): AdmissionItem[] => ids.map((id) => ({ id, shipment, cost }));

  it("answers the admissions of 200 concurrent batches with one script call, each batch getting its own verdicts", async () => {
    const admission = createRedisScanAdmission({ redis: client.redis, dedupeTtlSeconds: 60, onError: client.reportError });
    const batches = Array.from({ length: 200 }, (_, b) => [`sc-${b}-a`, `sc-${b}-b`]);
    // Stored before: the "a" id of every third batch.
    await admin.mset(Object.fromEntries(batches.filter((_, b) => b % 3 === 0).map((ids) => [`scan:${ids[0]}`, "1"])));

    const { result, calls } = await counting(admin, ["script", "exists"], () => Promise.all(batches.map((ids) => admission.admit(items(ids)))));
    assert.equal(calls["script"], 1, "one script call for every concurrent caller");
    assert.equal(calls["exists"], 400, "the script looked up every id");
    result.forEach((verdicts, b) => {
      assert.deepEqual(verdicts, b % 3 === 0 ? ["seen", "free"] : ["free", "free"], `batch ${b} gets the verdicts of its own ids`);
    });
    admission.close();
  });

  it("records stored ids with the next admission round, in the same script call, with the configured lifetime", async () => {
    const admission = createRedisScanAdmission({ redis: client.redis, dedupeTtlSeconds: 120, onError: client.reportError, settleLingerMs: 60_000 });
    const ids = Array.from({ length: 150 }, (_, i) => `sc-remember-${i}`);
    for (const id of ids) admission.settle([id], []);
    const { result, calls } = await counting(admin, ["script", "set"], () => admission.admit(items([ids[0] as string, "sc-remember-new"])));
    assert.equal(calls["script"], 1, "the settlement rode on the admission's script call");
    assert.equal(calls["set"], ids.length, "the script stored every settled id");
    assert.deepEqual(result, ["seen", "free"], "recorded before the round's lookups");
    const ttls = await Promise.all(ids.map((id) => admin.ttl(`scan:${id}`)));
    assert.ok(ttls.every((t) => t > 100 && t <= 120), `every id expires after the TTL: ${ttls.slice(0, 3).join(", ")}…`);
    admission.close();
  });

  it("sends a settlement alone once it has waited settleLingerMs for an admission round", async () => {
    const admission = createRedisScanAdmission({ redis: client.redis, dedupeTtlSeconds: 60, onError: client.reportError, settleLingerMs: 50 });
    admission.settle(["sc-alone-1", "sc-alone-2"], []);
    await waitFor(async () => (await admin.exists("scan:sc-alone-1", "scan:sc-alone-2")) === 2, {
      timeoutMs: 5_000,
      message: "the settlement is sent without an admission round",
    });
    admission.close();
  });

  it("splits a turn's calls into rounds of at most maxItemsPerCall items without splitting a call", async () => {
    const admission = createRedisScanAdmission({ redis: client.redis, dedupeTtlSeconds: 60, onError: client.reportError, maxItemsPerCall: 10 });
    const batches = Array.from({ length: 12 }, (_, b) => [`sc-split-${b}-1`, `sc-split-${b}-2`, `sc-split-${b}-3`]);
    const { calls } = await counting(admin, ["script"], () => Promise.all(batches.map((ids) => admission.admit(items(ids)))));
    assert.equal(calls["script"], 4, "36 ids in calls of 3, at most 10 items a round: 4 rounds of 9");
    admission.close();
  });

  it("takes the rate-limit tokens of concurrent requests in one script call, in call order, each request getting its own decision", async () => {
    const limiter = createRedisRateLimiter({ redis: client.redis, ratePerSec: 1, burst: 5, onError: client.reportError });
    const bucket = uniqueName("carrier");
    const other = uniqueName("carrier");
    const { result, calls } = await counting(admin, ["script"], () =>
      Promise.all([limiter.take(bucket, 3), limiter.take(other, 1), limiter.take(bucket, 3), limiter.take(bucket, 2)]),
    );
    assert.equal(calls["script"], 1);
    assert.deepEqual(
      result.map((d) => d.allowed),
      [true, true, false, true],
      "5 tokens: 3 taken, then 3 refused (2 left), then 2 taken; the other bucket is separate",
    );
    assert.ok((result[2]?.retryAfterMs ?? 0) >= 1000, `a refusal says when to retry: ${result[2]?.retryAfterMs} ms`);
  });

  it("fails open for every caller of a round while Redis is down, and coalesces again once it is back", async () => {
    const admission = createRedisScanAdmission({
      redis: client.redis,
      dedupeTtlSeconds: 60,
      budget: { limitBytes: 10, ttlSeconds: 60 },
      onError: client.reportError,
    });
    const limiter = createRedisRateLimiter({ redis: client.redis, ratePerSec: 1, burst: 1, onError: client.reportError });
    await server.kill();
    try {
      errors.length = 0;
      const ids = Array.from({ length: 20 }, (_, i) => [`sc-down-${i}`]);
      const verdicts = await Promise.all(ids.map((x) => admission.admit(items(x, "TN-down", 1000))));
      assert.ok(verdicts.every((v) => v.length === 1 && v[0] === "free"), "nothing is reported seen or full, nothing is charged");
      const decisions = await Promise.all(Array.from({ length: 5 }, () => limiter.take("down", 1)));
      assert.ok(decisions.every((d) => d.allowed), "every request is allowed");
      assert.deepEqual(
        errors.filter((op) => op !== "connection").sort(),
        ["admission", "rate_limit"],
        "one failure reported per round, not per caller",
      );
    } finally {
      await server.restart();
    }
    await waitFor(async () => client.redis.status === "ready" && (await admin.ping()) === "PONG", {
      timeoutMs: 15_000,
      message: "the client reconnects",
    });
    await admin.set("scan:sc-back", "1");
    const { result, calls } = await counting(admin, ["script"], () => Promise.all([admission.admit(items(["sc-back"])), admission.admit(items(["sc-other"], "TN-back", 11))]));
    assert.equal(calls["script"], 1);
    assert.deepEqual(result, [["seen"], ["full"]], "the dedupe set and the budgets answer again");
    admission.close();
  });
});
