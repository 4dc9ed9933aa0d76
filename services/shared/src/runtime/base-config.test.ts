import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { ConfigError, defineConfig } from "../config/env-config.js";
import { baseConfigSpec, checkBaseConfig } from "./base-config.js";

describe("baseConfigSpec: JWT_MAX_LIFETIME_SECONDS", () => {
  const config = defineConfig(baseConfigSpec({ port: 8081, metricsPort: 9101 }), checkBaseConfig);
  const keys = { JWT_PUBLIC_KEY_FILE: "keys.json" };

  it("defaults to one day and takes whole seconds from a minute to 30 days", () => {
    assert.equal(config.parse(keys).JWT_MAX_LIFETIME_SECONDS, 86_400);
    assert.equal(config.parse({ ...keys, JWT_MAX_LIFETIME_SECONDS: " 3600 " }).JWT_MAX_LIFETIME_SECONDS, 3600);
    assert.equal(config.parse({ ...keys, JWT_MAX_LIFETIME_SECONDS: "60" }).JWT_MAX_LIFETIME_SECONDS, 60);
    assert.equal(config.parse({ ...keys, JWT_MAX_LIFETIME_SECONDS: "2592000" }).JWT_MAX_LIFETIME_SECONDS, 2_592_000);
  });

  it("refuses no maximum (0), values in the wrong unit, beyond 30 days and not integers, naming the rule", () => {
    const cases: [string, RegExp][] = [
      ["0", /^JWT_MAX_LIFETIME_SECONDS="0": must be >= 60$/],
      ["24", /^JWT_MAX_LIFETIME_SECONDS="24": must be >= 60$/],
      ["2592001", /^JWT_MAX_LIFETIME_SECONDS="2592001": must be <= 2592000$/],
      ["1d", /^JWT_MAX_LIFETIME_SECONDS="1d": must be an integer$/],
      ["-3600", /^JWT_MAX_LIFETIME_SECONDS="-3600": must be >= 60$/],
    ];
    for (const [raw, problem] of cases) {
      assert.throws(
        () => config.parse({ ...keys, JWT_MAX_LIFETIME_SECONDS: raw }),
        (e: unknown) => e instanceof ConfigError && e.problems.length === 1 && problem.test(e.problems[0] ?? ""),
        raw,
      );
    }
  });
});
