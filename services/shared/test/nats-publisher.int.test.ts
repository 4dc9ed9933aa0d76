import { strict as assert } from "node:assert";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, fromBinary } from "@bufbuild/protobuf";
import { StringValueSchema } from "@bufbuild/protobuf/wkt";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats, jetstreamFor } from "../src/nats/connect.js";
import { EventHeaders, PROTOBUF_CONTENT_TYPE } from "../src/nats/event-headers.js";
import { createEventPublisher } from "../src/nats/publisher.js";
import { ensureStreams } from "../src/nats/streams.js";
import { createSubjects } from "../src/nats/subjects.js";
import { startNatsServer, type NatsServerHandle } from "../src/testing/nats-server.js";
import { uniqueName } from "../src/testing/unique.js";

describe("createEventPublisher", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats({ servers: server.url, name: "nats-publisher-test" });
    ({ js, jsm } = await jetstreamFor(nc));
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it("stores a message once when the same msgId is published twice", async () => {
    const s = createSubjects(uniqueName("t"));
    await ensureStreams(jsm, [s.streams.shipments]);
    const publisher = createEventPublisher({ js });
    const subject = s.shipmentCreated("eu");
    const msg = create(StringValueSchema, { value: "SHP-1" });

    const first = await publisher.publish(subject, StringValueSchema, msg, { msgId: "evt-1" });
    assert.deepEqual(first, { seq: 1, duplicate: false, stream: s.streams.shipments.name });
    const second = await publisher.publish(subject, StringValueSchema, msg, { msgId: "evt-1" });
    assert.equal(second.duplicate, true);
    assert.equal(second.seq, 1);
    const third = await publisher.publish(subject, StringValueSchema, msg, { msgId: "evt-2" });
    assert.deepEqual([third.seq, third.duplicate], [2, false]);

    const info = await jsm.streams.info(s.streams.shipments.name);
    assert.equal(info.state.messages, 2);
  });

  it("stores binary protobuf with the content type, type name and msg id headers", async () => {
    const s = createSubjects(uniqueName("t"));
    await ensureStreams(jsm, [s.streams.routes]);
    const publisher = createEventPublisher({ js });
    const subject = s.routePlanned("apac");
    await publisher.publish(subject, StringValueSchema, create(StringValueSchema, { value: "route" }), {
      msgId: "evt-9",
      headers: { "Logistics-Tenant": "acme", [EventHeaders.MessageType]: "spoofed.Type" },
    });
    const stored = await jsm.streams.getMessage(s.streams.routes.name, { last_by_subj: subject });
    assert.ok(stored);
    assert.equal(fromBinary(StringValueSchema, stored.data).value, "route");
    assert.equal(stored.header.get(EventHeaders.ContentType), PROTOBUF_CONTENT_TYPE);
    assert.equal(stored.header.get(EventHeaders.MessageType), "google.protobuf.StringValue");
    assert.equal(stored.header.get(EventHeaders.MsgId), "evt-9");
    assert.equal(stored.header.get("Logistics-Tenant"), "acme");
  });

  it("rejects when no stream captures the subject", async () => {
    const s = createSubjects(uniqueName("t"));
    const publisher = createEventPublisher({ js, defaultTimeoutMs: 2000 });
    await assert.rejects(
      publisher.publish(s.statusChanged("eu"), StringValueSchema, create(StringValueSchema), { msgId: "x" }),
    );
  });

  it("requires a msgId", async () => {
    const publisher = createEventPublisher({ js });
    await assert.rejects(
      publisher.publish("t.x.y", StringValueSchema, create(StringValueSchema), { msgId: "" }),
      TypeError,
    );
  });
});
