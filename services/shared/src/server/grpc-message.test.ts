import assert from "node:assert/strict";
import { describe, it } from "vitest";
import {
  fixGrpcMessageHeader,
  MAX_GRPC_DETAILS_LENGTH,
  MAX_GRPC_MESSAGE_LENGTH,
  reencodeGrpcMessage,
  specEncodeGrpcMessage,
  unparsableAsInvalid,
} from "./grpc-message.js";

describe("grpc-message encoding", () => {
  const samples = ["plain: a/b c,d=e", "100% done", "Zürich → 東京 😀", "tab\tnewline\nCR\r", "~!@#$^&*()_+{}|\"<>?", ""];

  it("percent-encodes only bytes outside 0x20-0x7E and '%', as the gRPC specification writes it", () => {
    assert.equal(specEncodeGrpcMessage("idempotency_key: must be 8/128"), "idempotency_key: must be 8/128");
    assert.equal(specEncodeGrpcMessage("50% ü\n"), "50%25 %C3%BC%0A");
  });

  it("decodes back to the message with decodeURI (grpc-js) and decodeURIComponent (connect-es) alike", () => {
    for (const m of samples) {
      const encoded = specEncodeGrpcMessage(m);
      assert.match(encoded, /^[\x20-\x7e]*$/);
      assert.equal(decodeURI(encoded), m);
      assert.equal(decodeURIComponent(encoded), m);
    }
  });

  it("re-encodes what encodeURIComponent wrote, and rewrites only the grpc-message entry of a header object", () => {
    for (const m of samples) assert.equal(reencodeGrpcMessage(encodeURIComponent(m)), specEncodeGrpcMessage(m));
    assert.equal(reencodeGrpcMessage("%E0%A4%A"), "%25E0%25A4%25A");
    const headers = { "grpc-status": "3", "Grpc-Message": encodeURIComponent("a: b/c"), other: "x%3A" };
    assert.deepEqual(fixGrpcMessageHeader(headers), { "grpc-status": "3", "Grpc-Message": "a: b/c", other: "x%3A" });
    assert.equal(fixGrpcMessageHeader(200), 200);
  });

  it("answers an unparsable request message with InvalidArgument instead of connect-es's Internal", () => {
    const h = { "grpc-status": "13", "grpc-message": encodeURIComponent("parse binary: premature EOF") };
    assert.deepEqual(fixGrpcMessageHeader(h), { "grpc-status": "3", "grpc-message": "parse binary: premature EOF" });
    const other = { "grpc-status": "13", "grpc-message": "database gone" };
    assert.equal(fixGrpcMessageHeader(other)["grpc-status"], "13");
  });

  it("cuts a huge message and drops huge status details, so trailers stay within clients' header limits", () => {
    const h: Record<string, string> = {
      "grpc-status": "3",
      "grpc-message": encodeURIComponent("ü".repeat(10_000)),
      "grpc-status-details-bin": "A".repeat(MAX_GRPC_DETAILS_LENGTH + 1),
    };
    fixGrpcMessageHeader(h);
    assert.ok(h["grpc-message"]!.length <= MAX_GRPC_MESSAGE_LENGTH + 3);
    assert.doesNotThrow(() => decodeURIComponent(h["grpc-message"]!.replace(/\.\.\.$/, "")));
    assert.equal(h["grpc-status-details-bin"], undefined);
  });
});

describe("unparsableAsInvalid (gRPC-Web trailers-only heads)", () => {
  it("turns Internal for an undecodable request into InvalidArgument and leaves every other head as written", () => {
    const h = unparsableAsInvalid({ "content-type": "application/grpc-web+proto", "grpc-status": "13", "grpc-message": "parse%20binary%3A%20premature%20EOF" });
    assert.equal(h["grpc-status"], "3");
    assert.equal(h["grpc-message"], "parse%20binary%3A%20premature%20EOF");
    for (const head of [
      { "grpc-status": "13", "grpc-message": "database exploded" },
      { "grpc-status": "14", "grpc-message": "parse binary: premature EOF" },
      { "content-type": "application/grpc-web+proto" },
    ]) {
      assert.deepEqual(unparsableAsInvalid({ ...head }), head);
    }
  });
});

