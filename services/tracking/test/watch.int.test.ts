import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { Scope } from "@logistics/shared/auth";
import { TransportMode } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  TrackingService,
  WatchShipmentRequestSchema,
  WatchShipmentResponseSchema,
  WatchUpdateKind,
  type WatchShipmentResponse,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createEventPublisher, type EventPublisher } from "@logistics/shared/nats";
import type { RunningService } from "@logistics/shared/runtime";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  connectWatch,
  createdEvent,
  createTrackingTestEnv,
  publishFixture,
  readCounter,
  routeEvent,
  scanEvent,
  trackingNumber,
  type TrackingTestEnv,
  type Watch,
} from "./tracking-fixtures.js";

function grpcWatch(port: number, trackingNumber: string, afterSequence = 0n): Watch {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = client.makeServerStreamRequest(
    "/logistics.tracking.v1.TrackingService/WatchShipment",
    (m: ReturnType<typeof create<typeof WatchShipmentRequestSchema>>) => Buffer.from(toBinary(WatchShipmentRequestSchema, m)),
    (b: Buffer) => fromBinary(WatchShipmentResponseSchema, b),
    create(WatchShipmentRequestSchema, { trackingNumber, afterSequence }),
  );
  const updates: WatchShipmentResponse[] = [];
  call.on("data", (u: WatchShipmentResponse) => updates.push(u));
  const ended = new Promise<{ error?: unknown }>((resolve) => {
    call.on("error", (error: unknown) => resolve({ error }));
    call.on("end", () => resolve({}));
  }).finally(() => client.close());
  return { updates, ended, cancel: () => call.cancel() };
}

const changes = (w: Watch) => w.updates.filter((u) => u.kind !== WatchUpdateKind.HEARTBEAT);
const lastSequence = (w: Watch) => changes(w).at(-1)?.sequence ?? 0n;

describe("TrackingService.WatchShipment (real servers, grpc-js and Connect over HTTP/1.1)", () => {
  let env: TrackingTestEnv;
  let svc: RunningService;
  let nc: NatsConnection;
  let publisher: EventPublisher;
  let connectClient: Client<typeof TrackingService>;
  const tag = uniqueName("w").replace(/_/g, "").toUpperCase().slice(0, 10);

  beforeAll(async () => {
    env = await createTrackingTestEnv();
    svc = await env.start({ TRACKING_WATCH_HEARTBEAT_MS: "400", TRACKING_WATCH_CREATION_GRACE_MS: "600" });
    nc = await connect({ servers: env.nats.url });
    publisher = createEventPublisher({ js: jetstream(nc) });
    connectClient = createClient(TrackingService, createConnectTransport({ baseUrl: svc.url, httpVersion: "1.1" }));
  });
  afterAll(async () => {
    await nc?.drain();
    await env?.close();
  });

  const creationWaits = (outcome: string) => readCounter(svc.metricsUrl, "logistics_tracking_watch_creation_waits_total", `outcome="${outcome}"`);
  const openWatchers = () => readCounter(svc.metricsUrl, "logistics_tracking_watchers");

  const version = async (tn: string) => {
    try {
      return (await connectClient.getShipment({ trackingNumber: tn })).shipment?.version ?? 0n;
    } catch {
      return 0n;
    }
  };

  /** Runs the whole scenario with one kind of client. */
  const scenario = async (open: (tn: string, after?: bigint) => Watch, i: number) => {
    const tn = trackingNumber(tag, i);
    const t0 = Date.UTC(2026, 10, 21, 8, 0, 0);
    const at = (h: number) => new Date(t0 + h * 3_600_000);
    await publishFixture(publisher, env.subjects, createdEvent(tn, at(0)));
    await waitFor(async () => (await version(tn)) === 1n, { message: "shipment visible" });

    const first = open(tn);
    await waitFor(() => first.updates.length >= 1, { message: "snapshot" });
    assert.equal(first.updates[0]?.kind, WatchUpdateKind.SNAPSHOT);
    assert.equal(first.updates[0]?.sequence, 1n);

    const live: Array<[ScanKind, number]> = [
      [ScanKind.PICKUP, 1],
      [ScanKind.HUB_ARRIVAL, 2],
      [ScanKind.OUT_FOR_DELIVERY, 3],
    ];
    for (const [kind, h] of live) {
      await publishFixture(publisher, env.subjects, scanEvent(tn, h, kind, at(h), kind === ScanKind.HUB_ARRIVAL ? { code: "FRA", lat: 50.03, lon: 8.57 } : undefined));
      const want = BigInt(h + 1);
      await waitFor(() => lastSequence(first) >= want, { message: `sequence ${want} on the live stream` });
    }
    first.cancel();
    const firstEnd = await first.ended;
    assert.ok(firstEnd.error, "a cancelled stream ends with an error on the client side");

    // Changes while the client is away.
    await publishFixture(publisher, env.subjects, scanEvent(tn, 4, ScanKind.DELIVERY_ATTEMPT, at(4)));
    await publishFixture(publisher, env.subjects, scanEvent(tn, 5, ScanKind.DELIVERED, at(5)));
    await waitFor(async () => (await version(tn)) === 6n, { message: "version 6 applied" });

    const resumed = open(tn, lastSequence(first));
    await waitFor(() => lastSequence(resumed) >= 6n, { message: "missed changes replayed" });
    // A late scan (older event time) still produces a change, but not a status regression.
    await publishFixture(publisher, env.subjects, scanEvent(tn, 6, ScanKind.HUB_DEPARTURE, at(2.5)));
    await waitFor(() => lastSequence(resumed) >= 7n, { message: "live change after resume" });
    await waitFor(() => resumed.updates.some((u) => u.kind === WatchUpdateKind.HEARTBEAT), { message: "a heartbeat" });
    resumed.cancel();
    await resumed.ended;

    const received = [...changes(first), ...changes(resumed)];
    assert.deepEqual(
      received.map((u) => u.sequence),
      [1n, 2n, 3n, 4n, 5n, 6n, 7n],
      "every sequence exactly once, in order",
    );
    assert.equal(changes(resumed)[0]?.kind, WatchUpdateKind.CHANGE, "a resume sends no snapshot");
    assert.deepEqual(
      received.map((u) => u.shipment?.status),
      [
        ShipmentStatus.INFO_RECEIVED,
        ShipmentStatus.IN_TRANSIT,
        ShipmentStatus.IN_TRANSIT,
        ShipmentStatus.OUT_FOR_DELIVERY,
        ShipmentStatus.FAILED_ATTEMPT,
        ShipmentStatus.DELIVERED,
        ShipmentStatus.DELIVERED,
      ],
    );
    assert.deepEqual(
      received.slice(1).map((u) => u.cause?.scanKind),
      [ScanKind.PICKUP, ScanKind.HUB_ARRIVAL, ScanKind.OUT_FOR_DELIVERY, ScanKind.DELIVERY_ATTEMPT, ScanKind.DELIVERED, ScanKind.HUB_DEPARTURE],
    );
    for (const u of received) {
      assert.equal(u.shipment?.version, u.sequence);
      assert.equal(u.shipment?.customerId, "", "anonymous watchers get public fields only");
      assert.equal(u.cause?.eventId ?? "", "");
    }
    for (const u of resumed.updates.filter((x) => x.kind === WatchUpdateKind.HEARTBEAT)) {
      assert.ok(u.sequence >= 6n && u.shipment === undefined, "a heartbeat repeats the latest sequence");
    }
  };

  it("streams every change in order to a grpc-js client and resumes without gaps or repeats", async () => {
    await scenario((tn, after) => grpcWatch(svc.port, tn, after), 1);
  });

  it("streams every change in order to a Connect client over HTTP/1.1 and resumes without gaps or repeats", async () => {
    await scenario((tn, after) => connectWatch(connectClient, tn, after), 2);
  });

  it("answers NotFound for an unknown shipment once the creation grace has passed, and OutOfRange for a sequence from the future", async () => {
    const opened = performance.now();
    const unknown = connectWatch(connectClient, trackingNumber(tag, 99));
    const e1 = await unknown.ended;
    assert.equal(ConnectError.from(e1.error).code, Code.NotFound);
    // TRACKING_WATCH_CREATION_GRACE_MS of this service is 600 ms.
    assert.ok(performance.now() - opened >= 590, "NotFound only after the grace");
    assert.equal(unknown.updates.length, 0);
    const tn = trackingNumber(tag, 1);
    const future = connectWatch(connectClient, tn, 1000n);
    const e2 = await future.ended;
    assert.equal(ConnectError.from(e2.error).code, Code.OutOfRange);
  });

  it("holds a watch opened before the shipment's creation is applied and streams it from its snapshot, without NotFound", async () => {
    const tn = trackingNumber(tag, 7);
    const t0 = Date.UTC(2026, 10, 21, 8, 0, 0);
    const waitsBefore = await creationWaits("appeared");
    const early = connectWatch(connectClient, tn);
    // The watch is waiting (nothing applied yet) when the creation is published.
    await waitFor(async () => (await openWatchers()) >= 1, { message: "the early watch is open" });
    await publishFixture(publisher, env.subjects, createdEvent(tn, new Date(t0)));
    await waitFor(() => early.updates.length >= 1, { message: "snapshot after the creation" });
    assert.equal(early.updates[0]?.kind, WatchUpdateKind.SNAPSHOT);
    assert.equal(early.updates[0]?.sequence, 1n);
    await publishFixture(publisher, env.subjects, scanEvent(tn, 1, ScanKind.PICKUP, new Date(t0 + 3_600_000)));
    await waitFor(() => lastSequence(early) >= 2n, { message: "the first scan on the same stream" });
    assert.equal(await creationWaits("appeared"), waitsBefore + 1);
    early.cancel();
    await early.ended;
  });

  it("gives callers with shipments:read the internal fields", async () => {
    const tn = trackingNumber(tag, 1);
    const headers = { authorization: `Bearer ${await env.token([Scope.ShipmentsRead])}` };
    const grpcClient = createClient(TrackingService, createGrpcTransport({ baseUrl: svc.url }));
    const full = await grpcClient.getShipment({ trackingNumber: tn }, { headers });
    assert.equal(full.shipment?.customerId, "cust-1");
    assert.equal(full.shipment?.customerReference, `order-${tn}`);
    const anonymous = await grpcClient.getShipment({ trackingNumber: tn });
    assert.equal(anonymous.shipment?.customerId, "");
    assert.equal(anonymous.shipment?.destination?.postalCode, "");
    assert.equal(anonymous.shipment?.destination?.city, "Paris");
    assert.equal(anonymous.shipment?.status, ShipmentStatus.DELIVERED);
    const events = await grpcClient.listShipmentEvents({ trackingNumber: tn, pageSize: 3 }, { headers });
    assert.equal(events.events.length, 3);
    assert.ok(events.nextPageToken);
    const rest = await grpcClient.listShipmentEvents({ trackingNumber: tn, pageSize: 10, pageToken: events.nextPageToken }, { headers });
    assert.equal(events.events.length + rest.events.length, 7);
    assert.equal(rest.nextPageToken, "");
    await assert.rejects(
      grpcClient.listShipmentEvents({ trackingNumber: trackingNumber(tag, 2), pageToken: events.nextPageToken }),
      (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument,
    );
    const found = await grpcClient.searchShipments({ customerId: "cust-1", statuses: [ShipmentStatus.DELIVERED] }, { headers });
    assert.deepEqual(found.shipments.map((s) => s.trackingNumber).sort(), [trackingNumber(tag, 1), trackingNumber(tag, 2)]);
    await assert.rejects(grpcClient.searchShipments({ customerId: "cust-1" }), (e: unknown) => ConnectError.from(e).code === Code.Unauthenticated);

    // A customer's search is pinned to its own account: an empty request lists its shipments.
    const customer = { authorization: `Bearer ${await env.token([Scope.ShipmentsRead], { customer: "cust-1" })}` };
    const own = await grpcClient.searchShipments({ statuses: [ShipmentStatus.DELIVERED] }, { headers: customer });
    assert.deepEqual(own.shipments.map((s) => s.trackingNumber).sort(), [trackingNumber(tag, 1), trackingNumber(tag, 2)]);
    const other = { authorization: `Bearer ${await env.token([Scope.ShipmentsRead], { customer: "cust-other" })}` };
    assert.deepEqual((await grpcClient.searchShipments({}, { headers: other })).shipments, []);
    // Callers not pinned to an account must still narrow the search; carriers may not search.
    await assert.rejects(grpcClient.searchShipments({}, { headers }), (e: unknown) => {
      const err = ConnectError.from(e);
      return err.code === Code.InvalidArgument && /at least one of customer_id, carrier_code or near/.test(err.rawMessage);
    });
    const carrier = { authorization: `Bearer ${await env.token([Scope.ShipmentsRead], { carrier: "acme" })}` };
    await assert.rejects(grpcClient.searchShipments({}, { headers: carrier }), (e: unknown) => ConnectError.from(e).code === Code.PermissionDenied);
  });

  it("serves the projected RoutePlanned's legs in GetShipment, to internal and anonymous callers", async () => {
    const tn = trackingNumber(tag, 3);
    const t0 = new Date(Date.UTC(2026, 10, 22, 8, 0, 0));
    await publishFixture(publisher, env.subjects, createdEvent(tn, t0, "cust-route"));
    const planned = routeEvent(tn, new Date(t0.getTime() + 60_000), new Date(t0.getTime() + 2 * 86_400_000));
    const plannedRoute = planned.kind === "route" ? planned.message.route : undefined;
    assert.ok(plannedRoute && plannedRoute.legs.length === 2);
    await publishFixture(publisher, env.subjects, planned);
    await waitFor(async () => (await version(tn)) === 2n, { message: "route applied" });
    const headers = { authorization: `Bearer ${await env.token([Scope.ShipmentsRead])}` };
    const full = (await connectClient.getShipment({ trackingNumber: tn }, { headers })).shipment?.route;
    assert.equal(full?.routeId, `r_${tn}`);
    assert.equal(full?.revision, 1);
    assert.deepEqual(
      full?.legs.map((l) => [l.fromHub, l.toHub, l.mode, l.departureId]),
      [
        ["FRA", "CDG", TransportMode.ROAD, "road_fra_cdg"],
        ["CDG", "AMS", TransportMode.AIR, "AF1240"],
      ],
    );
    assert.deepEqual(full?.legs.map((l) => [l.plannedDeparture, l.plannedArrival]), plannedRoute.legs.map((l) => [l.plannedDeparture, l.plannedArrival]));
    assert.deepEqual(full?.eta?.estimatedArrival, plannedRoute.eta?.estimatedArrival);
    const anonymous = (await connectClient.getShipment({ trackingNumber: tn })).shipment;
    assert.equal(anonymous?.customerId, "");
    assert.equal(anonymous?.route?.routeId, "", "route_id is internal");
    assert.deepEqual(anonymous?.route?.legs, full?.legs, "route hubs, modes and times are public");
  });

  it("ends open watch streams normally when the server drains", async () => {
    const tn = trackingNumber(tag, 1);
    const w = connectWatch(connectClient, tn);
    await waitFor(() => w.updates.length >= 1, { message: "snapshot" });
    await svc.close();
    const end = await w.ended;
    assert.equal(end.error, undefined, `stream ended with ${String(end.error)}`);
  });
});
