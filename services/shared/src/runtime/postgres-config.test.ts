import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { ConfigError, defineConfig } from "../config/env-config.js";
import { DEFAULT_PG_CONNECT_TIMEOUT_MS } from "../postgres/pool.js";
import { checkPostgresConfig, DEFAULT_PG_IDLE_TIMEOUT_MS, DEFAULT_PG_STATEMENT_TIMEOUT_MS, pgTimeouts, postgresConfigSpec } from "./postgres-config.js";

describe("postgresConfigSpec", () => {
  const config = defineConfig(postgresConfigSpec(), checkPostgresConfig);

  it("defaults to a 10 s connect timeout, a 15 s statement timeout and a query timeout 5 s past it, handed to the pool as given", () => {
    const c = config.parse({});
    assert.deepEqual(pgTimeouts(c), {
      connectTimeoutMs: DEFAULT_PG_CONNECT_TIMEOUT_MS,
      statementTimeoutMs: DEFAULT_PG_STATEMENT_TIMEOUT_MS,
      queryTimeoutMs: DEFAULT_PG_STATEMENT_TIMEOUT_MS + 5000,
      idleTimeoutMs: DEFAULT_PG_IDLE_TIMEOUT_MS,
    });
    assert.equal(DEFAULT_PG_IDLE_TIMEOUT_MS, 60_000);
    assert.deepEqual([DEFAULT_PG_CONNECT_TIMEOUT_MS, DEFAULT_PG_STATEMENT_TIMEOUT_MS], [10_000, 15_000]);
    assert.deepEqual(pgTimeouts(config.parse({ PG_CONNECT_TIMEOUT_MS: " 2500 ", PG_STATEMENT_TIMEOUT_MS: "60000", PG_IDLE_TIMEOUT_MS: "0" })), {
      connectTimeoutMs: 2500,
      statementTimeoutMs: 60_000,
      queryTimeoutMs: 65_000,
      idleTimeoutMs: 0,
    });
    assert.equal(pgTimeouts(config.parse({ PG_STATEMENT_TIMEOUT_MS: "60000", PG_QUERY_TIMEOUT_MS: "90000" })).queryTimeoutMs, 90_000);
    assert.equal(pgTimeouts(config.parse({ PG_QUERY_TIMEOUT_MS: "0" })).queryTimeoutMs, 0, "0: no bound");
  });

  it("rejects bad values at start, every one at once, naming the variable and the rule", () => {
    const cases: Array<[Record<string, string>, string[]]> = [
      [{ PG_CONNECT_TIMEOUT_MS: "10s" }, ['PG_CONNECT_TIMEOUT_MS="10s": must be an integer']],
      [{ PG_STATEMENT_TIMEOUT_MS: "0" }, ['PG_STATEMENT_TIMEOUT_MS="0": must be >= 100']],
      [{ PG_CONNECT_TIMEOUT_MS: "-1", PG_STATEMENT_TIMEOUT_MS: "1.5" }, ['PG_CONNECT_TIMEOUT_MS="-1": must be >= 100', 'PG_STATEMENT_TIMEOUT_MS="1.5": must be an integer']],
      [{ PG_CONNECT_TIMEOUT_MS: "300001", PG_STATEMENT_TIMEOUT_MS: "3600001" }, ['PG_CONNECT_TIMEOUT_MS="300001": must be <= 300000', 'PG_STATEMENT_TIMEOUT_MS="3600001": must be <= 3600000']],
      [{ PG_QUERY_TIMEOUT_MS: "-5" }, ['PG_QUERY_TIMEOUT_MS="-5": must be >= 0']],
      // The server must get to cancel a statement itself, or it costs its connection.
      [{ PG_QUERY_TIMEOUT_MS: "15000" }, ["PG_QUERY_TIMEOUT_MS=15000 must exceed PG_STATEMENT_TIMEOUT_MS=15000 (or be 0: no bound)"]],
      [{ PG_STATEMENT_TIMEOUT_MS: "30000", PG_QUERY_TIMEOUT_MS: "20000" }, ["PG_QUERY_TIMEOUT_MS=20000 must exceed PG_STATEMENT_TIMEOUT_MS=30000 (or be 0: no bound)"]],
    ];
    for (const [env, problems] of cases) {
      assert.throws(
        () => config.parse(env),
        (e: unknown) => e instanceof ConfigError && JSON.stringify(e.problems) === JSON.stringify(problems),
        JSON.stringify(env),
      );
    }
  });
});
