import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { DeliveryAttemptSchema } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { disclosedAttempt, disclosedDurationMs } from "./attempt-disclosure.js";

describe("disclosedDurationMs", () => {
  it("shows no duration for an attempt without a response, however long it took", () => {
    for (const ms of [0, 1, 3, 250, 9_999, 10_000]) assert.equal(disclosedDurationMs(0, ms), undefined, String(ms));
  });

  it("rounds an answered attempt's duration up to a multiple of 100 ms, never to zero", () => {
    assert.deepEqual(
      [0, 1, 37, 99, 100, 101, 180, 1_234, 9_950].map((ms) => disclosedDurationMs(200, ms)),
      [100, 100, 100, 100, 100, 200, 200, 1_300, 10_000],
    );
    assert.equal(disclosedDurationMs(503, 2_001), 2_100, "a failing answer too");
  });
});

describe("disclosedAttempt", () => {
  it("replaces the duration only, and leaves the recorded attempt as it was", () => {
    const attemptedAt = timestampNow();
    const refused = create(DeliveryAttemptSchema, { attemptedAt, error: "connection failed", duration: durationFromMs(2) });
    const shown = disclosedAttempt(refused);
    assert.equal(shown.duration, undefined);
    assert.equal(shown.error, "connection failed");
    assert.equal(shown.attemptedAt, attemptedAt);
    assert.equal(durationMs(refused.duration!), 2, "the original is not changed");

    const answered = disclosedAttempt(create(DeliveryAttemptSchema, { httpStatus: 500, error: "HTTP 500", duration: durationFromMs(143), responseExcerpt: "down" }));
    assert.equal(durationMs(answered.duration!), 200);
    assert.deepEqual([answered.httpStatus, answered.error, answered.responseExcerpt], [500, "HTTP 500", "down"]);
  });
});
