import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ScanKind, ScanSchema } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, type ScanRecorded } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { encodeScanEvents, fieldShape, SCAN_RECORDED_SHAPE } from "./scan-event-encoding.js";

const AT = timestampFromMs(Date.UTC(2026, 0, 15, 12, 0, 0, 123));

function event(i: number, over: Partial<Omit<ScanRecorded, "$typeName">> = {}): ScanRecorded {
  return create(ScanRecordedSchema, {
    eventId: `sc-${i}`,
    scan: create(ScanSchema, {
      eventId: `evt-${i}`,
      trackingNumber: `TN${String(i).padStart(10, "0")}`,
      carrierCode: "ups",
      rawStatus: { code: "AR", text: "Arrival scan" },
      eventTime: timestampFromMs(Date.UTC(2026, 0, 15, 11) + i),
      hubCode: "FRA",
    }),
    status: ShipmentStatus.IN_TRANSIT,
    kind: ScanKind.HUB_ARRIVAL,
    recordedAt: AT,
    region: "eu-west",
    ...over,
  });
}

describe("encodeScanEvents", () => {
  it("gives each event the bytes toBinary gives it, whatever its fields", () => {
    const withUnknownScan = event(7);
    (withUnknownScan.scan as { $unknown?: unknown }).$unknown = [{ no: 99, wireType: 2, data: new Uint8Array([3, 97, 98, 99]) }];
    const withUnknown = event(8);
    withUnknown.$unknown = [{ no: 42, wireType: 0, data: new Uint8Array([5]) }];
    const events = [
      event(0),
      event(1, { status: ShipmentStatus.DELIVERED, kind: ScanKind.DELIVERED }),
      event(2, { status: 0, kind: 0 }),
      event(3, { region: "" }),
      event(4, { recordedAt: undefined }),
      event(5, { recordedAt: timestampFromMs(Date.UTC(2026, 0, 15, 12, 0, 1)) }),
      event(6, { eventId: "", scan: undefined }),
      withUnknownScan,
      withUnknown,
      event(9, {
        scan: create(ScanSchema, {
          eventId: "évt-ü-✓",
          trackingNumber: "ABCD12345678",
          carrierCode: "dhl",
          rawStatus: { code: "OK", text: "Zugestellt — 配達済み" },
          eventTime: timestampFromMs(-1),
          location: { latitude: -33.9, longitude: 151.2 },
          note: "n".repeat(400),
          attributes: { dock: "7", "β": "γ" },
        }),
      }),
      event(10, { recordedAt: Object.assign(timestampFromMs(Date.UTC(2026, 0, 15, 12, 0, 2)), { $unknown: [{ no: 9, wireType: 0, data: new Uint8Array([1]) }] }) }),
      event(11, { status: ShipmentStatus.DELIVERED, kind: ScanKind.DELIVERED }),
    ];
    const encoded = encodeScanEvents(events);
    assert.equal(encoded.length, events.length);
    events.forEach((e, i) => {
      assert.deepEqual(encoded[i], toBinary(ScanRecordedSchema, e), `event ${i}`);
      assert.deepEqual(fromBinary(ScanRecordedSchema, encoded[i] as Uint8Array), fromBinary(ScanRecordedSchema, toBinary(ScanRecordedSchema, e)));
    });
    assert.deepEqual(encodeScanEvents([]), []);
    assert.deepEqual(encodeScanEvents([event(1)]), [toBinary(ScanRecordedSchema, event(1))]);
  });

  it("knows every field of ScanRecorded (a changed message falls back to toBinary: update the encoder with it)", () => {
    assert.equal(fieldShape(ScanRecordedSchema), SCAN_RECORDED_SHAPE);
  });
});
