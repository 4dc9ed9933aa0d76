import assert from "node:assert/strict";
import http2 from "node:http2";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { ServerReflectionRequestSchema } from "@logistics/shared/gen/grpc/reflection/v1/reflection_pb.js";
import { ScanOutcome, StreamScansRequestSchema, StreamScansResponseSchema } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { startIngestHarness, validScan, type IngestHarness } from "./ingest-harness.js";

/** One gRPC call over a bare HTTP/2 session: every response message with its compressed flag. */
async function grpcCall(
  url: string,
  path: string,
  body: Uint8Array,
  headers: Record<string, string>,
): Promise<{ status: string | undefined; messages: Array<{ compressed: boolean; bytes: Uint8Array }> }> {
  const session = http2.connect(url);
  try {
    const req = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    const envelope = Buffer.alloc(5 + body.length);
    envelope.writeUInt32BE(body.length, 1);
    envelope.set(body, 5);
    req.end(envelope);
    const chunks: Buffer[] = [];
    let status: string | undefined;
    req.on("trailers", (t) => (status = String(t["grpc-status"])));
    req.on("data", (c: Buffer) => chunks.push(c));
    await new Promise<void>((resolve, reject) => {
      req.on("end", resolve);
      req.on("error", reject);
    });
    const all = Buffer.concat(chunks);
    const messages: Array<{ compressed: boolean; bytes: Uint8Array }> = [];
    for (let at = 0; at < all.length; ) {
      const length = all.readUInt32BE(at + 1);
      messages.push({ compressed: all[at] === 1, bytes: all.subarray(at + 5, at + 5 + length) });
      at += 5 + length;
    }
    return { status, messages };
  } finally {
    session.close();
  }
}

const encode = <D extends DescMessage>(schema: D, init: Parameters<typeof create<D>>[1]): Uint8Array => toBinary(schema, create(schema, init));

describe("IngestService responses over a real socket: acks uncompressed", () => {
  let h: IngestHarness;
  beforeAll(async () => {
    h = await startIngestHarness();
    await h.createShipments("acme");
  });
  afterAll(async () => {
    await h?.close();
  });

  it("sends a StreamScans ack message of 40 scans uncompressed to a caller that accepts gzip; the same server still gzips a reflection answer", async () => {
    const auth = { authorization: `Bearer ${await h.token({ carrier: "acme" })}`, "grpc-accept-encoding": "gzip" };
    const scans = Array.from({ length: 40 }, (_, i) => validScan("acme", `plain-ack-${i}`));
    const acks = await grpcCall(h.svc.url, "/logistics.ingest.v1.IngestService/StreamScans", encode(StreamScansRequestSchema, { scans }), auth);
    assert.equal(acks.status, "0");
    assert.equal(acks.messages.length, 1);
    const [answer] = acks.messages;
    // Large enough that the server's default (gzip from 1 KiB) would have compressed it.
    assert.ok(answer!.bytes.length > 1024, `ack message of ${answer!.bytes.length} bytes`);
    assert.equal(answer!.compressed, false);
    const res = fromBinary(StreamScansResponseSchema, answer!.bytes);
    assert.deepEqual(res.acks.map((a) => a.outcome), scans.map(() => ScanOutcome.ACCEPTED));

    // The check above can tell: another service of the same server compresses a large answer.
    const reflection = await grpcCall(
      h.svc.url,
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      encode(ServerReflectionRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: "logistics.ingest.v1.IngestService" } }),
      { "grpc-accept-encoding": "gzip" },
    );
    assert.equal(reflection.status, "0");
    assert.equal(reflection.messages[0]?.compressed, true);
  });
});
