import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createEventPublisher, type EventPublisher } from "@logistics/shared/nats";
import type { RunningService } from "@logistics/shared/runtime";
import { startRedisServer, uniqueName, waitFor, type RedisServerHandle } from "@logistics/shared/testing";
import {
  createdEvent,
  createTrackingTestEnv,
  publishFixture,
  readCounter,
  scanEvent,
  trackingNumber,
  type TrackingTestEnv,
} from "./tracking-fixtures.js";

const HITS = "logistics_tracking_cache_hits_total";
const MISSES = "logistics_tracking_cache_misses_total";

describe("the tracking snapshot cache (real Redis that goes away and comes back)", () => {
  let redis: RedisServerHandle;
  let env: TrackingTestEnv;
  let svc: RunningService;
  let nc: NatsConnection;
  let publisher: EventPublisher;
  let client: Client<typeof TrackingService>;
  const tn = trackingNumber(uniqueName("c").replace(/_/g, "").toUpperCase().slice(0, 10), 1);
  const t0 = Date.UTC(2026, 10, 22, 8, 0, 0);
  const at = (h: number) => new Date(t0 + h * 3_600_000);
  /** A GetShipment that must answer within 3 s whatever state Redis is in. */
  const get = () => client.getShipment({ trackingNumber: tn }, { signal: AbortSignal.timeout(3000) });

  beforeAll(async () => {
    redis = await startRedisServer();
    env = await createTrackingTestEnv({ redisUrl: redis.url });
    svc = await env.start({ TRACKING_REDIS_TIMEOUT_MS: "200" });
    nc = await connect({ servers: env.nats.url });
    publisher = createEventPublisher({ js: jetstream(nc) });
    client = createClient(TrackingService, createGrpcTransport({ baseUrl: svc.url }));
    await publishFixture(publisher, env.subjects, createdEvent(tn, at(0)));
    await publishFixture(publisher, env.subjects, scanEvent(tn, 1, ScanKind.PICKUP, at(1)));
    await waitFor(async () => (await get()).shipment?.version === 2n, { timeoutMs: 30_000, message: "version 2 visible" });
  });
  afterAll(async () => {
    await nc?.drain();
    await env?.close();
    await redis?.stop();
  });

  it("serves repeated reads from the cache (the hit counter grows)", async () => {
    const hits = await readCounter(svc.metricsUrl, HITS);
    for (let i = 0; i < 5; i++) assert.equal((await get()).shipment?.version, 2n);
    assert.ok((await readCounter(svc.metricsUrl, HITS)) >= hits + 4, "reads were cache hits");
  });

  it("answers every RPC correctly from the store while Redis is down", async () => {
    await redis.kill();
    const misses = await readCounter(svc.metricsUrl, MISSES);
    assert.equal((await get()).shipment?.status, ShipmentStatus.IN_TRANSIT);
    // A change applied while the cache is unreachable is visible at once.
    await publishFixture(publisher, env.subjects, scanEvent(tn, 2, ScanKind.OUT_FOR_DELIVERY, at(2)));
    await waitFor(async () => (await get()).shipment?.version === 3n, { timeoutMs: 30_000, message: "version 3 visible without Redis" });
    const shipment = (await get()).shipment;
    assert.equal(shipment?.status, ShipmentStatus.OUT_FOR_DELIVERY);
    const events = await client.listShipmentEvents({ trackingNumber: tn }, { signal: AbortSignal.timeout(3000) });
    assert.equal(events.events.length, 3);
    await assert.rejects(
      client.getShipment({ trackingNumber: "NOSUCH0001" }, { signal: AbortSignal.timeout(3000) }),
      (e: unknown) => ConnectError.from(e).code === Code.NotFound,
    );
    assert.ok((await readCounter(svc.metricsUrl, MISSES)) > misses, "reads went to the store");
  });

  it("uses the cache again once Redis is back", async () => {
    await redis.restart();
    await waitFor(
      async () => {
        const before = await readCounter(svc.metricsUrl, HITS);
        const res = await get();
        assert.equal(res.shipment?.version, 3n);
        await get();
        return (await readCounter(svc.metricsUrl, HITS)) > before;
      },
      { timeoutMs: 15_000, intervalMs: 200, message: "cache hits after Redis returned" },
    );
    assert.equal((await get()).shipment?.status, ShipmentStatus.OUT_FOR_DELIVERY, "the refilled cache holds the current version");
  });
});
