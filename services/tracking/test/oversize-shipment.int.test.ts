import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { jetstream } from "@nats-io/jetstream";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { createCatalogPublisher, createEventCatalog, publication } from "@logistics/shared/events";
import { ensureStreams } from "@logistics/shared/nats";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { loadHistory, stepsBetween } from "../src/shipment-history.js";
import { shipmentMessage } from "../src/shipment-view.js";
import { applyToDoc } from "../src/store/derive.js";
import type { ApplyResult, ProjectedEvent, ShipmentDoc, StoredEvent } from "../src/store/ports.js";
import { MAX_DOCUMENT_BYTES } from "../src/store/size.js";
import { CARRIER, createdEvent, createProjectorTestEnv, REGION, routeEvent, type ProjectorTestEnv } from "./tracking-fixtures.js";

/*
 * A shipment whose carrier keeps scanning it far past what its document holds at the default
 * limit (256 KiB): what ingest's scan budget stops, until the budget's key expires or Redis is
 * down. Tracking applies every event, trims its document to stay within the limit (the oldest
 * timeline entries), keeps status, location and ETA, and counts what it trimmed; the history,
 * its paging and the replay watchers use stay whole. Real PostgreSQL (own schema) and, for the
 * projector, a real nats-server (own catalog prefix).
 */

const BASE = Date.UTC(2026, 10, 20, 8, 0, 0);
const KINDS = [ScanKind.HUB_ARRIVAL, ScanKind.HUB_DEPARTURE, ScanKind.CUSTOMS, ScanKind.HUB_ARRIVAL, ScanKind.HUB_DEPARTURE];

/**
 * Scan `n` of `tn`, a minute after the previous, at hub H<n mod 9>, with a 200-character carrier
 * text; the last of `total` is the delivery. About 450 bytes of document each.
 */
function scanEvent(tn: string, n: number, total: number): ProjectedEvent {
  const last = n === total - 1;
  const message = create(ScanRecordedSchema, {
    eventId: `scan.${tn}.${String(n).padStart(5, "0")}`,
    kind: last ? ScanKind.DELIVERED : (KINDS[n % KINDS.length] as ScanKind),
    scan: {
      eventId: `c-${tn}-${n}`,
      trackingNumber: tn,
      carrierCode: CARRIER,
      eventTime: timestampFromDate(new Date(BASE + (n + 1) * 60_000)),
      hubCode: `H${n % 9}`,
      location: { latitude: 40 + (n % 1000) / 100, longitude: 2 },
      rawStatus: { code: `K${n % 17}`, text: `scan ${n} `.padEnd(200, "~") },
    },
    recordedAt: timestampFromDate(new Date()),
    region: REGION,
  });
  return { type: "scan.recorded", message };
}

/** The creation, the route plan (ETA) and `scans` scans of `tn`, in event-time order. */
function oversizeShipment(tn: string, scans: number): ProjectedEvent[] {
  return [
    createdEvent(tn, new Date(BASE - 86_400_000)).event,
    routeEvent(tn, new Date(BASE - 3_600_000), new Date(BASE + 30 * 86_400_000)).event,
    ...Array.from({ length: scans }, (_, n) => scanEvent(tn, n, scans)),
  ];
}

const bytes = (doc: unknown) => Buffer.byteLength(JSON.stringify(doc), "utf8");

/** What the document must say after every event of `events` was applied (and how large it would be untrimmed). */
function checkDocument(doc: ShipmentDoc, events: readonly ProjectedEvent[]): void {
  let untrimmed: ShipmentDoc | undefined;
  for (const e of events) untrimmed = applyToDoc(untrimmed, e).doc;
  assert.ok(untrimmed && bytes(untrimmed) > 2 * MAX_DOCUMENT_BYTES, `untrimmed, the document would be ${untrimmed && bytes(untrimmed)} bytes`);

  assert.ok(bytes(doc) <= MAX_DOCUMENT_BYTES, `${bytes(doc)} bytes`);
  assert.equal(doc.version, events.length, "every event applied once");
  const last = events.at(-1) as ProjectedEvent;
  assert.equal(doc.status, ShipmentStatus.DELIVERED);
  assert.equal(doc.statusEventId, last.message.eventId);
  assert.deepEqual(doc.location, untrimmed.location);
  assert.deepEqual(doc.eta, untrimmed.eta, "the route plan's ETA");
  assert.equal(doc.customerId, untrimmed.customerId);

  const { timeline, trimmed } = doc.derivation;
  assert.ok(trimmed && trimmed.entries > 0, "the document was trimmed");
  // The creation and every scan are timeline entries; the route event is not.
  const entries = events.length - 1;
  assert.equal(trimmed.entries + timeline.length, entries, "each entry kept or counted as trimmed");
  assert.deepEqual(
    timeline.map((e) => e.eventId),
    untrimmed.derivation.timeline.slice(trimmed.entries).map((e) => e.eventId),
    "the newest entries, in order",
  );
  assert.equal(timeline.at(-1)?.eventId, last.message.eventId);
  assert.ok(timeline.length > 100, `${timeline.length} entries kept`);
  const rendered = shipmentMessage(doc);
  assert.equal(rendered.trimmedEventCount, trimmed.entries);
  assert.equal(rendered.eventCount, events.length);
  assert.equal(rendered.currentHubCode, untrimmed.derivation.timeline.at(-1)?.hubCode);
}

describe("a shipment scanned far past the document size limit (real PostgreSQL and nats-server)", () => {
  let env: ProjectorTestEnv;

  beforeAll(async () => {
    env = await createProjectorTestEnv({ schemaPrefix: "trk_oversize", maxConnections: 6 });
  });

  afterAll(async () => {
    await env?.close();
  });

  it("store: applies every event, one call at a time and in batches, keeping the document within the limit", async () => {
    const { store } = env;
    const tn = "OVSTORE00000001";
    const events = oversizeShipment(tn, 1500);
    const results: ApplyResult[] = [];
    for (const e of events.slice(0, 50)) results.push(await store.applyEvent(e));
    /** The document the store wrote at the end of each call: what watchers read. */
    const written: ShipmentDoc[] = [];
    for (let i = 50; i < events.length; i += 150) {
      const batch = await store.applyEvents(events.slice(i, i + 150));
      results.push(...batch);
      written.push((batch.at(-1) as ApplyResult).after);
    }
    assert.equal(results.length, events.length);
    assert.deepEqual(
      results.filter((r) => !r.applied).map((r) => r.version),
      [],
      "no event refused or taken for a duplicate",
    );

    const doc = await store.getShipment(tn);
    assert.ok(doc);
    assert.deepEqual(doc, results.at(-1)?.after, "the last result's document is the one stored");
    checkDocument(doc, events);
    const stored = await store.pool.query<{ n: number }>("SELECT octet_length(doc::text)::int AS n FROM shipments WHERE tracking_number = $1", [tn]);
    assert.ok((stored.rows[0]?.n ?? Infinity) <= MAX_DOCUMENT_BYTES * 1.1, `${stored.rows[0]?.n} bytes as jsonb text`);
    assert.ok(written.some((d) => d.derivation.trimmed) && written.filter((d) => d.derivation.trimmed).length > 1, "trimmed at more than one write");

    // The history keeps every event, and pages through all of them in event-time order.
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.listEvents(tn, { pageSize: 500, ...(cursor ? { cursor } : {}) });
      ids.push(...page.items.map((e) => e.eventId));
      cursor = page.nextCursor;
    } while (cursor);
    assert.deepEqual(ids, events.map((e) => e.message.eventId));

    // A watcher holding an earlier stored document steps through every version since, across the
    // writes that trimmed, from the history; the last step is the stored document itself.
    const history: ReadonlyMap<string, StoredEvent> = await loadHistory(store, tn);
    const from = written.at(-4) as ShipmentDoc;
    const steps = stepsBetween(from, doc, history);
    assert.deepEqual(
      steps.map((s) => s.version),
      Array.from({ length: doc.version - from.version }, (_, i) => from.version + i + 1),
    );
    assert.equal(steps.at(-1)?.doc, doc);
    for (const s of steps) {
      const r = results[s.version - 1] as ApplyResult;
      assert.equal(s.cause.eventId, events[s.version - 1]?.message.eventId, `v${s.version} cause`);
      assert.equal(s.doc.status, r.after.status, `v${s.version} status`);
      assert.equal(s.doc.statusEventId, r.after.statusEventId, `v${s.version} status event`);
    }
  });

  it("projector: applies and acknowledges every event, dead-letters none", async () => {
    const { store, admin, jsm } = env;
    const catalog = createEventCatalog(uniqueName("trkovs"));
    await ensureStreams(jsm, catalog.subjects.streamList);
    const tn = "OVPROJ00000001";
    const events = oversizeShipment(tn, 1500);
    const publisher = createCatalogPublisher({ js: jetstream(admin) });
    const scans = events.filter((e) => e.type === "scan.recorded");
    const published = await publisher.publishAll([
      publication(catalog.events.shipmentCreated, events[0]?.message as never, { region: REGION }),
      publication(catalog.events.routePlanned, events[1]?.message as never, { region: REGION }),
      ...scans.map((e) => publication(catalog.events.scanRecorded, e.message as never, { region: REGION, carrier: CARRIER })),
    ]);
    for (const r of published) if (r.status === "rejected") throw r.reason;

    const { projector } = await env.startReplica(catalog, { maxBatch: 200, ackWaitMs: 30_000 });
    await waitFor(
      async () => {
        const i = await jsm.consumers.info(catalog.subjects.streams.scans.name, "tracking-scans");
        return i.num_pending === 0 && i.num_ack_pending === 0 && i.ack_floor.stream_seq === scans.length;
      },
      { timeoutMs: 120_000, message: "every scan acknowledged" },
    );
    await waitFor(async () => (await store.getShipment(tn))?.version === events.length, { timeoutMs: 30_000, message: "every event applied" });

    const stats = projector.stats();
    assert.equal(stats["tracking-scans"]?.acked, scans.length);
    for (const [durable, s] of Object.entries(stats)) assert.equal(s.deadLettered, 0, `${durable} dead-lettered nothing`);
    assert.equal((await jsm.streams.info(catalog.subjects.streams.deadLetters.name)).state.messages, 0, "no dead letter");

    const doc = await store.getShipment(tn);
    assert.ok(doc);
    checkDocument(doc, events);
  });
});
