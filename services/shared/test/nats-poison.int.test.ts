import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, toJson } from "@bufbuild/protobuf";
import { StringValueSchema, TimestampSchema } from "@bufbuild/protobuf/wkt";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import pg from "pg";
import { connectNats, jetstreamFor } from "../src/nats/connect.js";
import { startConsumer, type ConsumerHandle } from "../src/nats/consumer.js";
import { EventHeaders } from "../src/nats/event-headers.js";
import { permanentFailureReason } from "../src/nats/permanent-failure.js";
import { createEventPublisher, type EventPublisher } from "../src/nats/publisher.js";
import { ensureConsumer, ensureStreams } from "../src/nats/streams.js";
import { createSubjects } from "../src/nats/subjects.js";
import { testDatabaseUrl } from "../src/testing/test-servers.js";
import { startNatsServer, type NatsServerHandle } from "../src/testing/nats-server.js";
import { uniqueName } from "../src/testing/unique.js";
import { waitFor } from "../src/testing/wait-for.js";

/**
 * What a consumer does with a message that can never be applied (dead letter at once, with the
 * reason) versus one that failed for a passing reason (retry). The failures are real: statements
 * a real PostgreSQL rejects, a real dropped connection, the Protobuf runtime's own encode errors.
 */
describe("startConsumer with data that can never be applied", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let publisher: EventPublisher;
  let pool: pg.Pool;
  const handles: ConsumerHandle[] = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats({ servers: server.url, name: "nats-poison-test" });
    ({ js, jsm } = await jetstreamFor(nc));
    publisher = createEventPublisher({ js });
    pool = new pg.Pool({ connectionString: testDatabaseUrl(), max: 4 });
    pool.on("error", () => {});
  });
  afterAll(async () => {
    await Promise.all(handles.map((h) => h.close()));
    await pool?.end();
    await nc?.drain();
    await server?.stop();
  });

  /** A consumer (max 10 deliveries, 50 ms retries) whose handler runs `fail` on the given deliveries. */
  async function run(fail: (value: string, delivery: number) => Promise<unknown>) {
    const s = createSubjects(uniqueName("p"));
    await ensureStreams(jsm, s.streamList);
    const durable = "projector";
    await ensureConsumer(jsm, s.streams.scans.name, { durable, filterSubject: s.allScans, maxDeliver: 10 });
    const deliveries: number[] = [];
    const handle = await startConsumer({
      js,
      stream: s.streams.scans.name,
      durable,
      schema: StringValueSchema,
      deadLetter: { subject: s.deadLetter(durable) },
      retryDelayMs: () => 50,
      handler: async (m, meta) => {
        deliveries.push(meta.deliveryCount);
        await fail(m.value, meta.deliveryCount);
      },
    });
    handles.push(handle);
    const value = uniqueName("v");
    await publisher.publish(s.scanRecorded("eu", "acme"), StringValueSchema, create(StringValueSchema, { value }), { msgId: value });
    const deadLetter = () =>
      jsm.streams.getMessage(s.streams.deadLetters.name, { last_by_subj: s.deadLetter(durable) }).catch(() => null);
    const settled = async () => {
      const info = await jsm.consumers.info(s.streams.scans.name, durable);
      return info.ack_floor.stream_seq === 1 && info.num_ack_pending === 0;
    };
    return { handle, deliveries, deadLetter, settled, value };
  }

  const poisonCases: Array<[string, (value: string) => Promise<unknown>, RegExp]> = [
    ["a NUL character in a jsonb document (22P05)", (v) => pool.query("SELECT $1::jsonb", [JSON.stringify({ note: `${v}\u0000` })]), /SQLSTATE 22P05/],
    ["a NUL byte in a text value (22021)", (v) => pool.query("SELECT $1::text", [`${v}\u0000`]), /SQLSTATE 22021/],
    ["a date no calendar has (22008)", () => pool.query("SELECT $1::timestamptz", [new Date(Number.NaN)]), /SQLSTATE 22(007|008)/],
    ["a number out of range (22003)", () => pool.query("SELECT $1::smallint", [70_000]), /SQLSTATE 22003/],
    ["text that is not a number (22P02)", (v) => pool.query("SELECT $1::int", [v]), /SQLSTATE 22P02/],
    ["a Timestamp the JSON mapping cannot encode", async () => toJson(TimestampSchema, create(TimestampSchema, { seconds: 10n ** 15n })), /cannot encode/],
    ["an invalid date written as ISO-8601", async () => new Date(Number.NaN).toISOString(), /Invalid time value/],
  ];
  for (const [what, fail, reason] of poisonCases) {
    it(`dead-letters at once, with the reason, a message that fails on ${what}`, async () => {
      const r = await run((value) => fail(value));
      const dlq = await waitFor(r.deadLetter, { message: "dead letter stored" });
      assert.match(dlq.header.get(EventHeaders.DlqReason), /^poison: /);
      assert.match(dlq.header.get(EventHeaders.DlqReason), reason);
      assert.equal(dlq.header.get(EventHeaders.DlqDeliveries), "1");
      await waitFor(r.settled, { message: "original terminated" });
      assert.deepEqual(r.deliveries, [1]);
      assert.deepEqual([r.handle.stats().retried, r.handle.stats().poison, r.handle.stats().deadLettered], [0, 1, 1]);
    });
  }

  it("retries, and then applies, a message whose first deliveries lost the database connection or a serialization race", async () => {
    const r = await run(async (_value, delivery) => {
      const client = await pool.connect();
      try {
        // A real connection loss (57P01 "terminating connection due to administrator command").
        if (delivery === 1) await client.query("SELECT pg_terminate_backend(pg_backend_pid())");
        if (delivery === 2) await client.query("DO $$ BEGIN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END $$");
        await client.query("SELECT 1");
      } finally {
        client.release(delivery === 1);
      }
    });
    await waitFor(r.settled, { message: "message acknowledged after retries" });
    assert.deepEqual(r.deliveries, [1, 2, 3]);
    assert.equal(await r.deadLetter(), null);
    assert.deepEqual([r.handle.stats().retried, r.handle.stats().acked, r.handle.stats().deadLettered], [2, 1, 0]);
  });

  it("classifies errors by their cause chain and leaves unknown errors to the retry schedule", async () => {
    const dataError = await pool.query("SELECT $1::jsonb", ['"\\u0000"']).catch((e: unknown) => e);
    assert.match(permanentFailureReason(new Error("apply failed", { cause: dataError })) ?? "", /SQLSTATE 22P05/);
    const lost = await pool
      .query("DO $$ BEGIN RAISE EXCEPTION 'too many connections' USING ERRCODE = '53300'; END $$")
      .catch((e: unknown) => e);
    assert.equal(permanentFailureReason(lost), undefined);
    assert.equal(permanentFailureReason(new Error("connect ECONNREFUSED 127.0.0.1:5432")), undefined);
    assert.equal(permanentFailureReason(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })), undefined);
  });
});
