import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Registry } from "prom-client";
import { ANONYMOUS, type Principal } from "@logistics/shared/auth";
import { createCatalogPublisher, createEventCatalog, publication, type CatalogPublisher, type EventCatalog } from "@logistics/shared/events";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentCreatedSchema, ScanRecordedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import {
  WatchShipmentResponseSchema,
  WatchUpdateKind,
  type WatchShipmentResponse,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { ensureStreams } from "@logistics/shared/nats";
import { testRedisUrl, uniqueName, waitFor } from "@logistics/shared/testing";
import { Redis } from "ioredis";
import type { Shipment } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import type { LiveNotice } from "../src/live-notice.js";
import { createRedisShipmentCache } from "../src/shipment-cache.js";
import { shipmentMessage } from "../src/shipment-view.js";
import { createLiveHub, createLiveNotifier, type LiveNotifier } from "../src/live-updates.js";
import { loadHistory, stepsBetween } from "../src/shipment-history.js";
import type { PostgresShipmentStore } from "../src/store/postgres/postgres-shipment-store.js";
import type { ShipmentDoc, ShipmentStore } from "../src/store/ports.js";
import { createTrackingHandlers, type TrackingHandlers } from "../src/tracking-handlers.js";
import { createTrackingMetrics } from "../src/tracking-metrics.js";
import { createWatchMessages } from "../src/watch-messages.js";
import { CARRIER, createProjectorTestEnv, deleteKeys, REGION, openWatches, type ProjectorTestEnv } from "./tracking-fixtures.js";

/*
 * WatchShipment fed by the projector's change notices (a real projector applying real JetStream
 * messages to PostgreSQL, notices over a real nats-server), with the watchers' store counted by a
 * thin wrapper around the real PostgreSQL store: on the happy path a watcher takes every version
 * from the notices without reading the store; a lost, garbled or forged notice makes it read, and
 * it still gets every version once, in order, with the content the store holds.
 */

const JOURNEY = [ScanKind.PICKUP, ScanKind.HUB_ARRIVAL, ScanKind.HUB_DEPARTURE, ScanKind.OUT_FOR_DELIVERY, ScanKind.DELIVERY_ATTEMPT];
const WATCHERS = 4;
const BASE = Date.UTC(2026, 10, 20, 8, 0, 0);

const OPERATOR: Principal = { ...ANONYMOUS, subject: "ops", role: "operator", anonymous: false };

/** What a notice for one version should suffer on its way (see {@link tamperingNotifier}). */
type Tampering = "drop" | "garble" | "forge";

describe("WatchShipment from change notices (real projector, PostgreSQL and nats-server)", () => {
  let env: ProjectorTestEnv;
  let store: PostgresShipmentStore;
  let hubConnection: NatsConnection;
  let publisher: CatalogPublisher;

  beforeAll(async () => {
    env = await createProjectorTestEnv({ schemaPrefix: "trk_wn", maxConnections: 8 });
    store = env.store;
    publisher = createCatalogPublisher({ js: jetstream(env.admin) });
    hubConnection = await connect({ servers: env.nats.url });
  });
  afterAll(async () => {
    await hubConnection?.drain();
    await env?.close();
  });

  /**
   * The projector's notifier, except for the versions in `tamper`: dropped, replaced by text that
   * is not a notice, or sent with a change whose events belong to no version of the shipment.
   */
  function tamperingNotifier(catalog: EventCatalog, tamper: ReadonlyMap<number, Tampering>): LiveNotifier {
    const real = createLiveNotifier(env.admin, catalog.subjects);
    return {
      notify(tn, version, change) {
        const t = tamper.get(version);
        if (t === "drop") return;
        if (t === "garble") return env.admin.publish(catalog.subjects.liveShipment(tn), `{"version":${version},"doc":`);
        if (t === "forge" && change) {
          const events = change.events.map((e) => ({ ...e, json: e.json.replaceAll(`scan.${tn}.`, `forged.${tn}.`) }));
          return real.notify(tn, version, { ...change, events });
        }
        real.notify(tn, version, change);
      },
    };
  }

  /** A catalog of its own, a projector publishing notices through `notifier`, and handlers over a counted store. */
  async function setup(tamper: ReadonlyMap<number, Tampering>, heartbeatMs: number) {
    const catalog = createEventCatalog(uniqueName("trkwn"));
    await ensureStreams(env.jsm, catalog.subjects.streamList);
    await env.startReplica(catalog, { notifier: tamperingNotifier(catalog, tamper) });
    const reads = { getShipment: 0, listEvents: 0 };
    const counted: Pick<ShipmentStore, "getShipment" | "listEvents" | "searchShipments"> = {
      getShipment: (tn) => (reads.getShipment++, store.getShipment(tn)),
      listEvents: (tn, page) => (reads.listEvents++, store.listEvents(tn, page)),
      searchShipments: (q) => store.searchShipments(q),
    };
    const live = createLiveHub(hubConnection, catalog.subjects);
    const handlers = createTrackingHandlers({
      store: counted,
      reader: { get: async () => undefined },
      live,
      metrics: createTrackingMetrics(new Registry()),
      heartbeatMs,
    });
    return { catalog, reads, handlers, close: () => live.close() };
  }

  const tnOf = (tag: string) => `${tag.replace(/[^A-Za-z0-9]/g, "").toUpperCase().slice(-12)}01`;

  async function publishCreated(catalog: EventCatalog, tn: string) {
    const message = create(ShipmentCreatedSchema, {
      eventId: `created.${tn}`,
      trackingNumber: tn,
      shipmentId: `shp_${tn}`,
      carrierCode: CARRIER,
      customerId: "cust-1",
      createdAt: timestampFromDate(new Date(BASE)),
    });
    await publisher.publish(catalog.events.shipmentCreated, message, { region: REGION });
  }

  /** Scans `from .. to - 1` of the journey (one publish each, all at once: they may share a batch). */
  async function publishScans(catalog: EventCatalog, tn: string, from: number, to: number) {
    const scans = Array.from({ length: to - from }, (_, k) => {
      const n = from + k;
      return create(ScanRecordedSchema, {
        eventId: `scan.${tn}.${n}`,
        kind: JOURNEY[n % JOURNEY.length] as ScanKind,
        scan: {
          eventId: `c-${tn}-${n}`,
          trackingNumber: tn,
          carrierCode: CARRIER,
          rawStatus: { code: `K${n}`, text: "scanned" },
          eventTime: timestampFromDate(new Date(BASE + (n + 1) * 3_600_000)),
          hubCode: "FRA",
          location: { latitude: 50.03, longitude: 8.57 },
        },
        recordedAt: timestampFromDate(new Date()),
        region: REGION,
      });
    });
    const results = await publisher.publishAll(scans.map((m) => publication(catalog.events.scanRecorded, m, { region: REGION, carrier: CARRIER })));
    for (const r of results) if (r.status === "rejected") throw r.reason;
  }

  const visible = (tn: string, version: number) =>
    waitFor(async () => ((await store.getShipment(tn))?.version ?? 0) >= version, { message: `version ${version} applied`, timeoutMs: 20_000 });

  /** Opens `n` watches of `tn` (operators: the full view, with each cause's applied time). */
  function watch(handlers: TrackingHandlers, tn: string, n: number) {
    const { received, close } = openWatches(handlers, tn, n, OPERATOR);
    const updates = (w: readonly WatchShipmentResponse[]) => w.filter((u) => u.kind !== WatchUpdateKind.HEARTBEAT);
    return {
      received,
      /** Waits until every watcher's newest update is `version`. */
      reach: (version: number) =>
        waitFor(() => received.every((r) => updates(r).at(-1)?.sequence === BigInt(version)), {
          message: `every watcher at version ${version}`,
          timeoutMs: 20_000,
        }),
      async close() {
        await close();
        return received.map(updates);
      },
    };
  }

  /** Every watcher got the snapshot of version 1 and then each version's CHANGE once, in order, as the store's history renders it. */
  async function assertEveryVersion(tn: string, streams: readonly WatchShipmentResponse[][], finalVersion: number) {
    const doc = await store.getShipment(tn);
    assert.equal(doc?.version, finalVersion);
    const truth = stepsBetween(undefined, doc!, await loadHistory(store, tn));
    const render = createWatchMessages();
    const expected = truth.slice(1).map((s) => toBinary(WatchShipmentResponseSchema, render.change(s, true)));
    for (const [w, updates] of streams.entries()) {
      assert.deepEqual(
        updates.map((u) => u.sequence),
        Array.from({ length: finalVersion }, (_, i) => BigInt(i + 1)),
        `watcher ${w}: every version once, in order`,
      );
      assert.equal(updates[0]?.kind, WatchUpdateKind.SNAPSHOT);
      updates.slice(1).forEach((u, i) => {
        assert.deepEqual(toBinary(WatchShipmentResponseSchema, u), expected[i], `watcher ${w}, version ${i + 2}: as the store's history renders it`);
      });
    }
  }

  /** A new shipment at version 1 with {@link WATCHERS} watchers that got its snapshot, and the reads made until then. */
  async function watched(tag: string, tamper: ReadonlyMap<number, Tampering>, heartbeatMs: number) {
    const { catalog, reads, handlers, close } = await setup(tamper, heartbeatMs);
    const tn = tnOf(uniqueName(tag));
    await publishCreated(catalog, tn);
    await visible(tn, 1);
    const watches = watch(handlers, tn, WATCHERS);
    await watches.reach(1);
    return { catalog, tn, reads, afterSnapshots: { ...reads }, watches, close };
  }

  it("sends every version in order with no store read after the first, one notice at a time and several per batch", async () => {
    const { catalog, tn, reads, afterSnapshots, watches, close } = await watched("wnhappy", new Map(), 60_000);

    // One scan at a time: one notice per version.
    for (let n = 0; n < 3; n++) {
      await publishScans(catalog, tn, n, n + 1);
      await watches.reach(n + 2);
    }
    // Then a burst: the projector may commit several of the shipment's events in one batch, and
    // its notice carries all of them.
    await publishScans(catalog, tn, 3, 12);
    await watches.reach(13);

    assert.deepEqual(reads, afterSnapshots, "no store read after the snapshots");
    await assertEveryVersion(tn, await watches.close(), 13);
    close();
  });

  it("still sends every version in order when notices are lost, garbled or forged, by reading the store", async () => {
    // Versions 3 and 8 dropped (8 is the last: only the heartbeat re-read finds it), 5 garbled, 6 forged.
    const tamper = new Map<number, Tampering>([
      [3, "drop"],
      [5, "garble"],
      [6, "forge"],
      [8, "drop"],
    ]);
    const { catalog, tn, reads, afterSnapshots, watches, close } = await watched("wnlost", tamper, 1_500);

    // One version per batch (each waits for the one before to be applied), so each has its own notice.
    for (let n = 0; n < 7; n++) {
      await publishScans(catalog, tn, n, n + 1);
      await visible(tn, n + 2);
    }
    await watches.reach(8);

    assert.ok(reads.getShipment > afterSnapshots.getShipment && reads.listEvents > afterSnapshots.listEvents, "the lost versions were read");
    await assertEveryVersion(tn, await watches.close(), 8);
    close();
  });

  it("hands the projector's own replica its notices in process, once each, sharing the Shipment its cache refresh rendered; another replica takes them from NATS", async () => {
    const catalog = createEventCatalog(uniqueName("trkwl"));
    await ensureStreams(env.jsm, catalog.subjects.streamList);
    // This replica's hub (the projector's notifier delivers to it) and another replica's.
    const ownHub = createLiveHub(hubConnection, catalog.subjects);
    const otherConnection = await connect({ servers: env.nats.url });
    const otherHub = createLiveHub(otherConnection, catalog.subjects);
    const real = createLiveNotifier(env.admin, catalog.subjects, ownHub);
    let notified = 0;
    const notifier: LiveNotifier = { notify: (tn, v, c) => (notified++, real.notify(tn, v, c)) };

    // The replica's one rendering memo, counting what it renders.
    const rendered = new WeakMap<ShipmentDoc, Shipment>();
    let renders = 0;
    const shipmentMessages = (doc: ShipmentDoc): Shipment => {
      let m = rendered.get(doc);
      if (!m) {
        renders++;
        rendered.set(doc, (m = shipmentMessage(doc)));
      }
      return m;
    };
    // The real Redis cache, recording what the projector refreshed it with.
    const prefix = `${uniqueName("trkwl")}:`;
    const redis = new Redis(testRedisUrl(), { keyPrefix: prefix, maxRetriesPerRequest: 1 });
    const redisCache = createRedisShipmentCache({ redis, ttlSeconds: 60 });
    const refreshed: Shipment[] = [];
    const cache = { get: redisCache.get, put: (m: Shipment) => (refreshed.push(m), redisCache.put(m)) };
    await env.startReplica(catalog, { notifier, shipmentMessages, cache });

    const reads = { getShipment: 0, listEvents: 0 };
    const counted: Pick<ShipmentStore, "getShipment" | "listEvents" | "searchShipments"> = {
      getShipment: (tn) => (reads.getShipment++, store.getShipment(tn)),
      listEvents: (tn, page) => (reads.listEvents++, store.listEvents(tn, page)),
      searchShipments: (q) => store.searchShipments(q),
    };
    const handlersOf = (live: typeof ownHub, own: boolean) =>
      createTrackingHandlers({
        store: counted,
        reader: { get: async () => undefined },
        live,
        ...(own ? { shipmentMessages } : {}),
        metrics: createTrackingMetrics(new Registry()),
        heartbeatMs: 60_000,
      });
    const ownHandlers = handlersOf(ownHub, true);
    const otherHandlers = handlersOf(otherHub, false);

    const tn = tnOf(uniqueName("wnlocal"));
    const heard = { own: [] as LiveNotice[], other: [] as LiveNotice[] };
    const stopOwn = ownHub.listen(tn, (n) => heard.own.push(n));
    const stopOther = otherHub.listen(tn, (n) => heard.other.push(n));
    await publishCreated(catalog, tn);
    await visible(tn, 1);
    const ownWatches = watch(ownHandlers, tn, 2);
    const otherWatches = watch(otherHandlers, tn, 2);
    await Promise.all([ownWatches.reach(1), otherWatches.reach(1)]);
    const afterSnapshots = { ...reads };

    for (let n = 0; n < 3; n++) {
      await publishScans(catalog, tn, n, n + 1);
      await Promise.all([ownWatches.reach(n + 2), otherWatches.reach(n + 2)]);
    }
    await publishScans(catalog, tn, 3, 10);
    await Promise.all([ownWatches.reach(11), otherWatches.reach(11)]);
    await waitFor(() => heard.other.length === notified, { message: "the other replica heard every notice", timeoutMs: 10_000 });

    // Once each: in process on this replica (its echo from NATS skipped), from NATS on the other.
    assert.equal(heard.own.length, notified, "one notice per notify on the projector's replica, no echo");
    assert.deepEqual(heard.own.map((n) => n.version), heard.other.map((n) => n.version));
    assert.ok(heard.own.every((n) => n.change !== undefined), "every local notice carries its change");
    assert.deepEqual(reads, afterSnapshots, "no store read after the snapshots, on either replica");

    // The cache refresh's Shipment is the very message this replica's watchers were sent for that version.
    const ownStreams = await ownWatches.close();
    // Version 1 reached the watchers by their snapshot read, every later one by a notice.
    const afterSnapshot = refreshed.filter((m) => m.version > 1n);
    assert.ok(afterSnapshot.length > 0);
    for (const put of afterSnapshot) {
      for (const [w, updates] of ownStreams.entries()) {
        const sent = updates.find((u) => u.sequence === put.version);
        assert.equal(sent?.shipment, put, `watcher ${w}, version ${put.version}: the cache refresh's message`);
      }
    }
    // Versions 2..11 once each for the watchers and the cache alike; version 1 twice (the
    // projector's document for the cache, the watchers' snapshot read).
    assert.equal(renders, 12, "each version rendered once on this replica (and the snapshot read)");
    await assertEveryVersion(tn, ownStreams, 11);
    await assertEveryVersion(tn, await otherWatches.close(), 11);

    stopOwn();
    stopOther();
    ownHub.close();
    otherHub.close();
    await otherConnection.drain();
    redis.disconnect();
    await deleteKeys(testRedisUrl(), prefix);
  });
});
