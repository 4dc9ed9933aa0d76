import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { trackingConfig } from "./config.js";

const base = { JWT_PUBLIC_KEY_FILE: "keys.json" };

describe("tracking config: projector batches", () => {
  it("takes up to 1,024 events per consumer batch without a linger by default, and refuses larger batches", () => {
    const c = trackingConfig.parse(base);
    assert.equal(c.TRACKING_PROJECTOR_MAX_BATCH, 1024);
    assert.equal(c.TRACKING_PROJECTOR_LINGER_MS, 0);
    assert.equal(trackingConfig.parse({ ...base, TRACKING_PROJECTOR_LINGER_MS: "20" }).TRACKING_PROJECTOR_LINGER_MS, 20);
    assert.throws(() => trackingConfig.parse({ ...base, TRACKING_PROJECTOR_MAX_BATCH: "4096" }), /TRACKING_PROJECTOR_MAX_BATCH/);
  });
});
