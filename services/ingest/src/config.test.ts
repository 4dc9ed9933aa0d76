import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { effectiveRegion } from "@logistics/shared/runtime";
import { ingestConfig } from "./config.js";

const base = { JWT_PUBLIC_KEY_FILE: "keys.json" };

describe("ingest config: regions", () => {
  it("takes REGION over the deprecated INGEST_REGION, which still works alone, and defaults to global", () => {
    assert.equal(effectiveRegion(ingestConfig.parse({ ...base, REGION: "eu", REGION_PEERS: "us,ap" })), "eu");
    assert.deepEqual(ingestConfig.parse({ ...base, REGION: "eu", REGION_PEERS: "us,ap" }).REGION_PEERS, ["us", "ap"]);
    const legacy = ingestConfig.parse({ ...base, INGEST_REGION: "eu-west" });
    assert.equal(effectiveRegion(legacy, legacy.INGEST_REGION), "eu-west");
    const none = ingestConfig.parse(base);
    assert.equal(effectiveRegion(none, none.INGEST_REGION), "global");
    assert.deepEqual(none.REGION_PEERS, []);
  });

  it("refuses peers without a region, a region among its own peers, and two different region names", () => {
    assert.throws(() => ingestConfig.parse({ ...base, REGION_PEERS: "us" }), /REGION_PEERS needs REGION/);
    assert.throws(() => ingestConfig.parse({ ...base, REGION: "eu", REGION_PEERS: "us,eu" }), /lists itself/);
    assert.throws(() => ingestConfig.parse({ ...base, REGION: "eu", REGION_PEERS: "u.s" }), /invalid region names/);
    assert.throws(() => ingestConfig.parse({ ...base, REGION: "eu", INGEST_REGION: "us" }), /INGEST_REGION \(us\) differs from REGION \(eu\)/);
  });
});
