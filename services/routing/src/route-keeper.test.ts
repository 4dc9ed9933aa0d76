import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { EtaChangeReason } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema, RouteUpdatedSchema, type RouteUpdated } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { DisruptionCause } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { createSubjects } from "@logistics/shared/nats";
import { createHubNetwork, type HubRecord } from "./hub-network.js";
import { createPlanner } from "./planner.js";
import { msOf } from "./route-mapping.js";
import { createRouteKeeper } from "./route-keeper.js";
import { ConcurrentUpdateError, type RouteStore, type ShipmentRoute, type StoredDisruption, type StoredEtaRevision } from "./route-store.js";
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
    async create(s, first) {
      if (shipments.has(s.trackingNumber)) return false;
      shipments.set(s.trackingNumber, {
        ...s, revision: first ? 1 : 0, route: first?.route, previousEta: undefined, delivered: false,
        lastReason: first?.reason ?? EtaChangeReason.UNSPECIFIED, lastDetail: first?.detail ?? "", avoidedDisruptions: first?.avoidedDisruptions ?? [],
      });
      if (first) history.set(s.trackingNumber, [{ revision: 1, eta: first.route.eta, reason: first.reason, detail: first.detail, revisedAt: first.revisedAt }]);
      return true;
    },
    async saveRevision(tn, expected, r) {
      const s = shipments.get(tn);
      if (!s || s.revision !== expected) throw new ConcurrentUpdateError(tn);
      shipments.set(tn, {
        ...s, revision: expected + 1, route: r.route, previousEta: s.route?.eta, lastEventId: r.eventId, lastReason: r.reason,
        lastDetail: r.detail, avoidedDisruptions: r.avoidedDisruptions, delivered: s.delivered || r.delivered === true,
      });
      history.get(tn)!.push({ revision: expected + 1, eta: r.route.eta, reason: r.reason, detail: r.detail, revisedAt: r.revisedAt });
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

function setup() {
  const store = memoryStore();
  const published: { subject: string; type: string; message: unknown; msgId: string }[] = [];
  let now = DAY1;
  let id = 0;
  const keeper = createRouteKeeper({
    network,
    planner: createPlanner(network),
    spatial: createSpatialIndex(network.hubs),
    store,
    publisher: {
      async publish<D extends DescMessage>(subject: string, schema: D, message: MessageShape<D>, o: { msgId: string }) {
        published.push({ subject, type: schema.typeName, message, msgId: o.msgId });
        return { seq: published.length, duplicate: false, stream: "S" };
      },
    },
    subjects: createSubjects("unit"),
    clock: () => new Date(now),
    newId: () => `id${++id}`,
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
  const scan = (tn: string, n: number, kind: ScanKind, hubCode: string, at: number) =>
    keeper.onScan(
      create(ScanRecordedSchema, {
        eventId: `scan-${tn}-${n}`,
        scan: { eventId: `c-${n}`, trackingNumber: tn, carrierCode: "acme", eventTime: timestampFromMs(at), hubCode },
        kind,
        region: "eu",
      }),
    );
  return { keeper, store, published, updates, ship, scan, setNow: (t: number) => (now = t) };
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
      target: { case: "area", value: { lat: 51, lon: 9, radiusKm: 30 } },
      startsAt: at(1, 0),
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
      startsAt: at(3, 0),
      endsAt: at(4, 0),
      cause: DisruptionCause.CAPACITY,
      description: "",
    });
    assert.equal(res.replanned, 0);
    assert.equal(t.updates().length, 0);
  });
});
