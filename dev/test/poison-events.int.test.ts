import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel, ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { EtaChangedSchema, StatusChangedSchema } from "@logistics/shared/gen/logistics/events/v1/tracking_events_pb.js";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { EventHeaders } from "@logistics/shared/nats";
import { createEventPublisher, type EventPublisher } from "@logistics/shared/nats";
import { createSubjects, type Subjects } from "@logistics/shared/nats";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { startE2eMesh, type E2eMesh } from "./e2e-mesh.js";

const REGION = "eu-west";
const ts = (ms: number): Timestamp => timestampFromMs(ms);
const raw = (seconds: bigint, nanos = 0): Timestamp => ({ $typeName: "google.protobuf.Timestamp", seconds, nanos });

interface DeadLetter {
  consumer: string;
  msgId: string;
  reason: string;
  deliveries: string;
}

/**
 * Events the edge would refuse today, published straight to the streams the way an older ingest, a
 * replay or a bug would: every consumer of the mesh (tracking's projector, routing's consumers,
 * notification's intake) must dead-letter each at once with the reason, never retry it, and go on
 * applying the good events behind it.
 */
describe("consumers given events they can never apply", { timeout: 60_000 }, () => {
  let mesh: E2eMesh;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let publisher: EventPublisher;
  let subjects: Subjects;

  beforeAll(async () => {
    mesh = await startE2eMesh({ services: ["routing", "tracking", "notification"] });
    nc = await connect({ servers: mesh.env["NATS_URL"] });
    jsm = await jetstreamManager(nc);
    publisher = createEventPublisher({ js: jetstream(nc) });
    subjects = createSubjects(mesh.env["SUBJECT_PREFIX"]);
  }, 120_000);
  afterAll(async () => {
    await nc?.close();
    await mesh?.close();
  });

  const publish = async <D extends DescMessage>(subject: string, schema: D, message: MessageShape<D>, msgId: string) =>
    publisher.publish(subject, schema, message, { msgId });

  async function deadLetters(): Promise<DeadLetter[]> {
    const stream = subjects.streams.deadLetters.name;
    const { state } = await jsm.streams.info(stream);
    const out: DeadLetter[] = [];
    for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
      if (!m) continue;
      out.push({
        consumer: m.header.get(EventHeaders.DlqConsumer),
        msgId: m.header.get(EventHeaders.DlqMsgId),
        reason: m.header.get(EventHeaders.DlqReason),
        deliveries: m.header.get(EventHeaders.DlqDeliveries),
      });
    }
    return out;
  }

  async function expectDeadLetteredAtOnce(consumer: string, msgId: string, reason: RegExp): Promise<void> {
    const found = await waitFor(async () => (await deadLetters()).find((d) => d.consumer === consumer && d.msgId === msgId), {
      timeoutMs: 20_000,
      message: `${msgId} dead-lettered by ${consumer}`,
    });
    assert.equal(found.deliveries, "1", `${consumer} retried ${msgId} before giving up`);
    assert.match(found.reason, /^poison: /);
    assert.match(found.reason, reason);
  }

  const tracking = () => createClient(TrackingService, createGrpcTransport({ baseUrl: mesh.get("tracking").url }));
  const tn = (tag: string) => `${tag}${uniqueName("x").replace(/[^0-9]/g, "").slice(-10).padStart(10, "0")}`.toUpperCase();

  function scan(trackingNumber: string, eventId: string, over: { note?: string; eventTime?: Timestamp } = {}) {
    return create(ScanRecordedSchema, {
      eventId,
      scan: {
        eventId: `c-${eventId}`,
        trackingNumber,
        carrierCode: "acme",
        rawStatus: { code: "AR", text: "Arrived" },
        eventTime: over.eventTime ?? ts(Date.now() - 60_000),
        hubCode: "FRA",
        note: over.note ?? "",
      },
      kind: ScanKind.HUB_ARRIVAL,
      status: ShipmentStatus.IN_TRANSIT,
      recordedAt: ts(Date.now()),
      region: REGION,
    });
  }

  function shipment(trackingNumber: string, eventId: string, over: { readyTime?: Timestamp; hubCode?: string } = {}) {
    return create(ShipmentCreatedSchema, {
      eventId,
      trackingNumber,
      shipmentId: `shp-${eventId}`,
      carrierCode: "acme",
      customerId: "cust-1",
      origin: { countryCode: "DE", city: "Frankfurt", hubCode: over.hubCode ?? "", location: { latitude: 50.11, longitude: 8.68 } },
      destination: { countryCode: "FR", city: "Paris", location: { latitude: 48.86, longitude: 2.35 } },
      serviceLevel: ServiceLevel.STANDARD,
      readyTime: over.readyTime ?? ts(Date.now()),
      createdAt: ts(Date.now()),
      weightGrams: 1000,
    });
  }

  it("tracking dead-letters a scan with a NUL in its note and one whose time no date can hold, and applies the next scan", async () => {
    const number = tn("PNUL");
    await publish(subjects.scanRecorded(REGION, "acme"), ScanRecordedSchema, scan(number, "p-nul", { note: "x\u0000" }), "p-nul");
    await publish(subjects.scanRecorded(REGION, "acme"), ScanRecordedSchema, scan(number, "p-1e15", { eventTime: raw(10n ** 15n) }), "p-1e15");
    await publish(subjects.scanRecorded(REGION, "acme"), ScanRecordedSchema, scan(number, "p-good"), "p-good");
    await expectDeadLetteredAtOnce("tracking-scans", "p-nul", /note: must not contain NUL/);
    await expectDeadLetteredAtOnce("tracking-scans", "p-1e15", /scan\.event_time: is missing or not a valid time/);
    const res = await waitFor(() => tracking().getShipment({ trackingNumber: number }).catch(() => null), { message: "good scan visible" });
    assert.equal(res.shipment?.version, 1n);
  });

  it("tracking dead-letters a route event whose ETA lies in year 1", async () => {
    const number = tn("PETA");
    const event = create(RoutePlannedSchema, {
      eventId: "p-eta-year-1",
      trackingNumber: number,
      route: { routeId: "r1", trackingNumber: number, revision: 1, eta: { estimatedArrival: raw(-62135596800n) }, plannedAt: ts(Date.now()) },
      plannedAt: ts(Date.now()),
    });
    await publish(subjects.routePlanned(REGION), RoutePlannedSchema, event, "p-eta-year-1");
    await expectDeadLetteredAtOnce("tracking-routes", "p-eta-year-1", /route\.eta\.estimated_arrival: must be a time from 1970 to 9999/);
  });

  for (const [what, over, reason] of [
    ["ready_time with seconds = 1e15", { readyTime: raw(10n ** 15n) }, /ready_time .* not a time routing can plan with/],
    ["ready_time in year 9999", { readyTime: ts(Date.parse("9999-06-01T00:00:00Z")) }, /ready_time/],
    ["ready_time in year 1", { readyTime: raw(-62135596800n) }, /ready_time/],
    ["ready_time with nanos = 2e9", { readyTime: raw(1_800_000_000n, 2e9) }, /ready_time/],
    ["a hub that is not in the network", { hubCode: "ZZZ9" }, /hub ZZZ9 is not in the network/],
  ] as const) {
    it(`routing dead-letters a created shipment with ${what}, while tracking still shows the shipment`, async () => {
      const number = tn("PRTE");
      const id = uniqueName("p-created");
      await publish(subjects.shipmentCreated(REGION), ShipmentCreatedSchema, shipment(number, id, over), id);
      await expectDeadLetteredAtOnce("routing-shipments-created", id, reason);
      await waitFor(() => tracking().getShipment({ trackingNumber: number }).catch(() => null), { message: "shipment visible" });
    });
  }

  it("notification dead-letters status and ETA changes whose times no date can hold, and keeps a NUL it can store escaped", async () => {
    const number = tn("PNTF");
    const status = (eventId: string, over: { text?: string; statusTime?: Timestamp }) =>
      create(StatusChangedSchema, {
        eventId,
        trackingNumber: number,
        shipmentId: "shp-1",
        customerId: "cust-1",
        carrierCode: "acme",
        status: ShipmentStatus.IN_TRANSIT,
        carrierStatus: { code: "AR", text: over.text ?? "Arrived" },
        statusTime: over.statusTime ?? ts(Date.now()),
        version: 2n,
        recordedAt: ts(Date.now()),
      });
    const eta = create(EtaChangedSchema, {
      eventId: "p-eta-1e15",
      trackingNumber: number,
      shipmentId: "shp-1",
      customerId: "cust-1",
      carrierCode: "acme",
      eta: { estimatedArrival: raw(10n ** 15n) },
      version: 3n,
      changedAt: raw(10n ** 15n),
    });
    await publish(subjects.statusChanged(REGION), StatusChangedSchema, status("p-status-1e15", { statusTime: raw(10n ** 15n) }), "p-status-1e15");
    await publish(subjects.etaChanged(REGION), EtaChangedSchema, eta, "p-eta-1e15");
    // The webhook body is JSON text: a NUL is written as the escape \u0000, which text columns hold.
    await publish(subjects.statusChanged(REGION), StatusChangedSchema, status("p-status-nul", { text: "Arr\u0000ived" }), "p-status-nul");
    await expectDeadLetteredAtOnce("notification-status", "p-status-1e15", /SQLSTATE 22|Invalid time value|out of range/);
    await expectDeadLetteredAtOnce("notification-eta", "p-eta-1e15", /Invalid time value|cannot encode|out of range/);
    await waitFor(async () => {
      const i = await jsm.consumers.info(subjects.streams.status.name, "notification-status");
      return i.num_pending === 0 && i.num_ack_pending === 0;
    }, { message: "status changes settled" });
    assert.equal((await deadLetters()).some((d) => d.msgId === "p-status-nul"), false);
  });

  it("left no consumer redelivering anything", async () => {
    for (const [stream, durable] of [
      [subjects.streams.scans.name, "tracking-scans"],
      [subjects.streams.routes.name, "tracking-routes"],
      [subjects.streams.shipments.name, "routing-shipments-created"],
      [subjects.streams.scans.name, "routing-scans"],
      [subjects.streams.status.name, "notification-status"],
      [subjects.streams.status.name, "notification-eta"],
    ] as const) {
      const info = await waitFor(async () => {
        const i = await jsm.consumers.info(stream, durable);
        return i.num_pending === 0 && i.num_ack_pending === 0 ? i : null;
      }, { message: `${durable} settled` });
      assert.equal(info.num_redelivered, 0, `${durable} redelivered messages`);
    }
  });
});
