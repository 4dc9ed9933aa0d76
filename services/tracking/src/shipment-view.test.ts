import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate, timestampFromMs, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { seededRandom } from "@logistics/shared/testing";
import { GeoPointSchema, PlaceSchema } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import { EtaChangeReason, EtaSchema, RouteSchema, TransportMode, type RouteLegJson } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { CarrierStatusSchema, ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel, ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema, RouteUpdatedSchema } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { ShipmentEventKind, ShipmentSchema, type Shipment } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { carrierStatusJson, etaJson, iso, legJson, pick, placeJson, planJson, shipmentEvents } from "../test/store/doc-generators.js";
import { handedOver, partnerRemoved } from "../test/store/event-builders.js";
import { applyToDoc } from "./store/derive.js";
import { eventKey } from "./store/events.js";
import type { ProjectedEvent, ShipmentDoc, StoredEvent } from "./store/ports.js";
import { assertReplayable, docAtVersion, HistoryGapError, stepsBetween, VersionsTrimmedError } from "./shipment-history.js";
import { trimDocument } from "./store/trim-document.js";
import {
  describeEvent,
  docTime,
  isPublicEvent,
  legActualsFromScans,
  publicShipment,
  publicShipmentEvent,
  shipmentEta,
  shipmentEventMessage,
  shipmentMessage,
} from "./shipment-view.js";

const TN = "ABCD12345678";
const created: ProjectedEvent = {
  type: "shipment.created",
  message: create(ShipmentCreatedSchema, {
    eventId: "c1",
    trackingNumber: TN,
    createdAt: timestampFromMs(Date.UTC(2026, 10, 20, 8)),
    shipmentId: "s1",
    carrierCode: "acme",
    customerId: "cust-1",
    customerReference: "order-9",
    serviceLevel: ServiceLevel.EXPRESS,
    origin: { countryCode: "DE", city: "Frankfurt", postalCode: "60311", location: { latitude: 50.11, longitude: 8.68 } },
    destination: { countryCode: "FR", city: "Paris", postalCode: "75001", location: { latitude: 48.86, longitude: 2.35 } },
  }),
};
const scan = (id: string, hour: number, kind: ScanKind, hubCode?: string, status = ShipmentStatus.UNSPECIFIED): ProjectedEvent => ({
  type: "scan.recorded",
  message: create(ScanRecordedSchema, {
    eventId: id,
    kind,
    status,
    scan: {
      trackingNumber: TN,
      eventTime: timestampFromMs(Date.UTC(2026, 10, 20, hour)),
      carrierCode: "acme",
      rawStatus: { code: `K${kind}`, text: "raw" },
      ...(hubCode ? { hubCode, location: { latitude: 50.0333, longitude: 8.5706 } } : {}),
      note: "left with neighbour",
    },
  }),
});

/** A history entry for an event, applied a second after its event time. */
function stored(event: ProjectedEvent, late = false): StoredEvent {
  const { eventId, trackingNumber, eventTime } = eventKey(event);
  return { event, eventId, trackingNumber, eventTime, late, appliedAt: timestampFromMs(Date.parse(eventTime) + 1000) };
}

function fold(events: ProjectedEvent[]): ShipmentDoc {
  let doc: ShipmentDoc | undefined;
  for (const e of events) doc = applyToDoc(doc, e).doc;
  return doc as ShipmentDoc;
}

describe("shipmentMessage / publicShipment", () => {
  const doc = fold([created, scan("s1", 9, ScanKind.PICKUP), scan("s2", 10, ScanKind.HUB_ARRIVAL, "FRA")]);

  it("renders every field of the document for internal callers", () => {
    const s = shipmentMessage(doc);
    assert.equal(s.customerId, "cust-1");
    assert.equal(s.customerReference, "order-9");
    assert.equal(s.status, ShipmentStatus.IN_TRANSIT);
    assert.equal(s.currentHubCode, "FRA");
    assert.equal(s.version, 3n);
    assert.equal(s.eventCount, 3);
    assert.equal(s.destination?.postalCode, "75001");
    assert.equal(s.currentLocation?.latitude, 50.0333);
  });

  it("strips internal fields and coarsens places and position for the public view", () => {
    const p = publicShipment(shipmentMessage(doc));
    assert.equal(p.trackingNumber, TN);
    assert.equal(p.customerId, "");
    assert.equal(p.customerReference, "");
    assert.equal(p.shipmentId, "");
    assert.equal(p.carrierCode, "");
    assert.equal(p.createdAt, undefined);
    assert.equal(p.eventCount, 0);
    assert.equal(p.destination?.postalCode, "");
    assert.equal(p.destination?.location, undefined);
    assert.equal(p.destination?.city, "Paris");
    assert.equal(p.currentLocation?.latitude, 50);
    assert.equal(p.currentLocation?.longitude, 8.6);
    assert.equal(p.status, ShipmentStatus.IN_TRANSIT);
    assert.equal(p.version, 3n);
  });

  it("strips event ids, recorded times and late flags from public events", () => {
    const e = shipmentEventMessage(stored(scan("s2", 10, ScanKind.HUB_ARRIVAL, "FRA"), true));
    assert.equal(e.late, true);
    assert.deepEqual(e.eventTime, timestampFromMs(Date.UTC(2026, 10, 20, 10)));
    assert.equal(e.kind, ShipmentEventKind.SCAN);
    assert.equal(e.description, "Arrived at hub FRA");
    assert.equal(e.status, ShipmentStatus.IN_TRANSIT);
    const p = publicShipmentEvent(e);
    assert.equal(p.eventId, "");
    assert.equal(p.late, false);
    assert.equal(p.recordedAt, undefined);
    assert.equal(p.hubCode, "FRA");
    assert.equal(p.location?.latitude, 50);
  });

  it("keeps the carrier's text but not its raw code in the public view", () => {
    const s = shipmentMessage(doc);
    assert.equal(s.lastCarrierStatus?.code, `K${ScanKind.HUB_ARRIVAL}`);
    const p = publicShipment(s);
    assert.equal(p.lastCarrierStatus?.text, "raw");
    assert.equal(p.lastCarrierStatus?.code, "");
    const e = shipmentEventMessage(stored(scan("s2", 10, ScanKind.HUB_ARRIVAL, "FRA")));
    assert.equal(e.carrierStatus?.code, `K${ScanKind.HUB_ARRIVAL}`);
    assert.equal(publicShipmentEvent(e).carrierStatus?.code, "");
    assert.equal(publicShipmentEvent(e).carrierStatus?.text, "raw");
  });

  it("keeps routing's events out of the public history", () => {
    assert.equal(isPublicEvent({ kind: ShipmentEventKind.ROUTE_PLANNED }), false);
    assert.equal(isPublicEvent({ kind: ShipmentEventKind.ROUTE_UPDATED }), false);
    assert.equal(isPublicEvent({ kind: ShipmentEventKind.SCAN }), true);
    assert.equal(isPublicEvent({ kind: ShipmentEventKind.CREATED }), true);
    assert.equal(isPublicEvent({ kind: ShipmentEventKind.STATUS_CORRECTED }), true);
  });

  it("calls a customs exception a hold at customs", () => {
    assert.equal(describeEvent(scan("h", 1, ScanKind.CUSTOMS, "FRA", ShipmentStatus.EXCEPTION)), "Held at customs");
  });

  it("describes a correction as STATUS_CORRECTED", () => {
    assert.equal(describeEvent(scan("x", 1, ScanKind.CORRECTION)), "Status corrected");
  });
});

describe("handovers to partner carriers", () => {
  const handover = handedOver(TN, "h1", Date.UTC(2026, 10, 20, 11), "lastmile", "CDG");
  const doc = fold([created, scan("s1", 9, ScanKind.PICKUP), handover]);

  it("render as a HANDED_OVER event naming the partner and the hub, without a status, for internal callers", () => {
    const e = shipmentEventMessage(stored(handover));
    assert.equal(e.kind, ShipmentEventKind.HANDED_OVER);
    assert.equal(e.eventId, "h1");
    assert.deepEqual(e.eventTime, timestampFromMs(Date.UTC(2026, 10, 20, 11)));
    assert.equal(e.partnerCarrierCode, "lastmile");
    assert.equal(e.hubCode, "CDG");
    assert.equal(e.status, ShipmentStatus.UNSPECIFIED);
    assert.equal(e.scanKind, ScanKind.UNSPECIFIED);
    assert.equal(e.description, "Handed over to lastmile at hub CDG");
    assert.equal(describeEvent(handedOver(TN, "h2", 0, "courier-b")), "Handed over to courier-b");
  });

  it("are public events whose partner, like the shipment's carrier, stays internal", () => {
    const e = shipmentEventMessage(stored(handover));
    assert.equal(isPublicEvent(e), true);
    const p = publicShipmentEvent(e);
    assert.equal(p.kind, ShipmentEventKind.HANDED_OVER);
    assert.deepEqual(p.eventTime, e.eventTime);
    assert.equal(p.hubCode, "CDG");
    assert.equal(p.partnerCarrierCode, "");
    assert.equal(p.description, "Handed over to a partner carrier at hub CDG");
    assert.doesNotMatch(p.description, /lastmile/);
  });

  it("list the partners in the full Shipment only, leaving status and version rules as for any event", () => {
    const s = shipmentMessage(doc);
    assert.deepEqual(s.partnerCarrierCodes, ["lastmile"]);
    assert.equal(s.carrierCode, "acme");
    assert.equal(s.status, ShipmentStatus.IN_TRANSIT);
    assert.equal(s.version, 3n);
    const p = publicShipment(s);
    assert.deepEqual(p.partnerCarrierCodes, []);
    assert.equal(p.carrierCode, "");
  });
});

describe("partner removals", () => {
  const removal = partnerRemoved(TN, "r1", Date.UTC(2026, 10, 20, 12), "lastmile");
  const doc = fold([created, handedOver(TN, "h1", Date.UTC(2026, 10, 20, 11), "lastmile", "CDG"), removal]);

  it("render as a PARTNER_REMOVED event naming the partner, without a status, for internal callers", () => {
    const e = shipmentEventMessage(stored(removal));
    assert.equal(e.kind, ShipmentEventKind.PARTNER_REMOVED);
    assert.equal(e.eventId, "r1");
    assert.deepEqual(e.eventTime, timestampFromMs(Date.UTC(2026, 10, 20, 12)));
    assert.equal(e.partnerCarrierCode, "lastmile");
    assert.equal(e.status, ShipmentStatus.UNSPECIFIED);
    assert.equal(e.description, "Partner carrier lastmile removed");
  });

  it("are internal events, left out of the public history like routing's", () => {
    assert.equal(isPublicEvent(shipmentEventMessage(stored(removal))), false);
  });

  it("take the partner off the full Shipment, one version later", () => {
    const s = shipmentMessage(doc);
    assert.deepEqual(s.partnerCarrierCodes, []);
    assert.equal(s.carrierCode, "acme");
    assert.equal(s.version, 3n);
  });
});

describe("route plans from routing events to the Shipment message", () => {
  const at = (hour: number) => timestampFromDate(new Date(Date.UTC(2026, 10, 20, hour)));
  const leg = (fromHub: string, toHub: string, mode: TransportMode, depart: number, arrive: number) => ({
    fromHub,
    toHub,
    mode,
    plannedDeparture: at(depart),
    plannedArrival: at(arrive),
    departureId: `${fromHub}_${toHub}`,
  });
  const planned = create(RoutePlannedSchema, {
    eventId: "route.1",
    trackingNumber: TN,
    route: {
      routeId: "r_secret",
      trackingNumber: TN,
      legs: [leg("FRA", "CDG", TransportMode.AIR, 11, 13), leg("CDG", "PAR1", TransportMode.ROAD, 14, 16)],
      eta: { estimatedArrival: at(30) },
      revision: 1,
      plannedAt: at(8),
    },
    plannedAt: at(8),
  });
  const updated = create(RouteUpdatedSchema, {
    eventId: "route.2",
    trackingNumber: TN,
    route: {
      routeId: "r_secret",
      trackingNumber: TN,
      legs: [leg("FRA", "AMS", TransportMode.RAIL, 12, 15), leg("AMS", "PAR1", TransportMode.ROAD, 16, 20)],
      eta: { estimatedArrival: at(34) },
      revision: 2,
      plannedAt: at(10),
    },
    reason: EtaChangeReason.MISSED_CUTOFF,
    updatedAt: at(10),
  });

  it("renders the newest route's legs, revision and ETA, and keeps them (without route_id) in the public view", () => {
    // The update arrives first; the older plan arriving afterwards must not replace its legs.
    const doc = fold([created, { type: "route.updated", message: updated }, { type: "route.planned", message: planned }]);
    const s = shipmentMessage(doc);
    assert.equal(s.route?.routeId, "r_secret");
    assert.equal(s.route?.trackingNumber, TN);
    assert.equal(s.route?.revision, 2);
    assert.deepEqual(s.route?.legs.map((l) => [l.fromHub, l.toHub, l.mode, l.departureId]), [
      ["FRA", "AMS", TransportMode.RAIL, "FRA_AMS"],
      ["AMS", "PAR1", TransportMode.ROAD, "AMS_PAR1"],
    ]);
    assert.deepEqual(s.route?.legs[0]?.plannedDeparture, at(12));
    assert.deepEqual(s.route?.legs[1]?.plannedArrival, at(20));
    assert.deepEqual(s.route?.eta?.estimatedArrival, at(34));
    assert.deepEqual(s.route?.plannedAt, at(10));
    const p = publicShipment(s);
    assert.equal(p.route?.routeId, "");
    assert.deepEqual(p.route?.legs, s.route?.legs);
    assert.deepEqual(p.route?.eta, s.route?.eta);
  });

  it("gives travelled legs their actual times from the scans, and says why the ETA changed", () => {
    const doc = fold([
      created,
      { type: "route.updated", message: updated },
      scan("d1", 11, ScanKind.HUB_DEPARTURE, "FRA"),
      scan("a1", 14, ScanKind.HUB_ARRIVAL, "AMS"),
      scan("d2", 15, ScanKind.HUB_DEPARTURE, "AMS"),
    ]);
    const s = shipmentMessage(doc);
    assert.equal(s.etaChangeReason, EtaChangeReason.MISSED_CUTOFF);
    assert.deepEqual(s.route?.legs[0]?.actualDeparture, at(11));
    assert.deepEqual(s.route?.legs[0]?.actualArrival, at(14));
    assert.deepEqual(s.route?.legs[1]?.actualDeparture, at(15));
    assert.equal(s.route?.legs[1]?.actualArrival, undefined, "not arrived yet");
    assert.deepEqual(s.route?.legs[0]?.plannedDeparture, at(12), "planned times stay for comparison");
    const p = publicShipment(s);
    assert.equal(p.etaChangeReason, EtaChangeReason.MISSED_CUTOFF);
    assert.deepEqual(p.route?.legs, s.route?.legs);
  });

  it("keeps routing's actual times where no scan shows them", () => {
    const withActual = create(RouteUpdatedSchema, {
      ...updated,
      eventId: "route.3",
      route: { ...updated.route!, legs: [{ ...updated.route!.legs[0]!, actualArrival: at(13) }, updated.route!.legs[1]!] },
    });
    const s = shipmentMessage(fold([created, { type: "route.updated", message: withActual }]));
    assert.deepEqual(s.route?.legs[0]?.actualArrival, at(13));
  });

  it("leaves the route unset before routing planned one", () => {
    assert.equal(shipmentMessage(fold([created])).route, undefined);
  });
});

describe("legActualsFromScans", () => {
  const leg = (fromHub: string, toHub: string) => ({ fromHub, toHub, mode: TransportMode.AIR });
  const entry = (eventId: string, hour: number, kind: ScanKind, hubCode: string) => ({
    eventId,
    eventTime: new Date(Date.UTC(2026, 10, 20, hour)).toISOString(),
    kind,
    status: ShipmentStatus.IN_TRANSIT,
    hubCode,
  });
  const hour = (h: number) => new Date(Date.UTC(2026, 10, 20, h)).toISOString();

  it("matches departures and arrivals to legs in travel order", () => {
    const timeline = [
      entry("1", 1, ScanKind.HUB_ARRIVAL, "FRA"),
      entry("2", 2, ScanKind.HUB_DEPARTURE, "FRA"),
      entry("3", 5, ScanKind.HUB_ARRIVAL, "JFK"),
      entry("4", 6, ScanKind.CUSTOMS, "JFK"),
      entry("5", 8, ScanKind.HUB_DEPARTURE, "JFK"),
    ];
    assert.deepEqual(legActualsFromScans([leg("FRA", "JFK"), leg("JFK", "ORD"), leg("ORD", "CHI1")], timeline), [
      { departure: hour(2), arrival: hour(5) },
      { departure: hour(8) },
      {},
    ]);
  });

  it("does not take a later visit's scans for an earlier leg through the same hub", () => {
    // A → B → A → C: the second departure from A belongs to the third leg.
    const timeline = [
      entry("1", 1, ScanKind.HUB_DEPARTURE, "AAA"),
      entry("2", 2, ScanKind.HUB_ARRIVAL, "BBB"),
      entry("3", 3, ScanKind.HUB_DEPARTURE, "BBB"),
      entry("4", 4, ScanKind.HUB_ARRIVAL, "AAA"),
      entry("5", 5, ScanKind.HUB_DEPARTURE, "AAA"),
    ];
    assert.deepEqual(legActualsFromScans([leg("AAA", "BBB"), leg("BBB", "AAA"), leg("AAA", "CCC")], timeline), [
      { departure: hour(1), arrival: hour(2) },
      { departure: hour(3), arrival: hour(4) },
      { departure: hour(5) },
    ]);
  });

  it("leaves a leg without scans empty (an arrival alone still counts)", () => {
    assert.deepEqual(legActualsFromScans([leg("FRA", "JFK")], [entry("1", 5, ScanKind.HUB_ARRIVAL, "JFK")]), [{ arrival: hour(5) }]);
    assert.deepEqual(legActualsFromScans([leg("FRA", "JFK")], []), [{}]);
  });
});

describe("shipment history replay", () => {
  // Applied out of event-time order: the delivery scan arrived before the hub scan.
  const applied = [created, scan("s3", 12, ScanKind.DELIVERED), scan("s1", 9, ScanKind.PICKUP), scan("s2", 10, ScanKind.HUB_ARRIVAL, "FRA")];
  const target = fold(applied);
  const history = new Map(applied.map((e) => [e.message.eventId, stored(e)]));

  it("rebuilds every intermediate version in applied order", () => {
    const steps = stepsBetween(undefined, target, history);
    assert.deepEqual(steps.map((s) => s.version), [1, 2, 3, 4]);
    assert.deepEqual(steps.map((s) => s.cause.eventId), ["c1", "s3", "s1", "s2"]);
    assert.deepEqual(steps.map((s) => s.doc.status), [
      ShipmentStatus.INFO_RECEIVED,
      ShipmentStatus.DELIVERED,
      ShipmentStatus.DELIVERED,
      ShipmentStatus.DELIVERED,
    ]);
    assert.deepEqual(steps.at(-1)?.doc, target);
  });

  it("ends at the target document itself (shared renderings), while an older version is replayed whole", () => {
    const steps = stepsBetween(undefined, target, history);
    assert.equal(steps.at(-1)?.doc, target, "the target object, not a copy");
    const at3 = docAtVersion(target, 3, history);
    assert.deepEqual(at3, steps[2]?.doc);
    assert.deepEqual(at3.derivation.eventIds, ["c1", "s3", "s1"]);
    assert.equal(at3.hubCode, undefined, "not the newest version's hub");
  });

  it("continues from a given version without repeating it", () => {
    const at2 = docAtVersion(target, 2, history);
    assert.equal(at2.version, 2);
    assert.deepEqual(stepsBetween(at2, target, history).map((s) => s.version), [3, 4]);
  });

  it("replays a document that only dropped timeline entries from version 1, to the same state", () => {
    const trimmed = trimDocument(target, 1, 1);
    assert.equal(trimmed?.derivation.trimmed?.entries, 1);
    assert.equal(trimmed?.derivation.trimmed?.ids, 0);
    const at3 = docAtVersion(trimmed, 3, history);
    assert.deepEqual(at3, docAtVersion(target, 3, history), "the versions before carry no trim");
    const steps = stepsBetween(at3, trimmed, history);
    assert.equal(steps.at(-1)?.doc, trimmed);
  });

  it("refuses the versions a document that dropped event ids no longer lists, and replays the others", () => {
    const at2 = docAtVersion(target, 2, history);
    const dropped = trimDocument(target, JSON.stringify(target).length, 2);
    assert.ok(dropped);
    assert.equal(dropped.derivation.trimmed?.ids, 2);
    assert.deepEqual(dropped.derivation.eventIds, ["s1", "s2"]);
    assert.throws(() => docAtVersion(dropped, 3, history), VersionsTrimmedError);
    assert.throws(() => stepsBetween(undefined, dropped, history), VersionsTrimmedError);
    assert.throws(() => stepsBetween(docAtVersion(target, 1, history), dropped, history), VersionsTrimmedError);
    assert.throws(() => assertReplayable(1, dropped), VersionsTrimmedError);
    assertReplayable(4, dropped);
    assertReplayable(at2, dropped);
    const steps = stepsBetween(at2, dropped, history);
    assert.deepEqual(steps.map((s) => [s.version, s.cause.eventId]), [[3, "s1"], [4, "s2"]]);
    assert.equal(steps.at(-1)?.doc, dropped);
  });

  it("reports a history that lacks an applied event", () => {
    const partial = new Map(history);
    partial.delete("s1");
    assert.throws(() => stepsBetween(undefined, target, partial), HistoryGapError);
  });
});

/**
 * The Shipment of a document as it was rendered before the hand-written readers: every nested
 * value through `fromJson`, the message through `create`. The reference the rendering is pinned to.
 */
function referenceShipmentMessage(doc: ShipmentDoc): Shipment {
  const time = (iso: string | undefined) => (iso === undefined ? undefined : fromJson(TimestampSchema, iso));
  const route = () => {
    const plan = doc.route;
    if (!plan) return undefined;
    const legs = plan.legs ?? [];
    const actuals = legActualsFromScans(legs, doc.derivation.timeline);
    return fromJson(RouteSchema, {
      ...plan,
      trackingNumber: doc.trackingNumber,
      ...(doc.eta ? { eta: doc.eta } : {}),
      legs: legs.map((leg, i) => {
        const { departure, arrival } = actuals[i] ?? {};
        return { ...leg, ...(departure ? { actualDeparture: departure } : {}), ...(arrival ? { actualArrival: arrival } : {}) };
      }),
    } as JsonValue);
  };
  const currentHub = () => {
    // The newest entry with a hub, among those kept and the newest one a trim dropped.
    const dropped = doc.derivation.trimmed?.hubEntry;
    const withHub = [...doc.derivation.timeline, ...(dropped ? [dropped] : [])].filter((e) => e.hubCode);
    withHub.sort((a, b) => (a.eventTime === b.eventTime ? (a.eventId < b.eventId ? -1 : 1) : a.eventTime < b.eventTime ? -1 : 1));
    return withHub.at(-1)?.hubCode ?? doc.hubCode ?? "";
  };
  const delivered = doc.status === ShipmentStatus.DELIVERED;
  return create(ShipmentSchema, {
    trackingNumber: doc.trackingNumber,
    shipmentId: doc.shipmentId ?? "",
    carrierCode: doc.carrierCode ?? "",
    customerId: doc.customerId ?? "",
    customerReference: doc.customerReference ?? "",
    serviceLevel: doc.serviceLevel ?? ServiceLevel.UNSPECIFIED,
    origin: doc.origin && fromJson(PlaceSchema, doc.origin as JsonValue),
    destination: doc.destination && fromJson(PlaceSchema, doc.destination as JsonValue),
    status: doc.status,
    lastCarrierStatus: doc.carrierStatus && fromJson(CarrierStatusSchema, doc.carrierStatus as JsonValue),
    statusTime: time(doc.statusTime),
    currentHubCode: currentHub(),
    currentLocation: doc.location && create(GeoPointSchema, doc.location),
    eta: delivered || !doc.eta ? undefined : fromJson(EtaSchema, doc.eta as JsonValue),
    route: route(),
    etaChangeReason: doc.etaReason ?? EtaChangeReason.UNSPECIFIED,
    createdAt: time(doc.derivation.createdKey?.split("|")[0]),
    updatedAt: time(doc.updatedAt),
    deliveredAt: delivered ? time(doc.statusTime) : undefined,
    version: BigInt(doc.version),
    eventCount: (doc.derivation.trimmed?.ids ?? 0) + doc.derivation.eventIds.length,
    partnerCarrierCodes: doc.partnerCarrierCodes ?? [],
    trimmedEventCount: doc.derivation.trimmed?.entries ?? 0,
  });
}

/** What a call gives: its value, or the message it throws. */
function outcome(f: () => unknown): { value: unknown } | { error: string } {
  try {
    return { value: f() };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * Every version of generated shipments' documents, as derived and as read back from the store
 * (JSON); now and then one trimmed as the store trims a document over its size limit.
 */
function generatedDocs(seed: number, shipments: number): ShipmentDoc[] {
  const random = seededRandom(seed);
  const docs: ShipmentDoc[] = [];
  for (let n = 0; n < shipments; n++) {
    let doc: ShipmentDoc | undefined;
    for (const e of shipmentEvents(random, n)) {
      doc = applyToDoc(doc, e).doc;
      if (random() < 0.1) doc = trimDocument(doc, Math.floor(random() * 600), 1) ?? doc;
      docs.push(doc, JSON.parse(JSON.stringify(doc)) as ShipmentDoc);
    }
  }
  return docs;
}

describe("shipmentMessage against the fromJson rendering", () => {
  it("renders every version of generated shipments exactly as fromJson and create did", () => {
    const docs = generatedDocs(21, 400);
    let rendered = 0;
    for (const doc of docs) {
      const want = outcome(() => referenceShipmentMessage(doc));
      assert.deepStrictEqual(outcome(() => shipmentMessage(doc)), want, JSON.stringify(doc));
      assert.deepStrictEqual(
        outcome(() => shipmentEta(doc)),
        outcome(() => (doc.status === ShipmentStatus.DELIVERED || !doc.eta ? undefined : fromJson(EtaSchema, doc.eta as JsonValue))),
        "shipmentEta",
      );
      if ("value" in want) rendered++;
    }
    assert.ok(rendered > docs.length * 0.8, `${rendered} of ${docs.length} rendered`);
    const trimmed = docs.filter((d) => d.derivation.trimmed);
    assert.ok(trimmed.some((d) => d.derivation.trimmed?.ids) && trimmed.some((d) => d.derivation.trimmed?.hubEntry), "trimmed documents among them");
    for (const d of trimmed) {
      const got = outcome(() => shipmentMessage(d).trimmedEventCount);
      if ("value" in got) assert.equal(got.value, d.derivation.trimmed?.entries);
    }
  });

  it("renders documents holding odd values (offset times, proto names, nulls, unknown keys, numbers as text) exactly as before", () => {
    const random = seededRandom(22);
    const docs = generatedDocs(23, 150);
    const times = ["statusTime", "updatedAt"] as const;
    for (let i = 0; i < docs.length; i++) {
      const doc = structuredClone(docs[i] as ShipmentDoc);
      // A few values of a document from elsewhere: a migration, an older writer, a hand edit.
      for (let k = 0; k < 3; k++) {
        const r = random();
        if (r < 0.15) doc[pick(random, times)] = iso(random);
        else if (r < 0.3) doc.origin = placeJson(random, 0.5) as ShipmentDoc["origin"];
        else if (r < 0.45) doc.eta = etaJson(random, 0.5) as ShipmentDoc["eta"];
        else if (r < 0.55) doc.carrierStatus = carrierStatusJson(random, 0.5) as ShipmentDoc["carrierStatus"];
        else if (r < 0.75) doc.route = planJson(random, 0.2) as ShipmentDoc["route"];
        else if (r < 0.85 && doc.route?.legs?.length) doc.route.legs[0] = legJson(random, 0.5) as RouteLegJson;
        else if (r < 0.9) doc.derivation.createdKey = `${iso(random)}|c`;
        else if (r < 0.95) delete doc.route;
        else delete doc.eta;
      }
      const label = JSON.stringify(doc);
      assert.deepStrictEqual(outcome(() => shipmentMessage(doc)), outcome(() => referenceShipmentMessage(doc)), label);
      assert.deepStrictEqual(
        outcome(() => docTime(doc.statusTime)),
        outcome(() => (doc.statusTime === undefined ? undefined : fromJson(TimestampSchema, doc.statusTime))),
        label,
      );
    }
  });
});
