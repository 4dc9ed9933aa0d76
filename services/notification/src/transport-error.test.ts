import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { timeoutClass, transportErrorClass, type ConnectionPhase } from "./transport-error.js";

describe("transportErrorClass", () => {
  it("says only 'connection failed' for every failure before a connection, closed port or not", () => {
    for (const code of ["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "ECONNRESET", "ENOTFOUND", "EAI_AGAIN", undefined]) {
      assert.equal(transportErrorClass(code, "connecting"), "connection failed", String(code));
    }
  });

  it("calls a failed handshake a TLS error, whatever the other side did", () => {
    for (const [code, phase] of [
      ["ECONNRESET", "handshaking"],
      ["EPROTO", "handshaking"],
      [undefined, "handshaking"],
      ["DEPTH_ZERO_SELF_SIGNED_CERT", "connecting"],
      ["ERR_TLS_CERT_ALTNAME_INVALID", "connected"],
      ["SELF_SIGNED_CERT_IN_CHAIN", "connected"],
      ["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "connected"],
      ["CERT_HAS_EXPIRED", "connected"],
      ["ERR_SSL_WRONG_VERSION_NUMBER", "connected"],
    ] as Array<[string | undefined, ConnectionPhase]>) {
      assert.equal(transportErrorClass(code, phase), "TLS error", `${String(code)} ${phase}`);
    }
  });

  it("tells a connection closed before the response from an answer that is not HTTP, and from anything else", () => {
    for (const code of ["ECONNRESET", "EPIPE", "ECONNABORTED", "ETIMEDOUT"]) {
      assert.equal(transportErrorClass(code, "connected"), "connection closed before a response", code);
    }
    assert.equal(transportErrorClass("HPE_INVALID_CONSTANT", "connected"), "invalid HTTP response");
    assert.equal(transportErrorClass("HPE_HEADER_OVERFLOW", "connected"), "invalid HTTP response");
    assert.equal(transportErrorClass("ERR_INVALID_CHAR", "connected"), "request failed");
    assert.equal(transportErrorClass(undefined, "connected"), "request failed");
  });
});

describe("timeoutClass", () => {
  it("makes a connection that never came (a filtered port) look like a refused one", () => {
    assert.equal(timeoutClass("connecting", 10_000), transportErrorClass("ECONNREFUSED", "connecting"));
  });

  it("reports a timeout once connected, with the limit", () => {
    assert.equal(timeoutClass("handshaking", 10_000), "timed out after 10000 ms");
    assert.equal(timeoutClass("connected", 300), "timed out after 300 ms");
  });
});
