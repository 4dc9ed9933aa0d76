import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { EtaChangeReason, TransportMode } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel, ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { applyToDoc, assertSize, compareKeys, MAX_ROUTE_LEGS, validateEvent } from "./derive.js";
import { DocumentTooLargeError, InvalidEventError } from "./errors.js";
import type { RouteInput, RouteLegDoc, ScanInput, ShipmentDoc, ShipmentEventInput } from "./ports.js";

const TN = "TN00000001";
const t = (minute: number) => new Date(Date.UTC(2026, 10, 1, 8, minute)).toISOString();

function scan(id: string, minute: number, kind: ScanKind, extra: Partial<ScanInput> = {}): ScanInput {
  return {
    type: "scan",
    eventId: id,
    trackingNumber: TN,
    eventTime: t(minute),
    carrierCode: "acme",
    kind,
    rawStatus: { code: ScanKind[kind], text: "" },
    ...extra,
  };
}

function leg(fromHub: string, toHub: string, depart: number, arrive: number): RouteLegDoc {
  return { fromHub, toHub, mode: TransportMode.ROAD, plannedDeparture: t(depart), plannedArrival: t(arrive), departureId: `${fromHub}-${toHub}` };
}

function routed(id: string, minute: number, eta: number, legs: RouteLegDoc[], revision: number): RouteInput {
  return {
    type: revision === 1 ? "route_planned" : "route_updated",
    eventId: id,
    trackingNumber: TN,
    eventTime: t(minute),
    eta: { estimatedArrival: t(eta) },
    routeId: "r-1",
    legs,
    revision,
    plannedAt: t(minute),
  };
}

function fold(events: readonly ShipmentEventInput[]): ShipmentDoc | undefined {
  let doc: ShipmentDoc | undefined;
  for (const e of events) doc = applyToDoc(doc, e).doc;
  return doc;
}

function sortedByTime(events: readonly ShipmentEventInput[]): ShipmentEventInput[] {
  return [...events].sort((a, b) => compareKeys(a.eventTime, a.eventId, b.eventTime, b.eventId));
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
    const created: ShipmentEventInput = {
      type: "shipment_created",
      eventId: "c",
      trackingNumber: TN,
      eventTime: t(3),
      shipmentId: "s1",
      carrierCode: "acme",
      customerId: "cust",
      serviceLevel: ServiceLevel.STANDARD,
    };
    const doc = fold([scan("p", 1, ScanKind.PICKUP), created, scan("i", 4, ScanKind.INFO)]);
    assert.equal(doc?.status, ShipmentStatus.IN_TRANSIT);
    assert.equal(doc?.customerId, "cust");
    assert.equal(fold([created])?.status, ShipmentStatus.INFO_RECEIVED);
  });

  it("takes the ETA of the newest route event by event time", () => {
    const route = (id: string, minute: number, eta: number): ShipmentEventInput => ({
      type: "route_updated",
      eventId: id,
      trackingNumber: TN,
      eventTime: t(minute),
      eta: { estimatedArrival: t(eta) },
      reason: EtaChangeReason.LATE_ARRIVAL,
    });
    const r1 = applyToDoc(undefined, route("r2", 5, 50));
    assert.equal(r1.etaChanged, true);
    const r2 = applyToDoc(r1.doc, route("r1", 2, 20));
    assert.equal(r2.late, true);
    assert.equal(r2.etaChanged, false);
    assert.equal(r2.doc.eta?.estimatedArrival, t(50));
  });

  it("keeps the route plan of the newest route event, together with its ETA", () => {
    const planned = routed("r1", 1, 50, [leg("FRA", "CDG", 2, 10), leg("CDG", "PAR1", 12, 20)], 1);
    const replanned = routed("r3", 6, 55, [leg("FRA", "AMS", 7, 15), leg("AMS", "PAR1", 16, 25)], 3);
    const r1 = applyToDoc(undefined, planned);
    assert.deepEqual(r1.doc.route, { routeId: "r-1", revision: 1, plannedAt: t(1), legs: planned.legs });
    const r2 = applyToDoc(r1.doc, replanned);
    assert.deepEqual(r2.doc.route?.legs.map((l) => [l.fromHub, l.toHub]), [["FRA", "AMS"], ["AMS", "PAR1"]]);
    assert.equal(r2.doc.route?.revision, 3);
    const older = applyToDoc(r2.doc, routed("r2", 4, 99, [leg("FRA", "MAD", 5, 9)], 2));
    assert.equal(older.late, true);
    assert.deepEqual(older.doc.route, r2.doc.route, "an older route event does not replace the newer plan");
    assert.equal(older.doc.eta?.estimatedArrival, t(55));
    const planless: RouteInput = { type: "route_updated", eventId: "r4", trackingNumber: TN, eventTime: t(8), eta: { estimatedArrival: t(60) } };
    const r4 = applyToDoc(r2.doc, planless);
    assert.equal(r4.doc.route, undefined, "a newer route event without a plan leaves no stale legs");
    assert.equal(r4.doc.eta?.estimatedArrival, t(60));
  });

  it("converges to the event-time-ordered result for every arrival order", () => {
    const events: ShipmentEventInput[] = [
      scan("p", 1, ScanKind.PICKUP, { location: { lat: 1, lon: 1 } }),
      scan("d", 5, ScanKind.DELIVERED, { location: { lat: 2, lon: 2 } }),
      scan("h", 7, ScanKind.HUB_ARRIVAL),
      scan("c", 8, ScanKind.CORRECTION, { status: ShipmentStatus.EXCEPTION }),
      scan("o", 3, ScanKind.OUT_FOR_DELIVERY, { location: { lat: 3, lon: 3 } }),
      routed("r", 0, 60, [leg("FRA", "CDG", 1, 4)], 1),
      routed("u", 6, 70, [leg("FRA", "AMS", 1, 4), leg("AMS", "CDG", 5, 9)], 2),
    ];
    const expected = fold(sortedByTime(events));
    assert.equal(expected?.status, ShipmentStatus.EXCEPTION);
    assert.equal(expected?.route?.revision, 2);
    for (const order of permutations(events)) {
      const got = fold(order) as ShipmentDoc;
      assert.deepEqual(withSortedIds(got), withSortedIds(expected as ShipmentDoc));
      assert.deepEqual(got.derivation.eventIds, order.map((e) => e.eventId), "eventIds records the applied order");
      assert.deepEqual(fold(got.derivation.eventIds.map((id) => order.find((e) => e.eventId === id) as ShipmentEventInput)), got);
    }
  });
});

describe("validateEvent", () => {
  it("normalizes times to ISO strings and drops unknown fields", () => {
    const e = validateEvent({ ...scan("a", 1, ScanKind.PICKUP), eventTime: "2026-11-01T09:01:00+01:00", extra: 1 });
    assert.equal(e.eventTime, "2026-11-01T08:01:00.000Z");
    assert.equal("extra" in e, false);
  });

  it("rejects unknown enum values, naming the field", () => {
    assert.throws(() => validateEvent({ ...scan("a", 1, ScanKind.PICKUP), kind: 99 }), (err: unknown) => {
      assert.ok(err instanceof InvalidEventError);
      assert.equal(err.field, "kind");
      return true;
    });
    assert.throws(() => validateEvent({ ...scan("a", 1, ScanKind.PICKUP), status: 42 }), InvalidEventError);
  });

  it("rejects invalid coordinates", () => {
    for (const location of [{ lat: 91, lon: 0 }, { lat: 0, lon: -181 }, { lat: Number.NaN, lon: 0 }]) {
      assert.throws(() => validateEvent({ ...scan("a", 1, ScanKind.PICKUP), location }), InvalidEventError);
    }
  });

  it("rejects malformed ids and times", () => {
    assert.throws(() => validateEvent({ ...scan("a", 1, ScanKind.PICKUP), trackingNumber: "lower-case" }), InvalidEventError);
    assert.throws(() => validateEvent({ ...scan("a b", 1, ScanKind.PICKUP) }), InvalidEventError);
    assert.throws(() => validateEvent({ ...scan("a", 1, ScanKind.PICKUP), eventTime: "yesterday" }), InvalidEventError);
    assert.throws(() => validateEvent({ type: "nope" }), InvalidEventError);
  });

  it("normalizes route legs and rejects bad hub codes, modes, times and too many legs", () => {
    const good = routed("r", 1, 50, [leg("FRA", "CDG", 2, 10)], 1);
    const e = validateEvent({
      ...good,
      legs: [{ fromHub: "FRA", toHub: "CDG", plannedDeparture: "2026-11-01T09:02:00+01:00", extra: true }],
    }) as RouteInput;
    assert.deepEqual(e.legs, [{ fromHub: "FRA", toHub: "CDG", mode: TransportMode.UNSPECIFIED, plannedDeparture: t(2) }]);
    assert.equal(e.revision, 1);
    assert.equal(e.plannedAt, t(1));
    assert.deepEqual((validateEvent({ ...good, legs: [] }) as RouteInput).legs, [], "an empty plan stays an empty list");
    const rejects = (legs: unknown, field: string) =>
      assert.throws(() => validateEvent({ ...good, legs }), (err: unknown) => {
        assert.ok(err instanceof InvalidEventError, String(err));
        assert.equal(err.field, field);
        return true;
      });
    rejects([{ ...leg("FRA", "CDG", 2, 10), fromHub: "fra" }], "legs[0].fromHub");
    rejects([leg("FRA", "CDG", 2, 10), { ...leg("CDG", "PAR1", 2, 10), toHub: "" }], "legs[1].toHub");
    rejects([{ ...leg("FRA", "CDG", 2, 10), mode: 42 }], "legs[0].mode");
    rejects([{ ...leg("FRA", "CDG", 2, 10), plannedArrival: "soon" }], "legs[0].plannedArrival");
    rejects([{ ...leg("FRA", "CDG", 2, 10), departureId: "has space" }], "legs[0].departureId");
    rejects("FRA-CDG", "legs");
    rejects(Array.from({ length: MAX_ROUTE_LEGS + 1 }, () => leg("FRA", "CDG", 2, 10)), "legs");
    assert.equal((validateEvent({ ...good, legs: Array.from({ length: MAX_ROUTE_LEGS }, () => leg("FRA", "CDG", 2, 10)) }) as RouteInput).legs?.length, MAX_ROUTE_LEGS);
    assert.throws(() => validateEvent({ ...good, revision: -1 }), InvalidEventError);
    assert.throws(() => validateEvent({ ...good, revision: 1.5 }), InvalidEventError);
  });

  it("rejects an event larger than the size limit", () => {
    assert.throws(() => validateEvent({ ...scan("a", 1, ScanKind.PICKUP), note: "x".repeat(5000) }, 4096), DocumentTooLargeError);
    assert.throws(() => assertSize("document", { s: "é".repeat(3000) }, 4096), DocumentTooLargeError);
  });
});
