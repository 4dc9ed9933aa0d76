import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { routingConfig } from "./config.js";

const base = { JWT_PUBLIC_KEY_FILE: "keys.json" };

describe("routing config: consumer linger", () => {
  it("lets a batch wait 50 ms for more events by default, takes 0 to turn it off, and refuses more than a second", () => {
    assert.equal(routingConfig.parse(base).ROUTING_CONSUMER_LINGER_MS, 50);
    assert.equal(routingConfig.parse({ ...base, ROUTING_CONSUMER_LINGER_MS: "0" }).ROUTING_CONSUMER_LINGER_MS, 0);
    assert.throws(() => routingConfig.parse({ ...base, ROUTING_CONSUMER_LINGER_MS: "5000" }), /ROUTING_CONSUMER_LINGER_MS/);
  });
});
