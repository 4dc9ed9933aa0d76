import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, fromBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import pg from "pg";
import { EtaChangeReason } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel, ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema, RouteUpdatedSchema } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { DisruptionCause, DisruptionSchema } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { createCatalogPublisher, createEventCatalog } from "@logistics/shared/events";
import { EventHeaders, ensureStreams } from "@logistics/shared/nats";
import { createTestSchema, startNatsServer, uniqueName, waitFor, type NatsServerHandle, type TestSchema } from "@logistics/shared/testing";
import { hubNetworkData } from "../src/data/hub-network-data.js";
import { createHubNetwork } from "../src/hub-network.js";
import { createPgRouteStore, DISRUPTIONS_CHANNEL, type PgRouteStore } from "../src/pg-route-store.js";
import { createPlanner } from "../src/planner.js";
import { msOf } from "../src/route-mapping.js";
import { createRouteKeeper } from "../src/route-keeper.js";
import { createSpatialIndex } from "../src/spatial-index.js";

const HOUR = 3_600_000;
const network = createHubNetwork(hubNetworkData);
const planner = createPlanner(network);
const spatial = createSpatialIndex(network.hubs);
/** Long enough that only a notification (or this store's own change) can make a replica see a change in a test. */
const NOTIFIED_ONLY_MS = 600_000;

describe("routing's PostgreSQL store and keeper across replicas (real PostgreSQL, real nats-server)", () => {
  let nats: NatsServerHandle;
  let nc: NatsConnection;
  const schemas: TestSchema[] = [];
  const stores: PgRouteStore[] = [];
  const subs: Array<{ unsubscribe(): void }> = [];

  beforeAll(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
  });

  afterAll(async () => {
    for (const s of subs) s.unsubscribe();
    await Promise.allSettled(stores.map((s) => s.close()));
    await nc?.close();
    await nats?.stop();
    for (const s of schemas) await s.drop();
  });

  const newSchema = async () => {
    const s = await createTestSchema({ prefix: "rstore" });
    schemas.push(s);
    return s;
  };
  const openStore = async (schema: TestSchema, disruptionCacheMs = NOTIFIED_ONLY_MS) => {
    const s = await createPgRouteStore({ connectionString: schema.connectionString, disruptionCacheMs });
    stores.push(s);
    return s;
  };
  /** The test's own connections (not counted as the store's statements). */
  const helpers = new WeakSet<object>();
  const sql = async <T>(schema: TestSchema, fn: (c: pg.Client) => Promise<T>) => {
    const c = new pg.Client({ connectionString: schema.connectionString });
    helpers.add(c);
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  };
  const disruption = (id: string, hub: string, endsAt?: number) => ({
    disruption: create(DisruptionSchema, {
      disruptionId: id,
      target: { case: "hubCode", value: hub },
      startsAt: timestampFromMs(Date.now() - HOUR),
      ...(endsAt !== undefined ? { endsAt: timestampFromMs(endsAt) } : {}),
      cause: DisruptionCause.STORM,
    }),
    hubCodes: [hub],
  });
  const activeIds = async (s: PgRouteStore) => (await s.activeDisruptions(new Date())).map((d) => d.disruption.disruptionId).sort();

  it("sees disruptions changed by another replica once notified, its own changes at once, and serves them from memory meanwhile", async () => {
    const schema = await newSchema();
    const a = await openStore(schema);
    const b = await openStore(schema);
    assert.deepEqual(await activeIds(a), []);
    await b.saveDisruption(disruption("dis-b1", "ORD"));
    await waitFor(async () => (await activeIds(a)).includes("dis-b1"), { message: "a sees b's disruption" });
    await a.saveDisruption(disruption("dis-a1", "FRA", Date.now() + 5 * HOUR));
    assert.deepEqual(await activeIds(a), ["dis-a1", "dis-b1"], "its own report at once");
    // Every notification so far has reached a once it sees a later one (they arrive in commit order).
    await sql(schema, (c) => c.query(`UPDATE routing_disruptions SET body = jsonb_set(body, '{description}', '"synced"') WHERE disruption_id = 'dis-b1'`));
    await waitFor(async () => (await a.activeDisruptions(new Date())).some((d) => d.disruption.description === "synced"), { message: "a synced" });
    // Held: a change that notifies nobody (triggers off for this session) is not seen...
    await sql(schema, async (c) => {
      await c.query("SET session_replication_role = replica");
      await c.query("INSERT INTO routing_disruptions (disruption_id, hubs, starts_at, body) SELECT 'dis-quiet', hubs, starts_at, jsonb_set(body, '{disruptionId}', '\"dis-quiet\"') FROM routing_disruptions WHERE disruption_id = 'dis-b1'");
    });
    assert.deepEqual(await activeIds(a), ["dis-a1", "dis-b1"]);
    // ...until the next change is notified.
    await b.clearDisruption("dis-b1", new Date());
    await waitFor(async () => JSON.stringify(await activeIds(a)) === JSON.stringify(["dis-a1", "dis-quiet"]), { message: "a sees b's clearance" });
    await a.clearDisruption("dis-quiet", new Date());
    assert.deepEqual(await activeIds(a), ["dis-a1"], "its own clearance at once");
    // Any session's change notifies, and an ended disruption drops out without one.
    await sql(schema, (c) => c.query("UPDATE routing_disruptions SET ends_at = now() - interval '1 minute' WHERE disruption_id = 'dis-a1'"));
    await waitFor(async () => (await activeIds(a)).length === 0, { message: "a sees the end set by hand" });
    await b.saveDisruption(disruption("dis-b2", "LHR", Date.now() + 200));
    assert.deepEqual(await activeIds(b), ["dis-b2"]);
    await waitFor(async () => (await activeIds(b)).length === 0, { message: "ended" });
  });

  it("reads at every call while its listening connection is lost, then listens again", async () => {
    const schema = await newSchema();
    const b = await openStore(schema);
    const listeners = async () =>
      new Set(
        await sql(schema, async (c) =>
          (await c.query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN ${DISRUPTIONS_CHANNEL}'`)).rows.map(
            (r: { pid: number }) => r.pid,
          ),
        ),
      );
    const before = await listeners();
    const a = await openStore(schema);
    const mine = [...(await listeners())].filter((p) => !before.has(p));
    assert.equal(mine.length, 1, "a's listening connection");
    assert.deepEqual(await activeIds(a), []);
    await sql(schema, (c) => c.query("SELECT pg_terminate_backend($1)", [mine[0]]));
    await b.saveDisruption(disruption("dis-1", "ORD"));
    await waitFor(async () => (await activeIds(a)).includes("dis-1"), { message: "a reads while not listening" });
    const again = await waitFor(async () => [...(await listeners())].find((p) => !before.has(p) && p !== mine[0]), { message: "a listens again" });
    assert.ok(again);
    await b.clearDisruption("dis-1", new Date());
    await waitFor(async () => (await activeIds(a)).length === 0, { message: "a sees b's clearance" });
  });

  /** A keeper (a replica) on its own store, publishing to JetStream under `prefix`. */
  const replica = async (o: { schema: TestSchema; prefix: string; cacheSize?: number; now?: () => number; ids?: string }) => {
    const catalog = createEventCatalog(o.prefix);
    const js = jetstream(nc);
    await ensureStreams(await jetstreamManager(nc), catalog.subjects.streamList, { storage: "memory" });
    const store = await openStore(o.schema);
    let id = 0;
    const keeper = createRouteKeeper({
      network,
      planner,
      spatial,
      store,
      publisher: createCatalogPublisher({ js }),
      events: catalog.events,
      clock: () => new Date(o.now ? o.now() : Date.now()),
      newId: () => `${o.ids ?? "id"}${++id}`,
      ...(o.cacheSize !== undefined ? { cacheSize: o.cacheSize } : {}),
    });
    const events: Array<{ id: string; type: string; message: unknown }> = [];
    const sub = nc.subscribe(catalog.subjects.allRouteEvents);
    subs.push(sub);
    void (async () => {
      for await (const m of sub) {
        const type = m.headers?.get(EventHeaders.MessageType) ?? "";
        const schemaOf = type === RoutePlannedSchema.typeName ? RoutePlannedSchema : RouteUpdatedSchema;
        events.push({ id: m.headers?.get("Nats-Msg-Id") ?? "", type, message: fromBinary(schemaOf, m.data) });
      }
    })();
    await nc.flush();
    return { keeper, store, events, catalog };
  };

  const createdEvent = (tn: string, from: string, to: string, readyAt: number, level = ServiceLevel.STANDARD) =>
    create(ShipmentCreatedSchema, {
      eventId: `shp-${tn}`,
      trackingNumber: tn,
      origin: { countryCode: "XX", city: from, location: { latitude: 0, longitude: 0 }, hubCode: from },
      destination: { countryCode: "XX", city: to, location: { latitude: 0, longitude: 0 }, hubCode: to },
      serviceLevel: level,
      readyTime: timestampFromMs(readyAt),
    });
  const scanEvent = (tn: string, n: string, kind: ScanKind, at: number, hubCode = "") =>
    create(ScanRecordedSchema, {
      eventId: `scan-${tn}-${n}`,
      scan: { eventId: `acme-${tn}-${n}`, trackingNumber: tn, carrierCode: "acme", eventTime: timestampFromMs(at), hubCode },
      status: kind === ScanKind.DELIVERED ? ShipmentStatus.DELIVERED : ShipmentStatus.IN_TRANSIT,
      kind,
      region: "eu",
    });

  it("honours a disruption reported on another replica in its next plan, and clearing it re-plans exactly those", async () => {
    const schema = await newSchema();
    const a = await replica({ schema, prefix: uniqueName("rta") });
    const b = await replica({ schema, prefix: uniqueName("rtb"), ids: "b" });
    const readyAt = Date.now() + HOUR;
    const tn = (n: number) => `RS${n}${Date.now().toString(36).toUpperCase()}`;
    const [tn1, tn2] = [tn(1), tn(2)];
    await a.keeper.onShipmentsCreated([{ event: createdEvent(tn1, "FRA", "ORD", readyAt), region: "eu" }]);
    const viaOrd = (await a.keeper.plan(network.hub("LHR")!, network.hub("ORD")!, "STANDARD", readyAt, 0))[0]!;
    // Reported on b, which re-plans what touches ORD now.
    const windowEnd = Date.now() + 30 * 24 * HOUR;
    const reported = await b.keeper.reportDisruption({
      target: { case: "hubCode", value: "ORD" },
      startsAt: timestampFromMs(Date.now()),
      endsAt: timestampFromMs(windowEnd),
      cause: DisruptionCause.STORM,
      description: "",
    });
    const id = reported.disruption.disruptionId;
    assert.equal(reported.replanned, 1);
    // a honours it from the notification on: a shipment it plans in a batch waits for ORD to reopen.
    await waitFor(async () => (await a.store.activeDisruptions(new Date())).some((d) => d.disruption.disruptionId === id), { message: "a notified" });
    await a.keeper.onShipmentsCreated([{ event: createdEvent(tn2, "FRA", "ORD", readyAt), region: "eu" }]);
    const planned = (await a.store.get(tn2))!;
    assert.deepEqual(planned.avoidedDisruptions, [id]);
    assert.ok(msOf(planned.route!.legs.at(-1)!.plannedArrival) >= windowEnd, "no arrival at ORD during the disruption");
    // Cleared on a: a re-plans both shipments planned around it; b plans through ORD again once notified.
    const cleared = await a.keeper.clearDisruption(id);
    assert.equal(cleared.replanned, 2);
    for (const t of [tn1, tn2]) {
      const s = (await a.store.get(t))!;
      assert.equal(s.lastReason, EtaChangeReason.DISRUPTION_CLEARED, t);
      assert.deepEqual(s.avoidedDisruptions, []);
      assert.ok(msOf(s.route!.eta!.estimatedArrival) < windowEnd);
    }
    await waitFor(async () => (await b.keeper.plan(network.hub("LHR")!, network.hub("ORD")!, "STANDARD", readyAt, 0))[0]!.eta.estimated === viaOrd.eta.estimated, {
      message: "b plans through ORD again",
    });
  });

  it("gives the same routes and events when it skips the read of shipments it holds, with another replica writing before and during the batch", async () => {
    const now = Date.now();
    const runs: Array<{ events: unknown[]; rows: unknown[]; statements: number }> = [];
    // The same story twice: the batch path of a replica holding every shipment, and of one holding none (reads them all).
    for (const cacheSize of [10_000, 0]) {
      const schema = await newSchema();
      const r = await replica({ schema, prefix: uniqueName("rteq"), cacheSize, now: () => now });
      const tns = ["EQ00000001", "EQ00000002", "EQ00000003", "EQ00000004"];
      const readyAt = now + HOUR;
      await r.keeper.onShipmentsCreated([
        { event: createdEvent(tns[0]!, "FRA", "ORD", readyAt, ServiceLevel.ECONOMY), region: "eu" },
        { event: createdEvent(tns[1]!, "FRA", "ORD", readyAt, ServiceLevel.ECONOMY), region: "eu" },
        { event: createdEvent(tns[2]!, "LHR", "ORD", readyAt), region: "eu" },
        { event: createdEvent(tns[3]!, "SYD", "MEL", readyAt), region: "eu" },
      ]);
      const s = await Promise.all(tns.map(async (tn) => (await r.store.get(tn))!));
      // Another replica re-plans the second shipment without its first leg, behind this one's back.
      await sql(schema, (c) =>
        c.query("UPDATE routing_shipments SET revision = revision + 1, route = jsonb_set(route, '{legs}', (route -> 'legs') - 0), last_event_id = 'elsewhere' WHERE tracking_number = $1", [tns[1]]),
      );
      const leg = (k: number) => s[k]!.route!.legs[0]!;
      const batch = [
        scanEvent(tns[0]!, "late", ScanKind.HUB_ARRIVAL, msOf(leg(0).plannedArrival) + 8 * 24 * HOUR, leg(0).toHub),
        scanEvent(tns[1]!, "dep", ScanKind.HUB_DEPARTURE, msOf(leg(1).plannedDeparture), leg(1).fromHub), // on plan for the held route
        scanEvent(tns[2]!, "dep", ScanKind.HUB_DEPARTURE, msOf(leg(2).plannedDeparture), leg(2).fromHub), // on plan
        scanEvent(tns[3]!, "dlv", ScanKind.DELIVERED, readyAt + 3 * 24 * HOUR),
      ];
      // And, during the batch, another replica delivers the first shipment: it holds the row until the batch's write waits for it.
      const other = new pg.Client({ connectionString: schema.connectionString });
      helpers.add(other);
      await other.connect();
      await other.query("BEGIN");
      await other.query("UPDATE routing_shipments SET revision = revision + 1, delivered = true, last_event_id = 'elsewhere-dlv' WHERE tracking_number = $1", [tns[0]]);
      const xid = (await other.query("SELECT txid_current()::text AS x")).rows[0].x as string;
      let statements = 0;
      const query = pg.Client.prototype.query;
      pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
        if (!helpers.has(this)) statements++;
        return (query as (...a: unknown[]) => unknown).apply(this, args);
      } as typeof query;
      let outcomes;
      try {
        const applying = r.keeper.onScans(batch);
        // The batch's write waits for the other replica's row lock (the read path reads first, then waits likewise).
        await waitFor(
          async () => (await sql(schema, (c) => c.query("SELECT 1 FROM pg_locks WHERE locktype = 'transactionid' AND transactionid::text = $1 AND NOT granted", [xid]))).rowCount! > 0,
          { message: "the batch waits for the other replica" },
        );
        await other.query("COMMIT");
        outcomes = await applying;
      } finally {
        pg.Client.prototype.query = query;
        await other.end();
      }
      assert.deepEqual(outcomes.map((o) => o.kind), ["ack", "ack", "ack", "ack"]);
      await waitFor(() => r.events.length >= 6, { message: "route events" });
      const rows = await sql(schema, async (c) => (await c.query("SELECT tracking_number, revision, route - 'routeId' AS route, delivered, last_event_id, last_reason FROM routing_shipments ORDER BY 1")).rows);
      const history = await sql(schema, async (c) => (await c.query("SELECT tracking_number, revision, eta, reason FROM routing_eta_history ORDER BY 1, 2")).rows);
      const events = r.events.map((e) => JSON.parse(JSON.stringify(e, (k, v: unknown) => (k === "routeId" ? "" : typeof v === "bigint" ? v.toString() : v))) as unknown);
      runs.push({ events: events.sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y))), rows: [rows, history], statements });
    }
    const [held, read] = runs;
    assert.deepEqual(held!.rows, read!.rows);
    assert.deepEqual(held!.events, read!.events);
    const reasons = (held!.rows[0] as Array<{ tracking_number: string; last_reason: number; revision: number }>).map((r) => [r.tracking_number, r.revision, r.last_reason]);
    assert.deepEqual(reasons, [
      ["EQ00000001", 2, EtaChangeReason.INITIAL_PLAN], // delivered by the other replica (by hand): the late scan changes nothing
      ["EQ00000002", 3, EtaChangeReason.UNPLANNED_HUB],
      ["EQ00000003", 1, EtaChangeReason.INITIAL_PLAN],
      ["EQ00000004", 2, EtaChangeReason.DELIVERED],
    ]);
    // Here the stale shipment costs the holding replica a second round: no fewer statements than reading.
    assert.ok(held!.statements <= read!.statements, `statements: ${held!.statements} holding, ${read!.statements} reading`);
  });
});
