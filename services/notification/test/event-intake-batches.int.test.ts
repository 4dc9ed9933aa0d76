import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { createCatalogPublisher, createEventCatalog, publication, type EventCatalog } from "@logistics/shared/events";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { StatusChangedSchema, type StatusChanged } from "@logistics/shared/gen/logistics/events/v1/tracking_events_pb.js";
import { NotificationEventType } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { EventHeaders, ensureStreams } from "@logistics/shared/nats";
import { createTestSchema, testNatsUrl, uniqueName, waitFor, type TestSchema } from "@logistics/shared/testing";
import { STATUS_CONSUMER, startEventIntake, type EventIntake } from "../src/event-intake.js";
import {
  createNotificationStore,
  type NotificationStore,
  type SubscriptionOwner,
  type SubscriptionScope,
} from "../src/notification-store.js";

/** A time no date can hold: converting it to a webhook body throws (the event is poison). */
const UNREPRESENTABLE = { seconds: 9_000_000_000_000n, nanos: 0 };

describe("notification event intake on the batch consumer (real nats-server and PostgreSQL)", () => {
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let catalog: EventCatalog;
  let schema: TestSchema;
  let store: NotificationStore;
  let intake: EventIntake | undefined;
  let subscriptionId: string;
  /** A second subscriber to the same events: the customer's own subscription. */
  let customerSubscriptionId: string;
  /** Delivery rows the store reported inserted. */
  let inserted = 0;
  /** Event ids in the order their deliveries were committed. */
  const committed: string[] = [];
  /** Event ids whose next insert fails once (a transient failure: retried, not dead-lettered). */
  const failOnce = new Set<string>();
  let batchCalls = 0;

  beforeAll(async () => {
    nc = await connect({ servers: testNatsUrl() });
    js = jetstream(nc);
    jsm = await jetstreamManager(nc);
    catalog = createEventCatalog(uniqueName("nintake"));
    await ensureStreams(jsm, [catalog.subjects.streams.status, catalog.subjects.streams.deadLetters]);
    schema = await createTestSchema({ prefix: "nintake" });
    store = createNotificationStore({ connectionString: schema.connectionString, schema: schema.schema });
    await store.migrate();
    const subscribe = async (scope: SubscriptionScope, ownedBy: SubscriptionOwner | undefined, o: string) => {
      const { subscription } = await store.createSubscription({
        id: uniqueName("sub"),
        owner: "test",
        ownedBy,
        scope,
        eventTypes: [NotificationEventType.STATUS_CHANGED],
        webhookUrl: `${o}/x`,
        origin: o,
        secret: "s".repeat(43),
        idempotencyKey: undefined,
      });
      return subscription.subscriptionId;
    };
    subscriptionId = await subscribe({ case: "carrierCode", value: "acme" }, undefined, "http://127.0.0.1:9");
    customerSubscriptionId = await subscribe({ case: "customerId", value: "c" }, { customerId: "c" }, "http://127.0.0.1:10");
  });
  afterAll(async () => {
    await intake?.close();
    await store?.close();
    await schema?.drop();
    await nc?.close();
  });

  /** The store, failing an event's insert once when asked and recording commits in order. */
  const recordingStore: Pick<NotificationStore, "insertDeliveries" | "insertDeliveriesBatch"> = {
    async insertDeliveriesBatch(entries) {
      batchCalls++;
      const hit = entries.find((e) => failOnce.has(e.event.eventId));
      if (hit) throw new Error(`injected: connection lost during the batch with ${hit.event.eventId}`);
      const n = await store.insertDeliveriesBatch(entries);
      committed.push(...entries.map((e) => e.event.eventId));
      inserted += n;
      return n;
    },
    async insertDeliveries(event, traceContext) {
      if (failOnce.delete(event.eventId)) throw new Error(`injected: connection lost inserting ${event.eventId}`);
      const n = await store.insertDeliveries(event, traceContext);
      committed.push(event.eventId);
      inserted += n;
      return n;
    },
  };

  const statusChanged = (tn: string, version: number, over: Pick<MessageInitShape<typeof StatusChangedSchema>, "statusTime"> = {}): StatusChanged =>
    create(StatusChangedSchema, {
      eventId: `${tn}-v${version}`,
      trackingNumber: tn,
      customerId: "c",
      shipmentId: "shp_x",
      carrierCode: "acme",
      status: ShipmentStatus.IN_TRANSIT,
      version: BigInt(version),
      statusTime: timestampFromMs(Date.now() - 60_000 + version * 1000),
      ...over,
    });

  const deadLetterCount = async () => {
    const subject = catalog.subjects.deadLetter(STATUS_CONSUMER);
    const info = await jsm.streams.info(catalog.subjects.streams.deadLetters.name, { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  };
  const settled = async () => {
    const c = await jsm.consumers.info(catalog.subjects.streams.status.name, STATUS_CONSUMER);
    return c.num_pending === 0 && c.num_ack_pending === 0;
  };

  it("commits a batch at once, dead-letters a poison event alone, retries a failed one in its shipment's order, and applies each once", async () => {
    const tns = ["BATCHA0001", "BATCHB0001", "BATCHC0001"].map((t) => `${t}${uniqueName("x").slice(-4).toUpperCase().replace(/_/g, "0")}`);
    const [a, b] = tns as [string, string, string];
    const events = tns.flatMap((tn) => [1, 2, 3].map((v) => (tn === b && v === 2 ? statusChanged(tn, v, { statusTime: UNREPRESENTABLE }) : statusChanged(tn, v))));
    failOnce.add(`${a}-v1`);
    // Published before the intake starts, so they arrive as one batch.
    const publisher = createCatalogPublisher({ js });
    const sent = await publisher.publishAll(events.map((e) => publication(catalog.events.statusChanged, e, { region: "eu" })));
    assert.ok(sent.every((r) => r.status === "fulfilled"));
    intake = await startEventIntake({ js, jsm, nc, catalog, store: recordingStore, maxBatch: 64 });

    await waitFor(async () => ((await settled()) && committed.length >= 8 ? true : undefined), { message: "every event settled" });
    assert.ok(batchCalls >= 1);
    assert.equal(await deadLetterCount(), 1, "only the poison event is dead-lettered");

    const deliveries = (await store.listDeliveries({ subscriptionId }, 100, undefined)).items;
    const perEvent = new Map<string, number>();
    for (const d of deliveries) perEvent.set(d.eventId, (perEvent.get(d.eventId) ?? 0) + 1);
    const expected = events.map((e) => e.eventId).filter((id) => id !== `${b}-v2`);
    assert.deepEqual([...perEvent.keys()].sort(), [...expected].sort(), "every event but the poison one has its delivery");
    assert.ok([...perEvent.values()].every((n) => n === 1), "one delivery per event");
    const customerDeliveries = (await store.listDeliveries({ subscriptionId: customerSubscriptionId }, 100, undefined)).items;
    assert.deepEqual(customerDeliveries.map((d) => d.eventId).sort(), [...expected].sort(), "the second subscriber gets each event once too");
    assert.equal(inserted, 2 * expected.length, "the store reports the rows it inserted");
    assert.ok(perEvent.has(`${b}-v3`), "the poison event does not hold back its shipment's later events");
    // Shipment A's first event failed once: its later events were committed after it, never before.
    const order = committed.filter((id) => id.startsWith(a));
    assert.deepEqual(order, [`${a}-v1`, `${a}-v2`, `${a}-v3`]);

    // The same events delivered again (another message id, as after a lost ack): nothing new.
    const before = committed.length;
    for (const e of events) {
      const h = headers();
      h.set(EventHeaders.MessageType, StatusChangedSchema.typeName);
      await js.publish(catalog.events.statusChanged.subject({ region: "eu" }), toBinary(StatusChangedSchema, e), { msgID: `${e.eventId}-again`, headers: h });
    }
    await waitFor(async () => ((await settled()) && committed.length >= before + 8 ? true : undefined), { message: "the resent events settled" });
    assert.equal((await store.listDeliveries({ subscriptionId }, 100, undefined)).items.length, 8, "no delivery was created twice");
    assert.equal(inserted, 2 * expected.length, "the resent batch inserted nothing");
    assert.equal(await deadLetterCount(), 2, "the resent poison event is dead-lettered again, alone");
  });
});
