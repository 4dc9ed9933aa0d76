import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ScanKind, ScanSchema, type Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { RejectReason } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { createMeshValidator } from "@logistics/shared/validation";
import { recordedEventId } from "./event-ids.js";
import { createScanCheck } from "./scan-check.js";

const NOW = Date.UTC(2026, 0, 15, 12);
const check = createScanCheck({ validator: createMeshValidator(), maxAgeMs: 30 * 86_400_000, maxAheadMs: 3_600_000 });

function scan(over: Omit<Partial<Scan>, "$typeName" | "rawStatus"> & { rawStatus?: { code: string; text?: string } } = {}): Scan {
  return create(ScanSchema, {
    eventId: "evt-1",
    trackingNumber: "ABCD12345678",
    carrierCode: "ups",
    rawStatus: { code: "AR", text: "Arrival scan" },
    eventTime: timestampFromMs(NOW - 60_000),
    hubCode: "FRA",
    ...over,
  });
}

describe("createScanCheck", () => {
  it("accepts a valid scan with its recorded id and normalized status", () => {
    const v = check(scan(), NOW);
    assert.equal(v.ok, true);
    if (!v.ok) return;
    assert.equal(v.event.eventId, recordedEventId("ups", "evt-1"));
    assert.equal(v.event.scan, v.scan);
    assert.equal(v.event.status, ShipmentStatus.IN_TRANSIT);
    assert.equal(v.event.kind, ScanKind.HUB_ARRIVAL);
    assert.equal(v.mapped, true);
  });

  it("rejects an invalid scan as INVALID listing every violated field by proto path", () => {
    const v = check(scan({ trackingNumber: "abc", rawStatus: { code: "", text: "" }, eventTime: undefined }), NOW);
    assert.equal(v.ok, false);
    if (v.ok) return;
    assert.equal(v.reason, RejectReason.INVALID);
    const fields = v.violations.map((x) => x.field).sort();
    assert.deepEqual(fields, ["event_time", "raw_status.code", "tracking_number"]);
    const tn = v.violations.find((x) => x.field === "tracking_number");
    assert.equal(tn?.rule, "string.pattern");
    assert.match(tn?.message ?? "", /pattern/);
  });

  it("rejects scans outside the event-time window as TOO_LATE", () => {
    const old = check(scan({ eventTime: timestampFromMs(NOW - 31 * 86_400_000) }), NOW);
    const future = check(scan({ eventTime: timestampFromMs(NOW + 2 * 3_600_000) }), NOW);
    assert.equal(old.ok, false);
    assert.equal(future.ok, false);
    if (old.ok || future.ok) return;
    assert.equal(old.reason, RejectReason.TOO_LATE);
    assert.match(old.detail, /30 days in the past/);
    assert.equal(future.reason, RejectReason.TOO_LATE);
    assert.match(future.detail, /1 hours in the future/);
  });

  it("accepts the edges of the window", () => {
    assert.equal(check(scan({ eventTime: timestampFromMs(NOW - 30 * 86_400_000) }), NOW).ok, true);
    assert.equal(check(scan({ eventTime: timestampFromMs(NOW + 3_600_000) }), NOW).ok, true);
  });
});
