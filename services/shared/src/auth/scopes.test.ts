import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { ANONYMOUS, derivePrincipal, hasAnyScope, type Principal } from "./principal.js";
import { ALL_SCOPES, parseScopes, Scope } from "./scopes.js";

function principal(scopes: string[]): Principal {
  return derivePrincipal({ sub: "svc", scope: scopes.join(" ") });
}

describe("parseScopes", () => {
  it("splits the standard space-separated scope claim", () => {
    assert.deepEqual([...parseScopes({ scope: "scans:write  shipments:read\troutes:read" })], [
      "scans:write",
      "shipments:read",
      "routes:read",
    ]);
  });

  it("accepts an scp array and merges it with scope", () => {
    assert.deepEqual([...parseScopes({ scope: "admin", scp: ["routes:write", "admin"] })].sort(), ["admin", "routes:write"]);
  });

  it("tolerates scope as an array and scp as a string", () => {
    assert.deepEqual([...parseScopes({ scope: ["a"], scp: "b c" })].sort(), ["a", "b", "c"]);
  });

  it("grants nothing for missing or malformed claims", () => {
    assert.equal(parseScopes({}).size, 0);
    assert.equal(parseScopes({ scope: 42, scp: { admin: true } }).size, 0);
    assert.equal(parseScopes({ scope: "   " }).size, 0);
  });

  it("ignores array entries that are not single scope names", () => {
    assert.deepEqual([...parseScopes({ scp: ["ok", 7, "", "two words", null] })], ["ok"]);
  });
});

describe("Scope", () => {
  it("names every scope of the mesh exactly once", () => {
    assert.deepEqual([...ALL_SCOPES].sort(), [
      "admin",
      "deliveries:admin",
      "routes:read",
      "routes:write",
      "scans:write",
      "shipments:read",
      "shipments:write",
      "subscriptions:read",
      "subscriptions:write",
    ]);
    assert.equal(Scope.ScansWrite, "scans:write");
  });
});

describe("hasAnyScope", () => {
  it("is true when the principal holds one of the scopes", () => {
    assert.equal(hasAnyScope(principal(["routes:read"]), ["routes:write", "routes:read"]), true);
  });

  it("is false when the principal holds none of them", () => {
    assert.equal(hasAnyScope(principal(["routes:read"]), ["routes:write"]), false);
  });

  it("treats admin as holding every scope", () => {
    assert.equal(hasAnyScope(principal(["admin"]), ["deliveries:admin"]), true);
  });

  it("is false for the anonymous principal", () => {
    assert.equal(hasAnyScope(ANONYMOUS, ["scans:write"]), false);
  });
});
