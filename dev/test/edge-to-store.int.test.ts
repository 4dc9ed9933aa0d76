import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { clone, create, type DescMessage } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Scope } from "@logistics/shared/auth";
import { CarrierStatusSchema, ScanSchema, type Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import {
  CreateShipmentRequestSchema,
  IngestService,
  RejectReason,
  ScanOutcome,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { NotificationEventType, NotificationService } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { RoutingService } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createSubjects, type Subjects } from "@logistics/shared/nats";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { createMeshValidator } from "@logistics/shared/validation";
import { assertMeshSettled, startE2eMesh, type E2eMesh } from "./e2e-mesh.js";
import { extremeMessage, fromPattern, type Extreme } from "./extreme-values.js";

/** Raw status codes of the generic table, one per scan kind that moves a shipment. */
const CODES = ["IN", "PU", "AR", "DP", "CU", "OD", "DA", "PP", "EX", "CR", "RS", "DL"];
const HOUR = 3_600_000;

/**
 * For every event the mesh publishes from what the edge accepts (ShipmentCreated, ScanRecorded,
 * and in turn RoutePlanned, StatusChanged and EtaChanged), extreme-but-valid values derived from
 * the contracts' rules go in through the real edge and must come out of every consumer: applied
 * by tracking (and read back unchanged), planned by routing, turned into deliveries by
 * notification, with nothing dead-lettered and nothing redelivered.
 */
describe("everything the edge accepts, every store and consumer downstream can hold", { timeout: 120_000 }, () => {
  let mesh: E2eMesh;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let subjects: Subjects;
  const validator = createMeshValidator();

  beforeAll(async () => {
    mesh = await startE2eMesh();
    nc = await connect({ servers: mesh.env["NATS_URL"] });
    jsm = await jetstreamManager(nc);
    subjects = createSubjects(mesh.env["SUBJECT_PREFIX"]);
  }, 120_000);
  afterAll(async () => {
    await nc?.close();
    await mesh?.close();
  });

  const client = <S extends Parameters<typeof createClient>[0]>(service: S, name: "ingest" | "routing" | "tracking" | "notification") =>
    createClient(service, createGrpcTransport({ baseUrl: mesh.get(name).url }));
  const auth = async (scopes: string[], extra?: { carrier?: string }) => ({
    headers: { authorization: `Bearer ${await mesh.token(scopes, extra)}` },
  });

  function valid<D extends DescMessage>(schema: D, message: Parameters<typeof validator.validate<D>>[1]) {
    const r = validator.validate(schema, message);
    assert.equal(r.kind, "valid", r.kind === "valid" ? "" : r.error.message);
    return message;
  }

  const cases: Array<{ extreme: Extreme; variant: number }> = [
    { extreme: "max", variant: 0 },
    { extreme: "max", variant: 5 },
    { extreme: "min", variant: 0 },
  ];
  for (const { extreme, variant } of cases) {
    it(`carries ${extreme} values (variant ${variant}) from the edge through every consumer`, async () => {
      const trackingNumber = `${extreme === "max" ? "X" : "N"}${variant}${uniqueName("t").replace(/[^0-9]/g, "")}`.slice(0, 30).padEnd(30, "7");
      const customerId = fromPattern("^[A-Za-z0-9._:-]{1,64}$", { extreme: "max", variant: variant + (extreme === "max" ? 1 : 2) });
      const request = valid(
        CreateShipmentRequestSchema,
        extremeMessage(CreateShipmentRequestSchema, {
          extreme,
          variant,
          overrides: {
            idempotency_key: [...extremeMessage(CreateShipmentRequestSchema, { extreme, variant: variant + 1 }).idempotencyKey]
              .slice(0, -6)
              .join("")
              .concat(uniqueName("k").slice(-6)),
            tracking_number: trackingNumber,
            carrier_code: "acme",
            customer_id: customerId,
            // Hub codes must name hubs of the network (any code matching the pattern would be
            // refused by routing, which knows the network; the edge cannot).
            "origin.hub_code": "FRA",
            "destination.hub_code": "ORD",
          },
        }),
      );
      const ingest = client(IngestService, "ingest");
      const created = await ingest.createShipment(request, await auth([Scope.ShipmentsWrite]));
      assert.equal(created.trackingNumber, trackingNumber);

      // Scans at both ends of ingest's event-time window, every field at its extreme.
      const now = Date.now();
      const scans: Scan[] = CODES.map((code, i) =>
        valid(
          ScanSchema,
          extremeMessage(ScanSchema, {
            extreme,
            variant: variant + i,
            overrides: {
              event_id: `${uniqueName("e")}.${extreme}:${i}`,
              tracking_number: trackingNumber,
              carrier_code: "acme",
              "raw_status.code": code,
              event_time: timestampFromMs(i % 2 === 0 ? now - 29 * 24 * HOUR + i * HOUR : now + 50 * 60_000 - i * 60_000),
              hub_code: i % 3 === 0 ? "" : i % 3 === 1 ? "FRA" : "ORD",
            },
          }),
        ),
      );
      const submit = async () => {
        const res = await ingest.submitScans({ scans }, await auth([Scope.ScansWrite], { carrier: "acme" }));
        const retry = res.acks.filter((a) => a.outcome === ScanOutcome.REJECTED && a.rejectReason !== RejectReason.UNKNOWN_SHIPMENT);
        assert.deepEqual(retry.map((a) => `${a.eventId}: ${RejectReason[a.rejectReason]} ${a.detail}`), []);
        return res.acks.every((a) => a.outcome === ScanOutcome.ACCEPTED || a.outcome === ScanOutcome.DUPLICATE);
      };
      await waitFor(submit, { timeoutMs: 20_000, message: "every extreme scan acknowledged" });

      // Tracking applied all of it, and gives back what the carrier sent, character for character.
      const tracking = client(TrackingService, "tracking");
      const reader = await auth([Scope.Admin]);
      const events = await waitFor(
        async () => {
          const page = await tracking.listShipmentEvents({ trackingNumber, pageSize: 100 }, reader).catch(() => null);
          const codes = new Set(page?.events.map((e) => e.carrierStatus?.code));
          return page && scans.every((s) => codes.has(s.rawStatus?.code)) ? page.events : null;
        },
        { timeoutMs: 30_000, message: "every scan applied" },
      );
      for (const scan of scans) {
        const e = events.find((x) => x.carrierStatus?.code === scan.rawStatus?.code);
        assert.equal(e?.carrierStatus?.text, scan.rawStatus?.text, `carrier text of ${scan.rawStatus?.code} read back unchanged`);
      }
      const shipment = (await tracking.getShipment({ trackingNumber }, reader)).shipment;
      assert.equal(shipment?.customerReference, request.customerReference);
      assert.equal(shipment?.origin?.city, request.origin?.city);
      assert.equal(shipment?.origin?.postalCode, request.origin?.postalCode);

      // Routing planned it (from a ready time at an end of the mesh's range).
      const route = await waitFor(
        () => client(RoutingService, "routing").getRoute({ trackingNumber }, reader).catch(() => null),
        { timeoutMs: 30_000, message: "route planned" },
      );
      assert.ok(route.route?.eta?.estimatedArrival);

      // Notification turned the status changes into deliveries.
      const notification = client(NotificationService, "notification");
      await notification.subscribe(
        {
          scope: { case: "trackingNumber", value: trackingNumber },
          eventTypes: [NotificationEventType.STATUS_CHANGED, NotificationEventType.ETA_CHANGED, NotificationEventType.EXCEPTION],
          webhookUrl: "http://127.0.0.1:9/hooks",
        },
        await auth([Scope.Admin]),
      );
      await ingest.submitScans(
        {
          scans: [
            Object.assign(clone(ScanSchema, scans[scans.length - 1]!), {
              eventId: `${uniqueName("e")}.after`,
              rawStatus: create(CarrierStatusSchema, { code: "EX", text: scans[0]!.rawStatus?.text ?? "" }),
              eventTime: timestampFromMs(Date.now() + 55 * 60_000),
            }),
          ],
        },
        await auth([Scope.ScansWrite], { carrier: "acme" }),
      );
      await waitFor(
        async () => (await notification.listDeliveries({ trackingNumber }, reader)).deliveries.length > 0,
        { timeoutMs: 30_000, message: "deliveries created" },
      );
    });
  }

  it("dead-lettered nothing and redelivered nothing anywhere in the mesh", async () => {
    await assertMeshSettled(jsm, subjects);
  });
});
