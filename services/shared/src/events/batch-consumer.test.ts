import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { JetStreamApiError, JetStreamError } from "@nats-io/jetstream";
import { pullRetryDelayMs } from "./batch-consumer.js";

describe("pullRetryDelayMs", () => {
  it("pulls again at once after a fetch that missed the server's heartbeats (an overloaded event loop)", () => {
    // What @nats-io/jetstream's fetch ends with when two idle heartbeats went unread.
    assert.equal(pullRetryDelayMs(new JetStreamError("heartbeats missed")), 0);
  });

  it("waits a second after any other failure, so a persistent one does not spin", () => {
    assert.equal(pullRetryDelayMs(new JetStreamApiError({ code: 404, err_code: 10014, description: "consumer not found" })), 1000);
    assert.equal(pullRetryDelayMs(new Error("connection closed")), 1000);
    assert.equal(pullRetryDelayMs("heartbeats missed"), 1000);
  });
});
