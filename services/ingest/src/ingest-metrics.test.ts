import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { describe, it } from "vitest";
import { createIngestMetrics } from "./ingest-metrics.js";

describe("createIngestMetrics", () => {
  it("serves the shipment cache's size as read at each scrape", async () => {
    const registry = new Registry();
    const metrics = createIngestMetrics(registry);
    let entries = 0;
    metrics.observeShipmentCache(() => entries);
    entries = 27_000;
    assert.match(await registry.metrics(), /^logistics_ingest_shipment_cache_entries 27000$/m);
    entries = 3;
    assert.match(await registry.metrics(), /^logistics_ingest_shipment_cache_entries 3$/m);
  });
});
