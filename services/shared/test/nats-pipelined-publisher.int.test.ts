import { strict as assert } from "node:assert";
import { afterAll, beforeAll, describe, it } from "vitest";
import { JetStreamApiError, type JetStreamManager } from "@nats-io/jetstream";
import { NoRespondersError, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { connectNats, jetstreamFor } from "../src/nats/connect.js";
import { EventHeaders, PROTOBUF_CONTENT_TYPE } from "../src/nats/event-headers.js";
import {
  createPipelinedPublisher,
  PubAckTimeoutError,
  PublisherClosedError,
  type PipelinedEvent,
} from "../src/nats/pipelined-publisher.js";
import type { PublishEventResult } from "../src/nats/publisher.js";
import { ensureStreams } from "../src/nats/streams.js";
import { createSubjects } from "../src/nats/subjects.js";
import { startNatsServer } from "../src/testing/nats-server.js";
import { testNatsUrl } from "../src/testing/test-servers.js";
import { uniqueName } from "../src/testing/unique.js";
import { waitFor } from "../src/testing/wait-for.js";

const TYPE = "logistics.test.v1.Probe";
const event = (subject: string, msgId: string, body = msgId): PipelinedEvent => ({
  subject,
  typeName: TYPE,
  payload: new TextEncoder().encode(body),
  msgId,
});
const acks = (results: Array<PublishEventResult | Error>) =>
  results.map((r) => {
    if (r instanceof Error) throw r;
    return r;
  });

/**
 * A stand-in for a stream that answers PubAcks when the test says so: every request it receives
 * is held until `answer` is called with a reply for it.
 */
function heldStream(nc: NatsConnection, subject: string) {
  const held: Msg[] = [];
  const sub = nc.subscribe(subject, { callback: (_err, msg) => void held.push(msg) });
  return {
    held,
    /** Replies to the held request `i` with `body` (a PubAck or an error document). */
    answer(i: number, body: object) {
      (held[i] as Msg).respond(new TextEncoder().encode(JSON.stringify(body)));
    },
    msgId: (i: number) => (held[i] as Msg).headers?.get(EventHeaders.MsgId) ?? "",
    close: () => sub.unsubscribe(),
  };
}

describe("createPipelinedPublisher", () => {
  let nc: NatsConnection;
  let jsm: JetStreamManager;

  beforeAll(async () => {
    nc = await connectNats({ servers: testNatsUrl(), name: "pipelined-publisher-test" });
    ({ jsm } = await jetstreamFor(nc));
  });
  afterAll(async () => {
    await nc?.close();
  });

  it("matches each PubAck to its publish and reports duplicates with the original's sequence", async () => {
    const s = createSubjects(uniqueName("pp"));
    await ensureStreams(jsm, [s.streams.scans]);
    const publisher = createPipelinedPublisher({ nc });
    const subject = s.scanRecorded("eu", "acme");
    const events = Array.from({ length: 300 }, (_, i) => event(subject, `id-${i % 200}`));

    const results = acks(await publisher.publishAll(events));

    assert.equal(results.length, 300);
    const seqOf = new Map<string, number>();
    results.forEach((r, i) => {
      assert.equal(r.stream, s.streams.scans.name);
      if (i < 200) {
        assert.equal(r.duplicate, false, `publish ${i}`);
        seqOf.set(`id-${i}`, r.seq);
      } else {
        assert.deepEqual([r.duplicate, r.seq], [true, seqOf.get(`id-${i % 200}`)], `publish ${i}`);
      }
    });
    assert.equal(new Set(seqOf.values()).size, 200);
    assert.equal((await jsm.streams.info(s.streams.scans.name)).state.messages, 200);
    // Each stored message is the one its PubAck named.
    const stored = await jsm.streams.getMessage(s.streams.scans.name, { seq: seqOf.get("id-123") as number });
    assert.equal(new TextDecoder().decode(stored?.data), "id-123");
    assert.equal(stored?.header.get(EventHeaders.MsgId), "id-123");
    assert.equal(stored?.header.get(EventHeaders.ContentType), PROTOBUF_CONTENT_TYPE);
    assert.equal(stored?.header.get(EventHeaders.MessageType), TYPE);
    assert.equal(publisher.inFlight, 0);
    publisher.close();
  });

  it("matches PubAcks that arrive in any order", async () => {
    const subject = `${uniqueName("pp")}.scans`;
    const stream = heldStream(nc, subject);
    const publisher = createPipelinedPublisher({ nc });
    const sending = publisher.publishAll(Array.from({ length: 50 }, (_, i) => event(subject, `m-${i}`)));
    await waitFor(() => stream.held.length === 50, { message: "50 publishes to arrive" });
    // Answer in reverse order, each with a sequence derived from its own msg id.
    for (let i = 49; i >= 0; i--) stream.answer(i, { stream: "FAKE", seq: 1000 + Number(stream.msgId(i).slice(2)) });

    const results = acks(await sending);

    results.forEach((r, i) => assert.deepEqual(r, { stream: "FAKE", seq: 1000 + i, duplicate: false }));
    stream.close();
    publisher.close();
  });

  it("fails only the publish whose PubAck did not come in time, and ignores its late PubAck", async () => {
    const subject = `${uniqueName("pp")}.scans`;
    const stream = heldStream(nc, subject);
    const publisher = createPipelinedPublisher({ nc });
    const started = Date.now();
    const sending = publisher.publishAll([event(subject, "a"), event(subject, "b"), event(subject, "c")], { timeoutMs: 300 });
    await waitFor(() => stream.held.length === 3, { message: "3 publishes to arrive" });
    stream.answer(0, { stream: "FAKE", seq: 1 });
    stream.answer(2, { stream: "FAKE", seq: 3 });

    const results = await sending;

    assert.ok(Date.now() - started >= 290, "the call waits for its timeout");
    assert.deepEqual(results[0], { stream: "FAKE", seq: 1, duplicate: false });
    assert.ok(results[1] instanceof PubAckTimeoutError, String(results[1]));
    assert.deepEqual(results[2], { stream: "FAKE", seq: 3, duplicate: false });
    assert.equal(publisher.inFlight, 0);
    // The late PubAck finds nothing waiting for it; the next call is unaffected.
    stream.answer(1, { stream: "FAKE", seq: 2 });
    const next = publisher.publishAll([event(subject, "d")]);
    await waitFor(() => stream.held.length === 4, { message: "the next publish to arrive" });
    stream.answer(3, { stream: "FAKE", seq: 4 });
    assert.deepEqual(await next, [{ stream: "FAKE", seq: 4, duplicate: false }]);
    stream.close();
    publisher.close();
  });

  it("reports no responders when no stream captures the subject, and a stream's refusal as its API error", async () => {
    const publisher = createPipelinedPublisher({ nc });
    const [none] = await publisher.publishAll([event(`${uniqueName("pp")}.nowhere`, "x")], { timeoutMs: 5000 });
    assert.ok(none instanceof NoRespondersError, String(none));

    const subject = `${uniqueName("pp")}.scans`;
    const stream = heldStream(nc, subject);
    const sending = publisher.publishAll([event(subject, "y")]);
    await waitFor(() => stream.held.length === 1, { message: "the publish to arrive" });
    stream.answer(0, { error: { code: 503, err_code: 10077, description: "maximum messages exceeded" } });
    const [refused] = await sending;
    assert.ok(refused instanceof JetStreamApiError, String(refused));
    assert.equal(refused.code, 10077);
    stream.close();
    publisher.close();
  });

  it("keeps at most maxInFlight publishes awaiting a PubAck, sending the rest as slots free", async () => {
    const subject = `${uniqueName("pp")}.scans`;
    const stream = heldStream(nc, subject);
    const publisher = createPipelinedPublisher({ nc, maxInFlight: 4 });
    const sending = publisher.publishAll(Array.from({ length: 10 }, (_, i) => event(subject, `w-${i}`)));
    await waitFor(() => stream.held.length === 4, { message: "the first 4 publishes" });
    await nc.flush(); // a fifth publish, had it been sent, would be here by now
    assert.equal(stream.held.length, 4);
    assert.equal(publisher.inFlight, 4);
    let answered = 0;
    await waitFor(
      () => {
        while (answered < stream.held.length) {
          stream.answer(answered, { stream: "FAKE", seq: answered + 1 });
          answered++;
        }
        assert.ok(publisher.inFlight <= 4);
        return answered === 10;
      },
      { message: "all 10 publishes, at most 4 at a time", intervalMs: 10 },
    );
    assert.deepEqual(acks(await sending).map((r) => r.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    stream.close();
    publisher.close();
  });

  it("fails every waiting publish at once when the connection closes", async () => {
    const own = await connectNats({ servers: testNatsUrl(), name: "pipelined-publisher-close" });
    const subject = `${uniqueName("pp")}.scans`;
    const stream = heldStream(nc, subject);
    await nc.flush(); // the server has the subscription before the other connection publishes
    const publisher = createPipelinedPublisher({ nc: own });
    const started = Date.now();
    const sending = publisher.publishAll([event(subject, "p"), event(subject, "q")], { timeoutMs: 30_000 });
    await waitFor(() => stream.held.length === 2, { message: "2 publishes to arrive" });
    await own.close();
    const results = await sending;
    assert.ok(Date.now() - started < 10_000);
    for (const r of results) assert.ok(r instanceof PublisherClosedError, String(r));
    assert.ok((await publisher.publishAll([event(subject, "r")]))[0] instanceof PublisherClosedError);
    stream.close();
  });
});

describe("createPipelinedPublisher across a broker restart", () => {
  it("publishes again after the server is killed and restarted, and a resend of every unconfirmed id is stored once", async () => {
    const server = await startNatsServer();
    const nc = await connectNats({ servers: server.url, name: "pipelined-publisher-restart", reconnectTimeWaitMs: 100 });
    try {
      const { jsm } = await jetstreamFor(nc);
      const s = createSubjects(uniqueName("pp"));
      await ensureStreams(jsm, [s.streams.scans]);
      const publisher = createPipelinedPublisher({ nc });
      const subject = s.scanRecorded("eu", "acme");
      const ids = Array.from({ length: 400 }, (_, i) => `r-${i}`);
      const before = acks(await publisher.publishAll(ids.slice(0, 100).map((id) => event(subject, id))));
      assert.equal(before.filter((r) => !r.duplicate).length, 100);

      // Kill the server while a batch is in flight: its publishes end stored, refused or timed out.
      const during = publisher.publishAll(ids.slice(100, 300).map((id) => event(subject, id)), { timeoutMs: 2000 });
      await server.kill();
      await server.restart();
      const unconfirmed = (await during).flatMap((r, k) => (r instanceof Error ? [ids[100 + k] as string] : []));

      // As the ingestor does: resend the unconfirmed ones, and new ones, until all are confirmed.
      let pending = [...unconfirmed, ...ids.slice(300)];
      await waitFor(
        async () => {
          const results = await publisher.publishAll(pending.map((id) => event(subject, id)), { timeoutMs: 1000 });
          pending = pending.filter((_, k) => results[k] instanceof Error);
          return pending.length === 0;
        },
        { timeoutMs: 30_000, intervalMs: 100, message: "every publish confirmed after the restart" },
      );
      assert.equal((await jsm.streams.info(s.streams.scans.name)).state.messages, 400, "each id stored exactly once");
      assert.equal(publisher.inFlight, 0);
      publisher.close();
    } finally {
      await nc.close();
      await server.stop();
    }
  });
});
