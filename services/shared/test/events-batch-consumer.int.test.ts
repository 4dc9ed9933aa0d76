import { strict as assert } from "node:assert";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, fromBinary } from "@bufbuild/protobuf";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { SpanKind, trace } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace";
import { Registry } from "prom-client";
import { ScanRecordedSchema, type ScanRecorded } from "../src/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema, RouteUpdatedSchema } from "../src/gen/logistics/events/v1/routing_events_pb.js";
import {
  createCatalogPublisher,
  createEventCatalog,
  ensureCatalogConsumer,
  Outcomes,
  publication,
  PULL_EXPIRY_MARGIN_MS,
  PULLS_ENDED_BY_CLIENT_METRIC,
  startBatchConsumer,
  type BatchConsumer,
  type BatchConsumerOptions,
  type BatchItem,
  type CatalogPublisher,
  type ConsumerOverrides,
  type EventCatalog,
  type Outcome,
} from "../src/events/index.js";
import { connectNats, jetstreamFor } from "../src/nats/connect.js";
import { EventHeaders } from "../src/nats/event-headers.js";
import { subjectFamily } from "../src/nats/subjects.js";
import { ensureConsumer, ensureStreams } from "../src/nats/streams.js";
import { startTelemetry, type TelemetryHandle } from "../src/telemetry/index.js";
import { startNatsServer, type NatsServerHandle } from "../src/testing/nats-server.js";
import { uniqueName } from "../src/testing/unique.js";
import { waitFor } from "../src/testing/wait-for.js";

type ScanItem = BatchItem<EventCatalog["events"]["scanRecorded"]>;

/** A promise with its resolver, to hold a handler until the test lets it go. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

const scan = (tn: string, n: number): ScanRecorded =>
  create(ScanRecordedSchema, { eventId: `${tn}-${n}`, scan: { trackingNumber: tn, carrierCode: "acme" }, region: "eu" });

describe("event catalog publishing and the batch consumer (real nats-server)", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let publisher: CatalogPublisher;
  const consumers: BatchConsumer[] = [];
  const exporter = new InMemorySpanExporter();
  let telemetry: TelemetryHandle;

  beforeAll(async () => {
    telemetry = startTelemetry({ serviceName: "events-test", spanExporter: exporter });
    server = await startNatsServer();
    nc = await connectNats({ servers: server.url, name: "events-test" });
    ({ js, jsm } = await jetstreamFor(nc));
    publisher = createCatalogPublisher({ js });
  });
  afterAll(async () => {
    await Promise.all(consumers.map((c) => c.close()));
    await nc?.drain();
    await server?.stop();
    await telemetry?.shutdown();
  });

  /** A fresh catalog (unique prefix), its streams, and the tracking scans consumer. */
  async function setup(overrides: ConsumerOverrides = {}) {
    const catalog = createEventCatalog(uniqueName("t"));
    await ensureStreams(jsm, catalog.subjects.streamList);
    const def = catalog.consumer("tracking-scans", overrides);
    await ensureCatalogConsumer(jsm, def);
    const publishScans = (list: ScanRecorded[]) =>
      publisher.publishAll(list.map((m) => publication(catalog.events.scanRecorded, m, { region: "eu", carrier: "acme" })));
    return { catalog, def, publishScans };
  }

  async function start<E extends Parameters<typeof startBatchConsumer>[0]["consumer"]["events"][number]>(
    catalog: EventCatalog,
    o: Omit<BatchConsumerOptions<E>, "js" | "catalog">,
  ): Promise<BatchConsumer> {
    const c = await startBatchConsumer({ js, catalog, retryDelayMs: () => 50, ...o });
    consumers.push(c);
    return c;
  }

  const info = (stream: string, durable: string) => jsm.consumers.info(stream, durable);
  const settled = async (stream: string, durable: string, floor: number) => {
    await waitFor(async () => {
      const i = await info(stream, durable);
      return i.num_ack_pending === 0 && i.num_pending === 0 && i.ack_floor.stream_seq === floor;
    }, { message: `consumer ${durable} settled at ${floor}` });
  };

  it("publishes with Nats-Msg-Id = the event id, the type header and the trace context; a republish is a duplicate", async () => {
    const { catalog } = await setup();
    const tracer = trace.getTracer("test");
    const m = scan("TNPUB00001", 1);
    const first = await publisher.publish(catalog.events.scanRecorded, m, { region: "eu", carrier: "acme" });
    assert.equal(first.duplicate, false);
    assert.equal(first.stream, catalog.subjects.streams.scans.name);
    const again = await tracer.startActiveSpan("parent", async (span) => {
      const r = await publisher.publish(catalog.events.scanRecorded, m, { region: "eu", carrier: "acme" });
      span.end();
      return r;
    });
    assert.equal(again.duplicate, true, "the stream dropped the republish by its Nats-Msg-Id");
    const stored = await (await js.streams.get(catalog.subjects.streams.scans.name)).getMessage({ seq: first.seq });
    assert.ok(stored);
    assert.equal(stored.subject, "" + catalog.events.scanRecorded.subject({ region: "eu", carrier: "acme" }));
    assert.equal(stored.header.get(EventHeaders.MsgId), "TNPUB00001-1");
    assert.equal(stored.header.get(EventHeaders.MessageType), "logistics.events.v1.ScanRecorded");
    assert.equal(fromBinary(ScanRecordedSchema, stored.data).eventId, "TNPUB00001-1");
  });

  it("publishAll issues every publish, awaits every PubAck and reports each item's outcome", async () => {
    const { catalog } = await setup();
    const orphan = createEventCatalog(uniqueName("nostream"));
    const results = await publisher.publishAll(
      [
        publication(catalog.events.scanRecorded, scan("TNALL00001", 1), { region: "eu", carrier: "acme" }),
        publication(orphan.events.shipmentCreated, create(orphan.events.shipmentCreated.schema, { eventId: "x", trackingNumber: "TNALL00002" }), { region: "eu" }),
        publication(catalog.events.scanRecorded, scan("TNALL00001", 2), { region: "eu", carrier: "acme" }),
      ],
      { timeoutMs: 2000 },
    );
    assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"], "no stream captures the orphan's subject");
    const stream = await jsm.streams.info(catalog.subjects.streams.scans.name);
    assert.equal(stream.state.messages, 2);
  });

  it("hands a lone message over at once and acknowledges it after the handler returns", async () => {
    const { catalog, def, publishScans } = await setup();
    const seen: ScanItem[][] = [];
    await start(catalog, {
      consumer: def,
      handler: async (items) => {
        seen.push([...items]);
        return items.map(() => Outcomes.ack);
      },
    });
    await publishScans([scan("TNLONE0001", 1)]);
    await waitFor(() => seen.length === 1, { message: "one batch" });
    const item = seen[0]?.[0];
    assert.equal(seen[0]?.length, 1);
    assert.equal(item?.type, "scan.recorded");
    assert.equal(item?.key, "TNLONE0001");
    assert.equal(item?.id, "TNLONE0001-1");
    assert.equal(item?.region, "eu");
    assert.equal(item?.carrier, "acme");
    assert.equal(item?.deliveryCount, 1);
    assert.equal(item?.message.scan?.trackingNumber, "TNLONE0001");
    await settled(def.stream.name, def.durable, 1);
  });

  it("with lingerMs, takes a trickle in one batch of what arrived within the linger, and no later than it", async () => {
    // Ten messages 10 ms apart: without a linger each would be a batch of its own (the "lone
    // message" case above); with 400 ms they are taken together, the first one waiting at most
    // the linger (plus scheduling) for the batch to close.
    const { catalog, def, publishScans } = await setup();
    const batches: Array<{ at: number; ids: string[] }> = [];
    await start(catalog, {
      consumer: def,
      lingerMs: 400,
      handler: async (items) => {
        batches.push({ at: performance.now(), ids: items.map((i) => i.id) });
        return items.map(() => Outcomes.ack);
      },
    });
    const firstSentAt = performance.now();
    for (let n = 0; n < 10; n++) {
      await publishScans([scan("TNLINGER01", n)]);
      await new Promise((r) => setTimeout(r, 10));
    }
    await waitFor(() => batches.reduce((k, b) => k + b.ids.length, 0) === 10, { message: "all ten messages", timeoutMs: 5_000 });
    assert.ok(batches.length <= 2, `${batches.length} batches of ${batches.map((b) => b.ids.length).join(", ")}: the linger did not gather them`);
    assert.deepEqual(batches.flatMap((b) => b.ids), Array.from({ length: 10 }, (_, n) => `TNLINGER01-${n}`), "in stream order");
    const waited = batches[0]!.at - firstSentAt;
    assert.ok(waited < 1_500, `the first batch closed ${waited.toFixed(0)} ms after the first message (linger 400 ms)`);
    await settled(def.stream.name, def.durable, 10);
  });

  it("keeps a pull outstanding across pull expiries: no message of a trickle waits for a heartbeat timeout", async () => {
    // Pulls of up to 64 messages expiring after 2 s, under a trickle of one message per 150 ms:
    // each pull ends part-filled at its expiry. No message may wait for nats.js to miss two 1 s
    // heartbeats (~2 s) before the next pull. (A trickle this slow almost never has a message
    // arrive just after an expiry, the race in which nats-server < 2.9.16 drops the request without
    // its 408, so the test holds without the client-side end of a pull too; it guards the pulls'
    // continuity, not that race.)
    const { catalog, def, publishScans } = await setup();
    const seenAt = new Map<string, number>();
    await start(catalog, {
      consumer: def,
      maxBatch: 64,
      maxInFlightBatches: 1,
      lingerMs: 0,
      pullExpiresMs: 2_000,
      handler: async (items) => {
        for (const i of items) seenAt.set(i.id, performance.now());
        return items.map(() => Outcomes.ack);
      },
    });
    const sentAt = new Map<string, number>();
    const opened = performance.now();
    for (let n = 0; performance.now() - opened < 5_500; n++) {
      sentAt.set(`TNEXPIRE01-${n}`, performance.now());
      await publishScans([scan("TNEXPIRE01", n)]);
      await new Promise((r) => setTimeout(r, 150));
    }
    await waitFor(() => seenAt.size === sentAt.size, { message: "every message of the trickle", timeoutMs: 15_000 });
    const waits = [...sentAt].map(([id, at]) => seenAt.get(id)! - at);
    const longest = Math.max(...waits);
    assert.ok(longest < 800, `a message waited ${longest.toFixed(0)} ms for a pull (of ${waits.length}, two or more pulls expired)`);
  });

  it("pulls again at a pull's expiry: a pull the server dropped silently leaves no gap in which messages wait", async () => {
    // Publishing without pause (one message per event-loop turn) against pulls of up to 4,000
    // messages that expire part-filled every second: the race in which nats-server < 2.9.16 drops
    // an expired request without its 408 (a message arriving between the request's expiry and the
    // server's expiry timer). Such a pull ends only when the client ends it, a second later
    // (PULL_EXPIRY_MARGIN_MS): a consumer that waited for that before pulling again left every
    // message of that second waiting (~1,030 ms here). Runs until the server has dropped two pulls
    // (a few seconds against 2.9.10) or for 10 s (a server without the bug drops none, and the
    // test then only checks that no message waited long).
    const { catalog, def, publishScans } = await setup();
    const seenAt = new Map<string, number>();
    const c = await start(catalog, {
      consumer: def,
      maxBatch: 1000,
      maxInFlightBatches: 4,
      lingerMs: 0,
      pullExpiresMs: 1_000,
      handler: async (items) => {
        const now = performance.now();
        for (const i of items) seenAt.set(i.id, now);
        return items.map(() => Outcomes.ack);
      },
    });
    const sentAt = new Map<string, number>();
    const opened = performance.now();
    for (let n = 0; performance.now() - opened < 10_000 && c.stats().pullsEndedByClient < 2; n++) {
      sentAt.set(`TNDROPPED1-${n}`, performance.now());
      await publishScans([scan("TNDROPPED1", n)]);
      await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => seenAt.size === sentAt.size, { message: "every message of the stream", timeoutMs: 15_000 });
    const waits = [...sentAt].map(([id, at]) => seenAt.get(id)! - at);
    const longest = Math.max(...waits);
    assert.ok(
      longest < PULL_EXPIRY_MARGIN_MS * 0.6,
      `a message waited ${longest.toFixed(0)} ms for a pull (of ${waits.length}; pulls the server dropped: ${c.stats().pullsEndedByClient})`,
    );
  });

  it("serves its count of pulls it ended itself on the service's registry, from zero, per consumer", async () => {
    const { catalog, def } = await setup();
    const registry = new Registry();
    await start(catalog, { consumer: def, registry, handler: async (items) => items.map(() => Outcomes.ack) });
    const text = await registry.metrics();
    assert.match(text, new RegExp(`^${PULLS_ENDED_BY_CLIENT_METRIC}\\{consumer="${def.durable}"\\} 0$`, "m"));
  });

  it("loses nothing to a pull the client ended while the server still held it: the server drops a request nobody listens to", async () => {
    // The premise of ending pulls on the client (PULL_EXPIRY_MARGIN_MS): if the client's end comes
    // before the server's (a request that reached the server late), messages published after it
    // must not go to the ended pull's inbox, where they would wait for the ack wait (30 s here).
    // This covers a request without a listener; a message the server sent before the unsubscribe
    // reached it still waits for the ack wait.
    const { def, publishScans } = await setup({ ackWaitMs: 30_000 });
    const consumer = await js.consumers.get(def.stream.name, def.durable);
    const held = await consumer.fetch({ max_messages: 100, expires: 20_000 });
    const drained = (async () => {
      for await (const _ of held) {
        // nothing is published while it is open
      }
    })();
    await waitFor(async () => (await info(def.stream.name, def.durable)).num_waiting === 1, { message: "the pull is waiting on the server" });
    held.stop();
    await drained;
    await publishScans([scan("TNHELD0001", 1), scan("TNHELD0001", 2), scan("TNHELD0001", 3)]);
    const started = performance.now();
    const got: string[] = [];
    const next = await consumer.fetch({ max_messages: 3, expires: 5_000 });
    for await (const m of next) {
      got.push(fromBinary(ScanRecordedSchema, m.data).eventId);
      m.ack();
    }
    assert.deepEqual(got, ["TNHELD0001-1", "TNHELD0001-2", "TNHELD0001-3"]);
    assert.ok(performance.now() - started < 4_000, "the messages came to the next pull, not after the ack wait");
  });

  it("takes a backlog in batches of at most maxBatch, each key's messages in stream order, and acks them all", async () => {
    const { catalog, def, publishScans } = await setup();
    const keys = Array.from({ length: 7 }, (_, i) => `TNORD${String(i).padStart(5, "0")}`);
    const sent: ScanRecorded[] = [];
    for (let n = 0; n < 60; n++) for (const k of keys) sent.push(scan(k, n));
    await publishScans(sent);
    const order = new Map<string, number[]>();
    const sizes: number[] = [];
    let concurrent = 0;
    let maxConcurrent = 0;
    const c = await start(catalog, {
      consumer: def,
      maxBatch: 50,
      maxInFlightBatches: 3,
      handler: async (items) => {
        maxConcurrent = Math.max(maxConcurrent, ++concurrent);
        sizes.push(items.length);
        const inBatch = new Set<string>();
        for (const it of items) {
          const list = order.get(it.key) ?? [];
          list.push(Number(it.id.split("-")[1]));
          order.set(it.key, list);
          inBatch.add(it.key);
        }
        await new Promise((r) => setImmediate(r));
        concurrent--;
        return items.map(() => Outcomes.ack);
      },
    });
    await settled(def.stream.name, def.durable, sent.length);
    assert.ok(Math.max(...sizes) <= 50, `batch sizes ${sizes.join(",")}`);
    assert.ok(sizes.some((s) => s > 1), "messages were batched");
    assert.ok(maxConcurrent <= 3);
    for (const k of keys) assert.deepEqual(order.get(k), Array.from({ length: 60 }, (_, n) => n), `${k} in stream order, each once`);
    assert.equal(c.stats().acked, sent.length);
    assert.equal(c.stats().batches, sizes.length);
  });

  it("never gives the handler a key that is in a batch still in flight", async () => {
    const { catalog, def, publishScans } = await setup();
    const hold = gate();
    const batches: string[][] = [];
    await start(catalog, {
      consumer: def,
      maxBatch: 10,
      maxInFlightBatches: 2,
      handler: async (items) => {
        batches.push(items.map((i) => i.id));
        if (batches.length === 1) await hold.opened;
        return items.map(() => Outcomes.ack);
      },
    });
    await publishScans([scan("TNBUSY0001", 1)]);
    await waitFor(() => batches.length === 1, { message: "first batch in flight" });
    await publishScans([scan("TNBUSY0001", 2), scan("TNBUSY0002", 1)]);
    await waitFor(() => batches.length === 2, { message: "second batch" });
    assert.deepEqual(batches[1], ["TNBUSY0002-1"], "the busy key's next message waits for the first batch");
    hold.open();
    await waitFor(() => batches.length === 3, { message: "the held message follows" });
    assert.deepEqual(batches[2], ["TNBUSY0001-2"]);
    await settled(def.stream.name, def.durable, 3);
  });

  it("dead-letters a poison item alone with its reason while the rest of its batch is acknowledged", async () => {
    const { catalog, def, publishScans } = await setup();
    const handled: string[] = [];
    const c = await start(catalog, {
      consumer: def,
      maxBatch: 100,
      handler: async (items) =>
        items.map((it): Outcome => {
          handled.push(it.id);
          return it.id === "TNPOIS0002-1" ? Outcomes.poison("carrier code unknown") : Outcomes.ack;
        }),
    });
    // An undecodable payload and one whose type header names another type never reach the handler.
    const subject = catalog.events.scanRecorded.subject({ region: "eu", carrier: "acme" });
    const h = headers();
    h.set(EventHeaders.MessageType, "logistics.events.v1.ScanRecorded");
    await js.publish(subject, new Uint8Array([0xff, 0xff, 0xff, 0xff]), { headers: h, msgID: "junk-1" });
    const wrong = headers();
    wrong.set(EventHeaders.MessageType, "logistics.events.v1.RoutePlanned");
    await js.publish(subject, new Uint8Array(), { headers: wrong, msgID: "junk-2" });
    await publishScans([scan("TNPOIS0001", 1), scan("TNPOIS0002", 1), scan("TNPOIS0002", 2), scan("TNPOIS0003", 1)]);
    await settled(def.stream.name, def.durable, 6);
    assert.deepEqual(handled.sort(), ["TNPOIS0001-1", "TNPOIS0002-1", "TNPOIS0002-2", "TNPOIS0003-1"]);
    const dlq = await jsm.streams.info(catalog.subjects.streams.deadLetters.name);
    assert.equal(dlq.state.messages, 3);
    const reasons: string[] = [];
    const dlqStream = await js.streams.get(catalog.subjects.streams.deadLetters.name);
    for (let seq = 1; seq <= 3; seq++) {
      const m = await dlqStream.getMessage({ seq });
      assert.equal(m?.subject, def.deadLetterSubject);
      assert.equal(m?.header.get(EventHeaders.DlqConsumer), def.durable);
      reasons.push(m?.header.get(EventHeaders.DlqReason) ?? "");
    }
    assert.ok(reasons.some((r) => /poison: cannot decode logistics.events.v1.ScanRecorded/.test(r)), reasons.join(" | "));
    assert.ok(reasons.some((r) => /poison: payload type logistics.events.v1.RoutePlanned/.test(r)), reasons.join(" | "));
    assert.ok(reasons.some((r) => r === "poison: carrier code unknown"), reasons.join(" | "));
    assert.equal(c.stats().poison, 3);
    assert.equal(c.stats().deadLettered, 3);
    assert.equal(c.stats().acked, 3);
  });

  it("retries an item alone and keeps its key's later messages behind it until it is back", async () => {
    const { catalog, def, publishScans } = await setup({ maxDeliver: 5 });
    const calls: Array<{ id: string; delivery: number }> = [];
    let failedOnce = false;
    await start(catalog, {
      consumer: def,
      maxBatch: 100,
      handler: async (items) =>
        items.map((it): Outcome => {
          calls.push({ id: it.id, delivery: it.deliveryCount });
          if (it.id === "TNRETR0001-1" && !failedOnce) {
            failedOnce = true;
            return Outcomes.retry("database busy", 300);
          }
          return Outcomes.ack;
        }),
    });
    await publishScans([scan("TNRETR0001", 1), scan("TNRETR0002", 1)]);
    await waitFor(() => calls.length === 2, { message: "first batch" });
    // Published while the key is parked: it must not overtake the retried message.
    await publishScans([scan("TNRETR0001", 2), scan("TNRETR0002", 2)]);
    await settled(def.stream.name, def.durable, 4);
    const forKey = calls.filter((c) => c.id.startsWith("TNRETR0001")).map((c) => `${c.id}#${c.delivery}`);
    assert.deepEqual(forKey, ["TNRETR0001-1#1", "TNRETR0001-1#2", "TNRETR0001-2#1"]);
    const other = calls.filter((c) => c.id.startsWith("TNRETR0002")).map((c) => c.id);
    assert.deepEqual(other, ["TNRETR0002-1", "TNRETR0002-2"], "other keys were not held up");
  });

  it("retries every item of a batch whose handler throws, and dead-letters on the last delivery", async () => {
    const { catalog, def, publishScans } = await setup({ maxDeliver: 3 });
    const deliveries: number[] = [];
    const c = await start(catalog, {
      consumer: def,
      handler: async (items) => {
        for (const it of items) deliveries.push(it.deliveryCount);
        throw new Error("connection terminated unexpectedly");
      },
    });
    await publishScans([scan("TNFAIL0001", 1)]);
    await settled(def.stream.name, def.durable, 1);
    assert.deepEqual(deliveries, [1, 2, 3]);
    const m = await (await js.streams.get(catalog.subjects.streams.deadLetters.name)).getMessage({ seq: 1 });
    assert.match(m?.header.get(EventHeaders.DlqReason) ?? "", /handler failed after 3 deliveries: batch failed: connection terminated unexpectedly/);
    assert.equal(c.stats().retried, 2);
  });

  it("keeps a slow batch alive with in-progress acks (no redelivery past the ack wait)", async () => {
    const { catalog, def, publishScans } = await setup({ ackWaitMs: 1000 });
    const deliveries: number[] = [];
    let releaseAt = 0;
    await start(catalog, {
      consumer: def,
      handler: async (items) => {
        for (const it of items) deliveries.push(it.deliveryCount);
        // Three ack waits, measured on the server's clock: the ack floor moves only if no redelivery happened.
        releaseAt = Date.now() + 3000;
        await waitFor(() => Date.now() >= releaseAt, { timeoutMs: 10_000, intervalMs: 100 });
        return items.map(() => Outcomes.ack);
      },
    });
    await publishScans([scan("TNSLOW0001", 1)]);
    await settled(def.stream.name, def.durable, 1);
    assert.deepEqual(deliveries, [1]);
    const i = await info(def.stream.name, def.durable);
    assert.equal(i.num_redelivered, 0);
  });

  it("decodes a whole-stream consumer's messages by subject, one event type each", async () => {
    const catalog = createEventCatalog(uniqueName("t"));
    await ensureStreams(jsm, catalog.subjects.streamList);
    const def = catalog.consumer("tracking-routes");
    await ensureCatalogConsumer(jsm, def);
    const got: string[] = [];
    await start(catalog, {
      consumer: def,
      handler: async (items) => {
        for (const it of items) {
          if (it.type === "route.updated") got.push(`updated:${it.message.detail}`);
          else got.push(`planned:${it.message.route?.revision}`);
        }
        return items.map(() => Outcomes.ack);
      },
    });
    await publisher.publishAll([
      publication(catalog.events.routePlanned, create(RoutePlannedSchema, { eventId: "r1", trackingNumber: "TNROUT0001", route: { revision: 1 } }), { region: "eu" }),
      publication(catalog.events.routeUpdated, create(RouteUpdatedSchema, { eventId: "r2", trackingNumber: "TNROUT0001", detail: "missed cut-off" }), { region: "eu" }),
    ]);
    await settled(def.stream.name, def.durable, 2);
    assert.deepEqual(got, ["planned:1", "updated:missed cut-off"]);
  });

  it("runs the handler in one batch span, child of the first message's producer and linked to every producer", async () => {
    const { catalog, def, publishScans } = await setup();
    const tracer = trace.getTracer("test");
    const producers: string[] = [];
    // Two publishes from two traces; the consumer starts afterwards so both land in one batch.
    for (const tn of ["TNSPAN0001", "TNSPAN0002"]) {
      await tracer.startActiveSpan(`producer ${tn}`, async (span) => {
        producers.push(span.spanContext().spanId);
        await publishScans([scan(tn, 1)]);
        span.end();
      });
    }
    let active: string | undefined;
    await start(catalog, {
      consumer: def,
      // A full batch closes at once; the linger only keeps the first message from leaving alone.
      maxBatch: 2,
      lingerMs: 30_000,
      handler: async (items) => {
        active = trace.getActiveSpan()?.spanContext().spanId;
        return items.map(() => Outcomes.ack);
      },
    });
    await settled(def.stream.name, def.durable, 2);
    const span = await waitFor(
      () => exporter.getFinishedSpans().find((s) => s.name === (def.filterSubject ? `process ${subjectFamily(def.filterSubject)}` : `process ${def.stream.name}`) && s.attributes["messaging.nats.stream"] === def.stream.name),
      { message: "batch span" },
    );
    const publishSpans = exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.PRODUCER && producers.includes(s.parentSpanContext?.spanId ?? ""));
    assert.equal(publishSpans.length, 2);
    const first = publishSpans.find((s) => s.parentSpanContext?.spanId === producers[0]);
    assert.equal(span.kind, SpanKind.CONSUMER);
    assert.equal(span.attributes["messaging.batch.message_count"], 2);
    assert.equal(span.parentSpanContext?.spanId, first?.spanContext().spanId, "the first message's publish span is the parent");
    assert.deepEqual(
      span.links.map((l) => l.context.spanId).sort(),
      publishSpans.map((s) => s.spanContext().spanId).sort(),
      "linked to both producers",
    );
    assert.equal(active, span.spanContext().spanId, "the handler ran inside the batch span");
  });

  it("stops on close after its in-flight batch settles, and hands nothing over afterwards", async () => {
    const { catalog, def, publishScans } = await setup();
    const hold = gate();
    let calls = 0;
    const c = await start(catalog, {
      consumer: def,
      maxBatch: 1,
      maxInFlightBatches: 1,
      handler: async (items) => {
        calls++;
        await hold.opened;
        return items.map(() => Outcomes.ack);
      },
    });
    await publishScans([scan("TNSTOP0001", 1), scan("TNSTOP0002", 1), scan("TNSTOP0003", 1)]);
    await waitFor(() => calls === 1, { message: "first batch in flight" });
    let closed = false;
    const closing = c.close().then(() => (closed = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(closed, false, "close waits for the batch in flight");
    hold.open();
    await closing;
    assert.equal(calls, 1, "nothing was handed over after close");
    // Acks and naks are messages on the connection: the server sees them a moment after close.
    await waitFor(
      async () => {
        const i = await info(def.stream.name, def.durable);
        return i.ack_floor.stream_seq === 1 && i.num_ack_pending === 0;
      },
      { timeoutMs: 10_000, message: "the in-flight batch acknowledged and the waiting messages handed back" },
    );
  });

  it("reports a batch the handler holds past stalledAfterMs, and its settling, while its message stays held", async () => {
    const { catalog, def, publishScans } = await setup();
    const hold = gate();
    const lines: Array<{ level: string; msg: string | undefined; obj: object }> = [];
    const record = (level: string) => (obj: object, msg?: string) => void lines.push({ level, msg, obj });
    const c = await start(catalog, {
      consumer: def,
      maxInFlightBatches: 1,
      stalledAfterMs: 200,
      logger: { debug: record("debug"), info: record("info"), warn: record("warn"), error: record("error") },
      handler: async (items) => {
        await hold.opened;
        return items.map(() => Outcomes.ack);
      },
    });
    await publishScans([scan("TNSTALL001", 1)]);
    await waitFor(() => lines.some((l) => l.level === "error"), { timeoutMs: 5000, message: "the stalled batch reported" });
    const [report] = lines.filter((l) => l.level === "error");
    assert.match(report!.msg ?? "", /has not settled/);
    assert.deepEqual(report!.obj, { stream: def.stream.name, durable: def.durable, size: 1, waitedMs: 200 });
    assert.equal(c.stats().stalled, 1);
    const held = await info(def.stream.name, def.durable);
    assert.equal(held.num_ack_pending, 1, "its message are still held, not redelivered");
    hold.open();
    await settled(def.stream.name, def.durable, 1);
    await waitFor(() => lines.some((l) => l.level === "warn" && l.msg === "stalled batch settled"), { message: "the settling reported" });
    assert.equal(c.stats().stalled, 0);
  });

  it("takes over from the consumers it replaces, starting after their oldest ack floor", async () => {
    const catalog = createEventCatalog(uniqueName("t"));
    await ensureStreams(jsm, catalog.subjects.streamList);
    const stream = catalog.subjects.streams.routes.name;
    await ensureConsumer(jsm, stream, { durable: "tracking-routes-planned", filterSubject: catalog.events.routePlanned.allSubjects });
    await ensureConsumer(jsm, stream, { durable: "tracking-routes-updated", filterSubject: catalog.events.routeUpdated.allSubjects });
    const planned = (n: number) =>
      publication(catalog.events.routePlanned, create(RoutePlannedSchema, { eventId: `p${n}`, trackingNumber: `TNTAKE000${n}` }), { region: "eu" });
    const updated = (n: number) =>
      publication(catalog.events.routeUpdated, create(RouteUpdatedSchema, { eventId: `u${n}`, trackingNumber: `TNTAKE000${n}` }), { region: "eu" });
    await publisher.publishAll([planned(1)]);
    await publisher.publishAll([updated(1)]);
    await publisher.publishAll([planned(2)]);
    await publisher.publishAll([updated(2)]);
    // The old consumers acknowledged: planned up to seq 3, updated only up to seq 2.
    for (const [durable, upTo] of [["tracking-routes-planned", 2], ["tracking-routes-updated", 1]] as const) {
      const msgs = await (await js.consumers.get(stream, durable)).fetch({ max_messages: upTo, expires: 2000 });
      for await (const m of msgs) m.ack();
    }
    await waitFor(async () => (await info(stream, "tracking-routes-updated")).ack_floor.stream_seq === 2, { message: "old floors" });
    const def = catalog.consumer("tracking-routes");
    await ensureCatalogConsumer(jsm, def);
    const names = [];
    for await (const c of jsm.consumers.list(stream)) names.push(c.name);
    assert.deepEqual(names, ["tracking-routes"], "the replaced consumers are gone");
    const ids: string[] = [];
    await start(catalog, {
      consumer: def,
      handler: async (items) => {
        ids.push(...items.map((i) => i.id));
        return items.map(() => Outcomes.ack);
      },
    });
    await settled(stream, def.durable, 4);
    assert.deepEqual(ids, ["p2", "u2"], "starts after the oldest ack floor (seq 2)");
  });
});
