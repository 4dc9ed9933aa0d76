import * as assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { describe, it } from "vitest";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "../gen/logistics/events/v1/ingest_events_pb.js";
import { SubjectTokenError } from "../nats/subjects.js";
import { createEventCatalog } from "./catalog.js";

describe("createEventCatalog", () => {
  const catalog = createEventCatalog("t_ab12");
  const { events } = catalog;

  it("builds every event's subject and parses it back to the event, region and carrier", () => {
    assert.equal(events.scanRecorded.subject({ region: "eu-west", carrier: "acme" }), "t_ab12.scan.recorded.eu-west.acme");
    assert.equal(events.routeUpdated.subject({ region: "us" }), "t_ab12.route.updated.us");
    for (const event of catalog.eventList) {
      const subject = event.name === "scan.recorded" ? events.scanRecorded.subject({ region: "eu", carrier: "dhl" }) : event.subject({ region: "eu" });
      const parsed = catalog.parse(subject);
      assert.equal(parsed?.event, event, subject);
      assert.equal(parsed?.region, "eu");
      assert.equal(parsed?.carrier, event.name === "scan.recorded" ? "dhl" : undefined);
      assert.ok(subject.startsWith(event.allSubjects.slice(0, -1)), `${subject} is under ${event.allSubjects}`);
      assert.ok(event.stream.subjects.some((s) => subject.startsWith(s.slice(0, -1))), `${event.stream.name} captures ${subject}`);
    }
  });

  it("parses nothing that is not a catalog event's subject", () => {
    for (const subject of [
      "other.scan.recorded.eu.acme",
      "t_ab12.scan.recorded.eu",
      "t_ab12.scan.recorded.eu.acme.extra",
      "t_ab12.shipment.created",
      "t_ab12.dlq.tracking-scans",
      "t_ab12.live.shipment.TN12345678",
    ]) {
      assert.equal(catalog.parse(subject), undefined, subject);
    }
  });

  it("refuses subject tokens that would land elsewhere", () => {
    assert.throws(() => events.shipmentCreated.subject({ region: "eu.west" }), SubjectTokenError);
    assert.throws(() => events.scanRecorded.subject({ region: "eu", carrier: "*" }), SubjectTokenError);
  });

  it("reads each event's ordering key and id from the message", () => {
    const scan = create(ScanRecordedSchema, { eventId: "e-1", scan: { trackingNumber: "TN12345678" } });
    assert.equal(events.scanRecorded.key(scan), "TN12345678");
    assert.equal(events.scanRecorded.id(scan), "e-1");
    assert.equal(events.scanRecorded.key(create(ScanRecordedSchema)), "");
    const created = create(ShipmentCreatedSchema, { eventId: "c-1", trackingNumber: "TN87654321" });
    assert.equal(events.shipmentCreated.key(created), "TN87654321");
    assert.equal(events.shipmentCreated.id(created), "c-1");
  });

  it("describes every consumer with its stream, filter, settings and dead-letter subject", () => {
    const scans = catalog.consumer("tracking-scans");
    assert.equal(scans.durable, "tracking-scans");
    assert.equal(scans.stream.name, "T_AB12_SCANS");
    assert.equal(scans.filterSubject, "t_ab12.scan.recorded.>");
    assert.deepEqual(scans.events, [events.scanRecorded]);
    assert.equal(scans.deadLetterSubject, "t_ab12.dlq.tracking-scans");
    const routes = catalog.consumer("tracking-routes");
    assert.equal(routes.filterSubject, undefined, "the whole routes stream, decoded by subject");
    assert.deepEqual(routes.events.map((e) => e.name), ["route.planned", "route.updated"]);
    assert.deepEqual(routes.replaces, ["tracking-routes-planned", "tracking-routes-updated"]);
    const shipments = catalog.consumer("tracking-shipment-events");
    assert.deepEqual(shipments.replaces, ["tracking-shipments"]);
    assert.equal(shipments.filterSubject, undefined, "the whole shipments stream: a shipment's creation, handovers and removals in one order");
    assert.deepEqual(shipments.events.map((e) => e.name), ["shipment.created", "shipment.handed_over", "shipment.partner_removed"]);
    assert.equal(events.shipmentPartnerRemoved.subject({ region: "eu" }), "t_ab12.shipment.partner_removed.eu");
    assert.equal(events.shipmentPartnerRemoved.stream, events.shipmentHandedOver.stream);
    const notification = catalog.consumer("notification-eta");
    assert.equal(notification.filterSubject, "t_ab12.eta.changed.>");
    assert.equal(notification.ackWaitMs, 30_000);
  });

  it("applies a deployment's overrides, renaming durables, replaced durables and the dead-letter subject together", () => {
    const routes = catalog.consumer("tracking-routes", { durablePrefix: "tracking2", ackWaitMs: 2000, maxDeliver: 3, maxAckPending: 50 });
    assert.equal(routes.durable, "tracking2-routes");
    assert.deepEqual(routes.replaces, ["tracking2-routes-planned", "tracking2-routes-updated"]);
    assert.equal(routes.deadLetterSubject, "t_ab12.dlq.tracking2-routes");
    assert.deepEqual([routes.ackWaitMs, routes.maxDeliver, routes.maxAckPending], [2000, 3, 50]);
    assert.throws(() => catalog.consumer("tracking-scans", { durablePrefix: "a.b" }), SubjectTokenError);
  });
});
