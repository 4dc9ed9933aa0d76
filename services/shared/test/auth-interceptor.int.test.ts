import * as assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, createFileRegistry } from "@bufbuild/protobuf";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { FileDescriptorProtoSchema, file_google_protobuf_wrappers, StringValueSchema } from "@bufbuild/protobuf/wkt";
import type { StringValue } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type ConnectRouter, type HandlerContext, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { exportJWK, exportSPKI, generateKeyPair, type CryptoKey, type JWK } from "jose";
import { createAuthInterceptor, principalKey, requirePrincipal, type AuthLog } from "../src/auth/auth-interceptor.js";
import { mintToken } from "../src/auth/dev-keys.js";
import { createJwtVerifier, type JwtVerifier } from "../src/auth/jwt-verifier.js";
import type { MethodPolicy } from "../src/auth/method-policy.js";
import type { Principal } from "../src/auth/principal.js";
import { Scope } from "../src/auth/scopes.js";
import { Health, HealthCheckResponse_ServingStatus, HealthCheckResponseSchema } from "../src/gen/grpc/health/v1/health_pb.js";
import { startTestConnectServer, type TestConnectServer } from "../src/testing/connect-server.js";

const ISSUER = "auth-test-issuer";
const AUDIENCE = "auth-test-audience";

// ---- a test service built at runtime from a descriptor, with StringValue in and out ----

type Unary = { methodKind: "unary"; input: typeof StringValueSchema; output: typeof StringValueSchema };
type TestService = GenService<{
  whoAmI: Unary;
  publicInfo: Unary;
  submitScan: Unary;
  unlisted: Unary;
  scanStream: { methodKind: "bidi_streaming"; input: typeof StringValueSchema; output: typeof StringValueSchema };
}>;

function buildTestService(): TestService {
  const sv = ".google.protobuf.StringValue";
  const file = create(FileDescriptorProtoSchema, {
    name: "authtest/v1/auth_test.proto",
    package: "authtest.v1",
    syntax: "proto3",
    dependency: ["google/protobuf/wrappers.proto"],
    service: [
      {
        name: "AuthTestService",
        method: [
          { name: "WhoAmI", inputType: sv, outputType: sv },
          { name: "PublicInfo", inputType: sv, outputType: sv },
          { name: "SubmitScan", inputType: sv, outputType: sv },
          { name: "Unlisted", inputType: sv, outputType: sv },
          { name: "ScanStream", inputType: sv, outputType: sv, clientStreaming: true, serverStreaming: true },
        ],
      },
    ],
  });
  const registry = createFileRegistry(file, (name) =>
    name === file_google_protobuf_wrappers.proto.name ? file_google_protobuf_wrappers : undefined,
  );
  const service = registry.getService("authtest.v1.AuthTestService");
  if (service === undefined) throw new Error("test service descriptor not built");
  return service as TestService;
}

const service = buildTestService();
const rpc = (method: string) => `/authtest.v1.AuthTestService/${method}`;

const policies: Record<string, MethodPolicy> = {
  [rpc("WhoAmI")]: { scopes: [Scope.ShipmentsRead] },
  [rpc("PublicInfo")]: { scopes: [], anonymous: true },
  [rpc("SubmitScan")]: { scopes: [Scope.ScansWrite], carrierAllowed: true },
  [rpc("ScanStream")]: { scopes: [Scope.ScansWrite], carrierAllowed: true },
};

/** What a handler saw: "subject|carrier|anonymous", plus "|role|customer" for customer tokens. */
function describePrincipal(ctx: HandlerContext): string {
  const p = ctx.values.get(principalKey);
  const base = `${p.subject}|${p.carrier ?? "-"}|${p.anonymous}`;
  return p.customer === undefined ? base : `${base}|${p.role}|${p.customer}`;
}

/** The test service's ownership rule: a carrier principal acts only for its own carrier. */
function assertCarrier(principal: Principal, carrier: string): void {
  if (principal.carrier !== undefined && principal.carrier !== carrier) {
    throw new ConnectError(`carrier ${JSON.stringify(principal.carrier)} may not act for carrier ${JSON.stringify(carrier)}`, Code.PermissionDenied);
  }
}

function sv(value: string): StringValue {
  return create(StringValueSchema, { value });
}

function routes(router: ConnectRouter): void {
  router.service(service, {
    whoAmI: (_req, ctx) => sv(describePrincipal(ctx)),
    publicInfo: (_req, ctx) => sv(describePrincipal(ctx)),
    // The request value is the carrier the scan belongs to.
    submitScan: (req, ctx) => {
      assertCarrier(requirePrincipal(ctx), req.value);
      return sv(`accepted for ${req.value} by ${describePrincipal(ctx)}`);
    },
    unlisted: () => sv("should never run"),
    async *scanStream(reqs, ctx) {
      const principal = requirePrincipal(ctx);
      for await (const r of reqs) {
        assertCarrier(principal, r.value);
        yield sv(`${r.value}:${describePrincipal(ctx)}`);
      }
    },
  });
  router.service(Health, {
    check: () => create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING }),
  });
}

// ---- server, clients, keys ----

type RunningServer = TestConnectServer;

function startServer(interceptors: Interceptor[]): Promise<RunningServer> {
  return startTestConnectServer(routes, interceptors);
}

interface Clients {
  readonly connect: ReturnType<typeof createClient<TestService>>;
  readonly grpc: ReturnType<typeof createClient<TestService>>;
  readonly health: ReturnType<typeof createClient<typeof Health>>;
  close(): void;
}

function connectClients(baseUrl: string): Clients {
  const managers = [new Http2SessionManager(baseUrl), new Http2SessionManager(baseUrl)] as const;
  const connectTransport: Transport = createConnectTransport({ baseUrl, httpVersion: "2", sessionManager: managers[0] });
  const grpcTransport: Transport = createGrpcTransport({ baseUrl, sessionManager: managers[1] });
  return {
    connect: createClient(service, connectTransport),
    grpc: createClient(service, grpcTransport),
    health: createClient(Health, grpcTransport),
    close: () => {
      for (const m of managers) m.abort();
    },
  };
}

interface TestKey {
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
  readonly kid: string;
}

async function newKey(kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  return { privateKey, kid, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" } };
}

function bearer(token: string): { headers: Record<string, string> } {
  return { headers: { authorization: `Bearer ${token}` } };
}

async function expectCode(call: Promise<unknown>, code: Code, message?: RegExp): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    const ce = ConnectError.from(err);
    assert.equal(Code[ce.code], Code[code], `expected ${Code[code]}, got ${Code[ce.code]}: ${ce.rawMessage}`);
    if (message !== undefined) assert.match(ce.rawMessage, message);
    return ce;
  }
  assert.fail(`expected the call to fail with ${Code[code]}`);
}

async function collect(stream: AsyncIterable<StringValue>): Promise<string[]> {
  const out: string[] = [];
  for await (const m of stream) out.push(m.value);
  return out;
}

async function* values(...items: string[]): AsyncIterable<StringValue> {
  for (const v of items) yield sv(v);
}

function recordingLog(): AuthLog & { readonly entries: { level: string; obj: object; msg?: string }[] } {
  const entries: { level: string; obj: object; msg?: string }[] = [];
  return {
    entries,
    info: (obj, msg) => entries.push({ level: "info", obj, ...(msg === undefined ? {} : { msg }) }),
    warn: (obj, msg) => entries.push({ level: "warn", obj, ...(msg === undefined ? {} : { msg }) }),
  };
}

// ---- tests ----

describe("createAuthInterceptor (Connect server, JWKS key file)", () => {
  let dir: string;
  let key: TestKey;
  let server: RunningServer;
  let clients: Clients;
  const log = recordingLog();

  const token = (o: {
    scopes: string[];
    carrier?: string;
    customer?: string;
    subject?: string;
    expiresIn?: number;
    issuer?: string;
    audience?: string;
    signWith?: TestKey;
  }) =>
    mintToken({
      privateKey: (o.signWith ?? key).privateKey,
      kid: (o.signWith ?? key).kid,
      issuer: o.issuer ?? ISSUER,
      audience: o.audience ?? AUDIENCE,
      subject: o.subject ?? "test-subject",
      scopes: o.scopes,
      ...(o.carrier === undefined ? {} : { carrier: o.carrier }),
      ...(o.customer === undefined ? {} : { customer: o.customer }),
      ...(o.expiresIn === undefined ? {} : { expiresIn: o.expiresIn }),
    });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "auth-interceptor-"));
    key = await newKey("key-1");
    const jwksPath = join(dir, "jwks.json");
    await writeFile(jwksPath, JSON.stringify({ keys: [key.publicJwk] }));
    const verifier = await createJwtVerifier({ keyFile: jwksPath, issuer: ISSUER, audience: AUDIENCE });
    server = await startServer([createAuthInterceptor({ verifier, policies, logger: log })]);
    clients = connectClients(server.baseUrl);
  });

  afterAll(async () => {
    clients?.close();
    await server?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("rejects a call without a token with Unauthenticated", async () => {
    await expectCode(clients.connect.whoAmI({}), Code.Unauthenticated, /^missing bearer token$/);
  });

  it("rejects an authorization header that is not a bearer token with Unauthenticated", async () => {
    await expectCode(clients.connect.whoAmI({}, { headers: { authorization: "Basic dXNlcjpwYXNz" } }), Code.Unauthenticated, /Bearer <token>/);
    await expectCode(clients.connect.whoAmI({}, bearer("not-a-jwt")), Code.Unauthenticated, /^malformed token$/);
  });

  it("rejects a token lacking the method's scope with PermissionDenied naming the scope", async () => {
    await expectCode(
      clients.connect.whoAmI({}, bearer(await token({ scopes: [Scope.RoutesRead] }))),
      Code.PermissionDenied,
      /requires scope shipments:read/,
    );
  });

  it("rejects an expired token with Unauthenticated", async () => {
    await expectCode(
      clients.connect.whoAmI({}, bearer(await token({ scopes: [Scope.ShipmentsRead], expiresIn: -120 }))),
      Code.Unauthenticated,
      /^token expired$/,
    );
  });

  it("rejects a token signed by another key under the same kid with Unauthenticated", async () => {
    const impostor = await newKey("key-1");
    await expectCode(
      clients.connect.whoAmI({}, bearer(await token({ scopes: [Scope.ShipmentsRead], signWith: impostor }))),
      Code.Unauthenticated,
      /^token signature is invalid$/,
    );
  });

  it("rejects a token signed by a key the server does not know with Unauthenticated", async () => {
    await expectCode(
      clients.connect.whoAmI({}, bearer(await token({ scopes: [Scope.ShipmentsRead], signWith: await newKey("key-2") }))),
      Code.Unauthenticated,
      /^token is signed by an unknown key$/,
    );
  });

  it("rejects a token for another audience or from another issuer with Unauthenticated", async () => {
    await expectCode(
      clients.connect.whoAmI({}, bearer(await token({ scopes: [Scope.ShipmentsRead], audience: "someone-else" }))),
      Code.Unauthenticated,
      /^token audience is not accepted$/,
    );
    await expectCode(
      clients.connect.whoAmI({}, bearer(await token({ scopes: [Scope.ShipmentsRead], issuer: "evil-issuer" }))),
      Code.Unauthenticated,
      /^token issuer is not accepted$/,
    );
  });

  it("lets a valid token through and hands the principal to the handler", async () => {
    const t = await token({ scopes: [Scope.ShipmentsRead], subject: "order-system" });
    assert.equal((await clients.connect.whoAmI({}, bearer(t))).value, "order-system|-|false");
    // The same over the gRPC protocol, where the header travels as metadata.
    assert.equal((await clients.grpc.whoAmI({}, bearer(t))).value, "order-system|-|false");
  });

  it("grants the admin scope access to any method with a policy", async () => {
    const t = await token({ scopes: [Scope.Admin], subject: "operator" });
    assert.equal((await clients.connect.whoAmI({}, bearer(t))).value, "operator|-|false");
  });

  it("serves an anonymous-allowed method without a token, as ANONYMOUS", async () => {
    assert.equal((await clients.connect.publicInfo({})).value, "anonymous|-|true");
  });

  it("refuses an invalid token even on an anonymous-allowed method", async () => {
    await expectCode(
      clients.connect.publicInfo({}, bearer(await token({ scopes: [], expiresIn: -120 }))),
      Code.Unauthenticated,
      /^token expired$/,
    );
  });

  it("denies a method without a policy with PermissionDenied, even for admin, and logs it", async () => {
    const before = log.entries.length;
    await expectCode(clients.connect.unlisted({}, bearer(await token({ scopes: [Scope.Admin] }))), Code.PermissionDenied, /no access policy/);
    const logged = log.entries.slice(before).find((e) => e.level === "warn");
    assert.deepEqual(logged?.obj, { rpc: rpc("Unlisted") });
  });

  it("serves the health service without a token", async () => {
    const res = await clients.health.check({});
    assert.equal(res.status, HealthCheckResponse_ServingStatus.SERVING);
  });

  it("lets a carrier gateway submit its own carrier's scans", async () => {
    const t = await token({ scopes: [Scope.ScansWrite], carrier: "acme", subject: "gateway-1" });
    assert.equal((await clients.grpc.submitScan(sv("acme"), bearer(t))).value, "accepted for acme by gateway-1|acme|false");
  });

  it("rejects a carrier gateway's scan for another carrier with PermissionDenied", async () => {
    const t = await token({ scopes: [Scope.ScansWrite], carrier: "acme" });
    await expectCode(clients.grpc.submitScan(sv("globex"), bearer(t)), Code.PermissionDenied, /carrier "acme" may not act for carrier "globex"/);
  });

  it("lets an internal principal with scans:write submit scans for any carrier", async () => {
    const t = await token({ scopes: [Scope.ScansWrite], subject: "backfill-job" });
    assert.equal((await clients.connect.submitScan(sv("globex"), bearer(t))).value, "accepted for globex by backfill-job|-|false");
  });

  it("refuses a carrier token on a method that does not allow carriers, even with the scope", async () => {
    const t = await token({ scopes: [Scope.ShipmentsRead, Scope.ScansWrite], carrier: "acme" });
    await expectCode(clients.connect.whoAmI({}, bearer(t)), Code.PermissionDenied, /carrier credentials may not call/);
  });

  it("refuses a token that combines admin with a carrier claim at authentication, on every method", async () => {
    const t = await token({ scopes: [Scope.Admin, Scope.ScansWrite], carrier: "acme" });
    await expectCode(clients.connect.whoAmI({}, bearer(t)), Code.Unauthenticated, /bound to a carrier may not carry the admin scope/);
    await expectCode(clients.grpc.submitScan(sv("globex"), bearer(t)), Code.Unauthenticated, /admin/);
    await expectCode(clients.connect.publicInfo({}, bearer(t)), Code.Unauthenticated, /admin/);
  });

  it("refuses a token that combines admin with a customer claim, or carries both claims", async () => {
    const adminCustomer = await token({ scopes: [Scope.Admin], customer: "cust-1" });
    await expectCode(clients.connect.whoAmI({}, bearer(adminCustomer)), Code.Unauthenticated, /bound to a customer may not carry the admin scope/);
    const both = await token({ scopes: [Scope.ShipmentsRead], customer: "cust-1", carrier: "acme" });
    await expectCode(clients.connect.whoAmI({}, bearer(both)), Code.Unauthenticated, /both a "carrier" and a "customer" claim/);
  });

  it("refuses customer tokens on methods that do not allow them, and derives their role once", async () => {
    const t = await token({ scopes: [Scope.ShipmentsRead], customer: "cust-1", subject: "cust-1-portal" });
    await expectCode(clients.connect.whoAmI({}, bearer(t)), Code.PermissionDenied, /customer credentials may not call/);
    assert.equal((await clients.connect.publicInfo({}, bearer(t))).value, "cust-1-portal|-|false|customer|cust-1");
  });

  it("refuses a malformed carrier claim rather than trusting it", async () => {
    const t = await token({ scopes: [Scope.ScansWrite], carrier: "ACME*" });
    await expectCode(clients.grpc.submitScan(sv("ACME*"), bearer(t)), Code.Unauthenticated, /"carrier" claim must be a carrier code/);
  });

  it("authenticates a bidi stream before reading it", async () => {
    await expectCode(collect(clients.grpc.scanStream(values("acme"))), Code.Unauthenticated, /^missing bearer token$/);
    const noScope = await token({ scopes: [Scope.RoutesRead], carrier: "acme" });
    await expectCode(collect(clients.connect.scanStream(values("acme"), bearer(noScope))), Code.PermissionDenied, /scans:write/);
  });

  it("passes the principal to a bidi stream's handler and checks each message's carrier", async () => {
    const t = await token({ scopes: [Scope.ScansWrite], carrier: "acme", subject: "gateway-7" });
    assert.deepEqual(await collect(clients.grpc.scanStream(values("acme", "acme"), bearer(t))), [
      "acme:gateway-7|acme|false",
      "acme:gateway-7|acme|false",
    ]);
    await expectCode(collect(clients.grpc.scanStream(values("acme", "globex"), bearer(t))), Code.PermissionDenied);
  });
});

describe("createAuthInterceptor (Connect server, PEM public key file)", () => {
  let dir: string;
  let server: RunningServer;
  let clients: Clients;
  let signer: CryptoKey;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "auth-interceptor-pem-"));
    const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
    signer = privateKey;
    const pemPath = join(dir, "public.pem");
    await writeFile(pemPath, await exportSPKI(publicKey));
    const verifier = await createJwtVerifier({ keyFile: pemPath, issuer: ISSUER, audience: AUDIENCE });
    server = await startServer([createAuthInterceptor({ verifier, policies })]);
    clients = connectClients(server.baseUrl);
  });

  afterAll(async () => {
    clients?.close();
    await server?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const mint = (privateKey: CryptoKey) =>
    mintToken({ privateKey, issuer: ISSUER, audience: AUDIENCE, subject: "pem-caller", scopes: [Scope.ShipmentsRead] });

  it("accepts a token signed by the matching private key", async () => {
    assert.equal((await clients.connect.whoAmI({}, bearer(await mint(signer)))).value, "pem-caller|-|false");
  });

  it("rejects a token signed by another key with Unauthenticated", async () => {
    const { privateKey } = await generateKeyPair("ES256");
    await expectCode(clients.connect.whoAmI({}, bearer(await mint(privateKey))), Code.Unauthenticated, /^token signature is invalid$/);
  });
});

describe("createAuthInterceptor (Connect server, JWKS URL)", () => {
  let jwksServer: http.Server;
  let jwksFetches = 0;
  let jwksUrl: string;
  let server: RunningServer;
  let clients: Clients;
  let key: TestKey;
  let verifier: JwtVerifier;

  beforeAll(async () => {
    key = await newKey("remote-1");
    jwksServer = http.createServer((req, res) => {
      if (req.url !== "/.well-known/jwks.json") {
        res.writeHead(404).end();
        return;
      }
      jwksFetches++;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [key.publicJwk] }));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, "127.0.0.1", () => resolve()));
    jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
    verifier = await createJwtVerifier({ jwksUrl, issuer: ISSUER, audience: AUDIENCE });
    server = await startServer([createAuthInterceptor({ verifier, policies })]);
    clients = connectClients(server.baseUrl);
  });

  afterAll(async () => {
    clients?.close();
    await server?.close();
    jwksServer?.closeAllConnections();
    await new Promise<void>((resolve) => (jwksServer ? jwksServer.close(() => resolve()) : resolve()));
  });

  const mint = (k: TestKey, subject = "remote-caller") =>
    mintToken({ privateKey: k.privateKey, kid: k.kid, issuer: ISSUER, audience: AUDIENCE, subject, scopes: [Scope.ShipmentsRead] });

  it("verifies tokens against keys fetched from the JWKS URL, fetching once", async () => {
    const t = await mint(key);
    assert.equal((await clients.connect.whoAmI({}, bearer(t))).value, "remote-caller|-|false");
    assert.equal((await clients.grpc.whoAmI({}, bearer(await mint(key, "second")))).value, "second|-|false");
    assert.equal(jwksFetches, 1);
  });

  it("rejects a token signed by a key missing from the JWKS with Unauthenticated", async () => {
    await expectCode(clients.connect.whoAmI({}, bearer(await mint(await newKey("remote-2")))), Code.Unauthenticated, /unknown key/);
  });

  it("answers Unavailable when the JWKS endpoint cannot be reached", async () => {
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", () => resolve()));
    const deadPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const log = recordingLog();
    const deadVerifier = await createJwtVerifier({
      jwksUrl: `http://127.0.0.1:${deadPort}/.well-known/jwks.json`,
      issuer: ISSUER,
      audience: AUDIENCE,
    });
    const deadServer = await startServer([createAuthInterceptor({ verifier: deadVerifier, policies, logger: log })]);
    const deadClients = connectClients(deadServer.baseUrl);
    try {
      await expectCode(deadClients.connect.whoAmI({}, bearer(await mint(key))), Code.Unavailable, /^token signing keys are unavailable$/);
      assert.equal(log.entries.some((e) => e.level === "warn"), true, "key source failure is logged at warn");
    } finally {
      deadClients.close();
      await deadServer.close();
    }
  });
});
