import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { etagMatches } from "./conditional-get.js";

describe("etagMatches (If-None-Match, weak comparison)", () => {
  it("matches the same tag, in a list, weak or strong, and *", () => {
    assert.equal(etagMatches('"7.public"', '"7.public"'), true);
    assert.equal(etagMatches('"1.public", "7.public"', '"7.public"'), true);
    assert.equal(etagMatches('W/"7.public"', '"7.public"'), true);
    assert.equal(etagMatches("*", '"7.public"'), true);
  });
  it("does not match another version or another view", () => {
    assert.equal(etagMatches('"6.public"', '"7.public"'), false);
    assert.equal(etagMatches('"7.full"', '"7.public"'), false);
    assert.equal(etagMatches('"7.public', '"7.public"'), false);
  });
});
