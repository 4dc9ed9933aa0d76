import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, fromBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, type ScanRecorded } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { StatusChangedSchema, type StatusChanged } from "@logistics/shared/gen/logistics/events/v1/tracking_events_pb.js";
import { createCatalogPublisher, createEventCatalog, publication, type CatalogPublisher, type EventCatalog } from "@logistics/shared/events";
import { EventHeaders, ensureStreams } from "@logistics/shared/nats";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { docAtVersion, loadHistory } from "../src/shipment-history.js";
import type { PostgresShipmentStore } from "../src/store/postgres/postgres-shipment-store.js";
import type { ShipmentDoc, ProjectedEvent } from "../src/store/ports.js";
import { CARRIER, createdEvent, createProjectorTestEnv, REGION, routeEvent, type ProjectorTestEnv } from "./tracking-fixtures.js";

/*
 * The batched projector's guarantees, each on its own catalog prefix (own streams and durables)
 * over one nats-server and one PostgreSQL schema: a batch is one transaction and one store call,
 * each shipment's events are applied (and their changes published) in stream order, a poison
 * event is dead-lettered alone while the rest of its batch commits, and a replica killed after
 * its commit but before its acks loses nothing and applies nothing twice.
 */

/** A journey whose every step (in event-time order) changes the status. */
const KINDS = [ScanKind.PICKUP, ScanKind.OUT_FOR_DELIVERY, ScanKind.DELIVERY_ATTEMPT, ScanKind.OUT_FOR_DELIVERY, ScanKind.DELIVERED];
const BASE = Date.UTC(2026, 10, 20, 8, 0, 0);

/** Scan `n` (0-based) of shipment `tn`: the n-th step of the journey, an hour after the previous. */
function scan(tn: string, n: number, over: { eventTime?: Date | null; latitude?: number } = {}): ScanRecorded {
  const at = over.eventTime === undefined ? new Date(BASE + (n + 1) * 3_600_000) : over.eventTime;
  return create(ScanRecordedSchema, {
    eventId: `scan.${tn}.${n}`,
    scan: {
      eventId: `c-${tn}-${n}`,
      trackingNumber: tn,
      carrierCode: CARRIER,
      rawStatus: { code: `K${n}`, text: "scanned" },
      ...(at ? { eventTime: timestampFromDate(at) } : {}),
      ...(over.latitude !== undefined ? { location: { latitude: over.latitude, longitude: 0 } } : {}),
    },
    kind: KINDS[n % KINDS.length] as ScanKind,
    recordedAt: timestampFromDate(new Date()),
    region: REGION,
  });
}

const tnOf = (tag: string, i: number) => `${tag}${String(i).padStart(6, "0")}`;

describe("the batched tracking projector (real nats-server and PostgreSQL)", () => {
  let env: ProjectorTestEnv;
  let store: PostgresShipmentStore;
  let admin: NatsConnection;
  let jsm: JetStreamManager;
  let publisher: CatalogPublisher;
  const releases: Array<() => void> = [];

  beforeAll(async () => {
    env = await createProjectorTestEnv({ schemaPrefix: "trk_batch", maxConnections: 12 });
    ({ store, admin, jsm } = env);
    publisher = createCatalogPublisher({ js: jetstream(admin) });
  });

  afterAll(async () => {
    for (const r of releases) r();
    await env?.close();
  });

  /** A fresh catalog (own streams and durables). */
  const setup = async () => {
    const catalog = createEventCatalog(uniqueName("trkb"));
    await ensureStreams(jsm, catalog.subjects.streamList);
    const publishScans = async (list: readonly ScanRecorded[]) => {
      const results = await publisher.publishAll(list.map((m) => publication(catalog.events.scanRecorded, m, { region: REGION, carrier: CARRIER })));
      for (const r of results) if (r.status === "rejected") throw r.reason;
    };
    return { catalog, publishScans };
  };

  const startReplica = (catalog: EventCatalog, o: Parameters<ProjectorTestEnv["startReplica"]>[1] = {}) =>
    env.startReplica(catalog, { ackWaitMs: 1500, ...o });

  const scansSettled = async (catalog: EventCatalog, floor: number) => {
    await waitFor(
      async () => {
        const i = await jsm.consumers.info(catalog.subjects.streams.scans.name, "tracking-scans");
        return i.num_pending === 0 && i.num_ack_pending === 0 && i.ack_floor.stream_seq === floor;
      },
      { timeoutMs: 30_000, message: `tracking-scans settled at ${floor}` },
    );
  };

  /** Every StatusChanged of the catalog, in stream order. */
  const statusChanges = async (catalog: EventCatalog): Promise<StatusChanged[]> => {
    const name = catalog.subjects.streams.status.name;
    const info = await jsm.streams.info(name);
    const stream = await jetstream(admin).streams.get(name);
    const out: StatusChanged[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await stream.getMessage({ seq });
      if (m?.subject.startsWith(`${catalog.prefix}.status.changed.`)) out.push(fromBinary(StatusChangedSchema, m.data));
    }
    return out;
  };

  const docs = async (tns: readonly string[]) =>
    new Map(
      (await store.pool.query<{ tracking_number: string; doc: ShipmentDoc }>("SELECT tracking_number, doc FROM shipments WHERE tracking_number = ANY($1)", [tns])).rows.map(
        (r) => [r.tracking_number, r.doc],
      ),
    );

  it("applies a backlog in batches (one store call and one transaction each), every shipment's events in stream order", async () => {
    const { catalog, publishScans } = await setup();
    const shipments = Array.from({ length: 40 }, (_, i) => tnOf("BORD", i));
    // Shipments interleaved, each one's scans in journey order; the last scan of every shipment
    // carries the earliest event time, so "stream order" and "event-time order" differ.
    const list: ScanRecorded[] = [];
    for (let n = 0; n < KINDS.length; n++) {
      for (const tn of shipments) list.push(scan(tn, n, n === KINDS.length - 1 ? { eventTime: new Date(BASE) } : {}));
    }
    await publishScans(list);
    const calls: number[] = [];
    await startReplica(catalog, {
      maxBatch: 30,
      maxInFlightBatches: 1,
      wrap: (apply) => async (events: readonly ProjectedEvent[]) => {
        calls.push(events.length);
        return apply(events);
      },
    });
    await scansSettled(catalog, list.length);

    assert.equal(calls.reduce((a, b) => a + b, 0), list.length, "every event went through the store once");
    assert.ok(Math.max(...calls) > 1 && calls.length < list.length, `batches: ${calls.join(",")}`);
    assert.ok(calls.every((n) => n <= 30), `batches above maxBatch: ${calls.join(",")}`);
    // One transaction per store call: the history rows carry as many distinct xmins as there were calls.
    const tx = await store.pool.query<{ n: string }>(
      "SELECT count(DISTINCT xmin::text) AS n FROM shipment_events WHERE tracking_number = ANY($1)",
      [shipments],
    );
    assert.equal(Number(tx.rows[0]?.n), calls.length);

    const byTn = await docs(shipments);
    for (const tn of shipments) {
      const doc = byTn.get(tn);
      assert.ok(doc, tn);
      assert.deepEqual(doc.derivation.eventIds, KINDS.map((_, n) => `scan.${tn}.${n}`), `${tn} applied in stream order`);
      assert.equal(doc.version, KINDS.length);
    }
    // The change events of one shipment follow its versions, each `previousStatus` the status before.
    const changes = await statusChanges(catalog);
    for (const tn of shipments) {
      const mine = changes.filter((c) => c.trackingNumber === tn);
      assert.ok(mine.length >= 3, `${tn}: ${mine.length} status changes`);
      for (let k = 1; k < mine.length; k++) {
        const prev = mine[k - 1] as StatusChanged;
        const cur = mine[k] as StatusChanged;
        assert.ok(cur.version > prev.version, `${tn}: version ${cur.version} published after ${prev.version}`);
        assert.equal(cur.previousStatus, prev.status, `${tn} v${cur.version}`);
      }
    }
  });

  it("dead-letters a poison event alone while the rest of its batch commits in one transaction", async () => {
    const { catalog, publishScans } = await setup();
    const good = Array.from({ length: 12 }, (_, i) => tnOf("BPOK", i));
    const list: ScanRecorded[] = good.map((tn) => scan(tn, 0));
    // Two kinds of poison between them: a scan without event time (nothing to order or
    // partition it by) and one whose position no geo index takes.
    list.splice(3, 0, scan(tnOf("BPNT", 0), 0, { eventTime: null }));
    list.splice(8, 0, scan(tnOf("BPLL", 0), 0, { latitude: 91 }));
    await publishScans(list);
    const calls: number[] = [];
    const { projector } = await startReplica(catalog, {
      maxBatch: 100,
      // The messages are all stored before the start; a pull may still hand them over in two
      // socket reads, so the batch waits for the rest (it closes when the linger ends).
      lingerMs: 2_000,
      wrap: (apply) => async (events: readonly ProjectedEvent[]) => {
        calls.push(events.length);
        return apply(events);
      },
    });
    await scansSettled(catalog, list.length);

    const stats = projector.stats()["tracking-scans"];
    assert.equal(stats?.batches, 1, "all in one batch");
    assert.equal(stats?.deadLettered, 2);
    assert.equal(stats?.acked, good.length);
    // The store rejected the batch once per poison (nothing written), then committed the rest.
    assert.deepEqual(calls, [good.length + 2, good.length + 1, good.length]);
    const applied = await store.pool.query<{ n: string; tx: string }>(
      "SELECT count(*) AS n, count(DISTINCT xmin::text) AS tx FROM shipment_events WHERE tracking_number = ANY($1)",
      [good],
    );
    assert.equal(Number(applied.rows[0]?.n), good.length);
    assert.equal(Number(applied.rows[0]?.tx), 1, "the rest of the batch is one transaction");
    const poisoned = await store.pool.query<{ n: string }>("SELECT count(*) AS n FROM applied_events WHERE event_id = ANY($1)", [
      [`scan.${tnOf("BPNT", 0)}.0`, `scan.${tnOf("BPLL", 0)}.0`],
    ]);
    assert.equal(Number(poisoned.rows[0]?.n), 0, "poison is not recorded as applied");

    const dlqName = catalog.subjects.streams.deadLetters.name;
    await waitFor(async () => (await jsm.streams.info(dlqName)).state.messages === 2, { message: "two dead letters" });
    const dlq = await jetstream(admin).streams.get(dlqName);
    const reasons: string[] = [];
    for (let seq = 1; seq <= 2; seq++) {
      const m = await dlq.getMessage({ seq });
      assert.equal(m?.header.get(EventHeaders.DlqConsumer), "tracking-scans");
      reasons.push(m?.header.get(EventHeaders.DlqReason) ?? "");
    }
    assert.ok(reasons.some((r) => /^poison: .*scan\.event_time/.test(r)), reasons.join(" | "));
    assert.ok(reasons.some((r) => /^poison: .*scan\.location/.test(r)), reasons.join(" | "));
  });

  it("merges the three consumers' waiting batches into one store apply; a poison event fails only its own batch", async () => {
    const { catalog, publishScans } = await setup();
    const shipments = Array.from({ length: 10 }, (_, i) => tnOf("BMRG", i));
    const created = shipments.map((tn) => createdEvent(tn, new Date(BASE - 86_400_000)));
    const routes = shipments.map((tn) => routeEvent(tn, new Date(BASE - 3_600_000), new Date(BASE + 3 * 86_400_000)));
    const results = await publisher.publishAll([
      ...created.map((e) => publication(catalog.events.shipmentCreated, e.message as never, { region: REGION })),
      ...routes.map((e) => publication(catalog.events.routePlanned, e.message as never, { region: REGION })),
    ]);
    for (const r of results) if (r.status === "rejected") throw r.reason;
    const scans = shipments.map((tn) => scan(tn, 0));
    scans.splice(4, 0, scan(tnOf("BMRP", 0), 0, { eventTime: null }));
    await publishScans(scans);

    // The first apply waits until every consumer has handed its batch over: the two others then
    // wait together, and go as one apply.
    const calls: Array<Array<ProjectedEvent["type"]>> = [];
    let projector: Awaited<ReturnType<typeof startReplica>>["projector"] | undefined;
    const batches = () => Object.values(projector?.stats() ?? {}).reduce((n, c) => n + c.batches, 0);
    const notices: Array<{ tn: string; version: number; carried: boolean }> = [];
    ({ projector } = await startReplica(catalog, {
      maxBatch: 100,
      lingerMs: 1_000,
      notifier: { notify: (tn, version, change) => void notices.push({ tn, version, carried: change !== undefined }) },
      wrap: (apply) => async (events: readonly ProjectedEvent[]) => {
        calls.push(events.map((e) => e.type));
        if (calls.length === 1) await waitFor(() => batches() === 3, { timeoutMs: 10_000, message: "three batches handed over" });
        return apply(events);
      },
    }));
    await scansSettled(catalog, scans.length);
    await waitFor(
      async () => {
        const all = await Promise.all(
          (["tracking-shipment-events", "tracking-routes"] as const).map((d) =>
            jsm.consumers.info(catalog.consumer(d).stream.name, d),
          ),
        );
        return all.every((i) => i.num_pending === 0 && i.num_ack_pending === 0);
      },
      { message: "creations and routes settled" },
    );

    const kinds = (c: ReadonlyArray<ProjectedEvent["type"]>) => [...new Set(c)].sort().join("+");
    // One consumer's batch alone, then the two others merged (with the poison scan: it fails, and
    // they apply again without it), or, when the scans went first, the two others merged at once.
    assert.ok(calls.length >= 2 && calls.length <= 3, `store applies: ${calls.map(kinds).join(" | ")}`);
    const merged = calls.slice(1).map(kinds);
    assert.ok(merged.every((k) => k.includes("+")), `the later applies hold two consumers' batches: ${merged.join(" | ")}`);
    assert.ok(calls.flat().filter((t) => t !== "scan.recorded").length >= 2 * shipments.length, "every creation and route went through the store");
    const stats = projector.stats();
    assert.equal(stats["tracking-scans"]?.deadLettered, 1, "the poison scan, alone");
    assert.equal(stats["tracking-scans"]?.acked, shipments.length);
    assert.equal(stats["tracking-shipment-events"]?.acked, shipments.length);
    assert.equal(stats["tracking-routes"]?.acked, shipments.length);
    const byTn = await docs(shipments);
    for (const tn of shipments) {
      const ids = byTn.get(tn)?.derivation.eventIds ?? [];
      assert.deepEqual([...ids].sort(), [`created.${tn}`, `route.${tn}.1`, `scan.${tn}.0`].sort(), `${tn}: ${ids.join(",")}`);
    }
    // A shipment with events in two of a merged apply's batches gets a notice per batch, and each
    // carries its change: watchers take it in without reading the store.
    for (const tn of shipments) {
      const mine = notices.filter((n) => n.tn === tn);
      assert.ok(mine.length >= 2, `${tn}: ${mine.length} notices`);
      assert.deepEqual(mine.filter((n) => !n.carried).map((n) => n.version), [], `${tn}: notices with the version alone`);
    }
  });

  it("loses nothing and applies nothing twice when a replica dies after its commit and before its acks", async () => {
    const { catalog, publishScans } = await setup();
    const shipments = Array.from({ length: 30 }, (_, i) => tnOf("BKIL", i));
    const list: ScanRecorded[] = [];
    for (let n = 0; n < 3; n++) for (const tn of shipments) list.push(scan(tn, n));
    await publishScans(list);

    // Replica A commits its first batch, then hangs before publishing or acknowledging anything.
    let committed = 0;
    let release!: () => void;
    const hung = new Promise<void>((r) => (release = r));
    releases.push(release);
    const a = await startReplica(catalog, {
      maxBatch: 25,
      maxInFlightBatches: 1,
      wrap: (apply) => async (events: readonly ProjectedEvent[]) => {
        const results = await apply(events);
        committed += events.length;
        await hung;
        return results;
      },
    });
    await waitFor(() => committed > 0, { message: "replica A committed a batch" });
    // Kill it: its connection goes away with the batch taken, committed and not acknowledged.
    await a.nc.close();
    const firstBatch = committed;
    await startReplica(catalog, { maxBatch: 25 });
    await scansSettled(catalog, list.length);

    const history = await store.pool.query<{ total: string; distinct: string }>(
      "SELECT count(*) AS total, count(DISTINCT event_id) AS distinct FROM shipment_events WHERE tracking_number = ANY($1)",
      [shipments],
    );
    assert.equal(Number(history.rows[0]?.total), list.length, "every event applied");
    assert.equal(Number(history.rows[0]?.distinct), list.length, "none twice");
    const byTn = await docs(shipments);
    for (const tn of shipments) assert.equal(byTn.get(tn)?.version, 3, tn);

    // The changes of A's committed batch were published by the redelivery, each version once.
    // (Not necessarily in version order: B may publish a shipment's later versions before A's
    // batch comes back; the version in every change tells consumers which is newer.) A also held
    // the messages it had pulled beyond its batch, which come back only after their ack wait: B
    // may then apply a shipment's later scans first, and the held one arrives late (an earlier
    // event time) and changes no status (seen: scans 1, 2, then 0). So the versions expected are
    // those whose status differs from the version before, as the shipment's own history gives
    // them: all three when the scans came in order.
    const changes = await statusChanges(catalog);
    const keys = changes.map((c) => `${c.trackingNumber}@${c.version}`);
    assert.equal(new Set(keys).size, keys.length, "a change published twice");
    for (const tn of shipments) {
      const doc = byTn.get(tn) as ShipmentDoc;
      const history = await loadHistory(store, tn);
      const statusAt = (v: number) => (v === 0 ? ShipmentStatus.UNSPECIFIED : docAtVersion(doc, v, history).status);
      const expected = [1, 2, 3].filter((v) => statusAt(v) !== statusAt(v - 1));
      const mine = changes.filter((c) => c.trackingNumber === tn);
      assert.deepEqual(mine.map((c) => Number(c.version)).sort(), expected, `${tn}: published versions`);
      const last = mine.reduce((a, c) => (c.version > a.version ? c : a));
      assert.equal(last.status, doc.status, `${tn}: the newest published change carries the shipment's status`);
    }
    assert.ok(firstBatch > 0 && firstBatch < list.length, `A committed ${firstBatch} of ${list.length}`);
    for (const tn of shipments) assert.equal(byTn.get(tn)?.status, ShipmentStatus.FAILED_ATTEMPT, tn);
  });
});
