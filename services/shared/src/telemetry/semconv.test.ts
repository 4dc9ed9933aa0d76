import * as assert from "node:assert/strict";
import { afterEach, describe, it } from "vitest";
import { emitsLegacy, redactedUrl, serverAttributes, setSemconvStabilityOptIn } from "./semconv.js";

describe("redactedUrl", () => {
  it("replaces credentials and query values, keeps parameter names, drops the fragment", () => {
    assert.equal(redactedUrl("https://user:pw@hooks.example.com/x?token=s3cret&v=2#f"), "https://REDACTED:REDACTED@hooks.example.com/x?token=REDACTED&v=REDACTED");
    assert.equal(redactedUrl("http://127.0.0.1:8080/hook"), "http://127.0.0.1:8080/hook");
    assert.equal(redactedUrl("not a url"), undefined);
  });
});

describe("serverAttributes", () => {
  it("names host and port, the scheme's default port when the URL has none, IPv6 without brackets", () => {
    assert.deepEqual(serverAttributes("https://hooks.example.com/x"), { "server.address": "hooks.example.com", "server.port": 443 });
    assert.deepEqual(serverAttributes("http://[::1]:8081/svc/M"), { "server.address": "::1", "server.port": 8081 });
    assert.deepEqual(serverAttributes("nonsense"), {});
  });
});

describe("setSemconvStabilityOptIn", () => {
  afterEach(() => setSemconvStabilityOptIn(undefined));

  it("emits old names only for the categories asked for with /dup", () => {
    assert.equal(emitsLegacy("rpc"), false);
    setSemconvStabilityOptIn(" http/dup, messaging/dup ,rpc");
    assert.equal(emitsLegacy("messaging"), true);
    assert.equal(emitsLegacy("rpc"), false, "`rpc` alone means stable only, the default");
    setSemconvStabilityOptIn(undefined);
    assert.equal(emitsLegacy("messaging"), false);
  });
});
