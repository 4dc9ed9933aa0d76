import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create, createFileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, file_google_protobuf_wrappers } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { authorize, normalizePolicies, policiesForService, unprotectedMethods, type MethodPolicy } from "./method-policy.js";
import { AuthError } from "./auth-error.js";
import { ANONYMOUS, derivePrincipal, type Principal } from "./principal.js";

const RPC = "/logistics.test.v1.TestService/DoThing";

function principal(scopes: string[], carrier?: string, customer?: string): Principal {
  return derivePrincipal({
    sub: "caller",
    scope: scopes.join(" "),
    ...(carrier === undefined ? {} : { carrier }),
    ...(customer === undefined ? {} : { customer }),
  });
}

function denial(policy: MethodPolicy | undefined, who: Principal): { code: Code; reason: string } {
  const d = authorize(policy, who, RPC);
  assert.equal(d.allow, false, "expected a denial");
  if (d.allow) throw new Error("unreachable");
  return { code: d.code, reason: d.reason };
}

describe("authorize", () => {
  it("denies a method without a policy with PermissionDenied, even for admin", () => {
    const d = denial(undefined, principal(["admin"]));
    assert.equal(d.code, Code.PermissionDenied);
    assert.match(d.reason, /no access policy/);
  });

  it("asks anonymous callers of a protected method for a token", () => {
    const d = denial({ scopes: ["routes:read"] }, ANONYMOUS);
    assert.equal(d.code, Code.Unauthenticated);
    assert.equal(d.reason, "missing bearer token");
  });

  it("lets anonymous callers into an anonymous method", () => {
    assert.deepEqual(authorize({ scopes: [], anonymous: true }, ANONYMOUS, RPC), { allow: true });
  });

  it("lets authenticated callers into an anonymous method whatever their scopes", () => {
    assert.deepEqual(authorize({ scopes: ["admin"], anonymous: true }, principal([], "acme"), RPC), { allow: true });
  });

  it("grants access when any one of the required scopes is held", () => {
    assert.deepEqual(authorize({ scopes: ["shipments:read", "admin"] }, principal(["shipments:read"]), RPC), { allow: true });
  });

  it("denies a caller lacking every required scope and names them", () => {
    const d = denial({ scopes: ["routes:write", "routes:read"] }, principal(["scans:write"]));
    assert.equal(d.code, Code.PermissionDenied);
    assert.equal(d.reason, `${RPC} requires one of the scopes routes:write, routes:read`);
    assert.equal(denial({ scopes: ["routes:write"] }, principal([])).reason, `${RPC} requires scope routes:write`);
  });

  it("grants the admin scope everything", () => {
    assert.deepEqual(authorize({ scopes: ["deliveries:admin"] }, principal(["admin"]), RPC), { allow: true });
  });

  it("admits any authenticated caller when the policy lists no scopes", () => {
    assert.deepEqual(authorize({ scopes: [] }, principal([]), RPC), { allow: true });
    assert.equal(denial({ scopes: [] }, ANONYMOUS).code, Code.Unauthenticated);
  });

  it("refuses carrier tokens on methods that do not allow carriers, even with the scope", () => {
    const d = denial({ scopes: ["shipments:read"] }, principal(["shipments:read"], "acme"));
    assert.equal(d.code, Code.PermissionDenied);
    assert.match(d.reason, /carrier credentials may not call/);
  });

  it("admits carrier tokens with the scope on carrier-allowed methods", () => {
    assert.deepEqual(authorize({ scopes: ["scans:write"], carrierAllowed: true }, principal(["scans:write"], "acme"), RPC), {
      allow: true,
    });
    assert.equal(denial({ scopes: ["scans:write"], carrierAllowed: true }, principal([], "acme")).code, Code.PermissionDenied);
  });

  it("refuses customer tokens on methods that do not allow customers, and admits them where allowed", () => {
    const customer = principal(["subscriptions:read"], undefined, "cust-1");
    assert.match(denial({ scopes: ["subscriptions:read"] }, customer).reason, /customer credentials may not call/);
    assert.deepEqual(authorize({ scopes: ["subscriptions:read"], customerAllowed: true }, customer, RPC), { allow: true });
  });

  it("never lets admin lift confinement, even on a principal built by hand", () => {
    const forged: Principal = { ...principal(["scans:write"], "acme"), scopes: new Set(["admin", "scans:write"]) };
    assert.match(denial({ scopes: ["shipments:read"] }, forged).reason, /carrier credentials may not call/);
    assert.match(denial({ scopes: ["shipments:read"], carrierAllowed: true }, forged).reason, /requires scope shipments:read/);
  });
});

describe("derivePrincipal", () => {
  it("derives one role per token", () => {
    assert.equal(principal(["admin"]).role, "operator");
    assert.equal(principal(["shipments:read"]).role, "internal");
    assert.equal(principal(["scans:write"], "acme").role, "carrier");
    assert.equal(principal(["subscriptions:read"], undefined, "cust-1").customer, "cust-1");
  });

  it("refuses admin together with a carrier or customer claim, and both claims together", () => {
    assert.throws(() => principal(["admin"], "acme"), (e: unknown) => e instanceof AuthError && /admin/.test(e.message));
    assert.throws(() => principal(["admin"], undefined, "cust-1"), (e: unknown) => e instanceof AuthError && /admin/.test(e.message));
    assert.throws(() => principal([], "acme", "cust-1"), (e: unknown) => e instanceof AuthError && /both/.test(e.message));
  });

  it("refuses claims that are not carrier codes or customer ids", () => {
    for (const bad of ["", "ACME", "a", "acme.>", 42]) {
      assert.throws(() => derivePrincipal({ sub: "x", carrier: bad }), AuthError, String(bad));
    }
    for (const bad of ["", "cust 1", "x".repeat(65), ["cust-1"]]) {
      assert.throws(() => derivePrincipal({ sub: "x", customer: bad }), AuthError, String(bad));
    }
  });
});

describe("normalizePolicies", () => {
  it("accepts a record keyed by RPC paths", () => {
    const map = normalizePolicies({ [RPC]: { scopes: ["admin"] } });
    assert.deepEqual(map.get(RPC)?.scopes, ["admin"]);
  });

  it("accepts a Map", () => {
    assert.equal(normalizePolicies(new Map([[RPC, { scopes: [] }]])).size, 1);
  });

  it("rejects keys that are not RPC paths", () => {
    assert.throws(() => normalizePolicies({ "logistics.test.v1.TestService/DoThing": { scopes: [] } }), /not an RPC path/);
    assert.throws(() => normalizePolicies({ "/TestService": { scopes: [] } }), /not an RPC path/);
  });

  it("copies policies so later changes to the input do not widen access", () => {
    const scopes = ["admin"];
    const map = normalizePolicies({ [RPC]: { scopes } });
    scopes.push("scans:write");
    assert.deepEqual(map.get(RPC)?.scopes, ["admin"]);
  });
});

describe("policiesForService", () => {
  const fileProto = create(FileDescriptorProtoSchema, {
    name: "policy_test.proto",
    package: "policy.test.v1",
    syntax: "proto3",
    dependency: ["google/protobuf/wrappers.proto"],
    service: [
      {
        name: "PolicyTestService",
        method: [
          { name: "GetThing", inputType: ".google.protobuf.StringValue", outputType: ".google.protobuf.StringValue" },
          { name: "PutThing", inputType: ".google.protobuf.StringValue", outputType: ".google.protobuf.StringValue" },
        ],
      },
    ],
  });
  const service = createFileRegistry(fileProto, (name) =>
    name === file_google_protobuf_wrappers.proto.name ? file_google_protobuf_wrappers : undefined,
  ).getService("policy.test.v1.PolicyTestService");
  if (service === undefined) throw new Error("test service not built");

  it("keys policies by RPC path from the methods' local names", () => {
    const map = policiesForService(service, { getThing: { scopes: ["routes:read"] }, putThing: { scopes: ["routes:write"] } });
    assert.deepEqual([...map.keys()].sort(), [
      "/policy.test.v1.PolicyTestService/GetThing",
      "/policy.test.v1.PolicyTestService/PutThing",
    ]);
  });

  it("throws when a method has no policy", () => {
    assert.throws(() => policiesForService(service, { getThing: { scopes: [] } }), /no access policy for \/policy.test.v1.PolicyTestService\/PutThing/);
  });

  it("lists the methods a policy set leaves unprotected", () => {
    const policies = { "/policy.test.v1.PolicyTestService/GetThing": { scopes: [] } };
    assert.deepEqual(unprotectedMethods([service], policies), ["/policy.test.v1.PolicyTestService/PutThing"]);
    assert.deepEqual(unprotectedMethods([service], policies, ["policy.test.v1.PolicyTestService"]), []);
  });
});
