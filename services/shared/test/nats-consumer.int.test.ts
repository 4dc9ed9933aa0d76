import { strict as assert } from "node:assert";
import { afterAll, beforeAll, describe, it } from "vitest";
import { setTimeout as delay } from "node:timers/promises";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { StringValueSchema, TimestampSchema } from "@bufbuild/protobuf/wkt";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { connectNats, jetstreamFor } from "../src/nats/connect.js";
import { startConsumer, type ConsumerHandle, type MessageMeta } from "../src/nats/consumer.js";
import { EventHeaders } from "../src/nats/event-headers.js";
import { createEventPublisher, type EventPublisher } from "../src/nats/publisher.js";
import { ensureConsumer, ensureStreams } from "../src/nats/streams.js";
import { createSubjects, type Subjects } from "../src/nats/subjects.js";
import { startNatsServer, type NatsServerHandle } from "../src/testing/nats-server.js";
import { uniqueName } from "../src/testing/unique.js";
import { waitFor } from "../src/testing/wait-for.js";

/** A promise with its resolver, to hold a handler until the test lets it go. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe("startConsumer", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let publisher: EventPublisher;
  const handles: ConsumerHandle[] = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats({ servers: server.url, name: "nats-consumer-test" });
    ({ js, jsm } = await jetstreamFor(nc));
    publisher = createEventPublisher({ js });
  });
  afterAll(async () => {
    await Promise.all(handles.map((h) => h.close()));
    await nc?.drain();
    await server?.stop();
  });

  /** Fresh streams and a durable consumer on the scans stream for one test. */
  async function setup(consumer: { maxDeliver?: number; ackWaitMs?: number } = {}) {
    const s = createSubjects(uniqueName("t"));
    await ensureStreams(jsm, s.streamList);
    const durable = "tracking";
    await ensureConsumer(jsm, s.streams.scans.name, { durable, filterSubject: s.allScans, ...consumer });
    return { s, durable, stream: s.streams.scans.name };
  }

  async function consumerInfo(s: Subjects, durable: string) {
    return jsm.consumers.info(s.streams.scans.name, durable);
  }

  async function publishScan(s: Subjects, value: string, msgId = uniqueName("evt")) {
    return publisher.publish(s.scanRecorded("eu", "DHL"), StringValueSchema, create(StringValueSchema, { value }), { msgId });
  }

  function start(opts: Omit<Parameters<typeof startConsumer<typeof StringValueSchema>>[0], "js" | "schema">) {
    return startConsumer({ js, schema: StringValueSchema, retryDelayMs: () => 20, ...opts }).then((h) => {
      handles.push(h);
      return h;
    });
  }

  it("hands decoded messages to the handler and acks them", async () => {
    const { s, durable, stream } = await setup();
    const seen: Array<[string, MessageMeta]> = [];
    const h = await start({ stream, durable, handler: async (m, meta) => void seen.push([m.value, meta]) });
    await publishScan(s, "a", "evt-a");
    await publishScan(s, "b", "evt-b");
    await waitFor(() => seen.length === 2, { message: "two messages handled" });
    assert.deepEqual(seen.map(([v]) => v).sort(), ["a", "b"]);
    const meta = seen.find(([v]) => v === "a")?.[1];
    assert.equal(meta?.msgId, "evt-a");
    assert.equal(meta?.subject, s.scanRecorded("eu", "DHL"));
    assert.equal(meta?.deliveryCount, 1);
    assert.equal(meta?.headers[EventHeaders.MessageType], "google.protobuf.StringValue");
    await waitFor(async () => {
      const info = await consumerInfo(s, durable);
      return info.num_ack_pending === 0 && info.num_pending === 0 && info.ack_floor.stream_seq === 2;
    }, { message: "both messages acknowledged" });
    assert.equal(h.stats().acked, 2);
  });

  it("redelivers a failing message until the handler succeeds", async () => {
    const { s, durable, stream } = await setup({ maxDeliver: 5 });
    const deliveries: number[] = [];
    await start({
      stream,
      durable,
      handler: async (_m, meta) => {
        deliveries.push(meta.deliveryCount);
        if (deliveries.length <= 2) throw new Error("transient");
      },
    });
    await publishScan(s, "flaky");
    await waitFor(async () => (await consumerInfo(s, durable)).ack_floor.stream_seq === 1, {
      message: "message acknowledged after retries",
    });
    assert.deepEqual(deliveries, [1, 2, 3]);
  });

  it("dead-letters a message that fails on every delivery and terminates it", async () => {
    const { s, durable, stream } = await setup({ maxDeliver: 3 });
    let calls = 0;
    const errors: unknown[] = [];
    const h = await start({
      stream,
      durable,
      deadLetter: { subject: s.deadLetter(durable) },
      onError: (err) => errors.push(err),
      handler: async () => {
        calls++;
        throw new Error("carrier code unknown");
      },
    });
    const { seq } = await publishScan(s, "doomed", "evt-doomed");

    const dlq = await waitFor(
      () => jsm.streams.getMessage(s.streams.deadLetters.name, { last_by_subj: s.deadLetter(durable) }).catch(() => null),
      { message: "dead letter stored" },
    );
    assert.equal(fromBinary(StringValueSchema, dlq.data).value, "doomed");
    assert.match(dlq.header.get(EventHeaders.DlqReason), /after 3 deliveries: carrier code unknown/);
    assert.equal(dlq.header.get(EventHeaders.DlqStream), stream);
    assert.equal(dlq.header.get(EventHeaders.DlqSeq), String(seq));
    assert.equal(dlq.header.get(EventHeaders.DlqDeliveries), "3");
    assert.equal(dlq.header.get(EventHeaders.DlqSubject), s.scanRecorded("eu", "DHL"));
    assert.equal(dlq.header.get(EventHeaders.DlqMsgId), "evt-doomed");
    assert.equal(dlq.header.get(EventHeaders.MessageType), "google.protobuf.StringValue");

    // Terminated, not merely out of deliveries: the ack floor moves past it and nothing is pending.
    const info = await waitFor(async () => {
      const i = await consumerInfo(s, durable);
      return i.ack_floor.stream_seq === seq && i.num_ack_pending === 0 ? i : null;
    }, { message: "original terminated" });
    assert.equal(info.num_redelivered, 0);
    assert.equal(calls, 3);
    assert.equal(errors.length, 3);
    assert.deepEqual([h.stats().deadLettered, h.stats().retried, h.stats().acked], [1, 2, 0]);
  });

  it("dead-letters a message whose last delivery was never settled, from the max-deliveries advisory", async () => {
    const { s, durable, stream } = await setup({ maxDeliver: 2, ackWaitMs: 300 });
    const { seq } = await publishScan(s, "held by a crashed replica", "evt-crash");
    // A replica that takes the message and dies before settling it, on both deliveries.
    const crashed = await js.consumers.get(stream, durable);
    for (const expected of [1, 2]) {
      const m = await crashed.next({ expires: 5000 });
      assert.equal(m?.info.deliveryCount, expected);
    }
    let calls = 0;
    await start({ stream, durable, nc, deadLetter: { subject: s.deadLetter(durable) }, handler: async () => void calls++ });
    const dlq = await waitFor(
      () => jsm.streams.getMessage(s.streams.deadLetters.name, { last_by_subj: s.deadLetter(durable) }).catch(() => null),
      { message: "dead letter from the advisory" },
    );
    assert.match(dlq.header.get(EventHeaders.DlqReason), /max deliveries \(2\) exceeded/);
    assert.equal(dlq.header.get(EventHeaders.DlqSeq), String(seq));
    assert.equal(dlq.header.get(EventHeaders.DlqMsgId), "evt-crash");
    assert.equal(fromBinary(StringValueSchema, dlq.data).value, "held by a crashed replica");
    assert.equal(calls, 0);
  });

  it("sends undecodable and wrongly typed messages straight to the dead-letter subject", async () => {
    const { s, durable, stream } = await setup({ maxDeliver: 5 });
    let calls = 0;
    const h = await start({
      stream,
      durable,
      deadLetter: { subject: s.deadLetter(durable) },
      handler: async () => void calls++,
    });
    const garbage = await js.publish(s.scanRecorded("eu", "DHL"), new Uint8Array([0xff, 0xff, 0xff]), { msgID: "bad-bytes" });
    const typed = headers();
    typed.set(EventHeaders.MessageType, TimestampSchema.typeName);
    const wrongType = await js.publish(
      s.scanRecorded("eu", "UPS"),
      toBinary(TimestampSchema, create(TimestampSchema, { seconds: 1n })),
      { msgID: "wrong-type", headers: typed },
    );

    await waitFor(async () => (await jsm.streams.info(s.streams.deadLetters.name)).state.messages === 2, {
      message: "two poison messages dead-lettered",
    });
    for (const [subjectSeq, pattern] of [
      [garbage.seq, /poison: cannot decode google\.protobuf\.StringValue/],
      [wrongType.seq, /poison: payload type google\.protobuf\.Timestamp/],
    ] as const) {
      const dead = await jsm.streams.getMessage(s.streams.deadLetters.name, { seq: subjectSeq });
      assert.ok(dead);
      assert.match(dead.header.get(EventHeaders.DlqReason), pattern);
      assert.equal(dead.header.get(EventHeaders.DlqDeliveries), "1");
    }
    await waitFor(async () => (await consumerInfo(s, durable)).ack_floor.stream_seq === 2, { message: "poison terminated" });
    assert.equal(calls, 0);
    assert.equal(h.stats().poison, 2);
  });

  it("never runs more handlers at once than its concurrency", async () => {
    const { s, durable, stream } = await setup();
    const release = gate();
    let running = 0;
    let peak = 0;
    let done = 0;
    const h = await start({
      stream,
      durable,
      concurrency: 3,
      handler: async () => {
        running++;
        peak = Math.max(peak, running);
        await release.opened;
        running--;
        done++;
      },
    });
    for (let i = 0; i < 10; i++) await publishScan(s, `m${i}`);
    await waitFor(() => h.stats().inFlight === 3, { message: "three handlers running" });
    release.open();
    await waitFor(() => done === 10, { message: "all ten handled" });
    assert.equal(peak, 3);
  });

  it("runs messages with the same key one at a time, in order, and different keys in parallel", async () => {
    const { s, durable, stream } = await setup();
    const started = new Map<string, ReturnType<typeof gate>>([
      ["A1", gate()],
      ["B1", gate()],
    ]);
    const active = new Map<string, number>();
    const order: string[] = [];
    let overlap = false;
    await start({
      stream,
      durable,
      concurrency: 8,
      keyOf: (m) => m.value.slice(0, 1),
      handler: async (m) => {
        const key = m.value.slice(0, 1);
        active.set(key, (active.get(key) ?? 0) + 1);
        if ((active.get(key) ?? 0) > 1) overlap = true;
        order.push(m.value);
        started.get(m.value)?.open();
        // A1 and B1 each wait for the other to start: this only finishes if keys run in parallel.
        if (m.value === "A1") await started.get("B1")?.opened;
        if (m.value === "B1") await started.get("A1")?.opened;
        active.set(key, (active.get(key) ?? 1) - 1);
      },
    });
    for (const v of ["A1", "A2", "B1", "A3", "B2"]) await publishScan(s, v);
    await waitFor(() => order.length === 5, { message: "five handled" });
    assert.equal(overlap, false);
    assert.deepEqual(order.filter((v) => v.startsWith("A")), ["A1", "A2", "A3"]);
    assert.deepEqual(order.filter((v) => v.startsWith("B")), ["B1", "B2"]);
  });

  it("close() waits for running handlers and their acks", async () => {
    const { s, durable, stream } = await setup();
    const entered = gate();
    const release = gate();
    const events: string[] = [];
    const h = await start({
      stream,
      durable,
      handler: async () => {
        entered.open();
        await release.opened;
        events.push("handler done");
      },
    });
    await publishScan(s, "slow");
    await entered.opened;
    const closed = h.close().then(() => events.push("closed"));
    release.open();
    await closed;
    assert.deepEqual(events, ["handler done", "closed"]);
    await waitFor(async () => (await consumerInfo(s, durable)).ack_floor.stream_seq === 1, { message: "acked before close" });
    await h.close();
  });

  it("keeps a slow handler's message from being redelivered with in-progress acks", async () => {
    const ackWaitMs = 600;
    const { s, durable, stream } = await setup({ ackWaitMs });
    let deliveries = 0;
    await start({
      stream,
      durable,
      handler: async () => {
        deliveries++;
        // Simulated work lasting three ack-wait periods: without in-progress acks the server
        // would redeliver the message while this handler still runs.
        await delay(ackWaitMs * 3);
      },
    });
    await publishScan(s, "slow");
    await waitFor(async () => (await consumerInfo(s, durable)).ack_floor.stream_seq === 1, {
      message: "slow message acked",
      timeoutMs: 8000,
    });
    assert.equal(deliveries, 1);
    assert.equal((await consumerInfo(s, durable)).num_redelivered, 0);
  });
});
