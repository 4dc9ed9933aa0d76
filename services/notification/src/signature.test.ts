import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { computeSignature, signatureHeader, verifyWebhookSignature } from "./signature.js";

const secret = "whsec_0123456789abcdefghijklmnopqrstuv";
const body = JSON.stringify({ version: "2026-11-01", id: "evt-1", type: "shipment.status_changed", data: {} });

describe("verifyWebhookSignature", () => {
  it("accepts the header produced by signatureHeader within the tolerance", () => {
    const header = signatureHeader(secret, 1_800_000_000, body);
    assert.match(header, /^t=1800000000,v1=[0-9a-f]{64}$/);
    assert.equal(verifyWebhookSignature({ body, header, secret, nowSeconds: 1_800_000_100 }), true);
  });

  it("rejects a tampered body", () => {
    const header = signatureHeader(secret, 1_800_000_000, body);
    const tampered = body.replace("evt-1", "evt-2");
    assert.equal(verifyWebhookSignature({ body: tampered, header, secret, nowSeconds: 1_800_000_000 }), false);
  });

  it("rejects another secret, a stale timestamp and a malformed header", () => {
    const header = signatureHeader(secret, 1_800_000_000, body);
    assert.equal(verifyWebhookSignature({ body, header, secret: `${secret}x`, nowSeconds: 1_800_000_000 }), false);
    assert.equal(verifyWebhookSignature({ body, header, secret, nowSeconds: 1_800_000_301 }), false);
    assert.equal(verifyWebhookSignature({ body, header: "v1=abc", secret, nowSeconds: 1_800_000_000 }), false);
    assert.equal(verifyWebhookSignature({ body, header: "", secret, nowSeconds: 1_800_000_000 }), false);
  });

  it("rejects a signature re-used with a different timestamp", () => {
    const sig = computeSignature(secret, 1_800_000_000, body);
    const header = `t=1800000050,v1=${sig}`;
    assert.equal(verifyWebhookSignature({ body, header, secret, nowSeconds: 1_800_000_050 }), false);
  });

  it("accepts any one matching v1 entry (secret rotation)", () => {
    const good = computeSignature(secret, 1_800_000_000, body);
    const header = `t=1800000000,v1=${"0".repeat(64)},v1=${good}`;
    assert.equal(verifyWebhookSignature({ body, header, secret, nowSeconds: 1_800_000_000 }), true);
  });
});
