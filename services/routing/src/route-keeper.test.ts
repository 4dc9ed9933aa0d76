import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AreaSchema } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import { EtaChangeReason, RouteSchema } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema, RouteUpdatedSchema, type RouteUpdated } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { DisruptionCause } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { createEventCatalog, type Publication } from "@logistics/shared/events";
import { seededRandom } from "@logistics/shared/testing";
import { createHubNetwork, type HubRecord } from "./hub-network.js";
import { createPlanner } from "./planner.js";
import { msOf } from "./route-mapping.js";
import { createRouteKeeper, unplannable } from "./route-keeper.js";
import { ConcurrentUpdateError, registered, withRevision, type RouteStore, type ShipmentRoute, type StoredDisruption, type StoredEtaRevision } from "./route-store.js";
import { createSpatialIndex } from "./spatial-index.js";

const DAILY = 0b1111111;
const hub = (code: string, lat: number, lon: number): HubRecord => ({
  code, name: code, city: code, country: "DE", lat, lon, kind: "ROAD_HUB", timeZone: "Etc/UTC", continent: "EU", processingMin: 60,
});
const h = (x: number) => x * 60;
// AAA → BBB → DDD (fast) and AAA → CCC → DDD (slow); EEE is off every route but linked to DDD.
const network = createHubNetwork({
  hubs: [hub("AAA", 50, 8), hub("BBB", 51, 9), hub("CCC", 49, 9), hub("DDD", 50, 10), hub("EEE", 52, 12)],
  lanes: [
    ["AAA", "BBB", "ROAD", 150, 120, 30, DAILY, [h(10), h(18)]],
    ["BBB", "DDD", "ROAD", 150, 180, 30, DAILY, [h(14)]],
    ["AAA", "CCC", "ROAD", 100, 60, 30, DAILY, [h(9)]],
    ["CCC", "DDD", "ROAD", 700, 600, 30, DAILY, [h(12)]],
    ["EEE", "DDD", "ROAD", 200, 180, 30, DAILY, [h(6)]],
  ],
});
const DAY1 = Date.UTC(2026, 10, 23);

/** An in-memory RouteStore: a fake of our own narrow interface, for unit tests only. */
function memoryStore(): RouteStore {
  const shipments = new Map<string, ShipmentRoute>();
  const history = new Map<string, StoredEtaRevision[]>();
  const disruptions = new Map<string, StoredDisruption>();
  const hubsOf = (s: ShipmentRoute) => new Set(s.route?.legs.flatMap((l) => [l.fromHub, l.toHub]) ?? []);
  return {
    async get(tn) {
      return shipments.get(tn);
    },
    async getChanged(tns, known) {
      const changed = new Map<string, ShipmentRoute>();
      const unchanged = new Set<string>();
      for (const tn of tns) {
        const s = shipments.get(tn);
        if (s && known.get(tn) === s.revision) unchanged.add(tn);
        else if (s) changed.set(tn, s);
      }
      return { changed, unchanged };
    },
    async create(s, first) {
      if (shipments.has(s.trackingNumber)) return false;
      shipments.set(s.trackingNumber, registered(s, first));
      if (first) history.set(s.trackingNumber, [{ revision: 1, eta: first.route.eta, reason: first.reason, detail: first.detail, revisedAt: first.revisedAt }]);
      return true;
    },
    async createMany(writes) {
      const created = new Set<string>();
      for (const w of writes) if (await this.create(w.shipment, w.first)) created.add(w.shipment.trackingNumber);
      return created;
    },
    async saveRevision(tn, expected, r) {
      const s = shipments.get(tn);
      if (!s || s.revision !== expected) throw new ConcurrentUpdateError(tn);
      shipments.set(tn, withRevision(s, r));
      history.get(tn)!.push({ revision: expected + 1, eta: r.route.eta, reason: r.reason, detail: r.detail, revisedAt: r.revisedAt });
    },
    async saveRevisions(writes) {
      const conflicts = new Set<string>();
      for (const w of writes) {
        const s = shipments.get(w.trackingNumber);
        if (!s || s.revision !== w.expectedRevision) conflicts.add(w.trackingNumber);
        else await this.saveRevision(w.trackingNumber, w.expectedRevision, w.revision);
      }
      return conflicts;
    },
    async saveRevisionsAndGetChanged(writes, tns, known) {
      // The read first: it sees its shipments as the writes found them (the two sets are disjoint).
      const read = await this.getChanged(tns, known);
      return { ...read, conflicts: await this.saveRevisions(writes) };
    },
    async etaHistory(tn) {
      return history.get(tn) ?? [];
    },
    async findTouchingHubs(codes) {
      return [...shipments.values()].filter((s) => !s.delivered && codes.some((c) => hubsOf(s).has(c)));
    },
    async findAvoiding(id) {
      return [...shipments.values()].filter((s) => !s.delivered && s.avoidedDisruptions.includes(id));
    },
    async saveDisruption(d) {
      disruptions.set(d.disruption.disruptionId, d);
    },
    async getDisruption(id) {
      return disruptions.get(id);
    },
    async clearDisruption(id, at) {
      const d = disruptions.get(id);
      if (!d) return undefined;
      if (d.disruption.clearedAt) return { disruption: d, changed: false };
      d.disruption.clearedAt = timestampFromMs(at.getTime());
      return { disruption: d, changed: true };
    },
    async activeDisruptions(at) {
      return [...disruptions.values()].filter((d) => !d.disruption.clearedAt && (!d.disruption.endsAt || msOf(d.disruption.endsAt) > at.getTime()));
    },
  };
}

function setup(o: { cacheSize?: number } = {}) {
  const raw = memoryStore();
  /** Calls per store method, to check that a batch reads and writes once. */
  const calls = new Map<string, number>();
  /** Statements the store would send: calls, less the batch methods' with nothing to read or write. */
  let statements = 0;
  const store = new Proxy(raw, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
        const lists = args.filter((a) => Array.isArray(a));
        // The PostgreSQL store serves the active disruptions from memory.
        if (prop !== "activeDisruptions" && (lists.length === 0 || lists.some((a) => (a as unknown[]).length > 0))) statements++;
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  /** Event ids whose publish fails. */
  const failing = new Set<string>();
  const published: { subject: string; type: string; message: unknown; msgId: string }[] = [];
  let now = DAY1;
  let id = 0;
  const keeper = createRouteKeeper({
    network,
    planner: createPlanner(network),
    spatial: createSpatialIndex(network.hubs),
    store,
    publisher: {
      async publishAll(items: readonly Publication[]) {
        return items.map((p) => {
          if (failing.has(p.event.id(p.message))) return { status: "rejected" as const, reason: new Error("no PubAck") };
          published.push({ subject: p.event.subject(p.tokens), type: p.event.schema.typeName, message: p.message, msgId: p.event.id(p.message) });
          return { status: "fulfilled" as const, value: { seq: published.length, duplicate: false, stream: "S" } };
        });
      },
    },
    events: createEventCatalog("unit").events,
    clock: () => new Date(now),
    newId: () => `id${++id}`,
    ...o,
  });
  const updates = () => published.filter((p) => p.type === RouteUpdatedSchema.typeName).map((p) => p.message as RouteUpdated);
  const ship = async (tn: string, origin = "AAA", readyAt = DAY1 + h(8) * 60_000) => {
    await keeper.onShipmentCreated(
      create(ShipmentCreatedSchema, {
        eventId: `created-${tn}`,
        trackingNumber: tn,
        serviceLevel: ServiceLevel.STANDARD,
        origin: { countryCode: "DE", city: "A", location: { latitude: 0, longitude: 0 }, hubCode: origin },
        destination: { countryCode: "DE", city: "D", location: { latitude: 0, longitude: 0 }, hubCode: "DDD" },
        readyTime: timestampFromMs(readyAt),
      }),
      "eu",
    );
    return (await store.get(tn))!;
  };
  const scanEvent = (tn: string, n: number, kind: ScanKind, hubCode: string, at: number) =>
    create(ScanRecordedSchema, {
      eventId: `scan-${tn}-${n}`,
      scan: { eventId: `c-${n}`, trackingNumber: tn, carrierCode: "acme", eventTime: timestampFromMs(at), hubCode },
      kind,
      region: "eu",
    });
  const scan = (tn: string, n: number, kind: ScanKind, hubCode: string, at: number) => keeper.onScan(scanEvent(tn, n, kind, hubCode, at));
  return { keeper, store, raw, calls, statements: () => statements, failing, published, updates, ship, scan, scanEvent, setNow: (t: number) => (now = t) };
}

const at = (day: number, hour: number) => DAY1 + (day - 1) * 86_400_000 + hour * 3_600_000;

describe("createRouteKeeper", () => {
  it("plans a new shipment once and republishes the same RoutePlanned on redelivery", async () => {
    const t = setup();
    const s = await t.ship("TN00000001");
    assert.deepEqual(s.route?.legs.map((l) => l.toHub), ["BBB", "DDD"]);
    await t.ship("TN00000001");
    const plannedEvents = t.published.filter((p) => p.type === RoutePlannedSchema.typeName);
    assert.equal(plannedEvents.length, 2);
    assert.equal(new Set(plannedEvents.map((p) => p.msgId)).size, 1, "same event id, so the stream drops the duplicate");
    assert.equal((await t.store.get("TN00000001"))?.revision, 1);
  });

  it("leaves the route alone for an arrival within the tolerance", async () => {
    const t = setup();
    await t.ship("TN00000002");
    await t.scan("TN00000002", 1, ScanKind.HUB_ARRIVAL, "BBB", at(1, 12) + 20 * 60_000);
    assert.equal(t.updates().length, 0);
  });

  it("re-plans from an unplanned hub", async () => {
    const t = setup();
    await t.ship("TN00000003");
    await t.scan("TN00000003", 1, ScanKind.HUB_ARRIVAL, "EEE", at(1, 11));
    const [u] = t.updates();
    assert.equal(u?.reason, EtaChangeReason.UNPLANNED_HUB);
    assert.deepEqual(u?.route?.legs.map((l) => `${l.fromHub}>${l.toHub}`), ["EEE>DDD"]);
    assert.equal(msOf(u?.route?.legs[0]?.plannedDeparture), at(2, 6));
  });

  it("re-plans after a late arrival that misses the connection, keeping the travelled leg", async () => {
    const t = setup();
    await t.ship("TN00000004");
    // Planned at BBB 12:00; arriving 13:00 + 60 min processing misses the 14:00 cut-off (13:30).
    await t.scan("TN00000004", 1, ScanKind.HUB_ARRIVAL, "BBB", at(1, 13));
    const [u] = t.updates();
    assert.equal(u?.reason, EtaChangeReason.LATE_ARRIVAL);
    assert.deepEqual(u?.route?.legs.map((l) => `${l.fromHub}>${l.toHub}`), ["AAA>BBB", "BBB>DDD"]);
    assert.equal(msOf(u?.route?.legs[1]?.plannedDeparture), at(2, 14));
    assert.equal(msOf(u?.previousEta?.estimatedArrival), at(1, 18));
  });

  it("re-plans an early parcel that caught an earlier departure, moving the ETA earlier", async () => {
    const t = setup();
    // Ready 09:30 (+60 min processing) misses AAA's 10:00 truck: planned on the 18:00 one, ETA day 2.
    const s = await t.ship("TN00000009", "AAA", at(1, 9.5));
    assert.equal(msOf(s.route?.legs[0]?.plannedDeparture), at(1, 18));
    // It made the 10:00 truck after all.
    await t.scan("TN00000009", 1, ScanKind.HUB_DEPARTURE, "AAA", at(1, 10));
    const [u] = t.updates();
    assert.equal(u?.reason, EtaChangeReason.EARLY_DEPARTURE);
    assert.ok(msOf(u?.route?.eta?.estimatedArrival) < msOf(u?.previousEta?.estimatedArrival), "the ETA moved earlier");
    assert.deepEqual(u?.route?.legs.map((l) => `${l.fromHub}>${l.toHub}`), ["AAA>BBB", "BBB>DDD"]);
    assert.equal(msOf(u?.route?.legs[0]?.actualDeparture), at(1, 10), "the travelled leg carries its actual departure");
    assert.equal(u?.route?.legs[1]?.actualDeparture, undefined, "the leg ahead is planned only");
    assert.equal(msOf(u?.route?.legs[1]?.plannedDeparture), at(1, 14));
  });

  it("keeps the plan when an early parcel still waits for its planned departure", async () => {
    const t = setup();
    await t.ship("TN00000010");
    // Planned at BBB 12:00, onward 14:00 (the only departure): arriving at 11:00 changes nothing.
    await t.scan("TN00000010", 1, ScanKind.HUB_ARRIVAL, "BBB", at(1, 11));
    assert.equal(t.updates().length, 0);
  });

  it("re-plans exactly the shipments touching an area disruption, then restores them when it clears", async () => {
    const t = setup();
    await t.ship("TN00000005"); // via BBB
    await t.ship("TN00000006", "CCC"); // CCC → DDD, never BBB
    const res = await t.keeper.reportDisruption({
      target: { case: "area", value: create(AreaSchema, { center: { latitude: 51, longitude: 9 }, radiusKm: 30 }) },
      startsAt: timestampFromMs(at(1, 0)),
      endsAt: undefined,
      cause: DisruptionCause.STRIKE,
      description: "",
    });
    assert.equal(res.replanned, 1);
    const [u] = t.updates();
    assert.equal(u?.trackingNumber, "TN00000005");
    assert.equal(u?.reason, EtaChangeReason.DISRUPTION);
    assert.ok(u?.route?.legs.every((l) => l.fromHub !== "BBB" && l.toHub !== "BBB"));
    assert.equal((await t.store.get("TN00000006"))?.revision, 1);

    const cleared = await t.keeper.clearDisruption(res.disruption.disruptionId);
    assert.equal(cleared.replanned, 1);
    const last = t.updates().at(-1);
    assert.equal(last?.reason, EtaChangeReason.DISRUPTION_CLEARED);
    assert.deepEqual(last?.route?.legs.map((l) => l.toHub), ["BBB", "DDD"]);
    assert.equal((await t.keeper.clearDisruption(res.disruption.disruptionId)).replanned, 0);
  });

  it("does not re-plan shipments whose use of the hub falls outside the disruption window", async () => {
    const t = setup();
    await t.ship("TN00000007"); // at BBB 12:00-14:00 on day 1
    const res = await t.keeper.reportDisruption({
      target: { case: "hubCode", value: "BBB" },
      startsAt: timestampFromMs(at(3, 0)),
      endsAt: timestampFromMs(at(4, 0)),
      cause: DisruptionCause.CAPACITY,
      description: "",
    });
    assert.equal(res.replanned, 0);
    assert.equal(t.updates().length, 0);
  });

  describe("batches", () => {
    const created = (tn: string, origin = "AAA") => ({
      event: create(ShipmentCreatedSchema, {
        eventId: `created-${tn}`,
        trackingNumber: tn,
        serviceLevel: ServiceLevel.STANDARD,
        origin: { countryCode: "DE", city: "A", location: { latitude: 0, longitude: 0 }, hubCode: origin },
        destination: { countryCode: "DE", city: "D", location: { latitude: 0, longitude: 0 }, hubCode: "DDD" },
        readyTime: timestampFromMs(DAY1 + h(8) * 60_000),
      }),
      region: "eu",
    });

    it("plans a batch of new shipments without a read, with one write and one publishing round", async () => {
      const t = setup();
      const outcomes = await t.keeper.onShipmentsCreated([created("TN10000001"), created("TN10000002", "CCC"), created("TN10000001")]);
      assert.deepEqual(outcomes.map((o) => o.kind), ["ack", "ack", "ack"]);
      assert.equal(t.calls.get("getChanged") ?? 0, 0, "the insert is the check that they are new");
      assert.equal(t.calls.get("createMany"), 2, "the duplicate delivery of TN10000001 is a second round");
      assert.equal(t.calls.get("activeDisruptions"), 1);
      const planned = t.published.filter((p) => p.type === RoutePlannedSchema.typeName);
      assert.deepEqual(planned.map((p) => p.msgId), ["route-TN10000001-r1", "route-TN10000002-r1", "route-TN10000001-r1"]);
      assert.equal((await t.raw.get("TN10000002"))?.originHub, "CCC");
    });

    it("applies a shipment's scans in order, one revision per round, and skips scans on plan without writing", async () => {
      const t = setup();
      await t.ship("TN10000003");
      await t.ship("TN10000004");
      t.calls.clear();
      const outcomes = await t.keeper.onScans([
        t.scanEvent("TN10000004", 1, ScanKind.HUB_ARRIVAL, "BBB", at(1, 12)), // on plan
        t.scanEvent("TN10000003", 1, ScanKind.HUB_ARRIVAL, "BBB", at(1, 13)), // late: re-planned
        t.scanEvent("TN10000003", 2, ScanKind.DELIVERED, "", at(2, 18)),
      ]);
      assert.deepEqual(outcomes.map((o) => o.kind), ["ack", "ack", "ack"]);
      assert.equal(t.calls.get("getChanged"), 1);
      assert.equal(t.calls.get("get") ?? 0, 0, "no per-event read");
      assert.equal(t.calls.get("saveRevisions"), 2);
      assert.deepEqual(
        t.updates().map((u) => [u.trackingNumber, u.route?.revision, u.reason]),
        [
          ["TN10000003", 2, EtaChangeReason.LATE_ARRIVAL],
          ["TN10000003", 3, EtaChangeReason.DELIVERED],
        ],
      );
      const s = await t.raw.get("TN10000003");
      assert.equal(s?.revision, 3);
      assert.equal(s?.delivered, true);
      assert.equal((await t.raw.get("TN10000004"))?.revision, 1);
    });

    it("dead-letters an unplannable scan alone and applies the shipment's later scans", async () => {
      const t = setup();
      await t.ship("TN10000005");
      const bad = t.scanEvent("TN10000005", 1, ScanKind.HUB_ARRIVAL, "BBB", at(1, 13));
      bad.scan!.eventTime = { $typeName: "google.protobuf.Timestamp", seconds: 10n ** 12n, nanos: 0 };
      const outcomes = await t.keeper.onScans([bad, t.scanEvent("TN10000005", 2, ScanKind.DELIVERED, "", at(2, 18))]);
      assert.equal(outcomes[0]?.kind, "poison");
      assert.equal(outcomes[1]?.kind, "ack");
      assert.equal((await t.raw.get("TN10000005"))?.delivered, true);
    });

    it("retries an event whose route event was not published with the shipment's later events, then republishes it", async () => {
      const t = setup();
      await t.ship("TN10000006");
      await t.ship("TN10000007");
      const batch = [
        t.scanEvent("TN10000006", 1, ScanKind.HUB_ARRIVAL, "BBB", at(1, 13)),
        t.scanEvent("TN10000006", 2, ScanKind.DELIVERED, "", at(2, 18)),
        t.scanEvent("TN10000007", 1, ScanKind.DELIVERED, "", at(1, 18)),
      ];
      t.failing.add("route-TN10000006-r2");
      const first = await t.keeper.onScans(batch);
      assert.deepEqual(first.map((o) => o.kind), ["retry", "retry", "ack"]);
      assert.equal((await t.raw.get("TN10000006"))?.revision, 2, "stored before the publish failed; the delivery not applied");
      t.failing.clear();
      const again = await t.keeper.onScans(batch.slice(0, 2));
      assert.deepEqual(again.map((o) => o.kind), ["ack", "ack"]);
      assert.deepEqual(
        t.updates().filter((u) => u.trackingNumber === "TN10000006").map((u) => [u.route?.revision, u.reason]),
        [
          [2, EtaChangeReason.LATE_ARRIVAL],
          [3, EtaChangeReason.DELIVERED],
        ],
      );
    });

    it("never decides from a cached shipment another replica has revised since", async () => {
      const t = setup();
      await t.ship("TN10000008");
      await t.keeper.onScans([t.scanEvent("TN10000008", 1, ScanKind.HUB_ARRIVAL, "BBB", at(1, 12))]); // cached at revision 1
      // Another replica delivers it.
      const s = (await t.raw.get("TN10000008"))!;
      await t.raw.saveRevision(s.trackingNumber, s.revision, { route: s.route!, reason: EtaChangeReason.DELIVERED, detail: "delivered", revisedAt: new Date(DAY1), eventId: "elsewhere", avoidedDisruptions: [], delivered: true });
      const outcomes = await t.keeper.onScans([t.scanEvent("TN10000008", 2, ScanKind.HUB_ARRIVAL, "DDD", at(2, 9))]);
      assert.deepEqual(outcomes.map((o) => o.kind), ["ack"]);
      assert.equal(t.updates().length, 0, "a delivered shipment is not re-planned");
      assert.equal((await t.raw.get("TN10000008"))?.revision, 2);
    });

    it("keeps a cached shipment for its batch while another batch evicts it from the cache", async () => {
      const t = setup({ cacheSize: 1 });
      await t.ship("TN10000010");
      await t.ship("TN10000011");
      const late = t.scanEvent("TN10000010", 1, ScanKind.HUB_ARRIVAL, "BBB", at(1, 13));
      await t.keeper.onScans([late]); // revision 2, cached
      const read = t.raw.getChanged.bind(t.raw);
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      t.raw.getChanged = async (tns, known) => {
        if (tns.includes("TN10000010")) {
          t.raw.getChanged = read;
          await gate;
        }
        return read(tns, known);
      };
      // A redelivery: republishing what is held needs the read to say it is still stored.
      const held = t.keeper.onScans([late]);
      // The other consumer's batch caches TN10000011, which evicts TN10000010 (cache of one).
      await t.keeper.onScans([t.scanEvent("TN10000011", 1, ScanKind.HUB_ARRIVAL, "BBB", at(1, 12))]);
      release();
      assert.deepEqual((await held).map((o) => o.kind), ["ack"]);
      assert.deepEqual(
        t.published.filter((p) => p.msgId.startsWith("route-TN10000010-")).map((p) => p.msgId),
        ["route-TN10000010-r1", "route-TN10000010-r2", "route-TN10000010-r2"],
      );
    });

    it("falls back to the one-event path when another replica stored a revision in between", async () => {
      const t = setup();
      await t.ship("TN10000009");
      const save = t.raw.saveRevisions.bind(t.raw);
      t.raw.saveRevisions = async (writes) => {
        // Another replica re-plans the shipment between this batch's read and its write.
        const s = (await t.raw.get("TN10000009"))!;
        await t.raw.saveRevision(s.trackingNumber, s.revision, { route: s.route!, reason: EtaChangeReason.DISRUPTION, detail: "elsewhere", revisedAt: new Date(DAY1), eventId: "dis-1", avoidedDisruptions: [] });
        t.raw.saveRevisions = save;
        return save(writes);
      };
      const outcomes = await t.keeper.onScans([t.scanEvent("TN10000009", 1, ScanKind.DELIVERED, "", at(1, 18))]);
      assert.deepEqual(outcomes.map((o) => o.kind), ["ack"]);
      const s = await t.raw.get("TN10000009");
      assert.equal(s?.revision, 3);
      assert.equal(s?.lastEventId, "scan-TN10000009-1");
      assert.equal(s?.delivered, true);
    });

    it("stores revisions of shipments it holds in one statement, without reading them first", async () => {
      const t = setup();
      await t.keeper.onShipmentsCreated([created("TN10000020"), created("TN10000021")]); // held at revision 1
      const before = t.statements();
      const outcomes = await t.keeper.onScans([
        t.scanEvent("TN10000020", 1, ScanKind.HUB_ARRIVAL, "BBB", at(1, 12)), // on plan
        t.scanEvent("TN10000020", 2, ScanKind.HUB_ARRIVAL, "BBB", at(1, 13)), // late: re-planned
        t.scanEvent("TN10000021", 1, ScanKind.DELIVERED, "", at(1, 18)),
      ]);
      assert.deepEqual(outcomes.map((o) => o.kind), ["ack", "ack", "ack"]);
      assert.equal(t.statements() - before, 1, "the revisions' compare-and-set is the only check");
      assert.equal(t.calls.get("getChanged") ?? 0, 0);
      assert.deepEqual(t.updates().map((u) => [u.trackingNumber, u.route?.revision, u.reason]), [
        ["TN10000020", 2, EtaChangeReason.LATE_ARRIVAL],
        ["TN10000021", 2, EtaChangeReason.DELIVERED],
      ]);
    });

    it("reads the shipments decided as unchanged in the statement that stores the others' revisions", async () => {
      const t = setup();
      await t.keeper.onShipmentsCreated([created("TN10000022"), created("TN10000023")]);
      const before = t.statements();
      const outcomes = await t.keeper.onScans([
        t.scanEvent("TN10000022", 1, ScanKind.HUB_ARRIVAL, "BBB", at(1, 13)), // late: re-planned
        t.scanEvent("TN10000023", 1, ScanKind.HUB_ARRIVAL, "BBB", at(1, 12)), // on plan
      ]);
      assert.deepEqual(outcomes.map((o) => o.kind), ["ack", "ack"]);
      assert.equal(t.statements() - before, 1);
      assert.equal(t.calls.get("saveRevisionsAndGetChanged"), 1);
      // Nothing changes: one read, no write.
      const quiet = t.statements();
      await t.keeper.onScans([t.scanEvent("TN10000023", 2, ScanKind.HUB_DEPARTURE, "BBB", at(1, 14))]);
      assert.equal(t.statements() - quiet, 1);
    });

    it("decides again from the store when the shipment it holds was revised elsewhere, scans on plan included", async () => {
      const t = setup();
      await t.keeper.onShipmentsCreated([created("TN10000024")]); // held at revision 1: AAA > BBB > DDD
      // Another replica moves it to CCC > DDD.
      const s = (await t.raw.get("TN10000024"))!;
      const route = create(RouteSchema, { ...s.route!, legs: s.route!.legs.filter((l) => l.fromHub !== "AAA").map((l) => ({ ...l })) });
      route.legs[0]!.fromHub = "CCC";
      await t.raw.saveRevision(s.trackingNumber, s.revision, { route, reason: EtaChangeReason.DISRUPTION, detail: "elsewhere", revisedAt: new Date(DAY1), eventId: "dis-2", avoidedDisruptions: [] });
      // On plan for the held route, then late at BBB for it: decided from the stored route, the first
      // is from a hub it never leaves.
      const outcomes = await t.keeper.onScans([
        t.scanEvent("TN10000024", 1, ScanKind.HUB_DEPARTURE, "AAA", at(1, 10)),
        t.scanEvent("TN10000024", 2, ScanKind.HUB_ARRIVAL, "BBB", at(1, 13)),
      ]);
      assert.deepEqual(outcomes.map((o) => o.kind), ["ack", "ack"]);
      assert.deepEqual(t.updates().map((u) => [u.route?.revision, u.reason]), [
        [3, EtaChangeReason.UNPLANNED_HUB],
      ]);
    });

    /** Messages and states without route ids (opaque ids drawn in a different order on the two paths). */
    const norm = (v: unknown): unknown => v === undefined ? v : JSON.parse(JSON.stringify(v, (k, x: unknown) => (k === "routeId" ? "" : typeof x === "bigint" ? x.toString() : x)));

    it("gives the batch path's routes, events and outcomes the one-event path gives, with other replicas writing before and during batches", async () => {
      /** How often each path was taken, over all seeds. */
      const paths = { combined: 0, unreadBatches: 0, oneEvent: 0, createdUnread: 0 };
      for (let seed = 1; seed <= 60; seed++) {
        const rnd = seededRandom(seed);
        const pick = <X>(xs: readonly X[]): X => xs[Math.floor(rnd() * xs.length)]!;
        const t = setup({ cacheSize: rnd() < 0.2 ? 2 : 10_000 }); // the batch path
        const r = setup(); // the reference: one event at a time, each read from the store
        const tns = Array.from({ length: 5 }, (_, k) => `TN${seed}X${k}`);
        const events: Array<ReturnType<typeof t.scanEvent>> = [];
        const otherWrite = async (b: number) => {
          const tn = pick(tns);
          const s = await r.raw.get(tn);
          if (!s?.route || s.delivered) return undefined;
          const deliver = rnd() < 0.3;
          const route = create(RouteSchema, { ...s.route, legs: s.route.legs.length > 1 && !deliver ? s.route.legs.slice(1) : s.route.legs });
          const rev = { route, reason: deliver ? EtaChangeReason.DELIVERED : EtaChangeReason.DISRUPTION, detail: "elsewhere", revisedAt: new Date(DAY1), eventId: `other-${b}`, avoidedDisruptions: [], delivered: deliver };
          return async (raw: RouteStore) => raw.saveRevision(tn, s.revision, rev);
        };
        /** Runs `write` on the batch path's store inside its first batch statement (after the batch decided from what it holds). */
        const during = (write: (raw: RouteStore) => Promise<void>) => {
          const raw = t.raw as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
          const names = ["getChanged", "saveRevisions", "saveRevisionsAndGetChanged", "createMany"];
          const saved = names.map((n) => raw[n]!);
          let done = false;
          names.forEach((n, k) => {
            raw[n] = async (...args: unknown[]) => {
              if (!done) {
                done = true;
                names.forEach((m, j) => (raw[m] = saved[j]!));
                await write(t.raw);
              }
              return saved[k]!.apply(t.raw, args);
            };
          });
        };
        const compare = async (label: string, got: string[], want: string[]) => {
          assert.deepEqual(got, want, `${label}: outcomes`);
          for (const tn of [...tns, "TNNEW"]) {
            const of = (x: typeof t) => norm(x.published.filter((p) => (p.message as { trackingNumber: string }).trackingNumber === tn).map((p) => [p.msgId, p.message]));
            assert.deepEqual(of(t), of(r), `${label}: events of ${tn}`);
            assert.deepEqual(norm(await t.raw.get(tn)), norm(await r.raw.get(tn)), `${label}: state of ${tn}`);
            assert.deepEqual(norm(await t.raw.etaHistory(tn)), norm(await r.raw.etaHistory(tn)), `${label}: history of ${tn}`);
          }
        };

        // Creation: some shipments already registered by another replica (the same event, or another one).
        for (const tn of tns.slice(0, 2)) for (const x of [t, r]) await x.keeper.onShipmentCreated(created(tn, "CCC").event, "eu");
        const creations = tns.map((tn) => created(tn, pick(["AAA", "CCC", "EEE"])));
        creations[1]!.event.eventId = "created-elsewhere";
        creations.push(created(pick(tns)), created("TNNEW", "ZZZ"), created(tns[0]!, "ZZZ"));
        const firstBatch = creations.filter(() => rnd() < 0.8);
        const createdOutcomes = (await t.keeper.onShipmentsCreated(firstBatch)).map((o) => o.kind);
        if (!t.calls.has("getChanged")) paths.createdUnread++;
        const wantCreated: string[] = [];
        for (const c of firstBatch) {
          try {
            await r.keeper.onShipmentCreated(c.event, c.region);
            wantCreated.push("ack");
          } catch (e) {
            wantCreated.push(unplannable(e) ? "poison" : "retry");
          }
        }
        await compare(`seed ${seed} creation`, createdOutcomes, wantCreated);

        for (let b = 0; b < 6; b++) {
          const now = at(1, 6 + b * 4);
          t.setNow(now);
          r.setNow(now);
          if (rnd() < 0.3) {
            const w = await otherWrite(b);
            if (w) for (const x of [t, r]) await w(x.raw);
          }
          const batch = [];
          for (let n = 1 + Math.floor(rnd() * 7); n > 0; n--) {
            const tn = pick(tns);
            const s = await r.raw.get(tn);
            const legs = s?.route?.legs ?? [];
            const leg = legs.length > 0 ? pick(legs) : undefined;
            const k = rnd();
            const id = events.length + 1;
            let ev;
            if (k < 0.1 && events.length > 0) {
              ev = pick(events); // a redelivery
            } else if (k < 0.2 || !leg) {
              ev = t.scanEvent(tn, id, ScanKind.DELIVERED, "", now + h(1) * 60_000);
            } else if (k < 0.3) {
              ev = t.scanEvent(tn, id, ScanKind.HUB_ARRIVAL, "EEE", msOf(leg.plannedArrival));
            } else if (k < 0.35) {
              ev = t.scanEvent(tn, id, ScanKind.HUB_ARRIVAL, leg.toHub, 0);
              ev.scan!.eventTime = { $typeName: "google.protobuf.Timestamp", seconds: 10n ** 12n, nanos: 0 };
            } else {
              const kind = rnd() < 0.5 ? ScanKind.HUB_ARRIVAL : ScanKind.HUB_DEPARTURE;
              const planned = msOf(kind === ScanKind.HUB_ARRIVAL ? leg.plannedArrival : leg.plannedDeparture);
              const off = pick([0, 10, -10, 90, -90, 600, 24 * 60]) * 60_000;
              ev = t.scanEvent(tn, id, kind, kind === ScanKind.HUB_ARRIVAL ? leg.toHub : leg.fromHub, planned + off);
            }
            events.push(ev);
            batch.push(ev);
          }
          if (rnd() < 0.3) {
            const w = await otherWrite(100 + b);
            if (w) {
              await w(r.raw);
              during(w);
            }
          }
          const reads = [t.calls.get("getChanged") ?? 0, t.calls.get("saveRevisionsAndGetChanged") ?? 0, t.calls.get("get") ?? 0];
          const got = (await t.keeper.onScans(batch)).map((o) => o.kind);
          if ((t.calls.get("getChanged") ?? 0) === reads[0] && (t.calls.get("saveRevisionsAndGetChanged") ?? 0) === reads[1]) paths.unreadBatches++;
          if ((t.calls.get("saveRevisionsAndGetChanged") ?? 0) > reads[1]!) paths.combined++;
          if ((t.calls.get("get") ?? 0) > reads[2]!) paths.oneEvent++;
          const want: string[] = [];
          for (const ev of batch) {
            try {
              await r.keeper.onScan(ev);
              want.push("ack");
            } catch (e) {
              want.push(unplannable(e) ? "poison" : "retry");
            }
          }
          await compare(`seed ${seed} batch ${b}`, got, want);
        }
      }
      for (const [path, n] of Object.entries(paths)) assert.ok(n >= 5, `the generated batches take each path: ${path} ${n}`);
    });
  });
});
