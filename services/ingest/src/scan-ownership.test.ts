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
  MAX_PARTNER_HANDOVERS,
  partnerRemovalRight,
  partnerTerm,
  withoutPartner,
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

  it("lets the same callers remove a partner, refuses the shipment's own carrier after them, and never a partner", () => {
    assert.equal(partnerRemovalRight("acme", acme, "lastmile"), "allowed");
    assert.equal(partnerRemovalRight(undefined, acme, "never-a-partner"), "allowed");
    assert.equal(partnerRemovalRight("acme", acme, "acme"), "own_carrier");
    assert.equal(partnerRemovalRight(undefined, acme, "acme"), "own_carrier");
    assert.equal(partnerRemovalRight("lastmile", acme, "lastmile"), "partner", "not even itself");
    assert.equal(partnerRemovalRight("lastmile", acme, "acme"), "partner", "authorization first: a partner learns nothing");
    assert.equal(partnerRemovalRight("globex", acme, "acme"), "not_carrier");
  });

  it("drops a removed partner and counts its terms, so its slot can be reused and a new handover begins the next term", () => {
    const full: ShipmentParties = { ...acme, partners: Array.from({ length: MAX_PARTNER_CARRIERS }, (_, i) => `p${i}x`) };
    assert.equal(withPartner(full, "lastmile"), "full");
    const removed = withoutPartner(full, "p3x");
    assert.ok(removed !== "unchanged");
    assert.deepEqual(removed.partners, ["p0x", "p1x", "p2x", "p4x", "p5x", "p6x", "p7x"]);
    assert.equal(partnerTerm(removed, "p3x"), 1);
    assert.equal(partnerTerm(removed, "p4x"), 0);
    assert.equal(withoutPartner(removed, "p3x"), "unchanged", "gone already");
    assert.equal(withoutPartner(removed, "acme"), "unchanged", "the shipment's carrier is no partner");
    assert.equal(withoutPartner(removed, "never"), "unchanged");
    const readded = withPartner(removed, "p3x");
    assert.ok(typeof readded === "object");
    assert.deepEqual(readded.partners.slice(-1), ["p3x"], "added again at the end");
    assert.equal(partnerTerm(readded, "p3x"), 1, "its second term");
    const again = withoutPartner(readded, "p3x");
    assert.equal(again === "unchanged" ? -1 : partnerTerm(again, "p3x"), 2);
    assert.equal(partnerTerm(acme, "constructor"), 0, "a carrier code named like an Object property");
    assert.equal(partnerTerm({ ...acme, removals: { lastmile: 1 } }, "toString"), 0);
  });

  it("refuses a handover once the shipment took the most handovers of its life, however they were removed", () => {
    let parties: ShipmentParties = { ...acme, partners: [] };
    for (let i = 0; i < MAX_PARTNER_HANDOVERS; i++) {
      const added = withPartner(parties, i % 2 === 0 ? "again" : `code${i}x`);
      assert.ok(typeof added === "object", `handover ${i + 1} of ${MAX_PARTNER_HANDOVERS}`);
      const removed = withoutPartner(added, added.partners[0]!);
      assert.ok(removed !== "unchanged");
      parties = removed;
    }
    assert.equal(parties.partners.length, 0, "no partner now: no slot is taken");
    assert.equal(withPartner(parties, "again"), "full", "a code removed before");
    assert.equal(withPartner(parties, "fresh"), "full", "a new code");
    assert.equal(withPartner(parties, "acme"), "unchanged", "the shipment's own carrier still carries it");
    const decoded = decodeParties(encodeParties(parties));
    assert.ok(decoded && Object.keys(decoded.removals ?? {}).length <= MAX_PARTNER_HANDOVERS, "the entry stays bounded");
  });

  it("stores removal counts only for shipments that had a removal, and reads them back", () => {
    assert.doesNotMatch(new TextDecoder().decode(encodeParties(acme)), /removals/, "other entries stay as earlier releases wrote them");
    const removed = withoutPartner(acme, "lastmile");
    assert.ok(removed !== "unchanged");
    assert.deepEqual(decodeParties(encodeParties(removed)), { ...acme, partners: [], removals: { lastmile: 1 } });
    const bad = (removals: string) =>
      decodeParties(new TextEncoder().encode(`{"v":1,"shipmentId":"s","carrier":"a","customer":"c","partners":[],"removals":${removals}}`));
    assert.equal(bad('{"x":0}'), undefined);
    assert.equal(bad('{"x":1.5}'), undefined);
    assert.equal(bad('["x"]'), undefined);
    assert.deepEqual(bad('{"x":2}')?.removals, { x: 2 });
  });

  it("stores parties as versioned JSON and refuses anything else", () => {
    assert.deepEqual(decodeParties(encodeParties(acme)), acme);
    assert.equal(decodeParties(new TextEncoder().encode('{"v":2}')), undefined);
    assert.equal(decodeParties(new TextEncoder().encode("not json")), undefined);
    assert.equal(decodeParties(new TextEncoder().encode('{"v":1,"shipmentId":"s","carrier":"a","customer":"c","partners":[1]}')), undefined);
  });
});
