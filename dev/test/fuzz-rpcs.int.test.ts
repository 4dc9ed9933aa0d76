import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, it } from "vitest";
import fc from "fast-check";
import { Code, createClient, type Client } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Scope } from "@logistics/shared/auth";
import { Health, HealthCheckResponse_ServingStatus } from "@logistics/shared/gen/grpc/health/v1/health_pb.js";
import { callOnce, MESH_SERVICES } from "./call-once.js";
import { startE2eMesh, type E2eMesh } from "./e2e-mesh.js";
import { hostileMessage } from "./hostile-messages.js";

/**
 * Property-based fuzzing of every RPC of the mesh against the real services: hostile request
 * messages generated from the protobuf descriptors (hostile-messages.ts) and random bytes as
 * gRPC payloads. Whatever arrives, the answer is a precise status (never Internal or Unknown,
 * which would mean an input error reached a crash path), and every service stays SERVING.
 *
 * Budget: FUZZ_RUNS generated messages per RPC (default 15, so `npm test` stays bounded); set
 * FUZZ_RUNS=500 (and FUZZ_SEED to replay a failure fast-check reported) for a long run.
 */
const RUNS = Number(process.env["FUZZ_RUNS"] ?? 15);
const SEED = process.env["FUZZ_SEED"] === undefined ? undefined : Number(process.env["FUZZ_SEED"]);
const BAD = new Set<number>([Code.Internal, Code.Unknown]);

describe(`every RPC fed hostile messages (${RUNS} runs each)`, { timeout: 600_000 }, () => {
  let mesh: E2eMesh;
  let headers: Record<string, string>;

  beforeAll(async () => {
    // Stream caps off: the fuzzer opens streams faster than a caller normally would.
    mesh = await startE2eMesh({ env: { TRACKING_WATCHES_PER_PRINCIPAL: "0", INGEST_STREAMS_PER_PRINCIPAL: "0" } });
    headers = { authorization: `Bearer ${await mesh.token([Scope.Admin])}` };
  }, 180_000);
  afterAll(async () => {
    await mesh?.close();
  });

  const params = () => ({ numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }), endOnFailure: true });

  for (const [service, name] of MESH_SERVICES) {
    for (const method of service.methods) {
      it(`${service.name}.${method.name}: generated messages never answer Internal or Unknown`, async () => {
        const client = createClient(service, createGrpcTransport({ baseUrl: mesh.get(name).url })) as Client<DescService>;
        await fc.assert(
          fc.asyncProperty(hostileMessage(method.input, { hugeItems: 500 }), async (req) => {
            const res = await callOnce(client, method, req, headers, 20_000);
            // A message of several MiB can exceed the server's HTTP/2 session memory bound before
            // the message limit answers: Node resets the stream (ENHANCE_YOUR_CALM), which the
            // client reports as Internal. That is the server refusing the load, not a crash.
            const refusedLoad = res.error?.rawMessage.includes("NGHTTP2_ENHANCE_YOUR_CALM") ?? false;
            assert.ok(!BAD.has(res.code) || refusedLoad, `${Code[res.code as Code]}: ${res.error?.rawMessage ?? ""}`);
          }),
          params(),
        );
        await assertServing(mesh.get(name).url);
      });

      it(`${service.name}.${method.name}: random bytes as the gRPC payload never answer Internal or Unknown`, async () => {
        const session = http2.connect(mesh.get(name).url);
        session.on("error", () => {});
        try {
          await fc.assert(
            fc.asyncProperty(fc.uint8Array({ maxLength: 512 }), async (bytes) => {
              const status = await rawGrpcCall(session, `/${service.typeName}/${method.name}`, bytes, headers);
              assert.ok(!BAD.has(status.code), `grpc-status ${status.code}: ${status.message}`);
            }),
            params(),
          );
        } finally {
          session.close();
        }
        await assertServing(mesh.get(name).url);
      });
    }
  }
});

async function assertServing(url: string): Promise<void> {
  const health = createClient(Health, createGrpcTransport({ baseUrl: url }));
  assert.equal((await health.check({})).status, HealthCheckResponse_ServingStatus.SERVING);
}

/** One gRPC call with `payload` as its only (uncompressed) message; resolves with the grpc-status. */
function rawGrpcCall(
  session: http2.ClientHttp2Session,
  path: string,
  payload: Uint8Array,
  headers: Record<string, string>,
): Promise<{ code: number; message: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
    const frame = Buffer.alloc(5 + payload.length);
    frame.writeUInt32BE(payload.length, 1);
    frame.set(payload, 5);
    let status: { code: number; message: string } | undefined;
    const take = (h: http2.IncomingHttpHeaders) => {
      const code = h["grpc-status"];
      if (code !== undefined) status = { code: Number(code), message: decodeURIComponent(String(h["grpc-message"] ?? "")) };
    };
    stream.on("response", take);
    stream.on("trailers", take);
    stream.resume();
    stream.setTimeout(20_000, () => stream.close(http2.constants.NGHTTP2_CANCEL));
    stream.on("close", () => (status ? resolve(status) : reject(new Error(`${path}: no grpc-status (rst ${stream.rstCode})`))));
    stream.on("error", () => {});
    // Server streams (WatchShipment) stay open: a status or a first message is enough.
    stream.on("data", () => {
      status ??= { code: 0, message: "" };
      stream.close(http2.constants.NGHTTP2_CANCEL);
    });
    stream.end(frame);
  });
}
