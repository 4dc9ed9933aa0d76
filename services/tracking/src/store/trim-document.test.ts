import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { seededRandom } from "@logistics/shared/testing";
import { pick } from "../../test/store/doc-generators.js";
import { created, route, routeWithLegs, scan as scanOf } from "../../test/store/event-builders.js";
import { applyToDoc, deriveStatus, eventIdOfVersion } from "./derive.js";
import { DocumentTooLargeError } from "./errors.js";
import type { ProjectedEvent, ShipmentDoc } from "./ports.js";
import { utf8Length } from "./size.js";
import { fitDocument, MIN_EVENT_IDS, MIN_TIMELINE_ENTRIES, TRIM_TARGET, trimDocument } from "./trim-document.js";

const TN = "TN00000001";
/** Minutes into the test's morning, in epoch ms. */
const t = (minute: number) => Date.UTC(2026, 10, 1, 8, 0) + minute * 60_000;
const scan = (id: string, minute: number, kind: ScanKind, extra: Parameters<typeof scanOf>[4] = {}) => scanOf(TN, id, t(minute), kind, extra);

/** `v` and everything in it frozen: a write to it throws (modules are strict). */
function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/** The fields a trim must leave as they were: everything but the derivation's bookkeeping. */
function summary(doc: ShipmentDoc): Omit<ShipmentDoc, "derivation"> {
  const { derivation: _d, ...rest } = doc;
  return rest;
}

const bytesOf = (doc: ShipmentDoc) => utf8Length(JSON.stringify(doc));

/** Applies `events` in order; the document is fitted within `limit` after each, as a store writes it. */
function applyFitted(events: readonly ProjectedEvent[], limit: number, keepIds = 1): ShipmentDoc {
  let doc: ShipmentDoc | undefined;
  for (const e of events) {
    const derived = applyToDoc(doc, e).doc;
    doc = fitDocument(derived, JSON.stringify(derived), limit, keepIds).doc;
  }
  assert.ok(doc);
  return doc;
}

/** A shipment's creation, route and then `n` hub scans a minute apart, each with a 60-character carrier text. */
function busyShipment(n: number): ProjectedEvent[] {
  return [
    created(TN, "c", t(0), "cust-1"),
    routeWithLegs(TN, "r", t(1), t(6000), ["FRA", "CDG", "LYS"], 1),
    ...Array.from({ length: n }, (_, i) =>
      scan(`s${String(i).padStart(4, "0")}`, 2 + i, i % 2 === 0 ? ScanKind.HUB_ARRIVAL : ScanKind.HUB_DEPARTURE, {
        hubCode: `H${i % 7}`,
        location: { latitude: 48 + i / 1000, longitude: 2 },
        rawStatus: { code: "HUB", text: `scan number ${i} `.padEnd(60, "·") },
      }),
    ),
  ];
}

describe("fitDocument", () => {
  it("returns a document within the limit and its JSON as they are", () => {
    const doc = deepFreeze(applyFitted(busyShipment(5), 1 << 20));
    const json = JSON.stringify(doc);
    const fitted = fitDocument(doc, json, 1 << 20, 1);
    assert.equal(fitted.doc, doc);
    assert.equal(fitted.json, json);
    assert.equal(doc.derivation.trimmed, undefined);
  });

  it("cuts a document over the limit to the trim target, dropping the oldest timeline entries and keeping every summary field", () => {
    const limit = 16 * 1024;
    const events = busyShipment(200);
    let untrimmed: ShipmentDoc | undefined;
    for (const e of events) untrimmed = applyToDoc(untrimmed, e).doc;
    assert.ok(untrimmed && bytesOf(untrimmed) > limit, "the test's shipment is over the limit");
    deepFreeze(untrimmed);

    const { doc, json } = fitDocument(untrimmed, JSON.stringify(untrimmed), limit, 1);
    assert.equal(json, JSON.stringify(doc));
    assert.ok(utf8Length(json) <= limit * TRIM_TARGET, `${utf8Length(json)} bytes`);
    assert.deepEqual(summary(doc), summary(untrimmed), "status, location, ETA, route, version... untouched");
    const kept = doc.derivation.timeline;
    const trimmed = doc.derivation.trimmed;
    assert.ok(trimmed && trimmed.entries > 0);
    assert.equal(trimmed.entries + kept.length, untrimmed.derivation.timeline.length);
    assert.deepEqual(kept, untrimmed.derivation.timeline.slice(trimmed.entries), "the newest entries, as they were");
    assert.equal(kept.at(-1)?.eventId, "s0199");
    assert.equal(trimmed.ids, 0, "no event id dropped while timeline entries could go");
    assert.deepEqual(doc.derivation.eventIds, untrimmed.derivation.eventIds);
    assert.deepEqual(trimmed.fold, deriveStatus(untrimmed.derivation.timeline.slice(0, trimmed.entries)));
    assert.equal(trimmed.hubEntry?.eventId, untrimmed.derivation.timeline[trimmed.entries - 1]?.eventId, "the newest dropped hub scan");
  });

  it("refuses a document whose parts that cannot be dropped are over the limit", () => {
    const limit = 8 * 1024;
    const hubs = Array.from({ length: 60 }, (_, i) => `HUB${i}`);
    const doc = applyFitted([created(TN, "c", t(0), "cust-1"), ...busyShipment(10).slice(2)], limit);
    const withRoute = applyToDoc(doc, routeWithLegs(TN, "r", t(30), t(6000), hubs, 1)).doc;
    assert.throws(
      () => fitDocument(withRoute, JSON.stringify(withRoute), limit, 1),
      (err: unknown) => err instanceof DocumentTooLargeError && err.what === "document" && err.limit === limit && err.bytes > limit,
    );
  });

  it("keeps the status the whole timeline yields, through any number of trims (property test)", () => {
    const random = seededRandom(7);
    const kinds = [ScanKind.PICKUP, ScanKind.HUB_ARRIVAL, ScanKind.OUT_FOR_DELIVERY, ScanKind.DELIVERY_ATTEMPT, ScanKind.DELIVERED, ScanKind.INFO, ScanKind.EXCEPTION, ScanKind.CORRECTION, ScanKind.UNSPECIFIED];
    for (let run = 0; run < 40; run++) {
      const events: ProjectedEvent[] = [created(TN, "c", t(0), "cust-1")];
      for (let i = 0; i < 150; i++) {
        const kind = pick(random, kinds);
        const status = kind === ScanKind.CORRECTION && random() < 0.5 ? ShipmentStatus.IN_TRANSIT : undefined;
        const hub = random() < 0.3 ? { hubCode: `H${i}` } : {};
        events.push(scan(`s${i}`, 1 + i, kind, { ...hub, ...(status ? { status } : {}), rawStatus: { code: "X", text: "t".repeat(Math.floor(random() * 80)) } }));
      }
      // In event-time order, so that the trimmed document must equal the untrimmed one exactly.
      let whole: ShipmentDoc | undefined;
      let fitted: ShipmentDoc | undefined;
      for (const e of events) {
        whole = applyToDoc(whole, e).doc;
        const next = applyToDoc(fitted, e).doc;
        fitted = fitDocument(next, JSON.stringify(next), 6 * 1024, 1).doc;
        assert.deepEqual(summary(fitted), summary(whole), `run ${run}, ${e.message.eventId}`);
      }
      assert.ok(fitted?.derivation.trimmed, `run ${run} trimmed`);
      assert.equal((fitted.derivation.trimmed.entries ?? 0) + fitted.derivation.timeline.length, whole?.derivation.timeline.length);
    }
  });

  it("lets a late terminal scan older than every kept entry still end the shipment", () => {
    const doc = applyFitted(busyShipment(150), 16 * 1024);
    const first = doc.derivation.timeline[0];
    assert.ok(doc.derivation.trimmed && first);
    assert.ok(Date.parse(first.eventTime) > t(10), "the test's delivery is older than every kept entry");
    const late = applyToDoc(doc, scan("late-delivery", 10, ScanKind.DELIVERED));
    assert.equal(late.late, true);
    assert.equal(late.doc.status, ShipmentStatus.DELIVERED);
    assert.equal(late.doc.statusEventId, "late-delivery");
    const after = applyToDoc(late.doc, scan("after", 5000, ScanKind.HUB_ARRIVAL));
    assert.equal(after.doc.status, ShipmentStatus.DELIVERED, "later scans do not reopen it");
  });

  it("keeps counting versions and recognising the kept event ids after it dropped ids", () => {
    const limit = 12 * 1024;
    const events = busyShipment(400);
    const doc = applyFitted(events, limit, 3);
    const trimmed = doc.derivation.trimmed;
    assert.ok(trimmed && trimmed.ids > 0, "ids were dropped");
    assert.ok(utf8Length(JSON.stringify(doc)) <= limit);
    assert.ok(doc.derivation.timeline.length >= 1);
    assert.equal(doc.version, events.length);
    assert.equal(trimmed.ids + doc.derivation.eventIds.length, doc.version);
    for (const v of [trimmed.ids + 1, doc.version - 1, doc.version]) {
      assert.equal(eventIdOfVersion(doc, v), events[v - 1]?.message.eventId, `version ${v}`);
    }
    assert.equal(eventIdOfVersion(doc, trimmed.ids), undefined, "a dropped version's id is gone");
    const repeat = applyToDoc(doc, events.at(-1) as ProjectedEvent);
    assert.equal(repeat.duplicate, true, "a kept id is still a duplicate");
  });
});

describe("trimDocument", () => {
  const doc = deepFreeze(applyFitted(busyShipment(400), 1 << 20));
  const bytes = (items: readonly unknown[]) => items.reduce<number>((n, x) => n + utf8Length(JSON.stringify(x)) + 1, 0);

  it("drops entries down to MIN_TIMELINE_ENTRIES, then ids down to MIN_EVENT_IDS, then entries down to one, then ids down to those to keep", () => {
    const { timeline, eventIds } = doc.derivation;
    assert.ok(timeline.length > MIN_TIMELINE_ENTRIES + 1 && eventIds.length > MIN_EVENT_IDS + 5);
    const shape = (d: ShipmentDoc | undefined) => [d?.derivation.timeline.length, d?.derivation.eventIds.length, d?.derivation.trimmed?.entries, d?.derivation.trimmed?.ids];

    assert.deepEqual(shape(trimDocument(doc, 1, 1)), [timeline.length - 1, eventIds.length, 1, 0]);
    const entryBytes = bytes(timeline.slice(0, -MIN_TIMELINE_ENTRIES));
    const droppable = timeline.length - MIN_TIMELINE_ENTRIES;
    assert.deepEqual(shape(trimDocument(doc, entryBytes, 1)), [MIN_TIMELINE_ENTRIES, eventIds.length, droppable, 0]);
    assert.deepEqual(shape(trimDocument(doc, entryBytes + 1, 1)), [MIN_TIMELINE_ENTRIES, eventIds.length - 1, droppable, 1]);
    const idBytes = bytes(eventIds.slice(0, -MIN_EVENT_IDS));
    const idsDroppable = eventIds.length - MIN_EVENT_IDS;
    assert.deepEqual(shape(trimDocument(doc, entryBytes + idBytes, 1)), [MIN_TIMELINE_ENTRIES, MIN_EVENT_IDS, droppable, idsDroppable]);
    assert.deepEqual(shape(trimDocument(doc, entryBytes + idBytes + 1, 1)), [MIN_TIMELINE_ENTRIES - 1, MIN_EVENT_IDS, droppable + 1, idsDroppable]);
    assert.deepEqual(shape(trimDocument(doc, bytes(timeline.slice(0, -1)) + idBytes + 1, 1)), [1, MIN_EVENT_IDS - 1, timeline.length - 1, idsDroppable + 1]);

    const most = trimDocument(doc, bytesOf(doc), 5);
    assert.deepEqual(shape(most), [1, 5, timeline.length - 1, eventIds.length - 5]);
    assert.deepEqual(most?.derivation.eventIds, eventIds.slice(-5), "the newest ids");
    assert.deepEqual(most?.derivation.timeline, timeline.slice(-1), "the newest entry");
    assert.equal(most && trimDocument(most, bytesOf(doc), 5), undefined, "nothing more may go");
    assert.deepEqual(shape(trimDocument(doc, bytesOf(doc), 1000)), [1, eventIds.length, timeline.length - 1, 0], "the ids to keep stay, however many");
  });

  it("adds to an earlier trim's counts and fold", () => {
    const once = trimDocument(doc, 5_000, 1);
    const twice = once && trimDocument(once, 5_000, 1);
    assert.ok(once?.derivation.trimmed && twice?.derivation.trimmed);
    const n = twice.derivation.trimmed.entries;
    assert.ok(n > once.derivation.trimmed.entries);
    assert.deepEqual(twice.derivation.trimmed.fold, deriveStatus(doc.derivation.timeline.slice(0, n)));
    assert.deepEqual(twice.derivation.timeline, doc.derivation.timeline.slice(n));
  });

  it("keeps a route event's document as it was, apart from the bookkeeping", () => {
    const withEta = applyToDoc(doc, route(TN, "eta", t(3000), t(7000))).doc;
    const trimmed = trimDocument(withEta, 2_000, 1);
    assert.ok(trimmed);
    assert.deepEqual(summary(trimmed), summary(withEta));
  });
});
