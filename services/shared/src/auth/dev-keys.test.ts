import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { parseTtl } from "./dev-keys.js";

describe("parseTtl", () => {
  it("converts s, m, h and d spans to seconds", () => {
    assert.equal(parseTtl("90s"), 90);
    assert.equal(parseTtl("30m"), 1800);
    assert.equal(parseTtl("1h"), 3600);
    assert.equal(parseTtl("7d"), 604800);
  });

  it("rejects spans without a unit, with other units, zero or negative", () => {
    for (const bad of ["60", "1w", "0h", "-1h", "1.5h", "h", "", "1 h x"]) {
      assert.throws(() => parseTtl(bad), RangeError, bad);
    }
  });
});
