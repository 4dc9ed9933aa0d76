import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, fromBinary } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import pg from "pg";
import { ensureDevKeys, mintToken, Scope } from "@logistics/shared/auth";
import { EtaChangeReason } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel, ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import {
  RoutePlannedSchema,
  RouteUpdatedSchema,
  type RoutePlanned,
  type RouteUpdated,
} from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { DisruptionCause, HubKind, RoutingService } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import {
  EventHeaders,
  createEventPublisher,
  type EventPublisher,
  createSubjects,
  type Subjects,
} from "@logistics/shared/nats";
import { createEventCatalog } from "@logistics/shared/events";
import { startService, type RunningService } from "@logistics/shared/runtime";
import {
  serviceTestEnv,
  createTestSchema,
  startNatsServer,
  uniqueName,
  waitFor,
  type NatsServerHandle,
  type TestSchema,
} from "@logistics/shared/testing";
import { routingConfig } from "../src/config.js";
import { routingService } from "../src/routing.js";

const ISSUER = "logistics-dev";
const AUDIENCE = "logistics-mesh";
const HOUR = 3_600_000;
const REGION = "eu-west";

const ms = (ts: Timestamp | undefined) => (ts ? timestampDate(ts).getTime() : NaN);

describe("routing service (real nats-server, real PostgreSQL, real sockets)", () => {
  let nats: NatsServerHandle;
  let schema: TestSchema;
  let keysDir: string;
  let svc: RunningService;
  let nc: NatsConnection;
  let sub: Subscription;
  let publisher: EventPublisher;
  let subjects: Subjects;
  let prefix: string;
  let client: Client<typeof RoutingService>;
  let headers: Record<string, string>;
  const planned: RoutePlanned[] = [];
  const updated: RouteUpdated[] = [];
  let seq = 0;
  const trackingNumber = () => `RT${Date.now().toString(36).toUpperCase()}${(++seq).toString().padStart(4, "0")}`;

  beforeAll(async () => {
    nats = await startNatsServer();
    schema = await createTestSchema({ prefix: "routing" });
    keysDir = await mkdtemp(join(tmpdir(), "routing-keys-"));
    const keys = await ensureDevKeys(keysDir);
    prefix = uniqueName("rt");
    svc = await startService(
      routingService,
      routingConfig.parse({
        ...serviceTestEnv({ natsUrl: nats.url, prefix, jwksPath: keys.jwksPath, databaseUrl: schema.connectionString }),
        SHUTDOWN_GRACE_MS: "2000",
      }),
    );
    subjects = createSubjects(prefix);
    nc = await connect({ servers: nats.url });
    publisher = createEventPublisher({ js: jetstream(nc) });
    sub = nc.subscribe(subjects.allRouteEvents);
    void (async () => {
      for await (const m of sub) {
        const type = m.headers?.get(EventHeaders.MessageType);
        if (type === RoutePlannedSchema.typeName) planned.push(fromBinary(RoutePlannedSchema, m.data));
        if (type === RouteUpdatedSchema.typeName) updated.push(fromBinary(RouteUpdatedSchema, m.data));
      }
    })();
    client = createClient(RoutingService, createGrpcTransport({ baseUrl: svc.url }));
    const token = await mintToken({
      privateJwkPath: keys.privateJwkPath,
      issuer: ISSUER,
      audience: AUDIENCE,
      subject: "routing-test",
      scopes: [Scope.RoutesRead, Scope.RoutesWrite],
    });
    headers = { authorization: `Bearer ${token}` };
  });

  afterAll(async () => {
    sub?.unsubscribe();
    await nc?.close();
    await svc?.close();
    await nats?.stop();
    await schema?.drop();
    if (keysDir) await rm(keysDir, { recursive: true, force: true });
  });

  const createShipment = async (
    origin: { hub: string; lat: number; lon: number; cc: string },
    destination: { hub: string; lat: number; lon: number; cc: string },
    level = ServiceLevel.STANDARD,
  ) => {
    const tn = trackingNumber();
    const readyAt = Date.now() + HOUR;
    const event = create(ShipmentCreatedSchema, {
      eventId: `shp-${tn}`,
      trackingNumber: tn,
      shipmentId: `id-${tn}`,
      carrierCode: "acme",
      customerId: "cust-1",
      origin: { countryCode: origin.cc, city: origin.hub, location: { latitude: origin.lat, longitude: origin.lon }, hubCode: origin.hub },
      destination: {
        countryCode: destination.cc,
        city: destination.hub,
        location: { latitude: destination.lat, longitude: destination.lon },
        hubCode: destination.hub,
      },
      serviceLevel: level,
      readyTime: timestampFromMs(readyAt),
      createdAt: timestampFromMs(Date.now()),
      weightGrams: 1500,
    });
    await publisher.publish(subjects.shipmentCreated(REGION), ShipmentCreatedSchema, event, { msgId: event.eventId });
    const ev = await waitFor(() => planned.find((p) => p.trackingNumber === tn), { timeoutMs: 15_000, message: `RoutePlanned for ${tn}` });
    return { tn, readyAt, event: ev };
  };

  const FRA = { hub: "FRA", lat: 50.03, lon: 8.57, cc: "DE" };
  const ORD = { hub: "ORD", lat: 41.98, lon: -87.9, cc: "US" };
  const LHR = { hub: "LHR", lat: 51.47, lon: -0.45, cc: "GB" };
  const SYD = { hub: "SYD", lat: -33.94, lon: 151.18, cc: "AU" };
  const MEL = { hub: "MEL", lat: -37.67, lon: 144.84, cc: "AU" };

  it("plans a created shipment and publishes RoutePlanned with an ETA", async () => {
    const { tn, readyAt, event } = await createShipment(FRA, ORD);
    const route = event.route!;
    assert.equal(route.revision, 1);
    assert.equal(route.trackingNumber, tn);
    assert.equal(route.legs[0]?.fromHub, "FRA");
    assert.equal(route.legs.at(-1)?.toHub, "ORD");
    assert.ok(ms(route.eta?.estimatedArrival) > readyAt, "the ETA is after the ready time");
    assert.ok(route.eta!.confidence > 0 && route.eta!.confidence <= 1);

    const got = await client.getRoute({ trackingNumber: tn }, { headers });
    assert.equal(got.route?.routeId, route.routeId);
    assert.deepEqual(
      got.etaHistory.map((h) => h.reason),
      [EtaChangeReason.INITIAL_PLAN],
    );
  });

  it("re-plans after a late hub arrival and publishes RouteUpdated with a later ETA", async () => {
    // Economy by truck, ship and truck: the parcel reaches the port 8 days late and misses its sailing.
    const { tn, event } = await createShipment(FRA, ORD, ServiceLevel.ECONOMY);
    const route = event.route!;
    assert.ok(route.legs.length >= 2, "a multi-leg route");
    const first = route.legs[0]!;
    const lateBy = 8 * 24 * HOUR;
    const scanTime = ms(first.plannedArrival) + lateBy;
    const scan = create(ScanRecordedSchema, {
      eventId: `scan-${tn}-1`,
      scan: {
        eventId: `acme-${tn}-1`,
        trackingNumber: tn,
        carrierCode: "acme",
        rawStatus: { code: "ARR", text: "Arrived at hub" },
        eventTime: timestampFromMs(scanTime),
        hubCode: first.toHub,
      },
      status: ShipmentStatus.IN_TRANSIT,
      kind: ScanKind.HUB_ARRIVAL,
      recordedAt: timestampFromMs(Date.now()),
      region: REGION,
    });
    await publisher.publish(subjects.scanRecorded(REGION, "acme"), ScanRecordedSchema, scan, { msgId: scan.eventId });
    const upd = await waitFor(() => updated.find((u) => u.trackingNumber === tn), { timeoutMs: 15_000, message: `RouteUpdated for ${tn}` });
    assert.equal(upd.reason, EtaChangeReason.LATE_ARRIVAL);
    assert.equal(upd.route?.revision, 2);
    assert.ok(ms(upd.route?.eta?.estimatedArrival) > ms(route.eta?.estimatedArrival), "the new ETA is later");
    assert.equal(ms(upd.previousEta?.estimatedArrival), ms(route.eta?.estimatedArrival));
    assert.ok(ms(upd.route?.legs.find((l) => l.fromHub === first.toHub)?.plannedDeparture) > scanTime);

    const got = await client.getRoute({ trackingNumber: tn }, { headers });
    assert.deepEqual(
      got.etaHistory.map((h) => [h.routeRevision, h.reason]),
      [
        [1, EtaChangeReason.INITIAL_PLAN],
        [2, EtaChangeReason.LATE_ARRIVAL],
      ],
    );
    assert.equal(ms(got.etaHistory.at(-1)?.eta?.estimatedArrival), ms(got.route?.eta?.estimatedArrival));
  });

  it("re-plans a missed departure (MISSED_CUTOFF) once, even when the scan is delivered twice", async () => {
    const { tn, event } = await createShipment(FRA, ORD, ServiceLevel.ECONOMY);
    const first = event.route!.legs[0]!;
    const scanTime = ms(first.plannedDeparture) + 3 * 24 * HOUR;
    const scan = (msgId: string) =>
      publisher.publish(
        subjects.scanRecorded(REGION, "acme"),
        ScanRecordedSchema,
        create(ScanRecordedSchema, {
          eventId: `scan-${tn}-dep`,
          scan: {
            eventId: `acme-${tn}-dep`,
            trackingNumber: tn,
            carrierCode: "acme",
            rawStatus: { code: "DEP", text: "Departed hub" },
            eventTime: timestampFromMs(scanTime),
            hubCode: first.fromHub,
          },
          status: ShipmentStatus.IN_TRANSIT,
          kind: ScanKind.HUB_DEPARTURE,
          recordedAt: timestampFromMs(Date.now()),
          region: REGION,
        }),
        { msgId },
      );
    await scan(`scan-${tn}-dep`);
    const upd = await waitFor(() => updated.find((u) => u.trackingNumber === tn), { timeoutMs: 15_000, message: `RouteUpdated for ${tn}` });
    assert.equal(upd.reason, EtaChangeReason.MISSED_CUTOFF);
    assert.match(upd.detail, new RegExp(first.departureId));
    assert.equal(ms(upd.route?.legs[0]?.plannedDeparture), scanTime, "the first leg now departs when the parcel left");
    assert.ok(ms(upd.route?.eta?.estimatedArrival) > ms(event.route?.eta?.estimatedArrival));
    // The same scan again (a redelivery past the stream's dedupe window), then a delivery scan:
    // scans of one shipment are handled in stream order, so once the delivery shows, the
    // duplicate has been handled too, and it must not have added a revision.
    await scan(`scan-${tn}-dep-again`);
    const delivered = create(ScanRecordedSchema, {
      eventId: `scan-${tn}-dlv`,
      scan: {
        eventId: `acme-${tn}-dlv`,
        trackingNumber: tn,
        carrierCode: "acme",
        rawStatus: { code: "DLV", text: "Delivered" },
        eventTime: timestampFromMs(scanTime + 20 * 24 * HOUR),
      },
      status: ShipmentStatus.DELIVERED,
      kind: ScanKind.DELIVERED,
      recordedAt: timestampFromMs(Date.now()),
      region: REGION,
    });
    await publisher.publish(subjects.scanRecorded(REGION, "acme"), ScanRecordedSchema, delivered, { msgId: delivered.eventId });
    await waitFor(() => updated.find((u) => u.trackingNumber === tn && u.reason === EtaChangeReason.DELIVERED), { message: "delivered" });
    const got = await client.getRoute({ trackingNumber: tn }, { headers });
    assert.deepEqual(
      got.etaHistory.map((h) => h.reason),
      [EtaChangeReason.INITIAL_PLAN, EtaChangeReason.MISSED_CUTOFF, EtaChangeReason.DELIVERED],
    );
    assert.equal(ms(got.route?.eta?.estimatedArrival), scanTime + 20 * 24 * HOUR);
  });

  it("re-plans exactly the shipments whose route touches a disrupted hub, and again when it clears", async () => {
    const a = await createShipment(FRA, ORD);
    const b = await createShipment(LHR, ORD);
    const c = await createShipment(SYD, MEL);
    const startsAt = Date.now();
    const endsAt = startsAt + 5 * 24 * HOUR;
    const res = await client.reportDisruption(
      {
        target: { case: "hubCode", value: "ORD" },
        startsAt: timestampFromMs(startsAt),
        endsAt: timestampFromMs(endsAt),
        cause: DisruptionCause.STORM,
        description: "blizzard",
      },
      { headers },
    );
    // Other tests in this file may also have shipments to ORD; count only ours below.
    assert.ok(res.replannedShipments >= 2);
    const byTn = (tn: string, reason: EtaChangeReason) => () => updated.find((u) => u.trackingNumber === tn && u.reason === reason);
    const ua = await waitFor(byTn(a.tn, EtaChangeReason.DISRUPTION), { message: "update of a" });
    const ub = await waitFor(byTn(b.tn, EtaChangeReason.DISRUPTION), { message: "update of b" });
    for (const u of [ua, ub]) {
      const arrival = u.route!.legs.filter((l) => l.toHub === "ORD").map((l) => ms(l.plannedArrival));
      assert.ok(arrival.every((t) => t >= endsAt), "no arrival at ORD during the disruption");
      assert.ok(ms(u.route?.eta?.estimatedArrival) >= endsAt);
    }
    assert.ok(ms(ua.route?.eta?.estimatedArrival) > ms(a.event.route?.eta?.estimatedArrival));
    const cRoute = await client.getRoute({ trackingNumber: c.tn }, { headers });
    assert.equal(cRoute.route?.revision, 1, "a shipment not touching ORD is left alone");
    assert.ok(!updated.some((u) => u.trackingNumber === c.tn));

    const cleared = await client.clearDisruption({ disruptionId: res.disruption!.disruptionId }, { headers });
    assert.ok(cleared.disruption?.clearedAt);
    assert.ok(cleared.replannedShipments >= 2);
    const ca = await waitFor(byTn(a.tn, EtaChangeReason.DISRUPTION_CLEARED), { message: "clear update of a" });
    assert.ok(ms(ca.route?.eta?.estimatedArrival) < ms(ua.route?.eta?.estimatedArrival), "faster again once cleared");
    const again = await client.clearDisruption({ disruptionId: res.disruption!.disruptionId }, { headers });
    assert.equal(again.replannedShipments, 0);
  });

  it("answers PlanRoute what-if queries with distinct alternatives ordered by ETA", async () => {
    const res = await client.planRoute(
      {
        origin: { countryCode: "DE", city: "Frankfurt", location: { latitude: 50.11, longitude: 8.68 } },
        destination: { countryCode: "AU", city: "Sydney", location: { latitude: -33.87, longitude: 151.21 } },
        serviceLevel: ServiceLevel.EXPRESS,
        alternatives: 3,
      },
      { headers },
    );
    assert.ok(res.routes.length >= 2);
    const sigs = res.routes.map((r) => r.legs.map((l) => `${l.fromHub}>${l.toHub}@${l.departureId}`).join(","));
    assert.equal(new Set(sigs).size, sigs.length, "routes are distinct");
    for (let i = 1; i < res.routes.length; i++) {
      assert.ok(ms(res.routes[i - 1]!.eta?.estimatedArrival) <= ms(res.routes[i]!.eta?.estimatedArrival));
    }
    assert.equal(res.routes[0]!.revision, 0, "a what-if plan is not stored");
    assert.ok(res.routes.every((r) => r.legs.every((l) => l.mode !== 2 /* SEA */)), "EXPRESS does not sail");
  });

  it("stores a PlanRoute result for a known shipment as its next revision and publishes it", async () => {
    const { tn, event } = await createShipment(FRA, ORD);
    const res = await client.planRoute(
      {
        origin: { countryCode: "DE", city: "Frankfurt", location: { latitude: 50.11, longitude: 8.68 }, hubCode: "FRA" },
        destination: { countryCode: "US", city: "Chicago", location: { latitude: 41.88, longitude: -87.63 } },
        serviceLevel: ServiceLevel.STANDARD,
        trackingNumber: tn,
        alternatives: 1,
      },
      { headers },
    );
    assert.equal(res.routes[0]?.trackingNumber, tn);
    assert.equal(res.routes[0]?.revision, 2);
    assert.equal(res.routes[0]?.routeId, event.route?.routeId, "the route id is stable across revisions");
    assert.ok(res.routes.slice(1).every((r) => r.revision === 0 && r.trackingNumber === ""), "alternatives are not stored");
    const upd = await waitFor(() => updated.find((u) => u.trackingNumber === tn), { message: `RouteUpdated for ${tn}` });
    assert.equal(upd.route?.revision, 2);
    assert.equal((await client.getRoute({ trackingNumber: tn }, { headers })).etaHistory.length, 2);
  });

  it("maps planning errors to Connect codes", async () => {
    const code = async (p: Promise<unknown>) => {
      try {
        await p;
        return Code.Unknown;
      } catch (e) {
        return ConnectError.from(e).code;
      }
    };
    const place = (hubCode: string) => ({ countryCode: "DE", city: "X", location: { latitude: 0, longitude: 0 }, hubCode });
    assert.equal(
      await code(client.planRoute({ origin: place("ZZZ"), destination: place("FRA"), serviceLevel: ServiceLevel.STANDARD }, { headers })),
      Code.InvalidArgument,
    );
    assert.equal(
      await code(
        client.planRoute(
          { origin: place("FRA"), destination: place("ORD"), serviceLevel: ServiceLevel.STANDARD, trackingNumber: "UNKNOWN12345" },
          { headers },
        ),
      ),
      Code.NotFound,
    );
    assert.equal(await code(client.getRoute({ trackingNumber: "UNKNOWN12345" }, { headers })), Code.NotFound);
    const closed = await client.reportDisruption(
      { target: { case: "hubCode", value: "NAN" }, startsAt: timestampFromMs(Date.now()), cause: DisruptionCause.AIRPORT_CLOSED },
      { headers },
    );
    try {
      assert.equal(
        await code(client.planRoute({ origin: place("FRA"), destination: place("NAN"), serviceLevel: ServiceLevel.EXPRESS }, { headers })),
        Code.FailedPrecondition,
      );
    } finally {
      await client.clearDisruption({ disruptionId: closed.disruption!.disruptionId }, { headers });
    }
    assert.equal(await code(client.clearDisruption({ disruptionId: "nope" }, { headers })), Code.NotFound);
  });

  it("lists the nearest hubs, filtered by kind", async () => {
    const all = await client.nearestHubs({ point: { latitude: 50.11, longitude: 8.68 }, limit: 3 }, { headers });
    assert.equal(all.hubs.length, 3);
    assert.equal(all.hubs[0]?.hub?.code, "FRA");
    assert.equal(all.hubs[0]?.hub?.timeZone, "Europe/Berlin");
    const ports = await client.nearestHubs({ point: { latitude: 50.11, longitude: 8.68 }, kinds: [HubKind.SEAPORT] }, { headers });
    assert.equal(ports.hubs.length, 5);
    assert.ok(ports.hubs.every((h) => h.hub?.kind === HubKind.SEAPORT));
    assert.ok(ports.hubs.every((h, i) => i === 0 || ports.hubs[i - 1]!.distanceKm <= h.distanceKm));
  });

  it("keeps routes in PostgreSQL, not in process memory", async () => {
    const { tn } = await createShipment(FRA, ORD);
    const db = new pg.Client({ connectionString: schema.connectionString });
    await db.connect();
    try {
      const rows = await db.query("SELECT revision, route FROM routing_shipments WHERE tracking_number = $1", [tn]);
      assert.equal(rows.rows[0]?.revision, 1);
      const hist = await db.query("SELECT count(*)::int AS n FROM routing_eta_history WHERE tracking_number = $1", [tn]);
      assert.equal(hist.rows[0]?.n, 1);
    } finally {
      await db.end();
    }
    const metrics = await (await fetch(svc.metricsUrl)).text();
    assert.match(metrics, /logistics_route_revisions_total\{[^}]*reason="INITIAL_PLAN"[^}]*\} [1-9]/);
  });

  const scanOf = (tn: string, n: string, kind: ScanKind, at: number, hubCode = "") =>
    create(ScanRecordedSchema, {
      eventId: `scan-${tn}-${n}`,
      scan: { eventId: `acme-${tn}-${n}`, trackingNumber: tn, carrierCode: "acme", eventTime: timestampFromMs(at), hubCode },
      status: kind === ScanKind.DELIVERED ? ShipmentStatus.DELIVERED : ShipmentStatus.IN_TRANSIT,
      kind,
      recordedAt: timestampFromMs(Date.now()),
      region: REGION,
    });
  const sendScans = (scans: ReturnType<typeof scanOf>[]) =>
    Promise.all(scans.map((s) => publisher.publish(subjects.scanRecorded(REGION, "acme"), ScanRecordedSchema, s, { msgId: s.eventId })));

  it("applies a burst of scans in batches: each shipment in order, an unplannable scan dead-lettered alone", async () => {
    const a = await createShipment(FRA, ORD, ServiceLevel.ECONOMY);
    const b = await createShipment(LHR, ORD);
    const dlq = nc.subscribe(createEventCatalog(prefix).consumer("routing-scans").deadLetterSubject);
    const dead: string[] = [];
    void (async () => {
      for await (const m of dlq) dead.push(fromBinary(ScanRecordedSchema, m.data).eventId);
    })();
    try {
      const legA = a.event.route!.legs[0]!;
      const bad = scanOf(a.tn, "bad", ScanKind.HUB_ARRIVAL, 0, legA.toHub);
      bad.scan!.eventTime = { $typeName: "google.protobuf.Timestamp", seconds: 10n ** 12n, nanos: 0 };
      const lateA = ms(legA.plannedArrival) + 8 * 24 * HOUR;
      await sendScans([
        scanOf(b.tn, "dep", ScanKind.HUB_DEPARTURE, ms(b.event.route!.legs[0]!.plannedDeparture), b.event.route!.legs[0]!.fromHub), // on plan
        bad,
        scanOf(a.tn, "arr", ScanKind.HUB_ARRIVAL, lateA, legA.toHub),
        scanOf(b.tn, "dlv", ScanKind.DELIVERED, ms(b.event.route!.eta?.estimatedArrival)),
        scanOf(a.tn, "dlv", ScanKind.DELIVERED, lateA + 30 * 24 * HOUR),
      ]);
      await waitFor(() => updated.filter((u) => u.trackingNumber === a.tn).length === 2 && updated.some((u) => u.trackingNumber === b.tn), {
        timeoutMs: 15_000,
        message: "route updates of both shipments",
      });
      assert.deepEqual(
        updated.filter((u) => u.trackingNumber === a.tn).map((u) => [u.route?.revision, u.reason]),
        [
          [2, EtaChangeReason.LATE_ARRIVAL],
          [3, EtaChangeReason.DELIVERED],
        ],
      );
      assert.deepEqual(
        updated.filter((u) => u.trackingNumber === b.tn).map((u) => [u.route?.revision, u.reason]),
        [[2, EtaChangeReason.DELIVERED]],
      );
      await waitFor(() => dead.length > 0, { timeoutMs: 15_000, message: "the unplannable scan dead-lettered" });
      assert.deepEqual(dead, [bad.eventId]);
      const history = await client.getRoute({ trackingNumber: a.tn }, { headers });
      assert.deepEqual(
        history.etaHistory.map((h) => [h.routeRevision, h.reason]),
        [
          [1, EtaChangeReason.INITIAL_PLAN],
          [2, EtaChangeReason.LATE_ARRIVAL],
          [3, EtaChangeReason.DELIVERED],
        ],
      );
    } finally {
      dlq.unsubscribe();
    }
  });

  it("decides from the stored route when another replica revised it after this one cached it", async () => {
    const { tn, event } = await createShipment(FRA, ORD, ServiceLevel.ECONOMY); // cached here at revision 1
    const first = event.route!.legs[0]!;
    // Another replica re-plans the shipment without its first leg: revision 2, behind this replica's back.
    const db = new pg.Client({ connectionString: schema.connectionString });
    await db.connect();
    try {
      await db.query(
        "UPDATE routing_shipments SET revision = revision + 1, route = jsonb_set(route, '{legs}', (route -> 'legs') - 0), last_event_id = 'elsewhere' WHERE tracking_number = $1",
        [tn],
      );
    } finally {
      await db.end();
    }
    // On time for the cached route; from a hub the stored route does not leave from.
    await sendScans([scanOf(tn, "dep", ScanKind.HUB_DEPARTURE, ms(first.plannedDeparture), first.fromHub)]);
    const upd = await waitFor(() => updated.find((u) => u.trackingNumber === tn), { timeoutMs: 15_000, message: `RouteUpdated for ${tn}` });
    assert.equal(upd.reason, EtaChangeReason.UNPLANNED_HUB);
    assert.equal(upd.route?.revision, 3);
  });
});
