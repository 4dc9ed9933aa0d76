import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { EtaChangeReason } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ShipmentEventSchema, ShipmentSchema } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { etaReasonOf, progressOf } from "./progress.js";

const NOW = Date.UTC(2026, 11, 2, 12);
const H = 3_600_000;
const ev = (scanKind: ScanKind, status: ShipmentStatus) => create(ShipmentEventSchema, { scanKind, status });
const shipment = (status: ShipmentStatus, extra: Partial<{ reason: EtaChangeReason; latest: number }> = {}) =>
  create(ShipmentSchema, {
    status,
    etaChangeReason: extra.reason ?? EtaChangeReason.INITIAL_PLAN,
    eta: {
      estimatedArrival: timestampFromMs((extra.latest ?? NOW + 48 * H) - H),
      latest: timestampFromMs(extra.latest ?? NOW + 48 * H),
    },
  });
const transit = [ev(ScanKind.PICKUP, ShipmentStatus.IN_TRANSIT), ev(ScanKind.HUB_ARRIVAL, ShipmentStatus.IN_TRANSIT)];

describe("progressOf", () => {
  it("follows the normal steps: label created, picked up, in transit, out for delivery, delivered", () => {
    assert.deepEqual(progressOf(shipment(ShipmentStatus.INFO_RECEIVED), [], NOW), { step: 0, complete: false, exception: undefined });
    assert.equal(progressOf(shipment(ShipmentStatus.IN_TRANSIT), transit.slice(0, 1), NOW).step, 1);
    assert.equal(progressOf(shipment(ShipmentStatus.IN_TRANSIT), transit, NOW).step, 2);
    assert.equal(progressOf(shipment(ShipmentStatus.OUT_FOR_DELIVERY), transit, NOW).step, 3);
    assert.deepEqual(progressOf(shipment(ShipmentStatus.DELIVERED), transit, NOW), { step: 4, complete: true, exception: undefined });
  });

  it("shows exceptions on the step where they happen", () => {
    assert.deepEqual(progressOf(shipment(ShipmentStatus.FAILED_ATTEMPT), transit, NOW), { step: 3, complete: false, exception: "attempted" });
    const held = [...transit, ev(ScanKind.CUSTOMS, ShipmentStatus.EXCEPTION)];
    assert.deepEqual(progressOf(shipment(ShipmentStatus.EXCEPTION), held, NOW), { step: 2, complete: false, exception: "customsHold" });
    const damaged = [...transit, ev(ScanKind.EXCEPTION, ShipmentStatus.EXCEPTION)];
    assert.equal(progressOf(shipment(ShipmentStatus.EXCEPTION), damaged, NOW).exception, "problem");
    assert.equal(progressOf(shipment(ShipmentStatus.RETURNED_TO_SENDER), transit, NOW).exception, "returned");
  });

  it("calls a moving parcel delayed when its estimate moved later or its window is over", () => {
    assert.equal(progressOf(shipment(ShipmentStatus.IN_TRANSIT, { reason: EtaChangeReason.MISSED_CUTOFF }), transit, NOW).exception, "delayed");
    assert.equal(progressOf(shipment(ShipmentStatus.IN_TRANSIT, { latest: NOW - H }), transit, NOW).exception, "delayed");
    assert.equal(progressOf(shipment(ShipmentStatus.IN_TRANSIT, { reason: EtaChangeReason.EARLY_ARRIVAL }), transit, NOW).exception, undefined);
  });
});

describe("etaReasonOf", () => {
  it("explains early, late and re-routed estimates, and says nothing about the first plan", () => {
    assert.equal(etaReasonOf(EtaChangeReason.EARLY_DEPARTURE), "early");
    assert.equal(etaReasonOf(EtaChangeReason.LATE_ARRIVAL), "late");
    assert.equal(etaReasonOf(EtaChangeReason.UNPLANNED_HUB), "rerouted");
    assert.equal(etaReasonOf(EtaChangeReason.INITIAL_PLAN), undefined);
  });
});
