import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { jetstream, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { StatusChangedSchema, type StatusChanged } from "@logistics/shared/gen/logistics/events/v1/tracking_events_pb.js";
import { createEventCatalog, type EventCatalog } from "@logistics/shared/events";
import { createEventPublisher, ensureStreams, type Subjects } from "@logistics/shared/nats";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import type { PostgresShipmentStore } from "../src/store/postgres/postgres-shipment-store.js";
import type { ShipmentDoc } from "../src/store/ports.js";
import {
  comparable,
  createProjectorTestEnv,
  generateDataSet,
  oracle,
  publishShuffled,
  type FixtureEvent,
  type ProjectorTestEnv,
} from "./tracking-fixtures.js";

const SHIPMENTS = 1000;
const DURABLE_PREFIX = "tracking";
const DURABLES = ["scans", "shipment-events", "routes"].map((s) => `${DURABLE_PREFIX}-${s}`);

describe("the tracking projector (real nats-server and PostgreSQL)", () => {
  let env: ProjectorTestEnv;
  let store: PostgresShipmentStore;
  let catalog: EventCatalog;
  let subjects: Subjects;
  let adminJs: JetStreamClient;
  let jsm: JetStreamManager;
  let events: FixtureEvent[];
  let expected: Map<string, ShipmentDoc>;
  let published = 0;
  let appliedWhenKilled = 0;

  const startReplica = () => env.startReplica(catalog, { durablePrefix: DURABLE_PREFIX, maxBatch: 64, ackWaitMs: 2000 });

  const appliedCount = async () =>
    Number((await store.pool.query<{ n: string }>("SELECT count(*) AS n FROM applied_events")).rows[0]?.n ?? 0);

  const drained = async () => {
    for (const d of DURABLES) {
      const stream = d.includes("scans") ? subjects.streams.scans.name : d.includes("shipment-events") ? subjects.streams.shipments.name : subjects.streams.routes.name;
      const info = await jsm.consumers.info(stream, d);
      if (info.num_pending > 0 || info.num_ack_pending > 0) return false;
    }
    return true;
  };

  beforeAll(async () => {
    env = await createProjectorTestEnv({ schemaPrefix: "trk_proj", maxConnections: 30 });
    ({ store, jsm } = env);
    adminJs = jetstream(env.admin);
    catalog = createEventCatalog(uniqueName("trk"));
    subjects = catalog.subjects;
    await ensureStreams(jsm, subjects.streamList);

    events = generateDataSet("PRJ", SHIPMENTS, 42);
    expected = oracle(events);

    // Replica A starts projecting while the shuffled, duplicated events are still being published.
    const a = await startReplica();
    published = await publishShuffled(createEventPublisher({ js: adminJs }), subjects, events, { seed: 7, duplicateRate: 0.15 });
    appliedWhenKilled = await waitFor(async () => {
      const n = await appliedCount();
      return n >= events.length * 0.3 ? n : 0;
    }, { timeoutMs: 60_000, message: "a third of the events applied" });
    // Kill replica A abruptly: its connection goes away with messages taken but not acknowledged.
    await a.nc.close();
    // Replica B (and a second one, sharing the durable consumers) take over.
    await startReplica();
    await startReplica();
    await waitFor(async () => (await appliedCount()) === events.length && (await drained()), {
      timeoutMs: 90_000,
      intervalMs: 250,
      message: "every event applied and every consumer drained",
    });
  });

  afterAll(async () => {
    await env?.close();
  });

  it("was killed mid-run (the data set really was partly applied, with duplicates published)", () => {
    assert.ok(published > events.length, `published ${published} messages for ${events.length} events`);
    assert.ok(appliedWhenKilled < events.length, `killed after ${appliedWhenKilled} of ${events.length}`);
  });

  it("projects the shuffled, duplicated events to exactly the sequential oracle's state", async () => {
    const rows = await store.pool.query<{ doc: ShipmentDoc }>("SELECT doc FROM shipments");
    assert.equal(rows.rows.length, SHIPMENTS);
    let mismatches = 0;
    for (const { doc } of rows.rows) {
      const want = expected.get(doc.trackingNumber);
      assert.ok(want, `unexpected shipment ${doc.trackingNumber}`);
      try {
        assert.deepEqual(comparable(doc), comparable(want));
      } catch (err) {
        if (++mismatches <= 3) throw err;
      }
    }
    assert.equal(mismatches, 0);
  });

  it("keeps every event exactly once in the history, and versions count distinct events", async () => {
    const r = await store.pool.query<{ total: string; distinct: string }>(
      "SELECT count(*) AS total, count(DISTINCT event_id) AS distinct FROM shipment_events",
    );
    assert.equal(Number(r.rows[0]?.total), events.length);
    assert.equal(Number(r.rows[0]?.distinct), events.length);
    const v = await store.pool.query<{ bad: string }>(
      "SELECT count(*) AS bad FROM shipments s WHERE s.version <> (SELECT count(*) FROM shipment_events e WHERE e.tracking_number = s.tracking_number)",
    );
    assert.equal(Number(v.rows[0]?.bad), 0);
  });

  it("publishes each status change once, and each shipment's latest StatusChanged carries its final status", async () => {
    const consumer = await adminJs.consumers.get(subjects.streams.status.name, { filter_subjects: subjects.allStatusChanged });
    const seen = new Set<string>();
    const duplicates: string[] = [];
    const latest = new Map<string, StatusChanged>();
    const wrong = () => [...expected].filter(([tn, doc]) => latest.get(tn)?.status !== doc.status).map(([tn]) => tn);
    try {
      // A change whose first publish failed is published by the redelivery (after a backoff), so
      // the status stream converges shortly after the read model does: read until it has.
      await waitFor(
        async () => {
          const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 });
          for await (const m of batch) {
            const c = fromBinary(StatusChangedSchema, m.data);
            const key = `${c.trackingNumber}@${c.version}`;
            if (seen.has(key)) duplicates.push(key);
            seen.add(key);
            const prev = latest.get(c.trackingNumber);
            if (!prev || prev.version < c.version) latest.set(c.trackingNumber, c);
          }
          return wrong().length === 0;
        },
        { timeoutMs: 30_000, intervalMs: 1, message: "every shipment's latest StatusChanged to match its final status" },
      ).catch(() => undefined);
    } finally {
      await consumer.delete().catch(() => {});
    }
    assert.ok(seen.size >= SHIPMENTS, `only ${seen.size} status changes`);
    assert.deepEqual(duplicates, [], "StatusChanged published twice for one version");
    assert.deepEqual(wrong(), [], "shipments whose latest StatusChanged is not their final status");
  });

  it("publishes one EtaChanged per planned route", async () => {
    const routed = events.filter((e) => e.kind === "route").length;
    const stored = async () => {
      const info = await jsm.streams.info(subjects.streams.status.name, { subjects_filter: subjects.allEtaChanged });
      return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    };
    await waitFor(async () => (await stored()) >= routed, { message: `${routed} EtaChanged stored` }).catch(() => undefined);
    assert.equal(await stored(), routed);
  });
});
