import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "vitest";
import { assignedTrackingNumber, handoverEventId, partnerRemovedEventId, recordedEventId, shipmentEventId, shipmentIdFor } from "./event-ids.js";

describe("recordedEventId", () => {
  it("is sc- plus the first 128 bits of sha256(carrier:eventId) in hex", () => {
    const expected = createHash("sha256").update("ups:E-1").digest("hex").slice(0, 32);
    assert.equal(recordedEventId("ups", "E-1"), `sc-${expected}`);
  });

  it("is deterministic and distinguishes carriers", () => {
    assert.equal(recordedEventId("dhl", "123"), recordedEventId("dhl", "123"));
    assert.notEqual(recordedEventId("dhl", "123"), recordedEventId("ups", "123"));
    assert.notEqual(recordedEventId("dhl", "123"), recordedEventId("dhl", "124"));
  });
});

describe("shipment ids", () => {
  it("derive event and shipment ids from caller and idempotency key", () => {
    assert.equal(shipmentEventId("svc-a", "order-1"), shipmentEventId("svc-a", "order-1"));
    assert.notEqual(shipmentEventId("svc-a", "order-1"), shipmentEventId("svc-b", "order-1"));
    assert.match(shipmentIdFor("svc-a", "order-1"), /^shp_[a-z2-7]{26}$/);
  });

  it("assigns LM + 10 base32 tracking numbers matching the Scan pattern, a new one per attempt", () => {
    const a = assignedTrackingNumber("svc-a", "order-1");
    assert.match(a, /^LM[A-Z2-7]{10}$/);
    assert.match(a, /^[A-Z0-9]{8,30}$/);
    assert.equal(a, assignedTrackingNumber("svc-a", "order-1", 0));
    assert.notEqual(a, assignedTrackingNumber("svc-a", "order-1", 1));
  });
});

describe("partner event ids", () => {
  it("keep a first handover's id as it was before partners could be removed, and give every later term its own", () => {
    const before = createHash("sha256").update("handover\nTN12345678\nlastmile").digest().subarray(0, 16).toString("hex");
    assert.equal(handoverEventId("TN12345678", "lastmile", 0), `ho-${before}`);
    const ids = [0, 1, 2].flatMap((term) => [handoverEventId("TN12345678", "lastmile", term), partnerRemovedEventId("TN12345678", "lastmile", term)]);
    assert.equal(new Set(ids).size, ids.length, "a handover and a removal per term, all distinct");
    assert.equal(partnerRemovedEventId("TN12345678", "lastmile", 0), partnerRemovedEventId("TN12345678", "lastmile", 0));
    assert.match(partnerRemovedEventId("TN12345678", "lastmile", 0), /^pr-[0-9a-f]{32}$/);
    assert.notEqual(partnerRemovedEventId("TN12345678", "lastmile", 0), partnerRemovedEventId("TN12345678", "courier", 0));
  });
});
