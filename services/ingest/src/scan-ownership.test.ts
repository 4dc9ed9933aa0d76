import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { RejectReason } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import {
  checkCallerCarrier,
  decodeParties,
  encodeParties,
  judgeScanOwnership,
  handOverRight,
  MAX_PARTNER_CARRIERS,
  withPartner,
  type ShipmentParties,
} from "./scan-ownership.js";

const acme: ShipmentParties = { shipmentId: "shp_1", carrier: "acme", partners: ["lastmile"], customer: "cust-1" };

describe("scan ownership", () => {
  it("lets the shipment's carrier and its partners scan it, nobody else", () => {
    assert.deepEqual(judgeScanOwnership("TN12345678", "acme", acme), { ok: true });
    assert.deepEqual(judgeScanOwnership("TN12345678", "lastmile", acme), { ok: true });
    const v = judgeScanOwnership("TN12345678", "globex", acme);
    assert.equal(v.ok ? undefined : v.reason, RejectReason.WRONG_CARRIER);
  });

  it("answers unknown shipments and an unreadable directory with their own reasons", () => {
    const unknown = judgeScanOwnership("TN12345678", "acme", "unknown");
    assert.equal(unknown.ok ? undefined : unknown.reason, RejectReason.UNKNOWN_SHIPMENT);
    const down = judgeScanOwnership("TN12345678", "acme", "unavailable");
    assert.equal(down.ok ? undefined : down.reason, RejectReason.UNAVAILABLE);
  });

  it("confines a carrier token to scans naming its carrier; internal callers are not confined by it", () => {
    assert.equal(checkCallerCarrier("acme", "acme"), undefined);
    assert.equal(checkCallerCarrier(undefined, "globex"), undefined);
    const v = checkCallerCarrier("acme", "globex");
    assert.equal(v?.ok === false ? v.reason : undefined, RejectReason.WRONG_CARRIER);
  });

  it("lets only the shipment's own carrier or an internal caller hand it over, not a partner, adding partners up to the limit", () => {
    assert.equal(handOverRight("acme", acme), "allowed");
    assert.equal(handOverRight(undefined, acme), "allowed");
    assert.equal(handOverRight("lastmile", acme), "partner");
    assert.equal(handOverRight("globex", acme), "not_carrier");
    assert.equal(withPartner(acme, "lastmile"), "unchanged");
    assert.equal(withPartner(acme, "acme"), "unchanged");
    assert.deepEqual(withPartner(acme, "ups"), { ...acme, partners: ["lastmile", "ups"] });
    const full = { ...acme, partners: Array.from({ length: MAX_PARTNER_CARRIERS }, (_, i) => `p${i}x`) };
    assert.equal(withPartner(full, "ups"), "full");
  });

  it("stores parties as versioned JSON and refuses anything else", () => {
    assert.deepEqual(decodeParties(encodeParties(acme)), acme);
    assert.equal(decodeParties(new TextEncoder().encode('{"v":2}')), undefined);
    assert.equal(decodeParties(new TextEncoder().encode("not json")), undefined);
    assert.equal(decodeParties(new TextEncoder().encode('{"v":1,"shipmentId":"s","carrier":"a","customer":"c","partners":[1]}')), undefined);
  });
});
