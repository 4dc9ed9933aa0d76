import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { ConfigError, defineConfig, fraction, int, port, redactCredentials, str, url } from "./env-config.js";

const config = defineConfig(
  {
    PORT: port({ description: "port", default: 8080 }),
    WORKERS: int({ description: "workers", min: 1, max: 8, default: 2 }),
    DATABASE_URL: url({ description: "database", protocols: ["postgres:", "postgresql:"] }),
    NAME: str({ description: "name", pattern: /^[a-z]+$/, default: "svc" }),
    A: str({ description: "a", default: "" }),
    B: str({ description: "b", default: "" }),
  },
  (c) => (Boolean(c.A) !== Boolean(c.B) ? ["A and B must be set together"] : []),
);

describe("defineConfig", () => {
  it("applies defaults and parses values into a frozen object", () => {
    const c = config.parse({ DATABASE_URL: "postgres://db/x", WORKERS: " 4 " });
    assert.equal(c.PORT, 8080);
    assert.equal(c.WORKERS, 4);
    assert.ok(Object.isFrozen(c));
    assert.deepEqual(config.names, ["PORT", "WORKERS", "DATABASE_URL", "NAME", "A", "B"]);
  });

  it("reports every bad value at once, one line each", () => {
    assert.throws(
      () => config.parse({ PORT: "70000", WORKERS: "x", NAME: "Bad Name" }),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.equal(e.problems.length, 4, e.message);
        assert.match(e.message, /PORT="70000": must be <= 65535/);
        assert.match(e.message, /WORKERS="x": must be an integer/);
        assert.match(e.message, /DATABASE_URL is required/);
        assert.match(e.message, /NAME="Bad Name": must match/);
        return true;
      },
    );
  });

  it("runs cross-variable checks once every variable parses", () => {
    assert.throws(() => config.parse({ DATABASE_URL: "postgres://db/x", A: "1" }), /A and B must be set together/);
  });

  it("never echoes a password from a connection string", () => {
    assert.throws(
      () => config.parse({ DATABASE_URL: "mysql://svc:hunter2@db/x" }),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.doesNotMatch(e.message, /hunter2/);
        assert.match(e.message, /mysql:\/\/svc:\*\*\*@db\/x/);
        return true;
      },
    );
    assert.equal(redactCredentials("redis://:s3cret@cache:6379,nats://u:p@n:4222"), "redis://:***@cache:6379,nats://u:***@n:4222");
  });
});

describe("fraction", () => {
  const ratio = defineConfig({ RATIO: fraction({ description: "ratio", default: 1 }) });
  it("takes numbers from 0 to 1", () => {
    assert.equal(ratio.parse({}).RATIO, 1);
    for (const [raw, want] of [["0", 0], ["0.1", 0.1], [".25", 0.25], ["1", 1], ["1.0", 1]] as const) assert.equal(ratio.parse({ RATIO: raw }).RATIO, want);
  });
  it("refuses anything else", () => {
    for (const raw of ["1.5", "-0.1", "10%", "abc", "NaN", "1e-3"]) assert.throws(() => ratio.parse({ RATIO: raw }), /must be a number from 0 to 1/, raw);
  });
});
