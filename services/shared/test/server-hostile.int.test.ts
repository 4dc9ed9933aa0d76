import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { EchoRequestSchema, EchoResponseSchema, EchoService } from "../src/gen/logistics/perf/v1/echo_pb.js";
import { TrackingService } from "../src/gen/logistics/tracking/v1/tracking_pb.js";
import { startServer, type ServerHandle } from "../src/server/serve.js";

/** Messages that each trip a different part of header encoding. */
const MESSAGES = [
  "idempotency_key: value length must be at least 8 characters [string.min_len]",
  "/logistics.ingest.v1.IngestService/SubmitScans requires scope scans:write",
  "100% sure, 50%25 not: a=b&c=d?e#f",
  "Zürich → 東京 😀",
  "tab\there, newline\nthere, CR\rthere",
  "%",
  "",
];

/**
 * The shared port against hostile or unusual clients: a real server on a real socket, with stub
 * handlers where a service is needed (what is under test is the server, not the handler).
 */
describe("startServer facing hostile clients", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({
      port: 0,
      host: "127.0.0.1",
      services: [EchoService, TrackingService],
      routes: (router) => {
        router.service(EchoService, {
          echo(req) {
            const i = req.payload[0] ?? 0;
            if (i < MESSAGES.length) throw new ConnectError(MESSAGES[i]!, Code.InvalidArgument);
            return { payload: req.payload };
          },
        });
        router.service(TrackingService, {
          // Echoes the filter as it was parsed, so a test sees what the server understood.
          searchShipments: (req) => ({ shipments: [], nextPageToken: JSON.stringify(req.statuses) }),
          // Ends at once: what is under test is the request's decoding.
          async *watchShipment() {},
        });
      },
    });
  });
  afterAll(() => server?.close({ graceMs: 1000 }));

  it("writes grpc-message so that grpc-js reads every error message exactly as it was thrown", async () => {
    const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    try {
      for (const [i, message] of MESSAGES.entries()) {
        const err = await new Promise<grpc.ServiceError>((resolve, reject) =>
          client.makeUnaryRequest(
            "/logistics.perf.v1.EchoService/Echo",
            (m: ReturnType<typeof create<typeof EchoRequestSchema>>) => Buffer.from(toBinary(EchoRequestSchema, m)),
            (b: Buffer) => fromBinary(EchoResponseSchema, b),
            create(EchoRequestSchema, { payload: new Uint8Array([i]) }),
            (e, res) => (e ? resolve(e) : reject(new Error(`expected an error, got ${String(res)}`))),
          ),
        );
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
        assert.equal(err.details, message);
      }
    } finally {
      client.close();
    }
  });

  it("rejects an unknown enum name in Connect JSON with InvalidArgument instead of dropping the filter", async () => {
    const search = (body: string) =>
      fetch(`${server.url}/logistics.tracking.v1.TrackingService/SearchShipments`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
    const ok = await search('{"customerId":"c","statuses":["SHIPMENT_STATUS_DELIVERED", 7]}');
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as { nextPageToken: string }).nextPageToken, "[6,7]");

    for (const body of [
      '{"customerId":"c","statuses":["NOT_A_STATUS"]}',
      '{"customerId":"c","statuses":["SHIPMENT_STATUS_DELIVERED","NOT_A_STATUS"]}',
      '{"customerId":"c","nearby":{"radiusKm":1}}',
    ]) {
      const res = await search(body);
      assert.equal(res.status, 400, body);
      const err = (await res.json()) as { code: string; message: string };
      assert.equal(err.code, "invalid_argument", body);
      assert.match(err.message, /NOT_A_STATUS|"nearby" is unknown/);
    }
  });

  it("answers a Connect request whose binary message does not decode with invalid_argument, not internal", async () => {
    const url = `${server.url}/logistics.perf.v1.EchoService/Echo`;
    for (const body of [Buffer.from([0xff, 0xff, 0xff, 0x0f, 1, 2]), Buffer.from([0x0a, 0x7f, 1])]) {
      const res = await fetch(url, { method: "POST", headers: { "content-type": "application/proto" }, body, signal: AbortSignal.timeout(5000) });
      assert.equal(res.status, 400);
      const err = (await res.json()) as { code: string; message: string };
      assert.equal(err.code, "invalid_argument");
      assert.match(err.message, /^parse binary: /);
    }
    // A request that decodes is answered as before.
    const ok = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: Buffer.from(toBinary(EchoRequestSchema, create(EchoRequestSchema, { payload: new Uint8Array([200]) }))),
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(ok.status, 200);
    assert.deepEqual([...fromBinary(EchoResponseSchema, new Uint8Array(await ok.arrayBuffer())).payload], [200]);
  });

  it("answers an undecodable Connect streaming or gRPC-Web request with invalid_argument, not internal", async () => {
    const frame = (payload: number[], flags = 0) => {
      const b = Buffer.alloc(5 + payload.length);
      b[0] = flags;
      b.writeUInt32BE(payload.length, 1);
      Buffer.from(payload).copy(b, 5);
      return b;
    };
    const undecodable = frame([0x0a, 0xff, 0xff, 0xff]);
    const tracking = `${server.url}/logistics.tracking.v1.TrackingService`;

    // Connect server streaming: HTTP 200 and an end-stream message carrying the error.
    const watch = await fetch(`${tracking}/WatchShipment`, {
      method: "POST",
      headers: { "content-type": "application/connect+proto" },
      body: undecodable,
      signal: AbortSignal.timeout(5000),
    });
    const frames = Buffer.from(await watch.arrayBuffer());
    assert.equal(frames[0], 0x02, "an end-stream message");
    assert.equal(frames.readUInt32BE(1), frames.length - 5, "its length prefix matches what follows");
    const end = JSON.parse(frames.subarray(5).toString()) as { error?: { code: string; message: string } };
    assert.equal(end.error?.code, "invalid_argument");
    assert.match(end.error?.message ?? "", /^parse binary: /);

    // gRPC-Web, unary and server streaming: the status in the head (trailers-only) or in the trailer frame.
    for (const method of ["GetShipment", "WatchShipment"]) {
      const res = await fetch(`${tracking}/${method}`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto" },
        body: undecodable,
        signal: AbortSignal.timeout(5000),
      });
      const body = Buffer.from(await res.arrayBuffer());
      const status = res.headers.get("grpc-status") ?? /grpc-status:\s*(\d+)/i.exec(body.subarray(5).toString())?.[1];
      assert.equal(status, String(Code.InvalidArgument), method);
      if (!res.headers.get("grpc-status")) assert.equal(body.readUInt32BE(1), body.length - 5, `${method}: trailer frame length`);
    }
  });
});
