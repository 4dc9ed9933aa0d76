import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { ingestConfig } from "@logistics/ingest";
import { notificationConfig } from "@logistics/notification";
import { routingConfig } from "@logistics/routing";
import { pgTimeouts } from "@logistics/shared/runtime";
import { trackingConfig } from "@logistics/tracking";

const base = { JWT_PUBLIC_KEY_FILE: "keys.json" };
const withDatabase = { routing: routingConfig, tracking: trackingConfig, notification: notificationConfig };

describe("the services' PostgreSQL timeouts (PG_CONNECT_TIMEOUT_MS, PG_STATEMENT_TIMEOUT_MS, PG_QUERY_TIMEOUT_MS, PG_IDLE_TIMEOUT_MS)", () => {
  it("are read by every service with a database, defaulting to 10 s, 15 s, unset (15 s + 5 s) and 60 s, and by no other", () => {
    for (const [name, config] of Object.entries(withDatabase)) {
      const c = config.parse(base);
      assert.deepEqual([c.PG_CONNECT_TIMEOUT_MS, c.PG_STATEMENT_TIMEOUT_MS, c.PG_QUERY_TIMEOUT_MS, c.PG_IDLE_TIMEOUT_MS], [10_000, 15_000, undefined, 60_000], name);
      assert.equal(pgTimeouts(c).queryTimeoutMs, 20_000, name);
      const set = config.parse({ ...base, PG_CONNECT_TIMEOUT_MS: "2000", PG_STATEMENT_TIMEOUT_MS: "30000", PG_QUERY_TIMEOUT_MS: "45000", PG_IDLE_TIMEOUT_MS: "0" });
      assert.deepEqual([set.PG_CONNECT_TIMEOUT_MS, set.PG_STATEMENT_TIMEOUT_MS, set.PG_QUERY_TIMEOUT_MS, set.PG_IDLE_TIMEOUT_MS], [2000, 30_000, 45_000, 0], name);
    }
    assert.ok(!ingestConfig.names.some((n) => n.startsWith("PG_")), "ingest has no database");
  });

  it("stop a service at start on a bad value, with the variable and what is wrong", () => {
    for (const [name, config] of Object.entries(withDatabase)) {
      assert.throws(
        () => config.parse({ ...base, PG_CONNECT_TIMEOUT_MS: "ten seconds", PG_STATEMENT_TIMEOUT_MS: "50" }),
        /PG_CONNECT_TIMEOUT_MS="ten seconds": must be an integer\n.*PG_STATEMENT_TIMEOUT_MS="50": must be >= 100/,
        name,
      );
      assert.throws(() => config.parse({ ...base, PG_QUERY_TIMEOUT_MS: "10000" }), /PG_QUERY_TIMEOUT_MS=10000 must exceed PG_STATEMENT_TIMEOUT_MS=15000/, name);
    }
  });
});
