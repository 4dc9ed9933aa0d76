import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type HandlerContext } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Scope, type Principal } from "@logistics/shared/auth";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import {
  TrackingService,
  WatchShipmentRequestSchema,
  WatchUpdateKind,
  type WatchShipmentResponse,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createEventPublisher } from "@logistics/shared/nats";
import type { RunningService } from "@logistics/shared/runtime";
import { createTestSchema, uniqueName, waitFor, type TestSchema } from "@logistics/shared/testing";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Registry } from "prom-client";
import { decodeNotice, encodeNotice } from "../src/live-notice.js";
import { loadHistory, stepsBetween } from "../src/shipment-history.js";
import { createPostgresShipmentStore, type PostgresShipmentStore } from "../src/store/postgres/postgres-shipment-store.js";
import type { ShipmentStore } from "../src/store/ports.js";
import { createTrackingHandlers } from "../src/tracking-handlers.js";
import { createTrackingMetrics } from "../src/tracking-metrics.js";
import { journey, memoryLiveHub } from "./live-changes.js";
import {
  connectWatch,
  createdEvent,
  createTrackingTestEnv,
  publishFixture,
  scanEvent,
  trackingNumber,
  watchContext,
  type TrackingTestEnv,
} from "./tracking-fixtures.js";

/** Versions of the shipments resumed from far behind (the creation and VERSIONS - 1 scans). */
const VERSIONS = 600;
const INTERNAL: Principal = { subject: "svc-test", scopes: new Set([Scope.ShipmentsRead]), role: "internal", anonymous: false, claims: { sub: "svc-test" } };

/**
 * WatchShipment resumed from far behind over the real PostgreSQL store: the replay sends every
 * version in order, and derives each one only as the stream takes the one before (it used to
 * rebuild them all first: memory growing as versions², watch-feed.ts).
 */
describe("WatchShipment resumed far behind (real PostgreSQL store)", () => {
  let schema: TestSchema;
  let store: PostgresShipmentStore;

  beforeAll(async () => {
    schema = await createTestSchema({ prefix: "trkreplay" });
    store = await createPostgresShipmentStore({ connectionString: schema.connectionString, maxConnections: 4 });
  });
  afterAll(async () => {
    await store?.close();
    await schema?.drop();
  });

  it("replays every change after after_sequence in order, derived one at a time as the stream takes them, then continues live", async () => {
    const tn = trackingNumber(uniqueName("rp"), 1);
    const events = journey(tn, VERSIONS);
    for (let i = 0; i < VERSIONS; i += 200) await store.applyEvents(events.slice(i, Math.min(i + 200, VERSIONS)));

    // The history as the handlers read it, each event counted when something reads what it
    // carries: the replay deriving a version from it, or the stream rendering its cause.
    const touched = new Set<string>();
    const counting: Pick<ShipmentStore, "getShipment" | "listEvents" | "searchShipments"> = {
      getShipment: (t) => store.getShipment(t),
      searchShipments: (q) => store.searchShipments(q),
      async listEvents(t, q) {
        const page = await store.listEvents(t, q);
        return {
          ...page,
          items: page.items.map((e) => Object.defineProperty({ ...e }, "event", { get: () => (touched.add(e.eventId), e.event) })),
        };
      },
    };
    const live = memoryLiveHub();
    const handlers = createTrackingHandlers({
      store: counting,
      reader: { get: async () => undefined } as never,
      live,
      metrics: createTrackingMetrics(new Registry()),
      heartbeatMs: 600_000,
    });
    const ctx = watchContext(INTERNAL);
    const stream = handlers.watchShipment!(create(WatchShipmentRequestSchema, { trackingNumber: tn, afterSequence: 1n }), ctx as HandlerContext)[
      Symbol.asyncIterator
    ]() as AsyncIterator<WatchShipmentResponse>;

    const received: WatchShipmentResponse[] = [];
    while (received.length < VERSIONS - 1) {
      const r = await stream.next();
      assert.notEqual(r.done, true, `the stream ended after ${received.length} changes`);
      received.push(r.value as WatchShipmentResponse);
      // Version 1 (the replay's start), the versions sent, and at most the one being derived.
      assert.ok(touched.size <= received.length + 2, `${touched.size} versions read for ${received.length} sent`);
    }

    const doc = await store.getShipment(tn);
    assert.equal(doc?.version, VERSIONS);
    const truth = stepsBetween(undefined, doc!, await loadHistory(store, tn)).slice(1);
    assert.deepEqual(
      received.map((u) => [u.kind, u.sequence, u.shipment?.version, u.cause?.eventId, u.shipment?.status, u.shipment?.eventCount]),
      truth.map((s) => [WatchUpdateKind.CHANGE, BigInt(s.version), BigInt(s.version), s.cause.eventId, s.doc.status, s.version]),
      "every version after 1, once, in order, as the history rebuilds it",
    );

    // Then live: the next change is applied and announced.
    const next = stream.next();
    const [applied] = await store.applyEvents(events.slice(VERSIONS));
    assert.equal(applied?.version, VERSIONS + 1);
    live.announce(decodeNotice(tn, encodeNotice(VERSIONS + 1)));
    const live1 = (await next).value as WatchShipmentResponse;
    assert.deepEqual([live1.kind, live1.sequence, live1.cause?.eventId], [WatchUpdateKind.CHANGE, BigInt(VERSIONS + 1), `${tn}-${VERSIONS - 1}`]);

    ctx.abort(new ConnectError("canceled", Code.Canceled));
    assert.equal((await stream.next()).done, true);
    assert.equal(live.listening(), 0, "the watcher left its feed");
  });
});

describe("WatchShipment resumed far behind (tracking service over HTTP, real store and projector)", () => {
  let env: TrackingTestEnv;
  let svc: RunningService;
  let nc: NatsConnection;
  let writer: PostgresShipmentStore;
  const tag = uniqueName("rs").replace(/_/g, "").toUpperCase().slice(0, 10);

  beforeAll(async () => {
    env = await createTrackingTestEnv();
    svc = await env.start({ TRACKING_WATCH_HEARTBEAT_MS: "60000" });
    nc = await connect({ servers: env.nats.url });
    // The shipment's history is written straight into the service's store (publishing 600 events
    // through the projector would only make the test slower); the live change goes through it.
    writer = await createPostgresShipmentStore({ connectionString: env.schema.connectionString, maxConnections: 2, migrate: false });
  });
  afterAll(async () => {
    await writer?.close();
    await nc?.drain();
    await env?.close();
  });

  it("sends a client resuming from after_sequence 1 every change in order, then the next one live", async () => {
    const tn = trackingNumber(tag, 1);
    const t0 = Date.UTC(2026, 10, 21, 8);
    const at = (i: number) => new Date(t0 + i * 60_000);
    const kinds = [ScanKind.PICKUP, ScanKind.HUB_ARRIVAL, ScanKind.HUB_DEPARTURE];
    const scan = (i: number) => scanEvent(tn, i, kinds[i % kinds.length] as ScanKind, at(i));
    const history = [createdEvent(tn, at(0)), ...Array.from({ length: VERSIONS - 1 }, (_, i) => scan(i + 1))].map((f) => f.event);
    for (let i = 0; i < VERSIONS; i += 200) await writer.applyEvents(history.slice(i, Math.min(i + 200, VERSIONS)));

    const client = createClient(TrackingService, createConnectTransport({ baseUrl: svc.url, httpVersion: "1.1" }));
    const watch = connectWatch(client, tn, 1n);
    await waitFor(() => watch.updates.length >= VERSIONS - 1, { message: `${VERSIONS - 1} changes replayed`, timeoutMs: 60_000 });
    await publishFixture(createEventPublisher({ js: jetstream(nc) }), env.subjects, scan(VERSIONS));
    await waitFor(() => watch.updates.some((u) => u.sequence === BigInt(VERSIONS + 1)), { message: "the live change" });
    watch.cancel();
    await watch.ended;

    const updates = watch.updates.filter((u) => u.kind !== WatchUpdateKind.HEARTBEAT);
    assert.deepEqual(
      updates.map((u) => u.sequence),
      Array.from({ length: VERSIONS }, (_, i) => BigInt(i + 2)),
      "every version after 1 once, in order, then the live one",
    );
    assert.ok(updates.every((u) => u.kind === WatchUpdateKind.CHANGE && u.shipment?.version === u.sequence));
    assert.deepEqual(
      updates.map((u) => u.cause?.scanKind),
      Array.from({ length: VERSIONS }, (_, i) => kinds[(i + 1) % kinds.length]),
    );
  });
});
