import * as assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, it } from "vitest";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { applyToDoc } from "../../src/store/derive.js";
import { DocumentTooLargeError, InvalidEventError, InvalidQueryError } from "../../src/store/errors.js";
import { eventKey } from "../../src/store/events.js";
import type { ApplyResult, ProjectedEvent, ShipmentDoc, ShipmentStore, StoredEvent } from "../../src/store/ports.js";
import { seededRandom } from "@logistics/shared/testing";
import { bySortKey, created, handedOver, idOf, jsonTime, partnerRemoved, planOf, route, routeWithLegs, scan, type RouteEvent } from "./event-builders.js";

/** Options the contract asks a store factory for. */
export interface ContractStoreOptions {
  /** Size limit to configure (small, to exercise DocumentTooLargeError). */
  maxDocumentBytes?: number;
}

/** Creates a store over the adapter's test fixture; the contract closes every store it makes. */
export type MakeStore = (opts: ContractStoreOptions) => Promise<ShipmentStore>;

const HOUR = 3_600_000;

/** A tracking number no other test run uses: "T" + 15 upper-case base-36 characters. */
export function uniqueTrackingNumber(): string {
  return `T${BigInt(`0x${randomBytes(10).toString("hex")}`).toString(36).toUpperCase().padStart(15, "0").slice(-15)}`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** `x` with every occurrence of `from` in its strings replaced by `to` (proto messages included). */
function rename<T>(x: T, from: string, to: string): T {
  if (typeof x === "string") return x.replaceAll(from, to) as T;
  if (Array.isArray(x)) return x.map((v: unknown) => rename(v, from, to)) as T;
  if (typeof x !== "object" || x === null) return x;
  return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, rename(v, from, to)])) as T;
}

/** What an event-time-ordered sequential apply of `events` (deduplicated) yields. */
function sequentialDoc(events: readonly ProjectedEvent[]): ShipmentDoc | undefined {
  let doc: ShipmentDoc | undefined;
  for (const e of [...events].sort(bySortKey)) doc = applyToDoc(doc, e).doc;
  return doc;
}

/** The document with `eventIds` (the only arrival-order-dependent part) sorted, for comparisons. */
function withSortedIds(doc: ShipmentDoc): ShipmentDoc {
  return { ...doc, derivation: { ...doc.derivation, eventIds: [...doc.derivation.eventIds].sort() } };
}

async function allEvents(store: ShipmentStore, tn: string, pageSize = 100): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.listEvents(tn, { pageSize, ...(cursor ? { cursor } : {}) });
    out.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return out;
}

/**
 * The eleven to thirteen events of one shipment in the convergence test: the tenth varies, every
 * other creation names a partner carrier, the eleventh is a handover to another one, and every
 * third shipment then has a partner removed (the creation's, or the handover's, which every
 * sixth is handed the shipment again).
 */
function lifecycle(tn: string, i: number, t0: number, customerId: string): ProjectedEvent[] {
  const at = (latitude: number, longitude: number) => ({ latitude, longitude });
  const e: ProjectedEvent[] = [
    created(tn, `${tn}-01`, t0, customerId, "acme", i % 2 === 1 ? ["air-x"] : []),
    route(tn, `${tn}-02`, t0 + 60_000, t0 + 48 * HOUR, "route.planned"),
    scan(tn, `${tn}-03`, t0 + HOUR, ScanKind.PICKUP, { location: at(52.5, 13.4) }),
    scan(tn, `${tn}-04`, t0 + 3 * HOUR, ScanKind.HUB_ARRIVAL, { hubCode: "BER1" }),
    scan(tn, `${tn}-05`, t0 + 5 * HOUR, ScanKind.HUB_DEPARTURE, { hubCode: "BER1" }),
    routeWithLegs(tn, `${tn}-06`, t0 + 5.5 * HOUR, t0 + 30 * HOUR, ["BER1", "HAM1"], 2),
    scan(tn, `${tn}-07`, t0 + 8 * HOUR, ScanKind.HUB_ARRIVAL, { hubCode: "HAM1", location: at(53.55, 9.99) }),
    scan(tn, `${tn}-08`, t0 + 20 * HOUR, ScanKind.OUT_FOR_DELIVERY),
    scan(tn, `${tn}-09`, t0 + 24 * HOUR, ScanKind.DELIVERED, { location: at((5356 + (i % 10)) / 100, 10.0) }),
  ];
  switch (i % 4) {
    case 0:
      e.push(scan(tn, `${tn}-10`, t0 + 30 * HOUR, ScanKind.CORRECTION, { status: ShipmentStatus.EXCEPTION }));
      break;
    case 1:
      e.push(scan(tn, `${tn}-10`, t0 + 26 * HOUR, ScanKind.HUB_ARRIVAL, { hubCode: "HAM1" }));
      break;
    case 2:
      e.push(scan(tn, `${tn}-10`, t0 + 2 * HOUR, ScanKind.EXCEPTION));
      break;
    default:
      e.push(scan(tn, `${tn}-10`, t0 + 22 * HOUR, ScanKind.DELIVERY_ATTEMPT));
  }
  e.push(handedOver(tn, `${tn}-11`, t0 + 9 * HOUR, "lastmile", "HAM1"));
  if (i % 6 === 3) e.push(partnerRemoved(tn, `${tn}-12`, t0 + 10 * HOUR, "air-x"));
  if (i % 6 === 0) e.push(partnerRemoved(tn, `${tn}-12`, t0 + 10 * HOUR, "lastmile"), handedOver(tn, `${tn}-13`, t0 + 11 * HOUR, "lastmile", "", 1));
  return e;
}

/**
 * The behaviour every {@link ShipmentStore} adapter must show. Call inside a `describe` that owns
 * the fixture (schema, database); every store made through `makeStore` is closed at the end.
 */
export function runShipmentStoreContract(name: string, makeStore: MakeStore): void {
  describe(`ShipmentStore contract (${name})`, () => {
    let store: ShipmentStore;
    const stores: ShipmentStore[] = [];
    const make = async (opts: ContractStoreOptions = {}) => {
      const s = await makeStore(opts);
      stores.push(s);
      return s;
    };
    const now = Date.now();

    beforeAll(async () => {
      store = await make();
    });
    afterAll(async () => {
      for (const s of stores) await s.close();
    });

    describe("applyEvent idempotency", () => {
      it("applies an event once and reports a repeat as a duplicate without changing anything", async () => {
        const tn = uniqueTrackingNumber();
        const e = scan(tn, `${tn}-a`, now - HOUR, ScanKind.PICKUP);
        const first = await store.applyEvent(e);
        assert.equal(first.applied, true);
        assert.equal(first.duplicate, false);
        assert.equal(first.before, undefined);
        assert.equal(first.statusChanged, true);
        assert.equal(first.after.status, ShipmentStatus.IN_TRANSIT);
        const again = await store.applyEvent(e);
        assert.equal(again.applied, false);
        assert.equal(again.duplicate, true);
        assert.equal(again.statusChanged, false);
        assert.equal(again.version, first.version);
        assert.deepEqual(await store.getShipment(tn), first.after);
        assert.deepEqual((await allEvents(store, tn)).map((x) => x.eventId), [idOf(e)]);
      });

      it("applies an event exactly once when eight appliers deliver it at the same time", async () => {
        const tn = uniqueTrackingNumber();
        await store.applyEvent(created(tn, `${tn}-c`, now - 2 * HOUR, "cust-x"));
        const e = scan(tn, `${tn}-s`, now - HOUR, ScanKind.HUB_ARRIVAL);
        const results = await Promise.all(Array.from({ length: 8 }, () => store.applyEvent(e)));
        assert.equal(results.filter((r) => r.applied).length, 1);
        assert.equal(results.filter((r) => r.duplicate).length, 7);
        assert.equal((await store.getShipment(tn))?.version, 2);
        assert.equal((await allEvents(store, tn)).length, 2);
      });
    });

    describe("applyEvent ordering", () => {
      it("keeps an older scan arriving after a newer one in history, flagged late, without regressing status", async () => {
        const tn = uniqueTrackingNumber();
        await store.applyEvent(scan(tn, `${tn}-ofd`, now - HOUR, ScanKind.OUT_FOR_DELIVERY));
        const late = await store.applyEvent(scan(tn, `${tn}-hub`, now - 5 * HOUR, ScanKind.HUB_ARRIVAL));
        assert.equal(late.applied, true);
        assert.equal(late.late, true);
        assert.equal(late.statusChanged, false);
        assert.equal(late.after.status, ShipmentStatus.OUT_FOR_DELIVERY);
        assert.equal(late.before?.status, ShipmentStatus.OUT_FOR_DELIVERY);
        const history = await allEvents(store, tn);
        assert.deepEqual(
          history.map((h) => [h.eventId, h.late]),
          [
            [`${tn}-hub`, true],
            [`${tn}-ofd`, false],
          ],
          "history is in event-time order and the late event is flagged",
        );
      });

      it("keeps DELIVERED against newer scans and reopens it only with a newer CORRECTION", async () => {
        const tn = uniqueTrackingNumber();
        await store.applyEvent(scan(tn, `${tn}-d`, now - 10 * HOUR, ScanKind.DELIVERED));
        const hub = await store.applyEvent(scan(tn, `${tn}-h`, now - 9 * HOUR, ScanKind.HUB_ARRIVAL));
        assert.equal(hub.after.status, ShipmentStatus.DELIVERED);
        assert.equal(hub.statusChanged, false);
        const oldFix = await store.applyEvent(
          scan(tn, `${tn}-c0`, now - 11 * HOUR, ScanKind.CORRECTION, { status: ShipmentStatus.EXCEPTION }),
        );
        assert.equal(oldFix.after.status, ShipmentStatus.DELIVERED, "a correction older than the delivery does not reopen");
        const fix = await store.applyEvent(
          scan(tn, `${tn}-c1`, now - 8 * HOUR, ScanKind.CORRECTION, { status: ShipmentStatus.OUT_FOR_DELIVERY }),
        );
        assert.equal(fix.statusChanged, true);
        assert.equal(fix.after.status, ShipmentStatus.OUT_FOR_DELIVERY);
        assert.equal(fix.after.statusEventId, `${tn}-c1`);
      });

      it("keeps RETURNED_TO_SENDER and EXPIRED terminal", async () => {
        const tn = uniqueTrackingNumber();
        await store.applyEvent(scan(tn, `${tn}-r`, now - 10 * HOUR, ScanKind.RETURN_TO_SENDER));
        const r = await store.applyEvent(scan(tn, `${tn}-o`, now - 9 * HOUR, ScanKind.OUT_FOR_DELIVERY));
        assert.equal(r.after.status, ShipmentStatus.RETURNED_TO_SENDER);
        const tn2 = uniqueTrackingNumber();
        await store.applyEvent(scan(tn2, `${tn2}-x`, now - 10 * HOUR, ScanKind.UNSPECIFIED, { status: ShipmentStatus.EXPIRED }));
        const r2 = await store.applyEvent(scan(tn2, `${tn2}-p`, now - 9 * HOUR, ScanKind.PICKUP));
        assert.equal(r2.after.status, ShipmentStatus.EXPIRED);
      });

      it("reports ETA changes only for the newest route event", async () => {
        const tn = uniqueTrackingNumber();
        const planned = await store.applyEvent(route(tn, `${tn}-r1`, now - 5 * HOUR, now + 40 * HOUR, "route.planned"));
        assert.equal(planned.etaChanged, true);
        const newer = await store.applyEvent(route(tn, `${tn}-r3`, now - 2 * HOUR, now + 30 * HOUR));
        assert.equal(newer.etaChanged, true);
        assert.equal(newer.after.eta?.estimatedArrival, jsonTime(now + 30 * HOUR));
        const older = await store.applyEvent(route(tn, `${tn}-r2`, now - 3 * HOUR, now + 99 * HOUR));
        assert.equal(older.etaChanged, false);
        assert.equal(older.late, true);
        assert.equal(older.after.eta?.estimatedArrival, jsonTime(now + 30 * HOUR));
      });
    });

    describe("route plans", () => {
      it("stores the newest route event's legs and does not let an older update replace them", async () => {
        const tn = uniqueTrackingNumber();
        const planned = routeWithLegs(tn, `${tn}-r1`, now - 5 * HOUR, now + 40 * HOUR, ["FRA1", "CDG", "MAD"], 1);
        const first = await store.applyEvent(planned);
        assert.deepEqual(first.after.route, planOf(planned));
        assert.deepEqual((await store.getShipment(tn))?.route, first.after.route, "the legs are stored, not only returned");

        const replanned = routeWithLegs(tn, `${tn}-r3`, now - 2 * HOUR, now + 30 * HOUR, ["FRA1", "AMS", "LHR", "MAD"], 3);
        await store.applyEvent(replanned);
        const older = routeWithLegs(tn, `${tn}-r2`, now - 3 * HOUR, now + 99 * HOUR, ["FRA1", "ZRH", "MAD"], 2);
        const late = await store.applyEvent(older);
        assert.equal(late.late, true);
        assert.equal(late.etaChanged, false);
        const doc = await store.getShipment(tn);
        assert.deepEqual(doc?.route?.legs?.map((l) => [l.fromHub, l.toHub]), [["FRA1", "AMS"], ["AMS", "LHR"], ["LHR", "MAD"]]);
        assert.equal(doc?.route?.revision, 3);
        assert.deepEqual(doc?.route, planOf(replanned));
        assert.equal(doc?.eta?.estimatedArrival, jsonTime(now + 30 * HOUR));
        const history = await allEvents(store, tn);
        assert.deepEqual(
          history.find((h) => h.eventId === idOf(older))?.event,
          older,
          "the history keeps the late update's legs",
        );
      });

      it("applies route legs in a batch exactly as sequential applyEvent calls do", async () => {
        const tn = uniqueTrackingNumber();
        const events = [
          routeWithLegs(tn, `${tn}-r2`, now - 2 * HOUR, now + 30 * HOUR, ["FRA1", "AMS", "MAD"], 2),
          routeWithLegs(tn, `${tn}-r1`, now - 4 * HOUR, now + 40 * HOUR, ["FRA1", "CDG", "MAD"], 1),
        ];
        const results = await store.applyEvents(events);
        assert.deepEqual(results.map((r) => r.late), [false, true]);
        assert.deepEqual(results[1]?.after.route, planOf(events[0] as RouteEvent));
        assert.deepEqual(await store.getShipment(tn), results[1]?.after);
        assert.deepEqual(withSortedIds(results[1]?.after as ShipmentDoc), withSortedIds(sequentialDoc(events) as ShipmentDoc));
      });
    });

    describe("handovers to partner carriers", () => {
      it("keeps a handover once, in the history and as a partner, whether it arrives before or after the creation", async () => {
        const tn = uniqueTrackingNumber();
        const handover = handedOver(tn, `${tn}-h`, now - HOUR, "lastmile", "HAM1");
        const creation = created(tn, `${tn}-c`, now - 3 * HOUR, "cust-ho", "acme", ["air-x"]);
        const first = await store.applyEvent(handover);
        assert.deepEqual([first.applied, first.statusChanged, first.etaChanged], [true, false, false]);
        assert.deepEqual(first.after.partnerCarrierCodes, ["lastmile"]);
        const results = await store.applyEvents([creation, handover, creation]);
        assert.deepEqual(results.map((r) => [r.applied, r.duplicate]), [[true, false], [false, true], [false, true]]);
        assert.equal((await store.applyEvent(handover)).duplicate, true);
        const doc = await store.getShipment(tn);
        assert.equal(doc?.version, 2);
        assert.deepEqual(doc?.partnerCarrierCodes, ["air-x", "lastmile"]);
        assert.equal(doc?.status, ShipmentStatus.INFO_RECEIVED);
        assert.deepEqual(withSortedIds(doc as ShipmentDoc), withSortedIds(sequentialDoc([creation, handover]) as ShipmentDoc));
        const history = await allEvents(store, tn);
        assert.deepEqual(history.map((h) => h.eventId), [idOf(creation), idOf(handover)]);
        assert.deepEqual(history[1]?.event, handover, "the history gives the handover back as it was applied");
      });

      it("drops a removed partner once, in the history, whatever order the creation, handovers and removal arrive in", async () => {
        const tn = uniqueTrackingNumber();
        const creation = created(tn, `${tn}-c`, now - 5 * HOUR, "cust-pr", "acme", ["air-x"]);
        const handover = handedOver(tn, `${tn}-h`, now - 4 * HOUR, "lastmile");
        const removal = partnerRemoved(tn, `${tn}-r`, now - 3 * HOUR, "lastmile");
        const again = handedOver(tn, `${tn}-h1`, now - 2 * HOUR, "lastmile", "", 1);
        const first = await store.applyEvent(removal);
        assert.deepEqual([first.applied, first.statusChanged, first.etaChanged], [true, false, false]);
        assert.equal(first.after.partnerCarrierCodes, undefined, "a removal alone lists no partner");
        const results = await store.applyEvents([handover, creation, removal, handover]);
        assert.deepEqual(results.map((r) => [r.applied, r.duplicate]), [[true, false], [true, false], [false, true], [false, true]]);
        assert.deepEqual(results[1]?.after.partnerCarrierCodes, ["air-x"], "the handover the removal ended does not list it");
        assert.equal((await store.applyEvent(removal)).duplicate, true);
        const doc = await store.getShipment(tn);
        assert.deepEqual([doc?.version, doc?.partnerCarrierCodes, doc?.status], [3, ["air-x"], ShipmentStatus.INFO_RECEIVED]);
        assert.deepEqual(withSortedIds(doc as ShipmentDoc), withSortedIds(sequentialDoc([creation, handover, removal]) as ShipmentDoc));
        const back = await store.applyEvent(again);
        assert.deepEqual(back.after.partnerCarrierCodes, ["air-x", "lastmile"], "a new term lists it again");
        const history = await allEvents(store, tn);
        assert.deepEqual(history.map((h) => h.eventId), [creation, handover, removal, again].map(idOf));
        assert.deepEqual(history[2]?.event, removal, "the history gives the removal back as it was applied");
      });
    });

    describe("applyEvent convergence", () => {
      it("ends in the event-time-ordered state after 8 concurrent appliers of a shuffled, duplicated set", async () => {
        const seed = Math.floor(Math.random() * 2 ** 31);
        const rnd = seededRandom(seed);
        const customer = `conv-${uniqueTrackingNumber()}`;
        const byShipment = new Map<string, ProjectedEvent[]>();
        const t0 = now - 10 * 24 * HOUR;
        for (let i = 0; i < 200; i++) {
          const tn = uniqueTrackingNumber();
          byShipment.set(tn, lifecycle(tn, i, t0 + i * 60_000, customer));
        }
        const unique = [...byShipment.values()].flat();
        const deliveries = [...unique, ...unique.filter(() => rnd() < 0.25)];
        for (let i = deliveries.length - 1; i > 0; i--) {
          const j = Math.floor(rnd() * (i + 1));
          [deliveries[i], deliveries[j]] = [deliveries[j] as ProjectedEvent, deliveries[i] as ProjectedEvent];
        }
        let next = 0;
        const results: ApplyResult[] = [];
        await Promise.all(
          Array.from({ length: 8 }, async () => {
            for (let k = next++; k < deliveries.length; k = next++) {
              results.push(await store.applyEvent(deliveries[k] as ProjectedEvent));
            }
          }),
        );
        const msg = `seed ${seed}`;
        assert.equal(results.filter((r) => r.applied).length, unique.length, msg);
        assert.equal(results.filter((r) => r.duplicate).length, deliveries.length - unique.length, msg);
        for (const [tn, events] of byShipment) {
          const expected = sequentialDoc(events) as ShipmentDoc;
          const got = await store.getShipment(tn);
          assert.ok(got, `${tn} exists (${msg})`);
          assert.deepEqual(withSortedIds(got), withSortedIds(expected), `${tn} (${msg})`);
          const byId = new Map(events.map((e) => [idOf(e), e]));
          const replayed = got.derivation.eventIds.reduce<ShipmentDoc | undefined>(
            (doc, id) => applyToDoc(doc, byId.get(id) as ProjectedEvent).doc,
            undefined,
          );
          assert.deepEqual(replayed, got, `${tn}: replaying eventIds in order rebuilds the document (${msg})`);
          const history = await allEvents(store, tn, 4);
          assert.deepEqual(
            history.map((h) => h.eventId),
            [...events].sort(bySortKey).map(idOf),
            `${tn} history (${msg})`,
          );
        }
        const statuses = new Set([...byShipment.keys()].map((tn) => sequentialDoc(byShipment.get(tn) ?? [])?.status));
        assert.ok(statuses.has(ShipmentStatus.DELIVERED) && statuses.has(ShipmentStatus.EXCEPTION), "the set exercises terminal and correction rules");
      });
    });

    describe("applyEvents", () => {
      it("returns [] for an empty batch", async () => {
        assert.deepEqual(await store.applyEvents([]), []);
      });

      it("returns exactly what sequential applyEvent calls return, including in-batch repeats and several events per shipment", async () => {
        const seed = Math.floor(Math.random() * 2 ** 31);
        const rnd = seededRandom(seed);
        const customer = `eq-${uniqueTrackingNumber()}`;
        const t0 = now - 5 * 24 * HOUR;
        const pairs = Array.from({ length: 4 }, () => [uniqueTrackingNumber(), uniqueTrackingNumber()] as const);
        const seq: ProjectedEvent[] = [];
        pairs.forEach(([a], i) => seq.push(...lifecycle(a, i, t0 + i * 60_000, customer)));
        const withRepeats = [...seq, ...seq.filter(() => rnd() < 0.3)];
        for (let i = withRepeats.length - 1; i > 0; i--) {
          const j = Math.floor(rnd() * (i + 1));
          [withRepeats[i], withRepeats[j]] = [withRepeats[j] as ProjectedEvent, withRepeats[i] as ProjectedEvent];
        }
        const toB = <T>(x: T): T => pairs.reduce((acc, [a, b]) => rename(acc, a, b), x);
        // One event already applied before the batch: a duplicate across calls on both paths.
        const pre = withRepeats[0] as ProjectedEvent;
        const preA = await store.applyEvent(pre);
        const preB = await store.applyEvent(toB(pre));
        assert.deepEqual(toB(preA), preB);

        const sequential: ApplyResult[] = [];
        for (const e of withRepeats) sequential.push(await store.applyEvent(e));
        const batched = await store.applyEvents(withRepeats.map(toB));
        const msg = `seed ${seed}`;
        assert.equal(batched.length, withRepeats.length, msg);
        // `stored` (how the batch wrote an event, where the adapter reports it) is the batch's own.
        const unstored = batched.map(({ stored: _stored, ...r }) => r);
        assert.deepEqual(unstored, toB(sequential), msg);
        assert.ok(batched.some((r) => r.duplicate) && batched.some((r) => r.late), `the batch exercises repeats and late events (${msg})`);
        for (const [a, b] of pairs) {
          assert.deepEqual(await store.getShipment(b), toB(await store.getShipment(a)), `${b} (${msg})`);
          assert.deepEqual(
            (await allEvents(store, b)).map((h) => [h.eventId, h.late, h.event]),
            toB((await allEvents(store, a)).map((h) => [h.eventId, h.late, h.event])),
            `${b} history (${msg})`,
          );
        }
      });

      it("applies several events of one shipment in input order, each result chaining to the next", async () => {
        const tn = uniqueTrackingNumber();
        const events = lifecycle(tn, 1, now - 3 * 24 * HOUR, "cust-chain").reverse();
        const results = await store.applyEvents(events);
        assert.deepEqual(results.map((r) => r.version), events.map((_, i) => i + 1));
        assert.equal(results[0]?.before, undefined);
        for (let i = 1; i < results.length; i++) assert.deepEqual(results[i]?.before, results[i - 1]?.after);
        assert.ok(results.slice(1).some((r) => r.late), "older events after newer ones are flagged late");
        const doc = await store.getShipment(tn);
        assert.deepEqual(doc, results[results.length - 1]?.after);
        assert.deepEqual(doc?.derivation.eventIds, events.map(idOf));
        assert.deepEqual(withSortedIds(doc as ShipmentDoc), withSortedIds(sequentialDoc(events) as ShipmentDoc));
      });

      it("reports events applied by an earlier batch or applyEvent as duplicates and applies only the new ones", async () => {
        const tn = uniqueTrackingNumber();
        const [c, r, s1, s2, s3] = lifecycle(tn, 3, now - 2 * 24 * HOUR, "cust-dup") as [
          ProjectedEvent,
          ProjectedEvent,
          ProjectedEvent,
          ProjectedEvent,
          ProjectedEvent,
        ];
        const first = await store.applyEvents([c, r]);
        assert.deepEqual(first.map((x) => x.applied), [true, true]);
        await store.applyEvent(s1);
        const second = await store.applyEvents([r, s2, s1, c, s2, s3]);
        assert.deepEqual(
          second.map((x) => [x.applied, x.duplicate]),
          [
            [false, true],
            [true, false],
            [false, true],
            [false, true],
            [false, true],
            [true, false],
          ],
        );
        assert.deepEqual(second.map((x) => x.version), [3, 4, 4, 4, 4, 5]);
        const again = await store.applyEvents([c, r, s1, s2, s3]);
        assert.ok(again.every((x) => x.duplicate && x.version === 5));
        assert.equal((await store.getShipment(tn))?.version, 5);
        assert.equal((await allEvents(store, tn)).length, 5);
      });

      it("rejects a batch with an invalid event naming its index, writing nothing", async () => {
        const tn = uniqueTrackingNumber();
        const good = [scan(tn, `${tn}-1`, now - 3 * HOUR, ScanKind.PICKUP), scan(tn, `${tn}-2`, now - 2 * HOUR, ScanKind.HUB_ARRIVAL)];
        const bad = scan(tn, `${tn}-3`, now - HOUR, ScanKind.HUB_DEPARTURE, { location: { latitude: 91, longitude: 0 } });
        await assert.rejects(
          store.applyEvents([good[0] as ProjectedEvent, good[1] as ProjectedEvent, bad]),
          (err: unknown) => err instanceof InvalidEventError && err.batchIndex === 2 && err.field === "scan.location",
        );
        assert.equal(await store.getShipment(tn), undefined);
        assert.deepEqual((await store.listEvents(tn, { pageSize: 10 })).items, []);
        const ok = await store.applyEvents(good);
        assert.deepEqual(ok.map((r) => r.applied), [true, true], "the valid events were not consumed");
      });

      it("ends in the event-time-ordered state after 8 concurrent appliers of shuffled, duplicated batches of 1-50", async () => {
        const seed = Math.floor(Math.random() * 2 ** 31);
        const rnd = seededRandom(seed);
        const customer = `convb-${uniqueTrackingNumber()}`;
        const byShipment = new Map<string, ProjectedEvent[]>();
        const t0 = now - 12 * 24 * HOUR;
        for (let i = 0; i < 200; i++) {
          const tn = uniqueTrackingNumber();
          byShipment.set(tn, lifecycle(tn, i, t0 + i * 60_000, customer));
        }
        const unique = [...byShipment.values()].flat();
        const deliveries = [...unique, ...unique.filter(() => rnd() < 0.25)];
        for (let i = deliveries.length - 1; i > 0; i--) {
          const j = Math.floor(rnd() * (i + 1));
          [deliveries[i], deliveries[j]] = [deliveries[j] as ProjectedEvent, deliveries[i] as ProjectedEvent];
        }
        const batches: ProjectedEvent[][] = [];
        for (let k = 0; k < deliveries.length; ) {
          const size = 1 + Math.floor(rnd() * 50);
          batches.push(deliveries.slice(k, k + size));
          k += size;
        }
        let next = 0;
        const results: ApplyResult[] = [];
        await Promise.all(
          Array.from({ length: 8 }, async () => {
            for (let k = next++; k < batches.length; k = next++) {
              const batch = batches[k] as ProjectedEvent[];
              const got = await store.applyEvents(batch);
              assert.equal(got.length, batch.length);
              got.forEach((r, i) => assert.equal(r.after.trackingNumber, eventKey(batch[i] as ProjectedEvent).trackingNumber, "results are in input order"));
              results.push(...got);
            }
          }),
        );
        const msg = `seed ${seed}`;
        assert.equal(results.filter((r) => r.applied).length, unique.length, msg);
        assert.equal(results.filter((r) => r.duplicate).length, deliveries.length - unique.length, msg);
        for (const [tn, events] of byShipment) {
          const expected = sequentialDoc(events) as ShipmentDoc;
          const got = await store.getShipment(tn);
          assert.ok(got, `${tn} exists (${msg})`);
          assert.deepEqual(withSortedIds(got), withSortedIds(expected), `${tn} (${msg})`);
          const byId = new Map(events.map((e) => [idOf(e), e]));
          const replayed = got.derivation.eventIds.reduce<ShipmentDoc | undefined>(
            (doc, id) => applyToDoc(doc, byId.get(id) as ProjectedEvent).doc,
            undefined,
          );
          assert.deepEqual(replayed, got, `${tn}: replaying eventIds in order rebuilds the document (${msg})`);
          const history = await allEvents(store, tn, 20);
          assert.deepEqual(
            history.map((h) => h.eventId),
            [...events].sort(bySortKey).map(idOf),
            `${tn} history (${msg})`,
          );
        }
      });
    });

    describe("listEvents", () => {
      it("pages through history in event-time order with cursors", async () => {
        const tn = uniqueTrackingNumber();
        const events = Array.from({ length: 25 }, (_, i) =>
          scan(tn, `${tn}-${String(i).padStart(2, "0")}`, now - (i % 2 === 0 ? i : 100 - i) * 60_000, ScanKind.HUB_ARRIVAL),
        );
        for (const e of events) await store.applyEvent(e);
        const sizes: number[] = [];
        const seen: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await store.listEvents(tn, { pageSize: 10, ...(cursor ? { cursor } : {}) });
          sizes.push(page.items.length);
          seen.push(...page.items.map((x) => x.eventId));
          cursor = page.nextCursor;
        } while (cursor);
        assert.deepEqual(sizes, [10, 10, 5]);
        assert.deepEqual(seen, [...events].sort(bySortKey).map(idOf));
        assert.deepEqual((await store.listEvents(uniqueTrackingNumber(), { pageSize: 10 })).items, []);
      });

      it("rejects a malformed cursor and page size with InvalidQueryError", async () => {
        await assert.rejects(store.listEvents("TN00000000", { pageSize: 10, cursor: "garbage!" }), InvalidQueryError);
        await assert.rejects(store.listEvents("TN00000000", { pageSize: 0 }), InvalidQueryError);
      });
    });

    describe("searchShipments", () => {
      const customer = `cust-${uniqueTrackingNumber().toLowerCase()}`;
      const carrierA = `a${uniqueTrackingNumber().toLowerCase().slice(0, 12)}`;
      const carrierB = `b${uniqueTrackingNumber().toLowerCase().slice(0, 12)}`;
      const tns: string[] = [];
      const t0 = now - 48 * HOUR;

      beforeAll(async () => {
        // Six shipments of one customer, updated one hour apart; odd ones delivered, carriers alternate.
        for (let i = 0; i < 6; i++) {
          const tn = uniqueTrackingNumber();
          tns.push(tn);
          await store.applyEvent(created(tn, `${tn}-c`, t0, customer, i % 2 === 0 ? carrierA : carrierB));
          await store.applyEvent(scan(tn, `${tn}-s`, t0 + (i + 1) * HOUR, i % 2 === 1 ? ScanKind.DELIVERED : ScanKind.HUB_ARRIVAL));
        }
      });

      it("filters by customer and returns newest updates first, paged by cursor", async () => {
        const first = await store.searchShipments({ customerId: customer, pageSize: 4 });
        assert.equal(first.items.length, 4);
        assert.ok(first.nextCursor);
        const second = await store.searchShipments({ customerId: customer, pageSize: 4, cursor: first.nextCursor });
        assert.equal(second.nextCursor, undefined);
        assert.deepEqual([...first.items, ...second.items].map((d) => d.trackingNumber), [...tns].reverse());
      });

      it("filters by status, carrier and update window", async () => {
        const delivered = await store.searchShipments({ customerId: customer, statuses: [ShipmentStatus.DELIVERED], pageSize: 10 });
        assert.deepEqual(delivered.items.map((d) => d.trackingNumber), [tns[5], tns[3], tns[1]]);
        const byCarrier = await store.searchShipments({ carrierCode: carrierA, pageSize: 10 });
        assert.deepEqual(byCarrier.items.map((d) => d.trackingNumber), [tns[4], tns[2], tns[0]]);
        const both = await store.searchShipments({
          carrierCode: carrierB,
          statuses: [ShipmentStatus.DELIVERED, ShipmentStatus.IN_TRANSIT],
          pageSize: 10,
        });
        assert.deepEqual(both.items.map((d) => d.trackingNumber), [tns[5], tns[3], tns[1]]);
        const window = await store.searchShipments({
          customerId: customer,
          updatedAfter: iso(t0 + 2 * HOUR),
          updatedBefore: iso(t0 + 5 * HOUR),
          pageSize: 10,
        });
        assert.deepEqual(window.items.map((d) => d.trackingNumber), [tns[3], tns[2], tns[1]]);
      });

      it("finds shipments within a radius of a point", async () => {
        const places: Array<[string, { latitude: number; longitude: number }]> = [
          ["santiago", { latitude: -33.4489, longitude: -70.6693 }],
          ["valparaiso", { latitude: -33.0472, longitude: -71.6127 }], // ~97 km from Santiago
          ["rancagua", { latitude: -34.1708, longitude: -70.7444 }], // ~80 km
          ["buenos-aires", { latitude: -34.6037, longitude: -58.3816 }], // ~1140 km
        ];
        const ids = new Map<string, string>();
        for (const [place, location] of places) {
          const tn = uniqueTrackingNumber();
          ids.set(place, tn);
          await store.applyEvent(scan(tn, `${tn}-g`, now - HOUR, ScanKind.HUB_ARRIVAL, { location }));
        }
        const santiago = { lat: -33.4489, lon: -70.6693 };
        const near = await store.searchShipments({ near: { ...santiago, radiusKm: 120 }, pageSize: 10 });
        assert.deepEqual(
          near.items.map((d) => d.trackingNumber).sort(),
          ["santiago", "valparaiso", "rancagua"].map((p) => ids.get(p)).sort(),
        );
        const close = await store.searchShipments({ near: { ...santiago, radiusKm: 90 }, pageSize: 10 });
        assert.deepEqual(close.items.map((d) => d.trackingNumber).sort(), ["santiago", "rancagua"].map((p) => ids.get(p)).sort());
        const tiny = await store.searchShipments({ near: { ...santiago, radiusKm: 1 }, pageSize: 10 });
        assert.deepEqual(tiny.items.map((d) => d.trackingNumber), [ids.get("santiago")]);
      });

      it("returns a customer's area search with that customer's shipments in the area only, however many others are there", async () => {
        const lima = { latitude: -12.0464, longitude: -77.0428 };
        const mine = `cust-${uniqueTrackingNumber().toLowerCase()}`;
        const theirs = `cust-${uniqueTrackingNumber().toLowerCase()}`;
        const place = async (customer: string, location: { latitude: number; longitude: number }, hours: number) => {
          const tn = uniqueTrackingNumber();
          await store.applyEvent(created(tn, `${tn}-c`, now - 3 * HOUR, customer, carrierA));
          await store.applyEvent(scan(tn, `${tn}-g`, now - hours * HOUR, ScanKind.HUB_ARRIVAL, { location }));
          return tn;
        };
        // The other customer's shipments at the same place, updated before and after each of ours
        // (own: newest first).
        const own: string[] = [];
        for (let i = 0; i < 3; i++) {
          await place(theirs, lima, 1 + i / 2);
          own.push(await place(mine, lima, 1.1 + i / 2));
          await place(theirs, lima, 1.2 + i / 2);
        }
        await place(mine, { latitude: -16.409, longitude: -71.5375 }, 1); // Arequipa, ~770 km away
        for (const radiusKm of [30, 300]) {
          const found = await store.searchShipments({ customerId: mine, near: { lat: lima.latitude, lon: lima.longitude, radiusKm }, pageSize: 2 });
          const rest = await store.searchShipments({
            customerId: mine,
            near: { lat: lima.latitude, lon: lima.longitude, radiusKm },
            pageSize: 2,
            ...(found.nextCursor ? { cursor: found.nextCursor } : {}),
          });
          assert.deepEqual([...found.items, ...rest.items].map((d) => d.trackingNumber), own, `${radiusKm} km`);
          assert.ok([...found.items, ...rest.items].every((d) => d.customerId === mine), `${radiusKm} km: nobody else's`);
          assert.equal(rest.nextCursor, undefined);
        }
      });

      it("rejects bad filters with InvalidQueryError", async () => {
        await assert.rejects(store.searchShipments({ statuses: [99 as ShipmentStatus], pageSize: 10 }), InvalidQueryError);
        await assert.rejects(store.searchShipments({ near: { lat: 0, lon: 0, radiusKm: -1 }, pageSize: 10 }), InvalidQueryError);
        await assert.rejects(store.searchShipments({ pageSize: 10, cursor: "bm9wZQ" }), InvalidQueryError);
      });
    });

    describe("bad data", () => {
      it("rejects an event without a usable event time, naming the field, and writes nothing", async () => {
        const tn = uniqueTrackingNumber();
        const bad = scan(tn, `${tn}-bad`, now, ScanKind.PICKUP, { eventTime: undefined });
        await assert.rejects(store.applyEvent(bad), (err: unknown) => err instanceof InvalidEventError && err.field === "scan.event_time");
        assert.equal(await store.getShipment(tn), undefined);
        assert.deepEqual((await store.listEvents(tn, { pageSize: 10 })).items, []);
        const ok = await store.applyEvent(scan(tn, `${tn}-bad`, now, ScanKind.PICKUP));
        assert.equal(ok.applied, true, "the rejected event id was not consumed");
      });

      it("rejects text the database cannot hold, naming the field", async () => {
        const tn = uniqueTrackingNumber();
        for (const [extra, field] of [
          [{ note: "a\u0000b" }, "event.scan.note"],
          [{ attributes: { k: "\ud800" } }, "event.scan.attributes.k"],
        ] as const) {
          await assert.rejects(
            store.applyEvent(scan(tn, `${tn}-t`, now, ScanKind.PICKUP, extra)),
            (err: unknown) => err instanceof InvalidEventError && err.field === field,
          );
        }
        assert.equal(await store.getShipment(tn), undefined);
      });

      it("rejects invalid coordinates and leaves the existing document untouched", async () => {
        const tn = uniqueTrackingNumber();
        const first = await store.applyEvent(scan(tn, `${tn}-1`, now - HOUR, ScanKind.PICKUP));
        for (const location of [
          { latitude: 95, longitude: 0 },
          { latitude: 0, longitude: 200 },
          { latitude: Number.NaN, longitude: 1 },
        ]) {
          await assert.rejects(store.applyEvent(scan(tn, `${tn}-2`, now, ScanKind.HUB_ARRIVAL, { location })), InvalidEventError);
        }
        assert.deepEqual(await store.getShipment(tn), first.after);
        assert.equal((await allEvents(store, tn)).length, 1);
      });

      it("holds any valid coordinate, however small, rounded to 1e-7 degrees", async () => {
        const tn = uniqueTrackingNumber();
        // 5e-324 made PostgreSQL's ll_to_earth fail with "underflow" on every retry.
        const r = await store.applyEvent(scan(tn, `${tn}-1`, now - HOUR, ScanKind.PICKUP, { location: { latitude: -5e-324, longitude: 5e-324 } }));
        assert.equal(r.applied, true);
        assert.deepEqual((await store.getShipment(tn))?.location, { latitude: 0, longitude: 0 });
        await store.applyEvent(scan(tn, `${tn}-2`, now, ScanKind.HUB_ARRIVAL, { location: { latitude: 48.123456789, longitude: -179.99999999 } }));
        assert.deepEqual((await store.getShipment(tn))?.location, { latitude: 48.1234568, longitude: -180 });
        // A search centre that small is answered, not an underflow.
        const near = await store.searchShipments({ near: { lat: 1e-320, lon: -1e-320, radiusKm: 10 }, pageSize: 5 });
        assert.ok(Array.isArray(near.items));
      });

      it("rejects an event whose document cannot fit even trimmed (a route plan near the limit), writing nothing", async () => {
        const small = await make({ maxDocumentBytes: 8192 });
        const tn = uniqueTrackingNumber();
        const first = await small.applyEvent(created(tn, `${tn}-c`, now - 2 * HOUR, "cust-big"));
        const hubs = Array.from({ length: 42 }, (_, i) => `HUB${String(i).padStart(2, "0")}`);
        const big = routeWithLegs(tn, `${tn}-r`, now - HOUR, now + 48 * HOUR, hubs, 1);
        assert.ok(JSON.stringify(planOf(big)).length > 7000, "the plan alone is most of the limit");
        let error: unknown;
        await small.applyEvent(big).catch((err: unknown) => {
          error = err;
        });
        assert.ok(error instanceof DocumentTooLargeError, `expected DocumentTooLargeError, got ${String(error)}`);
        assert.equal(error.what, "document");
        assert.deepEqual(await small.getShipment(tn), first.after);
        assert.equal((await allEvents(small, tn)).length, 1);
        await assert.rejects(small.applyEvent(big), DocumentTooLargeError, "a retry is rejected again, not taken for a duplicate");
      });
    });

    describe("documents over the size limit", () => {
      const LIMIT = 8192;
      /** Hub scans a minute apart from `from`, each with a 1,500-character carrier text: five fill the limit. */
      const bigScans = (tn: string, from: number, n: number) =>
        Array.from({ length: n }, (_, i) =>
          scan(tn, `${tn}-s${String(from + i).padStart(3, "0")}`, now - 10 * HOUR + (from + i) * 60_000, i % 2 === 0 ? ScanKind.HUB_ARRIVAL : ScanKind.HUB_DEPARTURE, {
            hubCode: `H${(from + i) % 5}`,
            location: { latitude: 48 + (from + i) / 100, longitude: 2 },
            rawStatus: { code: "HUB", text: `${from + i} `.padEnd(1500, "x") },
          }),
        );

      it("applies every event of a shipment that outgrows the limit, trimming the oldest timeline entries of its document", async () => {
        const small = await make({ maxDocumentBytes: LIMIT });
        const tn = uniqueTrackingNumber();
        const events = [created(tn, `${tn}-c`, now - 11 * HOUR, "cust-trim"), ...bigScans(tn, 0, 24), scan(tn, `${tn}-z`, now - HOUR, ScanKind.OUT_FOR_DELIVERY)];
        let last: ApplyResult | undefined;
        for (const e of events.slice(0, 13)) {
          last = await small.applyEvent(e);
          assert.equal(last.applied, true, e.message.eventId);
        }
        const batched = await small.applyEvents(events.slice(13));
        assert.ok(batched.every((r) => r.applied));
        last = batched.at(-1);
        const doc = await small.getShipment(tn);
        assert.ok(doc && last);
        assert.deepEqual(doc, last.after, "the last result's document is the one stored");
        assert.ok(JSON.stringify(doc).length <= LIMIT, `${JSON.stringify(doc).length} bytes`);
        assert.equal(doc.version, events.length);
        assert.equal(doc.status, ShipmentStatus.OUT_FOR_DELIVERY);
        assert.equal(doc.statusEventId, `${tn}-z`);
        assert.deepEqual(doc.location, { latitude: 48.23, longitude: 2 }, "the newest scan with a position");
        const trimmed = doc.derivation.trimmed;
        assert.ok(trimmed && trimmed.entries > 0);
        assert.equal(trimmed.entries + doc.derivation.timeline.length, events.length, "every entry kept or counted");
        assert.equal(doc.derivation.timeline.at(-1)?.eventId, `${tn}-z`);
        assert.equal((await allEvents(small, tn)).length, events.length, "the history keeps every event");

        const again = await small.applyEvent(events[1] as ProjectedEvent);
        assert.equal(again.duplicate, true, "an event whose timeline entry was dropped is still a duplicate");
        assert.equal((await small.applyEvents([events[2] as ProjectedEvent]))[0]?.duplicate, true);
        assert.equal((await small.getShipment(tn))?.version, events.length);
      });

      it("recognises an event whose id the trimmed document dropped as a duplicate", async () => {
        const small = await make({ maxDocumentBytes: LIMIT });
        const tn = uniqueTrackingNumber();
        const events = Array.from({ length: 320 }, (_, i) => scan(tn, `${tn}-${String(i).padStart(3, "0")}`, now - 10 * HOUR + i * 1000, ScanKind.HUB_ARRIVAL, { hubCode: "FRA" }));
        for (let i = 0; i < events.length; i += 40) assert.ok((await small.applyEvents(events.slice(i, i + 40))).every((r) => r.applied));
        const doc = await small.getShipment(tn);
        assert.ok(doc?.derivation.trimmed && doc.derivation.trimmed.ids > 0, "ids were dropped");
        assert.equal(doc.derivation.trimmed.ids + doc.derivation.eventIds.length, 320);
        assert.ok(!doc.derivation.eventIds.includes(idOf(events[0] as ProjectedEvent)));
        const one = await small.applyEvent(events[0] as ProjectedEvent);
        const batch = await small.applyEvents([events[1] as ProjectedEvent, events[0] as ProjectedEvent]);
        assert.deepEqual([one, ...batch].map((r) => [r.applied, r.duplicate, r.version]), [
          [false, true, 320],
          [false, true, 320],
          [false, true, 320],
        ]);
        assert.equal((await small.getShipment(tn))?.version, 320);
        assert.equal((await allEvents(small, tn, 1000)).length, 320);
      });
    });
  });
}
