import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ScanRecordedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { scanDocumentCost } from "./shipment-budget.js";

const event = (code: string, text: string, hubCode = "") =>
  create(ScanRecordedSchema, { eventId: "sc-0123456789abcdef0123456789abcdef", scan: { rawStatus: { code, text }, hubCode } });

describe("scanDocumentCost", () => {
  it("charges a typical scan about 290 bytes", () => {
    const cost = scanDocumentCost(event("AR", "Arrived at hub", "FRA"));
    assert.ok(cost >= 250 && cost <= 320, String(cost));
  });

  it("charges text as the document's JSON holds it: UTF-8 bytes, six per escaped control character", () => {
    const base = scanDocumentCost(event("AR", ""));
    assert.equal(scanDocumentCost(event("AR", "€".repeat(10))) - base, 30);
    assert.equal(scanDocumentCost(event("AR", "\u0001".repeat(10))) - base, 60);
    assert.equal(scanDocumentCost(event("AR", '"'.repeat(10))) - base, 20);
    // The longest code and text the contract allows, of the most expensive character.
    assert.ok(scanDocumentCost(event("\u0001".repeat(64), "\u0001".repeat(512), "ABCDEFGH")) < 3_800);
  });
});
