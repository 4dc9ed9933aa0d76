import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { jetstream } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { Scope } from "@logistics/shared/auth";
import { DeadLetterReason, EventDeadLetterService } from "@logistics/shared/gen/logistics/operations/v1/dead_letters_pb.js";
import { EventHeaders } from "@logistics/shared/nats";
import { waitFor } from "@logistics/shared/testing";
import { STATUS_CONSUMER } from "../src/event-intake.js";
import { codeOf, startNotificationHarness, type NotificationHarness } from "./notification-harness.js";

/** Bytes that do not decode as any Protobuf message (field 31 with the invalid wire type 7). */
const GARBAGE = new Uint8Array([0xff, 0xff, 0xff, 0x0f]);

describe("EventDeadLetterService (real nats-server, the notification service's own dead letters)", () => {
  let h: NotificationHarness;
  let operator: Client<typeof EventDeadLetterService>;

  beforeAll(async () => {
    h = await startNotificationHarness({});
    const token = await h.token([Scope.Admin], "ops-oncall");
    operator = createClient(
      EventDeadLetterService,
      createConnectTransport({
        baseUrl: h.svc.url,
        httpVersion: "1.1",
        interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
      }),
    );
    // Three StatusChanged messages no version of the intake can decode: dead-lettered as poison.
    const js = jetstream(h.nc);
    for (const n of [1, 2, 3]) {
      const hdrs = headers();
      hdrs.set(EventHeaders.MessageType, "logistics.events.v1.StatusChanged");
      hdrs.set("Logistics-Test", `garbage-${n}`);
      await js.publish(h.subjects.statusChanged("eu"), GARBAGE, { headers: hdrs, msgID: `garbage-${n}` });
    }
  });
  afterAll(async () => {
    await h?.close();
  });

  const listAll = async () => (await operator.listEventDeadLetters({ filter: { consumer: STATUS_CONSUMER }, pageSize: 500 })).deadLetters;

  it("lists the intake's dead letters in pages, with their origin, reason and (on request) payload", async () => {
    const all = await waitFor(async () => {
      const found = await listAll();
      return found.length === 3 ? found : undefined;
    }, { message: "three dead letters listed" });
    assert.deepEqual(all.map((d) => d.eventId), ["garbage-1", "garbage-2", "garbage-3"]);
    for (const d of all) {
      assert.equal(d.consumer, STATUS_CONSUMER);
      assert.equal(d.reason, DeadLetterReason.POISON);
      assert.match(d.reasonText, /^poison: cannot decode logistics\.events\.v1\.StatusChanged/);
      assert.equal(d.stream, h.subjects.streams.status.name);
      assert.equal(d.subject, h.subjects.statusChanged("eu"));
      assert.equal(d.payloadSize, GARBAGE.length);
      assert.equal(d.payload.length, 0, "no payload unless asked");
    }

    const first = await operator.listEventDeadLetters({ filter: { consumer: STATUS_CONSUMER }, pageSize: 2, includePayload: true });
    assert.deepEqual(first.deadLetters.map((d) => d.eventId), ["garbage-1", "garbage-2"]);
    assert.deepEqual([...first.deadLetters[0]!.payload], [...GARBAGE]);
    assert.equal(first.deadLetters[0]!.headers["Logistics-Test"], "garbage-1");
    assert.notEqual(first.nextPageToken, "");
    const second = await operator.listEventDeadLetters({ filter: { consumer: STATUS_CONSUMER }, pageSize: 2, pageToken: first.nextPageToken });
    assert.deepEqual(second.deadLetters.map((d) => d.eventId), ["garbage-3"]);
    assert.equal(second.nextPageToken, "");

    const other = await operator.listEventDeadLetters({ filter: { reason: DeadLetterReason.RETRIES_EXHAUSTED } });
    assert.equal(other.deadLetters.length, 0, "filters by reason class");
    assert.equal(await codeOf(operator.listEventDeadLetters({ pageToken: "x1" })), Code.InvalidArgument);
  });

  it("redrives (dry run) and purges through the RPCs, refusing an unscoped request", async () => {
    const all = await listAll();
    assert.equal(all.length, 3);
    assert.equal(await codeOf(operator.redriveEventDeadLetters({ filter: {} })), Code.InvalidArgument, "a redrive must name a consumer or sequences");
    assert.equal(await codeOf(operator.purgeEventDeadLetters({ filter: { subject: "not a subject" }, allConsumers: true })), Code.InvalidArgument);

    // Published seconds ago: inside the stream's duplicate window, so a redrive would be deferred...
    const deferred = await operator.redriveEventDeadLetters({ filter: { consumer: STATUS_CONSUMER }, dryRun: true });
    assert.deepEqual([deferred.matched, deferred.redriven, deferred.deferred], [3, 0, 3]);
    assert.ok(deferred.deferredUntil, "with the time they become eligible");
    // ...unless it may use new message ids.
    const fresh = await operator.redriveEventDeadLetters({ filter: { consumer: STATUS_CONSUMER }, dryRun: true, newMessageId: true });
    assert.deepEqual([fresh.matched, fresh.redriven, fresh.deferred], [3, 3, 0]);
    assert.deepEqual(fresh.sequences, all.map((d) => d.sequence));

    const dry = await operator.purgeEventDeadLetters({ filter: { sequences: [all[0]!.sequence] }, dryRun: true });
    assert.deepEqual([dry.matched, dry.purged], [1, 0]);
    assert.equal((await listAll()).length, 3, "dry runs change nothing");
    const purged = await operator.purgeEventDeadLetters({ filter: { consumer: STATUS_CONSUMER, sequences: [all[0]!.sequence] } });
    assert.deepEqual([purged.matched, purged.purged], [1, 1]);
    assert.deepEqual((await listAll()).map((d) => d.eventId), ["garbage-2", "garbage-3"]);
  });
});
