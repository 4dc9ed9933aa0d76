import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { Registry } from "prom-client";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createTestSchema, uniqueName, type TestSchema } from "@logistics/shared/testing";
import { createShipmentReader } from "../src/shipment-reader.js";
import { createPostgresShipmentStore, type PostgresShipmentStore } from "../src/store/index.js";
import { createTrackingHandlers } from "../src/tracking-handlers.js";
import { createTrackingMetrics } from "../src/tracking-metrics.js";
import { createdEvent, scanEvent, trackingNumber } from "./tracking-fixtures.js";

/**
 * Two regions' tracking, each over its own database, read by a cache that may revalidate against
 * either (GSLB): an ETag must name the content, not just the version.
 */
describe("read ETags across regions (two tracking instances, two databases)", () => {
  const regions: Array<{ schema: TestSchema; store: PostgresShipmentStore; client: ReturnType<typeof client> }> = [];

  function client(store: PostgresShipmentStore) {
    const metrics = createTrackingMetrics(new Registry());
    const handlers = createTrackingHandlers({ store, reader: createShipmentReader({ store, metrics }), metrics });
    return createClient(TrackingService, createRouterTransport((r) => r.service(TrackingService, handlers)));
  }

  /** The ETag and version of an anonymous GetShipment, and the ETag of the first history page. */
  async function read(region: number, tn: string) {
    const { client: c } = regions[region]!;
    let shipmentTag: string | null = null;
    let historyTag: string | null = null;
    const res = await c.getShipment({ trackingNumber: tn }, { onHeader: (h) => (shipmentTag = h.get("etag")) });
    await c.listShipmentEvents({ trackingNumber: tn }, { onHeader: (h) => (historyTag = h.get("etag")) });
    return { version: res.shipment?.version, shipmentTag, historyTag };
  }

  beforeAll(async () => {
    for (const name of ["etaga", "etagb"]) {
      const schema = await createTestSchema({ prefix: name });
      const store = await createPostgresShipmentStore({ connectionString: schema.connectionString, maxConnections: 2 });
      regions.push({ schema, store, client: client(store) });
    }
  });
  afterAll(async () => {
    for (const r of regions) {
      await r.store.close();
      await r.schema.drop();
    }
  });

  it("gives equal versions with different events different ETags, and the same events in another order the same ETag", async () => {
    const tn = trackingNumber(uniqueName("etag").replace(/_/g, ""), 1);
    const t0 = Date.UTC(2026, 10, 22, 8, 0, 0);
    const at = (h: number) => new Date(t0 + h * 3_600_000);
    const created = createdEvent(tn, at(0));
    const scans = [ScanKind.PICKUP, ScanKind.HUB_ARRIVAL, ScanKind.HUB_DEPARTURE, ScanKind.OUT_FOR_DELIVERY, ScanKind.DELIVERED].map((k, i) =>
      scanEvent(tn, i + 1, k, at(i + 1)),
    );
    const [s1, s2, s3, s4, s5] = scans.map((s) => s.event);
    const [a, b] = regions.map((r) => r.store);

    // Not converged: region A holds scan 4, region B scan 5 (say, sourcing from the other is behind).
    await a!.applyEvents([created.event, s1!, s2!, s3!, s4!]);
    await b!.applyEvents([created.event, s1!, s2!, s3!, s5!]);
    const [apart, bpart] = [await read(0, tn), await read(1, tn)];
    assert.equal(apart.version, 5n);
    assert.equal(bpart.version, 5n, "the same version in both regions");
    assert.match(apart.shipmentTag ?? "", /^"5\.[A-Za-z0-9_-]{22}"$/);
    assert.notEqual(apart.shipmentTag, bpart.shipmentTag, "GetShipment: different content, different ETag");
    assert.notEqual(apart.historyTag, bpart.historyTag, "ListShipmentEvents: different content, different ETag");

    // Converged, each region having applied the other's scan last (B's scan 4 arrives late).
    await a!.applyEvents([s5!]);
    await b!.applyEvents([s4!]);
    const [aboth, bboth] = [await read(0, tn), await read(1, tn)];
    assert.equal(aboth.version, 6n);
    assert.equal(bboth.version, 6n);
    assert.equal(aboth.shipmentTag, bboth.shipmentTag, "GetShipment: same content, same ETag in both regions");
    assert.equal(aboth.historyTag, bboth.historyTag, "ListShipmentEvents: same content, same ETag in both regions");
    assert.notEqual(aboth.shipmentTag, apart.shipmentTag);
  });
});
