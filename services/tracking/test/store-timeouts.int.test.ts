import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import pg from "pg";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "@logistics/shared/gen/grpc/health/v1/health_pb.js";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createEventPublisher } from "@logistics/shared/nats";
import { startBlackHole, startTcpProxy, uniqueName, waitFor, type BlackHole } from "@logistics/shared/testing";
import { createPostgresShipmentStore } from "../src/store/postgres/postgres-shipment-store.js";
import { createdEvent, createTrackingTestEnv, publishFixture, readCounter, trackingNumber, type TrackingTestEnv } from "./tracking-fixtures.js";

/** Far above every timeout configured below: an answer later than this is a hang, not a timeout. */
const BOUND_MS = 15_000;
/** What the caller allows: without the timeouts the call would run into it (DeadlineExceeded) instead. */
const CALLER_DEADLINE_MS = 60_000;

/** The call's Connect code and message, and how long it took. */
async function outcome(call: () => Promise<unknown>): Promise<{ code: Code | "ok"; message: string; ms: number }> {
  const t0 = performance.now();
  try {
    await call();
    return { code: "ok", message: "", ms: performance.now() - t0 };
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, message: e.rawMessage, ms: performance.now() - t0 };
  }
}

/**
 * Tracking against a PostgreSQL that stalls: the RPC answers Unavailable within the configured
 * timeouts instead of hanging, the service stays up, and the projector retries what timed out.
 * Everything is real: the service over real sockets, a TCP listener that never answers, a TCP
 * proxy that goes silent on open connections, and the real PostgreSQL with a lock held by another
 * connection.
 */
describe("tracking with a stalled PostgreSQL (real sockets, real PostgreSQL)", () => {
  let env: TrackingTestEnv;
  let hole: BlackHole;
  let locker: pg.Client;
  let nc: NatsConnection;
  const t0 = new Date(Date.UTC(2026, 10, 22, 8, 0, 0));
  const tag = uniqueName("to").replace(/_/g, "").slice(0, 10);

  beforeAll(async () => {
    env = await createTrackingTestEnv();
    hole = await startBlackHole();
    locker = new pg.Client({ connectionString: env.schema.connectionString });
    await locker.connect();
    nc = await connect({ servers: env.nats.url });
  });
  afterAll(async () => {
    await locker?.query("ROLLBACK").catch(() => {});
    await locker?.end();
    await nc?.drain();
    await env?.close();
    await hole?.close();
  });

  const clients = (url: string) => {
    const transport: Transport = createGrpcTransport({ baseUrl: url });
    return { tracking: createClient(TrackingService, transport), health: createClient(Health, transport) };
  };
  const get = (client: Client<typeof TrackingService>, tn: string) => client.getShipment({ trackingNumber: tn }, { timeoutMs: CALLER_DEADLINE_MS });
  /** Holds an ACCESS EXCLUSIVE lock on `shipments` (reads wait too) until {@link unlock}. */
  const lock = async () => {
    await locker.query("BEGIN");
    await locker.query("LOCK TABLE shipments IN ACCESS EXCLUSIVE MODE");
  };
  const unlock = () => locker.query("ROLLBACK");

  it("answers Unavailable within the connect timeout when PostgreSQL accepts TCP and never answers, and keeps serving", async () => {
    const svc = await env.start({
      DATABASE_URL: hole.postgresUrl,
      TRACKING_DB_MIGRATE: "false",
      TRACKING_PROJECTOR_ENABLED: "false",
      PG_CONNECT_TIMEOUT_MS: "500",
    });
    const { tracking, health } = clients(svc.url);
    const tn = trackingNumber(tag, 1);

    const first = await outcome(() => get(tracking, tn));
    assert.equal(first.code, Code.Unavailable, `answered ${String(first.code)}: ${first.message}`);
    assert.match(first.message, /^database unavailable: .*connect timeout/);
    assert.ok(first.ms < BOUND_MS, `answered after ${Math.round(first.ms)} ms`);
    assert.ok(hole.accepted() >= 1, "the pool did connect to the black hole");

    // A stream fails the same way, and the service is still up and serving.
    const watch = await outcome(async () => {
      for await (const _ of tracking.watchShipment({ trackingNumber: tn }, { timeoutMs: CALLER_DEADLINE_MS })) void _;
    });
    assert.equal(watch.code, Code.Unavailable, `WatchShipment answered ${String(watch.code)}: ${watch.message}`);
    assert.ok(watch.ms < BOUND_MS, `WatchShipment answered after ${Math.round(watch.ms)} ms`);
    const again = await outcome(() => get(tracking, tn));
    assert.equal(again.code, Code.Unavailable);
    assert.equal((await health.check({ service: "" }, { timeoutMs: 5000 })).status, ServingStatus.SERVING);
  });

  it("answers Unavailable when a read waits on a lock past PG_STATEMENT_TIMEOUT_MS, and the same call succeeds once the lock is gone", async () => {
    const tn = trackingNumber(tag, 2);
    const seed = await createPostgresShipmentStore({ connectionString: env.schema.connectionString, maxConnections: 1 });
    try {
      await seed.applyEvent(createdEvent(tn, t0).event);
    } finally {
      await seed.close();
    }
    const svc = await env.start({ TRACKING_PROJECTOR_ENABLED: "false", PG_STATEMENT_TIMEOUT_MS: "1000" });
    const { tracking } = clients(svc.url);

    await lock();
    let locked: Awaited<ReturnType<typeof outcome>>;
    try {
      locked = await outcome(() => get(tracking, tn));
    } finally {
      await unlock();
    }
    assert.equal(locked.code, Code.Unavailable, `answered ${String(locked.code)}: ${locked.message}`);
    assert.match(locked.message, /statement timeout \(SQLSTATE 57014\)/);
    assert.ok(locked.ms >= 900 && locked.ms < BOUND_MS, `answered after ${Math.round(locked.ms)} ms`);

    const after = await get(tracking, tn);
    assert.equal(after.shipment?.trackingNumber, tn);
  });

  it("retries a projector batch whose statement timed out, dead-letters nothing, and applies it once the lock is gone", async () => {
    const tn = trackingNumber(tag, 3);
    const svc = await env.start({ PG_STATEMENT_TIMEOUT_MS: "1000" });
    const { tracking } = clients(svc.url);
    const failures = () => readCounter(svc.metricsUrl, "logistics_tracking_projector_failures_total");
    const jsm = await jetstreamManager(nc);
    const deadLetters = async () => (await jsm.streams.info(env.subjects.streams.deadLetters.name)).state.messages;

    await lock();
    try {
      await publishFixture(createEventPublisher({ js: jetstream(nc) }), env.subjects, createdEvent(tn, t0));
      // Two failed deliveries: the first one, and a redelivery that met the same lock.
      await waitFor(async () => (await failures()) >= 2, { timeoutMs: 60_000, message: "two failed deliveries of the batch" });
      assert.equal(await deadLetters(), 0, "a timed-out event is not dead-lettered");
    } finally {
      await unlock();
    }
    const shipment = await waitFor(async () => (await get(tracking, tn)).shipment, { timeoutMs: 60_000, message: "the event applied after the lock" });
    assert.equal(shipment.trackingNumber, tn);
    assert.equal(await deadLetters(), 0);
  });

  it("answers Unavailable after PG_QUERY_TIMEOUT_MS when PostgreSQL stops answering on open connections, retries the projector's batch, and recovers on new connections", async () => {
    const [seen, unseen, cold] = [trackingNumber(tag, 4), trackingNumber(tag, 5), trackingNumber(tag, 6)];
    // Written straight into the store, so no cache holds it and reading it takes a query.
    const seed = await createPostgresShipmentStore({ connectionString: env.schema.connectionString, maxConnections: 1 });
    try {
      await seed.applyEvent(createdEvent(cold, t0).event);
    } finally {
      await seed.close();
    }
    const proxy = await startTcpProxy(env.schema.connectionString);
    const svc = await env.start({ DATABASE_URL: proxy.url, PG_STATEMENT_TIMEOUT_MS: "500", PG_QUERY_TIMEOUT_MS: "1000" });
    try {
      const { tracking } = clients(svc.url);
      const publisher = createEventPublisher({ js: jetstream(nc) });
      const failures = () => readCounter(svc.metricsUrl, "logistics_tracking_projector_failures_total");
      const jsm = await jetstreamManager(nc);
      const deadLetters = async () => (await jsm.streams.info(env.subjects.streams.deadLetters.name)).state.messages;
      await publishFixture(publisher, env.subjects, createdEvent(seen, t0));
      await waitFor(async () => (await get(tracking, seen)).shipment, { timeoutMs: 60_000, message: "the first event applied through the proxy" });
      const opened = proxy.accepted();

      // The server's host vanishes: the pooled connections stay open, nothing comes back, no reset.
      proxy.blackHole();
      const silent = await outcome(() => get(tracking, cold));
      assert.equal(silent.code, Code.Unavailable, `answered ${String(silent.code)}: ${silent.message}`);
      assert.match(silent.message, /^database unavailable: the database did not answer within the query timeout/);
      assert.ok(silent.ms >= 900 && silent.ms < BOUND_MS, `answered after ${Math.round(silent.ms)} ms`);

      const failed = await failures();
      await publishFixture(publisher, env.subjects, createdEvent(unseen, t0));
      await waitFor(async () => (await failures()) > failed, { timeoutMs: 60_000, message: "a failed delivery of the batch" });
      assert.equal(await deadLetters(), 0, "an unanswered batch is not dead-lettered");

      proxy.forward();
      const shipment = await waitFor(async () => (await get(tracking, unseen)).shipment, { timeoutMs: 60_000, message: "the batch applied once the path carries again" });
      assert.equal(shipment.trackingNumber, unseen);
      assert.equal((await get(tracking, cold)).shipment?.trackingNumber, cold, "the read that timed out succeeds, with its own answer");
      assert.ok(proxy.accepted() > opened, "the connections whose queries timed out were replaced");
      assert.equal(await deadLetters(), 0);
    } finally {
      proxy.forward();
      await svc.close();
      await proxy.close();
    }
  });
});
