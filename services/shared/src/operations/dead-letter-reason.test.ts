import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { deadLetterReasonClass, isDeadLetterReasonClass } from "./dead-letter-reason.js";

describe("deadLetterReasonClass", () => {
  it("classes the reasons the consumers write, and anything else as other", () => {
    assert.equal(deadLetterReasonClass("poison: cannot decode logistics.events.v1.ScanRecorded: premature EOF"), "poison");
    assert.equal(deadLetterReasonClass("handler failed after 20 deliveries: connection refused"), "retries_exhausted");
    assert.equal(deadLetterReasonClass("max deliveries (20) exceeded without the message being settled"), "unsettled");
    assert.equal(deadLetterReasonClass("something new"), "other");
    assert.equal(deadLetterReasonClass(undefined), "other");
  });

  it("recognises class names for filters", () => {
    assert.ok(isDeadLetterReasonClass("retries_exhausted"));
    assert.ok(!isDeadLetterReasonClass("unscanned"));
  });
});
