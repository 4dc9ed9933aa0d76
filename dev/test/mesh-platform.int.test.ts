import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import * as grpc from "@grpc/grpc-js";
import { ensureDevKeys, mintToken, Scope } from "@logistics/shared/auth";
import type { RunningService } from "@logistics/shared/runtime";
import { compiledEntry, uniqueName, waitFor } from "@logistics/shared/testing";
import { startE2eMesh, type E2eMesh } from "./e2e-mesh.js";
import {
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
} from "@logistics/shared/gen/grpc/health/v1/health_pb.js";
import {
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  type ServerReflectionResponse,
} from "@logistics/shared/gen/grpc/reflection/v1/reflection_pb.js";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  CreateShipmentRequestSchema,
  IngestService,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { NotificationService } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { RoutingService } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { EventDeadLetterService } from "@logistics/shared/gen/logistics/operations/v1/dead_letters_pb.js";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";

const ISSUER = "logistics-dev";
const AUDIENCE = "logistics-mesh";

function validShipment() {
  return create(CreateShipmentRequestSchema, {
    idempotencyKey: uniqueName("order"),
    carrierCode: "acme",
    customerId: "cust-1",
    serviceLevel: ServiceLevel.STANDARD,
    origin: { countryCode: "DE", city: "Frankfurt", location: { latitude: 50.11, longitude: 8.68 } },
    destination: { countryCode: "US", city: "Chicago", location: { latitude: 41.88, longitude: -87.63 } },
    parcel: { weightGrams: 1200 },
    readyTime: timestampFromDate(new Date()),
  });
}

describe("the mesh platform (all four services over real sockets)", () => {
  let mesh: E2eMesh;
  let keysDir: string;
  let privateJwkPath: string;
  const running: RunningService[] = [];
  const token = (scopes: string[], extra: { carrier?: string; expiresIn?: string | number } = {}) =>
    mintToken({ privateJwkPath, issuer: ISSUER, audience: AUDIENCE, subject: "test", scopes, ...extra });

  beforeAll(async () => {
    keysDir = await mkdtemp(join(tmpdir(), "mesh-keys-"));
    const keys = await ensureDevKeys(keysDir);
    privateJwkPath = keys.privateJwkPath;
    // A maximum token lifetime other than the default, to see the setting reach the verifier.
    mesh = await startE2eMesh({ env: { JWT_PUBLIC_KEY_FILE: keys.jwksPath, SHUTDOWN_GRACE_MS: "5000", JWT_MAX_LIFETIME_SECONDS: "7200" } });
    running.push(...mesh.services.values());
  });
  afterAll(async () => {
    await mesh?.close();
    if (keysDir) await rm(keysDir, { recursive: true, force: true });
  });
  const svc = (name: string) => running.find((s) => s.name === name)!;

  it("answers a grpc-js health Check and an RPC over h2c", async () => {
    const client = new grpc.Client(`127.0.0.1:${svc("ingest").port}`, grpc.credentials.createInsecure());
    try {
      const health = await new Promise<{ status: ServingStatus }>((resolve, reject) =>
        client.makeUnaryRequest(
          "/grpc.health.v1.Health/Check",
          (m: ReturnType<typeof create<typeof HealthCheckRequestSchema>>) => Buffer.from(toBinary(HealthCheckRequestSchema, m)),
          (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
          create(HealthCheckRequestSchema, { service: IngestService.typeName }),
          (err, res) => (err || !res ? reject(err) : resolve(res)),
        ),
      );
      assert.equal(health.status, ServingStatus.SERVING);
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${await token([Scope.ShipmentsWrite])}`);
      const res = await new Promise<{ err: grpc.ServiceError | null; body?: Buffer }>((resolve) =>
        client.makeUnaryRequest(
          "/logistics.ingest.v1.IngestService/CreateShipment",
          (m: ReturnType<typeof validShipment>) => Buffer.from(toBinary(CreateShipmentRequestSchema, m)),
          (b: Buffer) => b,
          validShipment(),
          md,
          (err, body) => resolve({ err, body }),
        ),
      );
      // Authenticated and valid, so it passed auth and validation and reached the handler
      // (which answers Unimplemented until ingest lands, then creates the shipment).
      assert.ok(
        res.err === null || res.err.code === grpc.status.UNIMPLEMENTED,
        `unexpected ${res.err?.code} ${res.err?.details}`,
      );
    } finally {
      client.close();
    }
  });

  it("serves Connect over HTTP/1.1", async () => {
    const tracking = createClient(
      TrackingService,
      createConnectTransport({ baseUrl: svc("tracking").url, httpVersion: "1.1" }),
    );
    // Anonymous public read: passes auth and validation and reaches the handler, which does not
    // know this tracking number (NotFound; Unimplemented until tracking lands).
    await assert.rejects(tracking.getShipment({ trackingNumber: "ABCD12345678" }), (e: unknown) => {
      assert.ok([Code.Unimplemented, Code.NotFound].includes(ConnectError.from(e).code), String(e));
      return true;
    });
  });

  it("lists each service through reflection: four services and the dead-letter admin service across the mesh", async () => {
    const listed = new Set<string>();
    for (const s of running) {
      const client = new grpc.Client(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
      try {
        const call = client.makeBidiStreamRequest(
          "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
          (m: ReturnType<typeof create<typeof ServerReflectionRequestSchema>>) =>
            Buffer.from(toBinary(ServerReflectionRequestSchema, m)),
          (b: Buffer) => fromBinary(ServerReflectionResponseSchema, b),
        );
        const answer = new Promise<ServerReflectionResponse>((resolve, reject) => {
          call.once("data", resolve);
          call.once("error", reject);
        });
        call.write(create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "*" } }));
        const res = await answer;
        call.end();
        if (res.messageResponse.case === "listServicesResponse") {
          for (const x of res.messageResponse.value.service) if (x.name.startsWith("logistics.")) listed.add(x.name);
        }
      } finally {
        client.close();
      }
    }
    assert.deepEqual(
      [...listed].sort(),
      [
        IngestService.typeName,
        NotificationService.typeName,
        RoutingService.typeName,
        TrackingService.typeName,
        EventDeadLetterService.typeName,
      ].sort(),
    );
  });

  describe("auth", () => {
    const routing = () => createClient(RoutingService, createGrpcTransport({ baseUrl: svc("routing").url }));
    const codeOf = async (p: Promise<unknown>) => {
      try {
        await p;
        return Code.Unknown;
      } catch (e) {
        return ConnectError.from(e).code;
      }
    };
    it("rejects a call without a token with Unauthenticated", async () => {
      assert.equal(await codeOf(routing().getRoute({ trackingNumber: "ABCD12345678" })), Code.Unauthenticated);
    });
    it("rejects a token without the method's scope with PermissionDenied", async () => {
      const headers = { authorization: `Bearer ${await token([Scope.ScansWrite])}` };
      assert.equal(await codeOf(routing().getRoute({ trackingNumber: "ABCD12345678" }, { headers })), Code.PermissionDenied);
    });
    it("rejects an expired token with Unauthenticated", async () => {
      const headers = { authorization: `Bearer ${await token([Scope.RoutesRead], { expiresIn: -3600 })}` };
      assert.equal(await codeOf(routing().getRoute({ trackingNumber: "ABCD12345678" }, { headers })), Code.Unauthenticated);
    });
    it("rejects a token living longer than JWT_MAX_LIFETIME_SECONDS with Unauthenticated, and serves one within it", async () => {
      const getRoute = async (expiresIn: string) => {
        const headers = { authorization: `Bearer ${await token([Scope.RoutesRead], { expiresIn })}` };
        return routing()
          .getRoute({ trackingNumber: "ABCD12345678" }, { headers })
          .then(
            () => assert.fail("expected an error: routing knows no such shipment"),
            (e: unknown) => ConnectError.from(e),
          );
      };
      for (const expiresIn of ["121m", "30d"]) {
        const refused = await getRoute(expiresIn);
        assert.equal(refused.code, Code.Unauthenticated, expiresIn);
        assert.equal(refused.rawMessage, "token lifetime (exp - iat) exceeds the maximum accepted", expiresIn);
      }
      // Two hours, the maximum: authenticated and authorized, the call reaches routing.
      assert.equal((await getRoute("2h")).code, Code.NotFound);
    });
    it("rejects a token signed by another key with Unauthenticated", async () => {
      const otherDir = await mkdtemp(join(tmpdir(), "mesh-other-keys-"));
      try {
        const other = await ensureDevKeys(otherDir);
        const forged = await mintToken({
          privateJwkPath: other.privateJwkPath,
          issuer: ISSUER,
          audience: AUDIENCE,
          subject: "mallory",
          scopes: [Scope.Admin],
        });
        const headers = { authorization: `Bearer ${forged}` };
        assert.equal(await codeOf(routing().getRoute({ trackingNumber: "ABCD12345678" }, { headers })), Code.Unauthenticated);
      } finally {
        await rm(otherDir, { recursive: true, force: true });
      }
    });
  });

  it("answers a malformed request with InvalidArgument and field violations", async () => {
    const ingest = createClient(IngestService, createConnectTransport({ baseUrl: svc("ingest").url, httpVersion: "1.1" }));
    const bad = validShipment();
    bad.idempotencyKey = "x";
    bad.carrierCode = "Not A Carrier!";
    bad.origin!.location!.latitude = 123;
    const headers = { authorization: `Bearer ${await token([Scope.ShipmentsWrite])}` };
    const err = await ingest.createShipment(bad, { headers }).then(
      () => assert.fail("expected InvalidArgument"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(err.code, Code.InvalidArgument);
    const [violations] = err.findDetails(ViolationsSchema);
    assert.ok(violations, "the error carries buf.validate.Violations details");
    const fields = violations.violations.map((v) => v.field?.elements.map((e) => e.fieldName).join("."));
    for (const f of ["idempotency_key", "carrier_code", "origin.location.latitude"]) {
      assert.ok(fields.includes(f), `violation for ${f} in ${JSON.stringify(fields)}`);
    }
  });

  it("on SIGTERM turns NOT_SERVING, ends an open stream cleanly and exits 0", async () => {
    const child = spawn(process.execPath, [compiledEntry("services/ingest/src/main.ts")], {
      env: { ...process.env, ...mesh.env, LOG_LEVEL: "info", PORT: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const port = await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`ingest exited with ${child.exitCode}: ${out}`);
        const m = /"port":(\d+),"tls"/.exec(out);
        return m ? Number(m[1]) : undefined;
      },
      { timeoutMs: 20_000, message: "ingest process listening" },
    );
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const call = client.makeServerStreamRequest(
        "/grpc.health.v1.Health/Watch",
        (m: ReturnType<typeof create<typeof HealthCheckRequestSchema>>) => Buffer.from(toBinary(HealthCheckRequestSchema, m)),
        (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
        create(HealthCheckRequestSchema, { service: IngestService.typeName }),
      );
      const seen: ServingStatus[] = [];
      call.on("data", (r: { status: ServingStatus }) => {
        seen.push(r.status);
        if (r.status === ServingStatus.SERVING) child.kill("SIGTERM");
      });
      call.on("error", () => {}); // the outcome is asserted from the status below
      const status = await new Promise<grpc.StatusObject>((r) => call.on("status", r));
      if (status.code !== grpc.status.OK) {
        const code = await exited;
        assert.fail(`stream ended with ${status.code} ${status.details}; ingest exited ${code} and said:\n${out}`);
      }
      assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
      assert.equal(await exited, 0, out);
    } finally {
      client.close();
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});
