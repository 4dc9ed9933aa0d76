import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { ensureDevKeys, mintToken } from "@logistics/shared/auth";
import { startService, type RunningService } from "@logistics/shared/runtime";
import {
  createTestSchema,
  seededRandom,
  startNatsServer,
  testRedisUrl,
  uniqueName,
  type NatsServerHandle,
  type TestSchema,
} from "@logistics/shared/testing";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createContextValues, createHandlerContext, type Client, type HandlerContext } from "@connectrpc/connect";
import { ANONYMOUS, principalKey, type Principal } from "@logistics/shared/auth";
import { createCatalogPublisher, type EventCatalog } from "@logistics/shared/events";
import {
  TrackingService,
  WatchShipmentRequestSchema,
  type WatchShipmentResponse,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createMetrics } from "@logistics/shared/telemetry";
import { trackingConfig } from "../src/config.js";
import { startProjector, type Projector, type ProjectorOptions } from "../src/projector.js";
import { createPostgresShipmentStore, type PostgresShipmentStore } from "../src/store/postgres/postgres-shipment-store.js";
import type { ShipmentStore } from "../src/store/ports.js";
import { createTrackingMetrics } from "../src/tracking-metrics.js";
import { trackingService } from "../src/tracking.js";
import type { TrackingHandlers } from "../src/tracking-handlers.js";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { TransportMode } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  ScanRecordedSchema,
  ShipmentCreatedSchema,
  ShipmentHandedOverSchema,
  type ScanRecorded,
  type ShipmentCreated,
  type ShipmentHandedOver,
} from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema, type RoutePlanned } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import type { EventPublisher } from "@logistics/shared/nats";
import { createSubjects, type Subjects } from "@logistics/shared/nats";
import { applyToDoc, compareKeys } from "../src/store/derive.js";
import { eventKey } from "../src/store/events.js";
import type { ProjectedEvent, ShipmentDoc } from "../src/store/ports.js";

/** One event of a generated data set: published as `message`, applied by the store as `event`. */
export type FixtureEvent =
  | { kind: "scan"; message: ScanRecorded; event: ProjectedEvent }
  | { kind: "created"; message: ShipmentCreated; event: ProjectedEvent }
  | { kind: "handover"; message: ShipmentHandedOver; event: ProjectedEvent }
  | { kind: "route"; message: RoutePlanned; event: ProjectedEvent };

export const REGION = "eu-west";
export const CARRIER = "acme";

export function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

export function trackingNumber(tag: string, i: number): string {
  return `${tag.toUpperCase().replace(/[^A-Z0-9]/g, "").slice(0, 12)}${String(i).padStart(8, "0")}`;
}

const HUBS = [
  { code: "FRA", lat: 50.03, lon: 8.57 },
  { code: "CDG", lat: 49.0, lon: 2.55 },
  { code: "AMS", lat: 52.31, lon: 4.76 },
  { code: "MAD", lat: 40.47, lon: -3.56 },
];

export function createdEvent(tn: string, at: Date, customerId = "cust-1", partnerCarrierCodes: string[] = []): FixtureEvent {
  const message = create(ShipmentCreatedSchema, {
    eventId: `created.${tn}`,
    trackingNumber: tn,
    shipmentId: `shp_${tn}`,
    carrierCode: CARRIER,
    customerId,
    customerReference: `order-${tn}`,
    origin: { countryCode: "DE", city: "Frankfurt", postalCode: "60311", location: { latitude: 50.11, longitude: 8.68 } },
    destination: { countryCode: "FR", city: "Paris", postalCode: "75001", location: { latitude: 48.86, longitude: 2.35 } },
    serviceLevel: ServiceLevel.STANDARD,
    createdAt: timestampFromDate(at),
    readyTime: timestampFromDate(at),
    weightGrams: 1200,
    partnerCarrierCodes,
  });
  return { kind: "created", message, event: { type: "shipment.created", message } };
}

export function scanEvent(tn: string, n: number, kind: ScanKind, at: Date, hub?: (typeof HUBS)[number]): FixtureEvent {
  const message = create(ScanRecordedSchema, {
    eventId: `scan.${tn}.${n}`,
    scan: {
      eventId: `c-${tn}-${n}`,
      trackingNumber: tn,
      carrierCode: CARRIER,
      rawStatus: { code: `K${kind}`, text: ScanKind[kind] },
      eventTime: timestampFromDate(at),
      hubCode: hub?.code ?? "",
      location: hub ? { latitude: hub.lat, longitude: hub.lon } : undefined,
      note: "internal remark",
    },
    kind,
    recordedAt: timestampFromDate(new Date()),
    region: REGION,
  });
  return { kind: "scan", message, event: { type: "scan.recorded", message } };
}

/** A ShipmentHandedOver of the shipment to `partner`, as ingest's HandOverShipment publishes it. */
export function handoverEvent(tn: string, partner: string, at: Date, hubCode = ""): FixtureEvent {
  const message = create(ShipmentHandedOverSchema, {
    eventId: `ho.${tn}.${partner}`,
    trackingNumber: tn,
    shipmentId: `shp_${tn}`,
    carrierCode: CARRIER,
    partnerCarrierCode: partner,
    hubCode,
    handedOverAt: timestampFromDate(at),
    requestedByCarrierCode: CARRIER,
    region: REGION,
  });
  return { kind: "handover", message, event: { type: "shipment.handed_over", message } };
}

/** A RoutePlanned (revision 1) FRA → CDG → AMS by road then air, with the given ETA. */
export function routeEvent(tn: string, at: Date, eta: Date): FixtureEvent {
  const hour = (h: number) => timestampFromDate(new Date(at.getTime() + h * 3_600_000));
  const message = create(RoutePlannedSchema, {
    eventId: `route.${tn}.1`,
    trackingNumber: tn,
    route: {
      routeId: `r_${tn}`,
      trackingNumber: tn,
      legs: [
        { fromHub: "FRA", toHub: "CDG", mode: TransportMode.ROAD, plannedDeparture: hour(2), plannedArrival: hour(8), departureId: "road_fra_cdg" },
        { fromHub: "CDG", toHub: "AMS", mode: TransportMode.AIR, plannedDeparture: hour(10), plannedArrival: hour(11), departureId: "AF1240" },
      ],
      revision: 1,
      eta: { estimatedArrival: timestampFromDate(eta) },
      plannedAt: timestampFromDate(at),
    },
    plannedAt: timestampFromDate(at),
  });
  return { kind: "route", message, event: { type: "route.planned", message } };
}

const JOURNEY: ScanKind[] = [
  ScanKind.PICKUP,
  ScanKind.HUB_ARRIVAL,
  ScanKind.HUB_DEPARTURE,
  ScanKind.OUT_FOR_DELIVERY,
  ScanKind.DELIVERY_ATTEMPT,
  ScanKind.DELIVERED,
];

/**
 * A data set for `count` shipments: each a creation event, 2-4 scans along a journey (some with
 * an exception, some ending delivered), for one in five a route plan, and for one in four a
 * handover to a partner carrier.
 */
export function generateDataSet(tag: string, count: number, seed: number): FixtureEvent[] {
  const random = seededRandom(seed);
  const base = Date.UTC(2026, 10, 20, 8, 0, 0);
  const events: FixtureEvent[] = [];
  for (let i = 0; i < count; i++) {
    const tn = trackingNumber(tag, i);
    const t0 = base + i * 1000;
    events.push(createdEvent(tn, new Date(t0), `cust-${i % 7}`));
    const scans = 2 + Math.floor(random() * 3);
    for (let s = 0; s < scans; s++) {
      let kind = JOURNEY[Math.min(s + Math.floor(random() * 2), JOURNEY.length - 1)] as ScanKind;
      if (random() < 0.05) kind = ScanKind.EXCEPTION;
      const hub = HUBS[Math.floor(random() * HUBS.length)];
      events.push(scanEvent(tn, s, kind, new Date(t0 + (s + 1) * 3_600_000), kind === ScanKind.HUB_ARRIVAL || kind === ScanKind.HUB_DEPARTURE ? hub : undefined));
    }
    if (i % 5 === 0) events.push(routeEvent(tn, new Date(t0 + 60_000), new Date(t0 + 3 * 86_400_000)));
    if (i % 4 === 1) events.push(handoverEvent(tn, "lastmile", new Date(t0 + 90 * 60_000), HUBS[i % HUBS.length]?.code));
  }
  return events;
}

/** Publishes one fixture event with the shared publisher; `msgId` defaults to the event id. */
export async function publishFixture(publisher: EventPublisher, subjects: Subjects, e: FixtureEvent, msgId?: string, region = REGION): Promise<void> {
  const id = msgId ?? e.message.eventId;
  switch (e.kind) {
    case "scan":
      await publisher.publish(subjects.scanRecorded(region, CARRIER), ScanRecordedSchema, e.message, { msgId: id });
      return;
    case "created":
      await publisher.publish(subjects.shipmentCreated(region), ShipmentCreatedSchema, e.message, { msgId: id });
      return;
    case "handover":
      await publisher.publish(subjects.shipmentHandedOver(region), ShipmentHandedOverSchema, e.message, { msgId: id });
      return;
    case "route":
      await publisher.publish(subjects.routePlanned(region), RoutePlannedSchema, e.message, { msgId: id });
      return;
  }
}

/**
 * Publishes every event, plus a second copy of a `duplicateRate` share of them under another
 * `Nats-Msg-Id` (so JetStream stores both and the projector must dedupe), in a shuffled order.
 */
export async function publishShuffled(
  publisher: EventPublisher,
  subjects: Subjects,
  events: readonly FixtureEvent[],
  opts: { seed: number; duplicateRate: number; concurrency?: number },
): Promise<number> {
  const random = seededRandom(opts.seed);
  const sends: Array<{ e: FixtureEvent; msgId: string }> = [];
  for (const e of events) {
    sends.push({ e, msgId: e.message.eventId });
    if (random() < opts.duplicateRate) sends.push({ e, msgId: `${e.message.eventId}.copy` });
  }
  shuffle(sends, random);
  let next = 0;
  const worker = async () => {
    while (next < sends.length) {
      const s = sends[next++] as (typeof sends)[number];
      await publishFixture(publisher, subjects, s.e, s.msgId);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 64 }, worker));
  return sends.length;
}

/** The sequential oracle: each shipment's events applied one by one in event-time order. */
export function oracle(events: readonly FixtureEvent[]): Map<string, ShipmentDoc> {
  const byTn = new Map<string, ProjectedEvent[]>();
  for (const { event } of events) {
    const { trackingNumber } = eventKey(event);
    const list = byTn.get(trackingNumber) ?? [];
    list.push(event);
    byTn.set(trackingNumber, list);
  }
  const out = new Map<string, ShipmentDoc>();
  for (const [tn, list] of byTn) {
    list.sort((a, b) => {
      const [x, y] = [eventKey(a), eventKey(b)];
      return compareKeys(x.eventTime, x.eventId, y.eventTime, y.eventId);
    });
    let doc: ShipmentDoc | undefined;
    for (const event of list) doc = applyToDoc(doc, event).doc;
    if (doc) out.set(tn, doc);
  }
  return out;
}

/** A document without the arrival-order bookkeeping (applied-id order), for equality checks. */
export function comparable(doc: ShipmentDoc): unknown {
  return { ...doc, derivation: { ...doc.derivation, eventIds: [...doc.derivation.eventIds].sort() } };
}

/** The context of a WatchShipment call made on the handlers directly, as `principal`. */
export function watchContext(principal: Principal = ANONYMOUS): HandlerContext & { abort(reason?: unknown): void } {
  return createHandlerContext({
    service: TrackingService,
    method: TrackingService.method.watchShipment,
    protocolName: "test",
    requestMethod: "POST",
    url: "http://test/logistics.tracking.v1.TrackingService/WatchShipment",
    contextValues: createContextValues().set(principalKey, principal),
  });
}

/**
 * `n` WatchShipment calls of `trackingNumber` made on `handlers` directly, as `principal`
 * (anonymous by default), each collecting what it receives; `close()` cancels them and waits for
 * their ends.
 */
export function openWatches(handlers: TrackingHandlers, trackingNumber: string, n: number, principal: Principal = ANONYMOUS) {
  const contexts: Array<ReturnType<typeof createHandlerContext>> = [];
  const received: WatchShipmentResponse[][] = [];
  const runs: Array<Promise<void>> = [];
  for (let w = 0; w < n; w++) {
    const ctx = watchContext(principal);
    contexts.push(ctx);
    const mine: WatchShipmentResponse[] = [];
    received.push(mine);
    const stream = handlers.watchShipment!(create(WatchShipmentRequestSchema, { trackingNumber }), ctx as HandlerContext);
    runs.push(
      (async () => {
        for await (const u of stream as AsyncIterable<WatchShipmentResponse>) mine.push(u);
      })(),
    );
  }
  return {
    received,
    async close(): Promise<void> {
      for (const ctx of contexts) ctx.abort();
      await Promise.all(runs);
    },
  };
}

/** A running watch stream: what it received, how it ended, and how to cut it. */
export interface Watch {
  updates: WatchShipmentResponse[];
  ended: Promise<{ error?: unknown }>;
  cancel(): void;
}

/** A WatchShipment call through a Connect client, collecting what it receives; `headers` e.g. a bearer token. */
export function connectWatch(client: Client<typeof TrackingService>, trackingNumber: string, afterSequence = 0n, headers?: Record<string, string>): Watch {
  const abort = new AbortController();
  const updates: WatchShipmentResponse[] = [];
  const ended = (async () => {
    try {
      const stream = client.watchShipment({ trackingNumber, afterSequence }, { signal: abort.signal, ...(headers ? { headers } : {}) });
      for await (const u of stream) updates.push(u);
      return {};
    } catch (error) {
      return { error };
    }
  })();
  return { updates, ended, cancel: () => abort.abort() };
}

// ---- running tracking replicas in-process ----

/** A private nats-server, schema, keys and Redis key prefix for tracking replicas under test. */
export interface TrackingTestEnv {
  nats: NatsServerHandle;
  schema: TestSchema;
  subjects: Subjects;
  /** Base environment of a replica (PORT=0, unique prefixes...). */
  env: Record<string, string>;
  /** Starts a replica with `overrides` on top of `env`. */
  start(overrides?: Record<string, string>): Promise<RunningService>;
  /** A bearer token with `scopes` (a customer's with `extra.customer`, a carrier's with `extra.carrier`). */
  token(scopes: string[], extra?: { customer?: string; carrier?: string }): Promise<string>;
  /** Stops every replica started, then the server, schema, keys and Redis keys. */
  close(): Promise<void>;
}

export async function createTrackingTestEnv(opts: { redisUrl?: string } = {}): Promise<TrackingTestEnv> {
  const nats = await startNatsServer();
  const schema = await createTestSchema({ prefix: "trk" });
  const keysDir = await mkdtemp(join(tmpdir(), "tracking-keys-"));
  const keys = await ensureDevKeys(keysDir);
  const prefix = uniqueName("trk");
  const redisPrefix = `${uniqueName("trk")}:`;
  const redisUrl = opts.redisUrl ?? testRedisUrl();
  const env: Record<string, string> = {
    HOST: "127.0.0.1",
    PORT: "0",
    METRICS_PORT: "0",
    LOG_LEVEL: "silent",
    NATS_URL: nats.url,
    SUBJECT_PREFIX: prefix,
    JWT_PUBLIC_KEY_FILE: keys.jwksPath,
    SHUTDOWN_GRACE_MS: "3000",
    DATABASE_URL: schema.connectionString,
    REDIS_URL: redisUrl,
    TRACKING_REDIS_KEY_PREFIX: redisPrefix,
    TRACKING_ACK_WAIT_MS: "2000",
    TRACKING_DB_POOL_SIZE: "10",
  };
  const running: RunningService[] = [];
  return {
    nats,
    schema,
    subjects: createSubjects(prefix),
    env,
    async start(overrides = {}) {
      const svc = await startService(trackingService, trackingConfig.parse({ ...env, ...overrides }));
      running.push(svc);
      return svc;
    },
    token: (scopes, extra = {}) =>
      mintToken({ privateJwkPath: keys.privateJwkPath, issuer: "logistics-dev", audience: "logistics-mesh", subject: "test", scopes, ...extra }),
    async close() {
      await Promise.allSettled(running.map((s) => s.close()));
      await nats.stop();
      await schema.drop();
      await rm(keysDir, { recursive: true, force: true });
      if (!opts.redisUrl) await deleteKeys(redisUrl, redisPrefix);
    },
  };
}

// ---- projector replicas in-process ----

/** A private nats-server and a PostgreSQL schema with its store, for projector replicas under test. */
export interface ProjectorTestEnv {
  nats: NatsServerHandle;
  store: PostgresShipmentStore;
  /** A connection of the test itself (publishing, inspecting streams). */
  admin: NatsConnection;
  jsm: JetStreamManager;
  /**
   * Starts a projector replica on its own connection (close it to kill the replica abruptly);
   * `wrap` may intercept its store's `applyEvents`.
   */
  startReplica(
    catalog: EventCatalog,
    o?: Partial<ProjectorOptions> & { wrap?: (apply: ShipmentStore["applyEvents"]) => ShipmentStore["applyEvents"] },
  ): Promise<{ nc: NatsConnection; projector: Projector }>;
  /** Stops every replica, then the connections, store, schema and server. */
  close(): Promise<void>;
}

export async function createProjectorTestEnv(o: { schemaPrefix: string; maxConnections: number }): Promise<ProjectorTestEnv> {
  const nats = await startNatsServer();
  const schema = await createTestSchema({ prefix: o.schemaPrefix });
  const store = await createPostgresShipmentStore({ connectionString: schema.connectionString, maxConnections: o.maxConnections });
  const admin = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(admin);
  const connections: NatsConnection[] = [];
  const projectors: Projector[] = [];
  return {
    nats,
    store,
    admin,
    jsm,
    async startReplica(catalog, { wrap, ...opts } = {}) {
      const nc = await connect({ servers: nats.url, name: uniqueName("projector") });
      connections.push(nc);
      // The documents a batch returns are frozen: the store keeps them for its next batches
      // (its document cache), so nothing downstream may change one.
      const applyEvents: ShipmentStore["applyEvents"] = async (events) => {
        const results = await store.applyEvents(events);
        for (const r of results) for (const doc of [r.before, r.after]) deepFreeze(doc);
        return results;
      };
      const projector = await startProjector({
        js: jetstream(nc),
        jsm: await jetstreamManager(nc),
        nc,
        catalog,
        store: { applyEvents: wrap ? wrap(applyEvents) : applyEvents, listEvents: store.listEvents.bind(store) },
        publisher: createCatalogPublisher({ js: jetstream(nc) }),
        metrics: createTrackingMetrics(createMetrics({ service: "tracking" }).registry),
        ...opts,
      });
      projectors.push(projector);
      return { nc, projector };
    },
    async close() {
      for (const p of projectors) await p.close().catch(() => {});
      for (const nc of connections) if (!nc.isClosed()) await nc.drain().catch(() => {});
      await admin.drain();
      await store.close();
      await schema.drop();
      await nats.stop();
    },
  };
}

/** `value` and everything in it frozen (in strict code, a change throws). */
export function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Deletes every key under `prefix` (test cleanup on the shared Redis). */
export async function deleteKeys(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

/** The sum of a metric's samples (over all label sets, or those whose labels include `match`) from a Prometheus text exposition. */
export async function readCounter(metricsUrl: string, name: string, match?: string): Promise<number> {
  const text = await (await fetch(metricsUrl, { signal: AbortSignal.timeout(5000) })).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .filter((l) => match === undefined || l.includes(match))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}
