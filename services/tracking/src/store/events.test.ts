import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema, RouteUpdatedSchema } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { handedOver, route, scan } from "../../test/store/event-builders.js";
import { DocumentTooLargeError, InvalidEventError } from "./errors.js";
import { checkEvent, eventFromJson, eventKey } from "./events.js";
import type { ProjectedEvent } from "./ports.js";

const TN = "TN00000001";
const T = Date.UTC(2026, 10, 1, 8);
const iso = (ms: number) => new Date(ms).toISOString();

const rejects = (e: ProjectedEvent, field: string) =>
  assert.throws(() => checkEvent(e), (err: unknown) => err instanceof InvalidEventError && err.field === field);

describe("eventKey", () => {
  it("takes each event's own time: the scan's, else created_at, ready_time, handed_over_at, planned_at, updated_at or the route's planned_at", () => {
    assert.deepEqual(eventKey(scan(TN, "s", T, ScanKind.PICKUP)), { eventId: "s", trackingNumber: TN, eventTime: iso(T) });
    const created = (m: Parameters<typeof create<typeof ShipmentCreatedSchema>>[1]): ProjectedEvent => ({
      type: "shipment.created",
      message: create(ShipmentCreatedSchema, { eventId: "c", trackingNumber: TN, ...m }),
    });
    assert.equal(eventKey(created({ createdAt: timestampFromMs(T), readyTime: timestampFromMs(T + 1) })).eventTime, iso(T));
    assert.equal(eventKey(created({ readyTime: timestampFromMs(T + 1) })).eventTime, iso(T + 1));
    assert.equal(eventKey(created({})).eventTime, "", "no time: empty, which checkEvent refuses");
    assert.deepEqual(eventKey(handedOver(TN, "h", T + 4, "lastmile")), { eventId: "h", trackingNumber: TN, eventTime: iso(T + 4) });
    const planned: ProjectedEvent = {
      type: "route.planned",
      message: create(RoutePlannedSchema, { eventId: "p", trackingNumber: TN, route: { plannedAt: timestampFromMs(T + 2) } }),
    };
    assert.equal(eventKey(planned).eventTime, iso(T + 2));
    const updated: ProjectedEvent = {
      type: "route.updated",
      message: create(RouteUpdatedSchema, { eventId: "u", trackingNumber: TN, updatedAt: timestampFromMs(T + 3), route: { plannedAt: timestampFromMs(T) } }),
    };
    assert.equal(eventKey(updated).eventTime, iso(T + 3));
  });
});

describe("checkEvent", () => {
  it("returns the proto JSON the history keeps, which reads back as the same message", () => {
    const e = scan(TN, "s", T, ScanKind.HUB_ARRIVAL, { hubCode: "FRA", location: { latitude: 50.03, longitude: 8.57 }, attributes: { dock: "7" } });
    const json = checkEvent(e);
    assert.deepEqual(eventFromJson(e.type, JSON.parse(json)), e);
    assert.match(json, /"eventTime":"2026-11-01T08:00:00Z"/);
    const h = handedOver(TN, "h", T, "lastmile", "CDG");
    assert.deepEqual(eventFromJson(h.type, JSON.parse(checkEvent(h))), h);
  });

  it("refuses only what the store could not key, order, index or hold", () => {
    rejects(scan("", "s", T, ScanKind.PICKUP), "tracking_number");
    rejects(scan(TN, "", T, ScanKind.PICKUP), "event_id");
    rejects(scan(TN, "s", T, ScanKind.PICKUP, { eventTime: undefined }), "scan.event_time");
    rejects(scan(TN, "s", Date.UTC(10000, 0, 1), ScanKind.PICKUP), "scan.event_time");
    rejects(scan(TN, "s", T, ScanKind.PICKUP, { location: { latitude: Number.POSITIVE_INFINITY, longitude: 0 } }), "scan.location");
    rejects(scan(TN, "s", T, ScanKind.PICKUP, { note: "nul \u0000" }), "event.scan.note");
    rejects(scan(TN, "s", T, ScanKind.PICKUP, { attributes: { "\udc00": "x" } }), "event.scan.attributes.\udc00");
    const noEta = route(TN, "r", T, T);
    assert.ok(noEta.message.route);
    noEta.message.route.eta = undefined;
    rejects(noEta, "route.eta.estimated_arrival");
    const yearOne = route(TN, "r1", T, T);
    assert.ok(yearOne.message.route?.eta);
    yearOne.message.route.eta.estimatedArrival = { $typeName: "google.protobuf.Timestamp", seconds: -62135596800n, nanos: 0 };
    rejects(yearOne, "route.eta.estimated_arrival");
    rejects(handedOver(TN, "h", T, ""), "partner_carrier_code");
    const timeless = handedOver(TN, "h", T, "lastmile");
    timeless.message.handedOverAt = undefined;
    rejects(timeless, "handed_over_at");
    assert.throws(() => checkEvent(scan(TN, "s", T, ScanKind.PICKUP, { note: "x".repeat(5000) }), 4096), DocumentTooLargeError);
  });

  it("stores an event with a time proto JSON cannot write, without that time, instead of failing on it", () => {
    for (const bad of [
      { $typeName: "google.protobuf.Timestamp", seconds: 10n ** 15n, nanos: 0 },
      { $typeName: "google.protobuf.Timestamp", seconds: 1_800_000_000n, nanos: 2e9 },
    ] as const) {
      const e: ProjectedEvent = {
        type: "shipment.created",
        message: create(ShipmentCreatedSchema, { eventId: "c", trackingNumber: TN, createdAt: timestampFromMs(T), readyTime: bad }),
      };
      const stored = JSON.parse(checkEvent(e)) as Record<string, unknown>;
      assert.equal(stored.readyTime, undefined);
      assert.equal(stored.createdAt, "2026-11-01T08:00:00Z");
      assert.equal(e.message.readyTime?.seconds, bad.seconds, "the message itself is left as it came");
    }
  });

  it("lets the contracts' own rules be the edge's: a pattern or enum value outside them is stored as sent", () => {
    checkEvent(scan("lower-case", "a b", T, 99 as ScanKind, { hubCode: "not a hub" }));
    checkEvent(scan(TN, "s", T, ScanKind.PICKUP, { note: "a backslash-u: \\u0000 is text, not NUL" }));
  });
});
