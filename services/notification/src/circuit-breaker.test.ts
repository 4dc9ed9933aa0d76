import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { createCircuitBreakers } from "./circuit-breaker.js";

describe("createCircuitBreakers", () => {
  const setup = () => {
    let now = 1000;
    const b = createCircuitBreakers({ failureThreshold: 3, cooldownMs: 500, now: () => now });
    return { b, advance: (ms: number) => (now += ms) };
  };

  it("opens after the threshold of consecutive failures and refuses requests", () => {
    const { b } = setup();
    for (let i = 0; i < 3; i++) {
      assert.equal(b.acquire("https://a"), "closed");
      b.record("https://a", false);
    }
    assert.equal(b.state("https://a"), "open");
    assert.equal(b.acquire("https://a"), "open");
    assert.equal(b.acquire("https://b"), "closed", "other endpoints are unaffected");
  });

  it("a success resets the failure count", () => {
    const { b } = setup();
    b.record("x", false);
    b.record("x", false);
    b.record("x", true);
    b.record("x", false);
    b.record("x", false);
    assert.equal(b.state("x"), "closed");
  });

  it("lets one probe through after the cool-down; success closes, failure re-opens", () => {
    const { b, advance } = setup();
    for (let i = 0; i < 3; i++) b.record("x", false);
    advance(499);
    assert.equal(b.acquire("x"), "open");
    advance(1);
    assert.equal(b.acquire("x"), "probe");
    assert.equal(b.acquire("x"), "open", "only one probe at a time");
    b.record("x", false);
    assert.equal(b.state("x"), "open");
    advance(500);
    assert.equal(b.acquire("x"), "probe");
    b.record("x", true);
    assert.equal(b.state("x"), "closed");
    assert.equal(b.acquire("x"), "closed");
  });

  it("lists the endpoints whose circuit is not closed, longest open first", () => {
    const { b, advance } = setup();
    for (let i = 0; i < 3; i++) b.record("https://a", false);
    advance(100);
    for (let i = 0; i < 3; i++) b.record("https://b", false);
    b.record("https://c", false);
    assert.deepEqual(b.notClosed().map((c) => [c.key, c.state]), [["https://a", "open"], ["https://b", "open"]]);
    advance(400);
    assert.deepEqual(b.notClosed().map((c) => [c.key, c.state]), [["https://a", "half-open"], ["https://b", "open"]]);
    b.record("https://a", true);
    assert.deepEqual(b.notClosed().map((c) => c.key), ["https://b"]);
  });
});
