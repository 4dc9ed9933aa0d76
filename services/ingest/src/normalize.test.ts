import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { normalizeStatus, statusTableFor, UNMAPPED_STATUS } from "./normalize.js";

describe("normalizeStatus", () => {
  it("maps UPS activity codes", () => {
    assert.deepEqual(pick(normalizeStatus("ups", "OT")), [ShipmentStatus.OUT_FOR_DELIVERY, ScanKind.OUT_FOR_DELIVERY]);
    assert.deepEqual(pick(normalizeStatus("ups", "FS")), [ShipmentStatus.DELIVERED, ScanKind.DELIVERED]);
    assert.deepEqual(pick(normalizeStatus("ups", "48")), [ShipmentStatus.FAILED_ATTEMPT, ScanKind.DELIVERY_ATTEMPT]);
    assert.deepEqual(pick(normalizeStatus("ups", "KB")), [ShipmentStatus.AVAILABLE_FOR_PICKUP, ScanKind.PICKUP_POINT_ARRIVAL]);
  });

  it("maps DHL checkpoint codes, also for the dhl-express alias", () => {
    assert.deepEqual(pick(normalizeStatus("dhl", "OK")), [ShipmentStatus.DELIVERED, ScanKind.DELIVERED]);
    assert.deepEqual(pick(normalizeStatus("dhl-express", "WC")), [ShipmentStatus.OUT_FOR_DELIVERY, ScanKind.OUT_FOR_DELIVERY]);
    assert.deepEqual(pick(normalizeStatus("dhl", "RT")), [ShipmentStatus.RETURNED_TO_SENDER, ScanKind.RETURN_TO_SENDER]);
    assert.equal(normalizeStatus("dhl-express", "OK").table, "dhl");
  });

  it("maps FedEx scan codes", () => {
    assert.deepEqual(pick(normalizeStatus("fedex", "OD")), [ShipmentStatus.OUT_FOR_DELIVERY, ScanKind.OUT_FOR_DELIVERY]);
    assert.deepEqual(pick(normalizeStatus("fedex", "DE")), [ShipmentStatus.FAILED_ATTEMPT, ScanKind.DELIVERY_ATTEMPT]);
    assert.deepEqual(pick(normalizeStatus("fedex", "SE")), [ShipmentStatus.EXCEPTION, ScanKind.EXCEPTION]);
  });

  it("maps customs holds to exceptions of kind CUSTOMS, so readers can tell them from other problems", () => {
    for (const [carrier, code] of [["ups", "CH"], ["dhl", "HP"], ["fedex", "CD"], ["acme", "CH"]] as const) {
      assert.deepEqual(pick(normalizeStatus(carrier, code)), [ShipmentStatus.EXCEPTION, ScanKind.CUSTOMS], `${carrier} ${code}`);
    }
    assert.deepEqual(pick(normalizeStatus("acme", "CU")), [ShipmentStatus.IN_TRANSIT, ScanKind.CUSTOMS], "a customs event alone is no hold");
  });

  it("uses the generic table for every other carrier", () => {
    assert.equal(statusTableFor("acme"), "generic");
    assert.deepEqual(pick(normalizeStatus("acme", "PU")), [ShipmentStatus.IN_TRANSIT, ScanKind.PICKUP]);
    assert.deepEqual(pick(normalizeStatus("acme", "DA")), [ShipmentStatus.FAILED_ATTEMPT, ScanKind.DELIVERY_ATTEMPT]);
    assert.deepEqual(pick(normalizeStatus("acme", "IN")), [ShipmentStatus.INFO_RECEIVED, ScanKind.INFO]);
    assert.deepEqual(pick(normalizeStatus("acme", "CR")), [ShipmentStatus.IN_TRANSIT, ScanKind.CORRECTION]);
    assert.deepEqual(pick(normalizeStatus("acme", "DL")), [ShipmentStatus.DELIVERED, ScanKind.DELIVERED]);
  });

  it("does not let a carrier's code leak into another carrier's table", () => {
    // "OK" is DHL's delivered code; for UPS it means nothing.
    assert.equal(normalizeStatus("ups", "OK").mapped, false);
    assert.equal(normalizeStatus("acme", "OK").mapped, false);
  });

  it("looks codes up trimmed and case-insensitively", () => {
    assert.deepEqual(pick(normalizeStatus("acme", " dl ")), [ShipmentStatus.DELIVERED, ScanKind.DELIVERED]);
  });

  it("maps unknown codes to the documented fallback and flags them unmapped", () => {
    const n = normalizeStatus("ups", "ZZ9");
    assert.equal(n.mapped, false);
    assert.deepEqual(pick(n), [UNMAPPED_STATUS.status, UNMAPPED_STATUS.kind]);
    assert.deepEqual(pick(n), [ShipmentStatus.IN_TRANSIT, ScanKind.UNSPECIFIED]);
  });

  it("does not treat inherited object keys as codes", () => {
    assert.equal(normalizeStatus("acme", "constructor").mapped, false);
    assert.equal(statusTableFor("constructor"), "generic");
  });
});

function pick(n: { status: ShipmentStatus; kind: ScanKind }): [ShipmentStatus, ScanKind] {
  return [n.status, n.kind];
}
