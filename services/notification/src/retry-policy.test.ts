import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { classifyStatus, delayCeilingMs, nextRetryDelayMs, parseRetryAfter, scheduleCeilingMs } from "./retry-policy.js";

describe("classifyStatus", () => {
  it("delivers on 2xx, retries on no response, 408, 429 and 5xx, rejects other statuses", () => {
    assert.equal(classifyStatus(200), "delivered");
    assert.equal(classifyStatus(204), "delivered");
    for (const s of [0, 408, 429, 500, 502, 503, 504]) assert.equal(classifyStatus(s), "retry", String(s));
    for (const s of [301, 302, 400, 401, 403, 404, 410, 422]) assert.equal(classifyStatus(s), "reject", String(s));
  });
});

describe("retry schedule", () => {
  const policy = { baseMs: 30_000, maxMs: 7_200_000, maxAttempts: 32 };

  it("doubles the ceiling from the base and caps it", () => {
    assert.deepEqual(
      [1, 2, 3, 8, 9, 10, 40].map((n) => delayCeilingMs(n, policy.baseMs, policy.maxMs)),
      [30_000, 60_000, 120_000, 3_840_000, 7_200_000, 7_200_000, 7_200_000],
    );
  });

  it("spans about 48 h of ceilings with the defaults, so about 24 h expected with full jitter", () => {
    const total = scheduleCeilingMs(policy);
    assert.equal(total, 7_650_000 + 23 * 7_200_000);
    const expectedHours = total / 2 / 3_600_000;
    assert.ok(expectedHours > 23 && expectedHours < 25, String(expectedHours));
  });

  it("draws full jitter in [0, ceiling] and equal jitter in [ceiling/2, ceiling]", () => {
    assert.equal(nextRetryDelayMs(3, { ...policy, random: () => 0 }), 0);
    assert.equal(nextRetryDelayMs(3, { ...policy, random: () => 0.999999 }), 120_000);
    assert.equal(nextRetryDelayMs(3, { ...policy, jitter: "equal", random: () => 0 }), 60_000);
    for (let n = 1; n < 12; n++) {
      const hiPrev = nextRetryDelayMs(n, { ...policy, jitter: "equal", random: () => 0.999999 });
      const loNext = nextRetryDelayMs(n + 1, { ...policy, jitter: "equal", random: () => 0 });
      const doubled = delayCeilingMs(n + 1, policy.baseMs, policy.maxMs) === 2 * delayCeilingMs(n, policy.baseMs, policy.maxMs);
      if (doubled) assert.ok(loNext >= hiPrev, `equal jitter never shrinks below the cap (n=${n})`);
    }
  });

  it("uses Retry-After instead of the backoff, capped at the maximum delay", () => {
    assert.equal(nextRetryDelayMs(1, policy, 90_000), 90_000);
    assert.equal(nextRetryDelayMs(1, policy, 10 * 86_400_000), policy.maxMs);
  });
});

describe("parseRetryAfter", () => {
  const now = Date.parse("2026-11-01T12:00:00Z");
  it("parses delay-seconds and HTTP dates", () => {
    assert.equal(parseRetryAfter("120", now), 120_000);
    assert.equal(parseRetryAfter("Sun, 01 Nov 2026 12:01:00 GMT", now), 60_000);
    assert.equal(parseRetryAfter("Sun, 01 Nov 2026 11:00:00 GMT", now), 0);
  });
  it("ignores absent and malformed values", () => {
    assert.equal(parseRetryAfter(undefined, now), undefined);
    assert.equal(parseRetryAfter("soon", now), undefined);
    assert.equal(parseRetryAfter("-5", now), undefined);
  });
});
