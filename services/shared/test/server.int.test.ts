import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
} from "../src/gen/grpc/health/v1/health_pb.js";
import {
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  type ServerReflectionResponse,
} from "../src/gen/grpc/reflection/v1/reflection_pb.js";
import { startServer, type ServerHandle } from "../src/server/serve.js";
import { waitFor } from "../src/testing/wait-for.js";

/** A standard grpc-js client for a method, with protobuf-es doing the (de)serialization. */
function grpcUnary<I, O>(address: string, path: string, encode: (m: I) => Uint8Array, decode: (b: Buffer) => O) {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const call = (msg: I) =>
    new Promise<O>((resolve, reject) =>
      client.makeUnaryRequest(path, (m: I) => Buffer.from(encode(m)), decode, msg, (err, res) =>
        err ? reject(err) : resolve(res as O),
      ),
    );
  return { call, close: () => client.close() };
}

describe("startServer", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({ port: 0, host: "127.0.0.1", services: [], routes: () => {} });
  });
  afterAll(() => server.close({ graceMs: 1000 }));

  it("answers grpc.health.v1 Check from a grpc-js client over h2c", async () => {
    const c = grpcUnary(
      `127.0.0.1:${server.port}`,
      "/grpc.health.v1.Health/Check",
      (m: ReturnType<typeof create<typeof HealthCheckRequestSchema>>) => toBinary(HealthCheckRequestSchema, m),
      (b) => fromBinary(HealthCheckResponseSchema, b),
    );
    try {
      const res = await c.call(create(HealthCheckRequestSchema, { service: "" }));
      assert.equal(res.status, ServingStatus.SERVING);
      await assert.rejects(c.call(create(HealthCheckRequestSchema, { service: "no.such.Service" })), (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.NOT_FOUND);
        return true;
      });
    } finally {
      c.close();
    }
  });

  it("serves the Connect protocol over HTTP/1.1 and gRPC over HTTP/2 on the same port", async () => {
    const h1 = createClient(Health, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    assert.equal((await h1.check({})).status, ServingStatus.SERVING);
    const h2 = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    assert.equal((await h2.check({})).status, ServingStatus.SERVING);
    const raw = await fetch(`${server.url}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(raw.status, 200);
    assert.deepEqual(await raw.json(), { status: "SERVING" });
  });

  it("lists services and returns file descriptors through reflection", async () => {
    const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    try {
      const call = client.makeBidiStreamRequest(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        (m: ReturnType<typeof create<typeof ServerReflectionRequestSchema>>) => Buffer.from(toBinary(ServerReflectionRequestSchema, m)),
        (b: Buffer) => fromBinary(ServerReflectionResponseSchema, b),
      );
      const answers: ServerReflectionResponse[] = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on("data", (r: ServerReflectionResponse) => answers.push(r));
        call.on("end", resolve);
        call.on("error", reject);
      });
      call.write(create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "*" } }));
      call.write(
        create(ServerReflectionRequestSchema, {
          messageRequest: { case: "fileContainingSymbol", value: "grpc.health.v1.Health" },
        }),
      );
      call.write(create(ServerReflectionRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: "no.Such" } }));
      call.end();
      await done;
      assert.equal(answers.length, 3);
      const list = answers[0]!.messageResponse;
      assert.equal(list.case, "listServicesResponse");
      const names = list.case === "listServicesResponse" ? list.value.service.map((s) => s.name) : [];
      assert.ok(names.includes("grpc.reflection.v1.ServerReflection"));
      const file = answers[1]!.messageResponse;
      assert.equal(file.case, "fileDescriptorResponse");
      if (file.case === "fileDescriptorResponse") {
        const first = fromBinary(FileDescriptorProtoSchema, file.value.fileDescriptorProto[0]!);
        assert.equal(first.name, "grpc/health/v1/health.proto");
      }
      assert.equal(answers[2]!.messageResponse.case, "errorResponse");
    } finally {
      client.close();
    }
  });

  it("serves gRPC over HTTP/2 and Connect over HTTP/1.1 with TLS when a cert and key are given", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tls-"));
    try {
      const cert = join(dir, "cert.pem");
      const key = join(dir, "key.pem");
      execFileSync("openssl", [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert,
      ], { stdio: "ignore" });
      const s = await startServer({ port: 0, host: "127.0.0.1", services: [], routes: () => {}, tls: { cert, key } });
      try {
        assert.ok(s.url.startsWith("https://"));
        const ca = readFileSync(cert);
        const h2 = createClient(Health, createGrpcTransport({ baseUrl: s.url, nodeOptions: { ca } }));
        assert.equal((await h2.check({})).status, ServingStatus.SERVING);
        const h1 = createClient(Health, createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", nodeOptions: { ca } }));
        assert.equal((await h1.check({})).status, ServingStatus.SERVING);
      } finally {
        await s.close({ graceMs: 1000 });
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("answers CORS preflights for allowed browser origins only", async () => {
    const s = await startServer({
      port: 0,
      host: "127.0.0.1",
      services: [],
      routes: () => {},
      cors: { allowedOrigins: ["http://shop.example"] },
    });
    try {
      const ok = await fetch(`${s.url}/grpc.health.v1.Health/Check`, {
        method: "OPTIONS",
        headers: { origin: "http://shop.example", "access-control-request-method": "POST" },
      });
      assert.equal(ok.status, 204);
      assert.equal(ok.headers.get("access-control-allow-origin"), "http://shop.example");
      const denied = await fetch(`${s.url}/grpc.health.v1.Health/Check`, {
        method: "POST",
        headers: { origin: "http://evil.example", "content-type": "application/json" },
        body: "{}",
      });
      assert.equal(denied.headers.get("access-control-allow-origin"), null);
    } finally {
      await s.close({ graceMs: 1000 });
    }
  });

  it("turns NOT_SERVING and ends a grpc-js health watch with OK when closed", async () => {
    const s = await startServer({ port: 0, host: "127.0.0.1", services: [], routes: () => {} });
    const client = new grpc.Client(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
    try {
      const call = client.makeServerStreamRequest(
        "/grpc.health.v1.Health/Watch",
        (m: ReturnType<typeof create<typeof HealthCheckRequestSchema>>) => Buffer.from(toBinary(HealthCheckRequestSchema, m)),
        (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
        create(HealthCheckRequestSchema),
      );
      const seen: ServingStatus[] = [];
      call.on("data", (r: { status: ServingStatus }) => {
        seen.push(r.status);
        if (r.status === ServingStatus.SERVING) void s.close({ graceMs: 5000 });
      });
      const status = await new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
      assert.equal(status.code, grpc.status.OK);
      assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    } finally {
      client.close();
    }
    await s.close();
    const again = await fetch(`${s.url}/grpc.health.v1.Health/Check`).catch((e: unknown) => e);
    assert.ok(again instanceof Error, "the port no longer accepts connections");
  });

  it("holds more open health watches than Node's default of 10 listeners without a MaxListenersExceededWarning", async () => {
    // Each open watch listens on the server's drain signal until it ends; Node would call the
    // eleventh "a possible memory leak" although every listener goes with its stream.
    const warnings: string[] = [];
    const onWarning = (w: Error) => {
      if (w.name === "MaxListenersExceededWarning") warnings.push(w.message);
    };
    process.on("warning", onWarning);
    const s = await startServer({ port: 0, host: "127.0.0.1", services: [], routes: () => {} });
    const client = new grpc.Client(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
    const calls = Array.from({ length: 12 }, () =>
      client.makeServerStreamRequest(
        "/grpc.health.v1.Health/Watch",
        (m: ReturnType<typeof create<typeof HealthCheckRequestSchema>>) => Buffer.from(toBinary(HealthCheckRequestSchema, m)),
        (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
        create(HealthCheckRequestSchema),
      ),
    );
    const serving = calls.map(() => false);
    calls.forEach((c, i) => {
      c.on("data", (r: { status: ServingStatus }) => (serving[i] = r.status === ServingStatus.SERVING));
      c.on("error", () => {});
    });
    try {
      await waitFor(() => serving.every(Boolean), { message: "every watch answered SERVING" });
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(warnings, []);
    } finally {
      process.off("warning", onWarning);
      for (const c of calls) c.cancel();
      client.close();
      await s.close({ graceMs: 1000 });
    }
  });
});

