import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  bySortKey,
  created,
  handedOver,
  idOf,
  jsonTime,
  partnerRemoved,
  planOf,
  route,
  routeWithLegs,
  scan as scanOf,
} from "../../test/store/event-builders.js";
import { seededRandom } from "@logistics/shared/testing";
import { shipmentEvents } from "../../test/store/doc-generators.js";
import { applyToDoc, roundCoordinate, sameEta } from "./derive.js";
import { eventJson } from "./events.js";
import { DocumentTooLargeError } from "./errors.js";
import type { ProjectedEvent, ShipmentDoc } from "./ports.js";
import { assertSize } from "./size.js";

const TN = "TN00000001";
/** Minutes into the test's morning, in epoch ms. */
const t = (minute: number) => Date.UTC(2026, 10, 1, 8, minute);

const scan = (id: string, minute: number, kind: ScanKind, extra: Parameters<typeof scanOf>[4] = {}) => scanOf(TN, id, t(minute), kind, extra);

/** A route event of `revision` whose legs run through `hubs`. */
const routed = (id: string, minute: number, eta: number, hubs: string[], revision: number) =>
  routeWithLegs(TN, id, t(minute), t(eta), hubs, revision);

function fold(events: readonly ProjectedEvent[]): ShipmentDoc | undefined {
  let doc: ShipmentDoc | undefined;
  for (const e of events) doc = applyToDoc(doc, e).doc;
  return doc;
}

function sortedByTime(events: readonly ProjectedEvent[]): ProjectedEvent[] {
  return [...events].sort(bySortKey);
}

function withSortedIds(doc: ShipmentDoc): ShipmentDoc {
  return { ...doc, derivation: { ...doc.derivation, eventIds: [...doc.derivation.eventIds].sort() } };
}

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((x, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [x, ...rest]));
}

describe("applyToDoc", () => {
  it("creates a document from the first event and counts versions per distinct event", () => {
    const r1 = applyToDoc(undefined, scan("a", 1, ScanKind.PICKUP));
    assert.equal(r1.doc.status, ShipmentStatus.IN_TRANSIT);
    assert.equal(r1.doc.version, 1);
    assert.equal(r1.statusChanged, true);
    const r2 = applyToDoc(r1.doc, scan("b", 2, ScanKind.OUT_FOR_DELIVERY));
    assert.equal(r2.doc.version, 2);
    assert.equal(r2.doc.status, ShipmentStatus.OUT_FOR_DELIVERY);
    assert.equal(r1.doc.version, 1, "the input document is not modified");
  });

  it("reports a repeated event id as a duplicate and returns the document unchanged", () => {
    const doc = fold([scan("a", 1, ScanKind.PICKUP)]);
    const r = applyToDoc(doc, scan("a", 1, ScanKind.PICKUP));
    assert.equal(r.duplicate, true);
    assert.equal(r.doc, doc);
    assert.equal(r.statusChanged, false);
  });

  it("flags an older scan as late and keeps the newer status", () => {
    const doc = fold([scan("b", 5, ScanKind.OUT_FOR_DELIVERY)]);
    const r = applyToDoc(doc, scan("a", 1, ScanKind.HUB_ARRIVAL));
    assert.equal(r.late, true);
    assert.equal(r.statusChanged, false);
    assert.equal(r.doc.status, ShipmentStatus.OUT_FOR_DELIVERY);
    assert.equal(r.doc.statusEventId, "b");
  });

  it("keeps a terminal status against newer non-correction scans", () => {
    const doc = fold([scan("d", 5, ScanKind.DELIVERED), scan("x", 9, ScanKind.HUB_ARRIVAL)]);
    assert.equal(doc?.status, ShipmentStatus.DELIVERED);
    assert.equal(doc?.statusEventId, "d");
  });

  it("reopens a terminal status only with a newer CORRECTION scan", () => {
    const delivered = fold([scan("p", 1, ScanKind.PICKUP), scan("d", 5, ScanKind.DELIVERED)]);
    const older = applyToDoc(delivered, scan("c0", 3, ScanKind.CORRECTION, { status: ShipmentStatus.EXCEPTION }));
    assert.equal(older.doc.status, ShipmentStatus.DELIVERED, "a correction older than the delivery changes nothing");
    const newer = applyToDoc(delivered, scan("c1", 7, ScanKind.CORRECTION, { status: ShipmentStatus.OUT_FOR_DELIVERY }));
    assert.equal(newer.doc.status, ShipmentStatus.OUT_FOR_DELIVERY);
    const implicit = applyToDoc(delivered, scan("c2", 7, ScanKind.CORRECTION));
    assert.equal(implicit.doc.status, ShipmentStatus.IN_TRANSIT, "without a status: the last non-terminal one");
  });

  it("never lets INFO scans or the creation event move a shipment back to INFO_RECEIVED", () => {
    const creation = created(TN, "c", t(3), "cust");
    const doc = fold([scan("p", 1, ScanKind.PICKUP), creation, scan("i", 4, ScanKind.INFO)]);
    assert.equal(doc?.status, ShipmentStatus.IN_TRANSIT);
    assert.equal(doc?.customerId, "cust");
    assert.equal(fold([creation])?.status, ShipmentStatus.INFO_RECEIVED);
  });

  it("takes the ETA of the newest route event by event time", () => {
    const r1 = applyToDoc(undefined, route(TN, "r2", t(5), t(50)));
    assert.equal(r1.etaChanged, true);
    const r2 = applyToDoc(r1.doc, route(TN, "r1", t(2), t(20)));
    assert.equal(r2.late, true);
    assert.equal(r2.etaChanged, false);
    assert.equal(r2.doc.eta?.estimatedArrival, jsonTime(t(50)));
  });

  it("does not report an ETA change when a newer route repeats the same ETA written differently", () => {
    const r1 = applyToDoc(undefined, route(TN, "r1", t(2), t(50)));
    assert.ok(r1.doc.eta?.estimatedArrival);
    // A document rewritten by migration 4 spells the same instant with milliseconds.
    const migrated = structuredClone(r1.doc);
    migrated.eta = { ...r1.doc.eta, estimatedArrival: r1.doc.eta.estimatedArrival.replace(/Z$/, ".000Z") };
    assert.notEqual(migrated.eta.estimatedArrival, r1.doc.eta.estimatedArrival);
    const again = applyToDoc(migrated, route(TN, "r2", t(5), t(50)));
    assert.equal(again.etaChanged, false);
    const moved = applyToDoc(migrated, route(TN, "r3", t(6), t(51)));
    assert.equal(moved.etaChanged, true);
  });

  it("compares ETAs as messages", () => {
    assert.equal(sameEta(undefined, undefined), true);
    assert.equal(sameEta({ estimatedArrival: "2026-11-01T09:00:00Z" }, undefined), false);
    assert.equal(sameEta({ estimatedArrival: "2026-11-01T09:00:00Z" }, { estimatedArrival: "2026-11-01T09:00:00.000Z" }), true);
    assert.equal(sameEta({ estimatedArrival: "2026-11-01T09:00:00Z", confidence: 0.5 }, { estimatedArrival: "2026-11-01T09:00:00Z" }), false);
  });

  it("keeps the route plan of the newest route event, together with its ETA", () => {
    const planned = routed("r1", 1, 50, ["FRA", "CDG", "PAR1"], 1);
    const replanned = routed("r3", 6, 55, ["FRA", "AMS", "PAR1"], 3);
    const r1 = applyToDoc(undefined, planned);
    assert.deepEqual(r1.doc.route, planOf(planned));
    assert.equal(r1.doc.route?.routeId, `r_${TN}`);
    assert.equal(r1.doc.route?.plannedAt, jsonTime(t(1)));
    const r2 = applyToDoc(r1.doc, replanned);
    assert.deepEqual(r2.doc.route?.legs?.map((l) => [l.fromHub, l.toHub]), [["FRA", "AMS"], ["AMS", "PAR1"]]);
    assert.equal(r2.doc.route?.revision, 3);
    const older = applyToDoc(r2.doc, routed("r2", 4, 99, ["FRA", "MAD"], 2));
    assert.equal(older.late, true);
    assert.deepEqual(older.doc.route, r2.doc.route, "an older route event does not replace the newer plan");
    assert.equal(older.doc.eta?.estimatedArrival, jsonTime(t(55)));
    const r4 = applyToDoc(r2.doc, route(TN, "r4", t(8), t(60)));
    assert.deepEqual(r4.doc.route, {}, "a newer route event without legs leaves no stale legs");
    assert.equal(r4.doc.eta?.estimatedArrival, jsonTime(t(60)));
  });

  it("adds a handover's partner and a version, and changes neither status nor ETA", () => {
    const before = fold([created(TN, "c", t(0), "cust-1"), routed("r", 1, 90, ["FRA", "CDG"], 1), scan("p", 2, ScanKind.PICKUP)]) as ShipmentDoc;
    const r = applyToDoc(before, handedOver(TN, "h", t(3), "lastmile", "CDG"));
    assert.deepEqual(r.doc.partnerCarrierCodes, ["lastmile"]);
    assert.equal(r.doc.version, before.version + 1);
    assert.equal(r.doc.updatedAt, new Date(t(3)).toISOString());
    assert.equal(r.doc.status, ShipmentStatus.IN_TRANSIT);
    assert.equal(r.doc.carrierCode, "acme");
    assert.deepEqual([r.statusChanged, r.etaChanged, r.late, r.duplicate], [false, false, false, false]);
    assert.deepEqual(r.doc.derivation.timeline, before.derivation.timeline, "a handover is not a status event");
    assert.equal(before.partnerCarrierCodes, undefined, "the input document is not modified");
    const again = applyToDoc(r.doc, handedOver(TN, "h", t(9), "lastmile", "CDG"));
    assert.equal(again.duplicate, true);
    assert.equal(again.doc, r.doc);
  });

  it("lists the creation's partners first, then the handovers' in event-time order, each once", () => {
    const doc = fold([
      handedOver(TN, "h2", t(20), "courier-b"),
      created(TN, "c", t(0), "cust-1", "acme", ["air-x", "courier-b"]),
      handedOver(TN, "h1", t(10), "lastmile"),
      handedOver(TN, "h3", t(30), "air-x"),
    ]) as ShipmentDoc;
    assert.deepEqual(doc.partnerCarrierCodes, ["air-x", "courier-b", "lastmile"]);
    assert.deepEqual(doc.derivation.createdPartners, ["air-x", "courier-b"]);
    assert.deepEqual(doc.derivation.handovers?.map((h) => h.eventId), ["h1", "h2", "h3"]);
    assert.equal(doc.status, ShipmentStatus.INFO_RECEIVED);
  });

  it("flags a handover older than one already applied as late", () => {
    const first = applyToDoc(undefined, handedOver(TN, "h2", t(20), "courier-b"));
    assert.equal(first.late, false);
    assert.equal(first.doc.status, ShipmentStatus.UNSPECIFIED, "a handover before the creation keeps the document's status unset");
    assert.equal(first.doc.carrierCode, "acme", "a document the creation has not reached yet takes the handover's carrier");
    const older = applyToDoc(first.doc, handedOver(TN, "h1", t(10), "lastmile"));
    assert.equal(older.late, true);
    assert.deepEqual(older.doc.partnerCarrierCodes, ["lastmile", "courier-b"]);
  });

  it("converges on the partner carriers for every arrival order of creation, handovers and scans", () => {
    const events: ProjectedEvent[] = [
      created(TN, "c", t(0), "cust-1", "acme", ["air-x"]),
      handedOver(TN, "h1", t(10), "lastmile", "CDG"),
      handedOver(TN, "h2", t(20), "air-x"),
      handedOver(TN, "h3", t(20), "courier-b"),
      scan("p", 5, ScanKind.PICKUP),
      scan("o", 25, ScanKind.OUT_FOR_DELIVERY),
    ];
    const expected = fold(sortedByTime(events)) as ShipmentDoc;
    assert.deepEqual(expected.partnerCarrierCodes, ["air-x", "lastmile", "courier-b"]);
    assert.equal(expected.status, ShipmentStatus.OUT_FOR_DELIVERY);
    for (const order of permutations(events)) {
      const got = fold(order) as ShipmentDoc;
      assert.deepEqual(withSortedIds(got), withSortedIds(expected));
    }
  });

  it("drops a removed partner, keeps it out for a handover of an ended term, and lists it again, last, after a new handover", () => {
    const base = fold([created(TN, "c", t(0), "cust-1", "acme", ["air-x"]), handedOver(TN, "h1", t(10), "lastmile")]) as ShipmentDoc;
    const removed = applyToDoc(base, partnerRemoved(TN, "r1", t(20), "lastmile"));
    assert.deepEqual(removed.doc.partnerCarrierCodes, ["air-x"]);
    assert.deepEqual([removed.statusChanged, removed.etaChanged, removed.late, removed.duplicate], [false, false, false, false]);
    assert.equal(removed.doc.version, base.version + 1);
    assert.equal(removed.doc.updatedAt, new Date(t(20)).toISOString());
    assert.deepEqual(removed.doc.derivation.timeline, base.derivation.timeline, "a removal is not a status event");
    assert.deepEqual(removed.doc.derivation.removals, [{ eventId: "r1", eventTime: new Date(t(20)).toISOString(), carrierCode: "lastmile" }]);
    assert.deepEqual(base.partnerCarrierCodes, ["air-x", "lastmile"], "the input document is not modified");
    assert.equal(applyToDoc(removed.doc, partnerRemoved(TN, "r1", t(25), "lastmile")).duplicate, true);
    const repeatOfTerm0 = applyToDoc(removed.doc, handedOver(TN, "h1-again", t(30), "lastmile"));
    assert.deepEqual(repeatOfTerm0.doc.partnerCarrierCodes, ["air-x"], "a handover of the ended term does not bring it back");
    const creationPartner = applyToDoc(removed.doc, partnerRemoved(TN, "r2", t(30), "air-x"));
    assert.equal(creationPartner.doc.partnerCarrierCodes, undefined, "a partner named at creation is removed like any other");
    const back = applyToDoc(removed.doc, handedOver(TN, "h2", t(40), "lastmile", "", 1));
    assert.deepEqual(back.doc.partnerCarrierCodes, ["air-x", "lastmile"]);
    assert.equal(back.doc.derivation.handovers?.at(-1)?.term, 1);
    const airAgain = applyToDoc(back.doc, partnerRemoved(TN, "r3", t(45), "air-x"));
    const airBack = applyToDoc(airAgain.doc, handedOver(TN, "h3", t(50), "air-x", "", 1));
    assert.deepEqual(airBack.doc.partnerCarrierCodes, ["lastmile", "air-x"], "the creation's partner handed the shipment again: listed at its new handover");
  });

  it("orders a partner's handovers and removals by term, not by time: a skewed clock changes nothing", () => {
    const events: ProjectedEvent[] = [
      created(TN, "c", t(0), "cust-1", "acme", []),
      handedOver(TN, "h0", t(10), "lastmile"),
      // Recorded by a replica whose clock runs behind: earlier in time, yet after h0.
      partnerRemoved(TN, "r0", t(5), "lastmile", 0),
      handedOver(TN, "h1", t(4), "lastmile", "", 1),
      handedOver(TN, "g0", t(12), "courier-b"),
    ];
    const expected = fold(events) as ShipmentDoc;
    assert.deepEqual(expected.partnerCarrierCodes, ["lastmile", "courier-b"]);
    for (const order of permutations(events)) assert.deepEqual(withSortedIds(fold(order) as ShipmentDoc), withSortedIds(expected));
    const removedAgain = fold([...events, partnerRemoved(TN, "r1", t(3), "lastmile", 1)]) as ShipmentDoc;
    assert.deepEqual(removedAgain.partnerCarrierCodes, ["courier-b"]);
  });

  it("flags a removal older than one already applied as late", () => {
    const first = applyToDoc(undefined, partnerRemoved(TN, "r2", t(20), "courier-b"));
    assert.deepEqual([first.late, first.doc.partnerCarrierCodes, first.doc.carrierCode], [false, undefined, "acme"]);
    const older = applyToDoc(first.doc, partnerRemoved(TN, "r1", t(10), "lastmile"));
    assert.equal(older.late, true);
    assert.deepEqual(older.doc.derivation.removals?.map((r) => r.eventId), ["r1", "r2"]);
  });

  it("converges to the event-time-ordered result for every arrival order", () => {
    const events: ProjectedEvent[] = [
      scan("p", 1, ScanKind.PICKUP, { location: { latitude: 1, longitude: 1 } }),
      scan("d", 5, ScanKind.DELIVERED, { location: { latitude: 2, longitude: 2 } }),
      scan("h", 7, ScanKind.HUB_ARRIVAL),
      scan("c", 8, ScanKind.CORRECTION, { status: ShipmentStatus.EXCEPTION }),
      scan("o", 3, ScanKind.OUT_FOR_DELIVERY, { location: { latitude: 3, longitude: 3 } }),
      routed("r", 0, 60, ["FRA", "CDG"], 1),
      routed("u", 6, 70, ["FRA", "AMS", "CDG"], 2),
    ];
    const expected = fold(sortedByTime(events));
    assert.equal(expected?.status, ShipmentStatus.EXCEPTION);
    assert.equal(expected?.route?.revision, 2);
    for (const order of permutations(events)) {
      const got = fold(order) as ShipmentDoc;
      assert.deepEqual(withSortedIds(got), withSortedIds(expected as ShipmentDoc));
      assert.deepEqual(got.derivation.eventIds, order.map(idOf), "eventIds records the applied order");
      assert.deepEqual(fold(got.derivation.eventIds.map((id) => order.find((e) => idOf(e) === id) as ProjectedEvent)), got);
    }
  });
});

/** `v` and everything in it frozen: a write to it throws (modules are strict). */
function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

describe("applyToDoc with the event's proto JSON", () => {
  it("derives the same document, to the text, as converting the event itself, and changes neither input", () => {
    const random = seededRandom(41);
    for (let n = 0; n < 300; n++) {
      const events = shipmentEvents(random, n);
      const orders = [events, [...events].reverse(), [...events.slice(3), ...events.slice(0, 3)]];
      for (const order of orders) {
        let plain: ShipmentDoc | undefined;
        let viaJson: ShipmentDoc | undefined;
        for (const e of order) {
          const value = eventJson(e);
          const a = applyToDoc(plain, e);
          const b = applyToDoc(viaJson && deepFreeze(JSON.parse(JSON.stringify(viaJson)) as ShipmentDoc), e, deepFreeze(value));
          assert.equal(JSON.stringify(b.doc), JSON.stringify(a.doc));
          assert.deepEqual({ ...b, doc: undefined }, { ...a, doc: undefined });
          // The document it returns is changed by nothing after: the next event's copy shares its parts.
          plain = deepFreeze(a.doc);
          viaJson = deepFreeze(b.doc);
        }
        assert.ok(viaJson);
        assert.deepEqual(applyToDoc(viaJson, order[0] as ProjectedEvent).duplicate, true);
      }
    }
  });
});

describe("roundCoordinate", () => {
  it("rounds to 1e-7 degrees and takes a coordinate too small for PostgreSQL's float arithmetic to 0", () => {
    assert.equal(roundCoordinate(48.123456789), 48.1234568);
    assert.equal(roundCoordinate(-179.99999999), -180);
    assert.ok(Object.is(roundCoordinate(-5e-324), 0), "0, not -0");
    const doc = applyToDoc(undefined, scan("p", 1, ScanKind.PICKUP, { location: { latitude: 5e-324, longitude: -5e-324 } })).doc;
    assert.deepEqual(doc.location, { latitude: 0, longitude: 0 });
  });
});

describe("assertSize", () => {
  it("counts UTF-8 bytes of the JSON", () => {
    assert.throws(() => assertSize("document", { s: "é".repeat(3000) }, 4096), DocumentTooLargeError);
    assertSize("document", { s: "e".repeat(3000) }, 4096);
  });
});
