import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Registry } from "prom-client";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { WatchUpdateKind } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createSubjects } from "@logistics/shared/nats";
import { createTestSchema, testNatsUrl, uniqueName, waitFor, type TestSchema } from "@logistics/shared/testing";
import { createLiveHub, createLiveNotifier } from "../src/live-updates.js";
import { createPostgresShipmentStore, type PostgresShipmentStore } from "../src/store/index.js";
import { created as createdEvent, scan as scanEvent } from "./store/event-builders.js";
import { createTrackingMetrics } from "../src/tracking-metrics.js";
import { createTrackingHandlers } from "../src/tracking-handlers.js";
import { openWatches } from "./tracking-fixtures.js";

const WATCHERS = 40;

describe("WatchShipment fan-out (real PostgreSQL store and NATS notices)", () => {
  let schema: TestSchema;
  let store: PostgresShipmentStore;
  let nc: NatsConnection;
  const reads = { getShipment: 0, listEvents: 0 };

  beforeAll(async () => {
    schema = await createTestSchema({ prefix: "watchfan" });
    store = await createPostgresShipmentStore({ connectionString: schema.connectionString, maxConnections: 4 });
    nc = await connect({ servers: testNatsUrl() });
  });
  afterAll(async () => {
    await nc?.close();
    await store?.close();
    await schema?.drop();
  });

  it(`reads a new version once for ${WATCHERS} watchers of the shipment, not once per watcher`, async () => {
    const subjects = createSubjects(uniqueName("watchfan"));
    const live = createLiveHub(nc, subjects);
    const notifier = createLiveNotifier(nc, subjects);
    const tn = `FAN${uniqueName("t").replace(/[^A-Za-z0-9]/g, "").toUpperCase().slice(-12)}`;
    const t0 = Date.now() - 3_600_000;
    const created = createdEvent(tn, `${tn}-0`, t0, "cust-1");
    const scan = (i: number, kind: ScanKind) =>
      scanEvent(tn, `${tn}-${i}`, t0 + i * 60_000, kind, { rawStatus: { code: ScanKind[kind], text: "scanned" }, location: { latitude: 50, longitude: 8 } });
    await store.applyEvents([created]);

    // The store as the service sees it, counting the reads a watch makes.
    const counted = {
      getShipment: (t: string) => (reads.getShipment++, store.getShipment(t)),
      listEvents: (...a: Parameters<PostgresShipmentStore["listEvents"]>) => (reads.listEvents++, store.listEvents(...a)),
      searchShipments: (...a: Parameters<PostgresShipmentStore["searchShipments"]>) => store.searchShipments(...a),
    };
    const handlers = createTrackingHandlers({
      store: counted,
      reader: { get: async () => undefined },
      live,
      metrics: createTrackingMetrics(new Registry()),
      heartbeatMs: 60_000,
    });

    const watches = openWatches(handlers, tn, WATCHERS);
    const { received } = watches;
    await waitFor(() => (received.every((r) => r.length === 1) ? true : undefined), { message: "every watcher has its snapshot" });
    assert.ok(received.every((r) => r[0]?.kind === WatchUpdateKind.SNAPSHOT));

    // Version-only notices (no change carried, e.g. from an adapter that reports no writes): each
    // new version costs one store read and one history load for all watchers.
    for (const [i, kind] of [ScanKind.PICKUP, ScanKind.HUB_ARRIVAL, ScanKind.HUB_DEPARTURE].entries()) {
      const before = { ...reads };
      const [result] = await store.applyEvents([scan(i + 1, kind)]);
      assert.ok(result?.applied);
      notifier.notify(tn, Number(result.version));
      await waitFor(() => (received.every((r) => r.length === i + 2) ? true : undefined), { message: `every watcher saw version ${i + 2}` });
      assert.ok(received.every((r) => r.at(-1)?.kind === WatchUpdateKind.CHANGE && r.at(-1)?.sequence === BigInt(i + 2)));
      assert.equal(reads.getShipment - before.getShipment, 1, `one shipment read for ${WATCHERS} watchers of version ${i + 2}`);
      assert.equal(reads.listEvents - before.listEvents, 1, `one history read for ${WATCHERS} watchers of version ${i + 2}`);
    }

    await watches.close();
    live.close();
  });
});
