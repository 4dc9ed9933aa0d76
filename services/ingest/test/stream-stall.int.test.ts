import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, it } from "vitest";
import { toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  ScanOutcome,
  StreamScansRequestSchema,
  type StreamScansRequest,
  type StreamScansResponse,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { bearer, openScanCall, scanMessage, startIngestHarness, validScan, type IngestHarness } from "./ingest-harness.js";

const STALL_MS = 1000;
const PATH = "/logistics.ingest.v1.IngestService/StreamScans";

/** The 5-byte envelope gRPC and the Connect streaming protocol both frame a message with. */
function envelope(msg: StreamScansRequest): Buffer {
  const body = toBinary(StreamScansRequestSchema, msg);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/**
 * A gateway that sends scans and never reads a byte of the response, on a raw HTTP/2 connection
 * of its own whose stream window is 1 KiB: once that and the socket's buffers are full, the
 * server's writes block. Resolves with the stream's RST_STREAM code when it closes.
 */
function nonReader(port: number, token: string, contentType: string) {
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 1024 } });
  session.on("error", () => {});
  const headers: http2.OutgoingHttpHeaders = {
    ":method": "POST",
    ":path": PATH,
    "content-type": contentType,
    authorization: `Bearer ${token}`,
  };
  if (contentType.startsWith("application/grpc")) headers.te = "trailers";
  const stream = session.request(headers);
  stream.on("error", () => {});
  const state = { status: undefined as number | undefined, rstCode: undefined as number | undefined, closedAt: 0 };
  stream.on("response", (h) => (state.status = Number(h[":status"])));
  const closed = new Promise<void>((r) =>
    stream.once("close", () => {
      state.rstCode = stream.rstCode;
      state.closedAt = performance.now();
      r();
    }),
  );
  return {
    state,
    closed,
    /** Sends `messages` request messages of `scans` scans each, without waiting on flow control. */
    send(carrier: string, messages: number, scans: number) {
      for (let m = 0; m < messages; m++) {
        const batch = Array.from({ length: scans }, (_, i) => validScan(carrier, `${uniqueName("stall")}-${m}-${i}`));
        stream.write(envelope(scanMessage(batch)));
      }
    },
    close() {
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
      session.destroy();
    },
  };
}

/** A grpc-js StreamScans call that reads every response: what it received and how it ended. */
interface Reader {
  call: grpc.ClientDuplexStream<StreamScansRequest, StreamScansResponse>;
  responses: StreamScansResponse[];
  error?: grpc.ServiceError;
  /** Settles when the call has its final status. */
  ended: Promise<unknown>;
}

function reader(client: grpc.Client, token: string): Reader {
  const call = openScanCall(client, bearer(token));
  const c: Reader = { call, responses: [], ended: new Promise((r) => call.on("status", r)) };
  call.on("data", (r: StreamScansResponse) => c.responses.push(r));
  call.on("error", (e: grpc.ServiceError) => (c.error = e));
  return c;
}

/** A client with a connection of its own (grpc-js otherwise shares one per target). */
const ownConnection = (port: number) =>
  new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });

describe("StreamScans stall timeout (real ingest service, raw HTTP/2 and grpc-js)", () => {
  let h: IngestHarness;
  const carrier = "acme";
  beforeAll(async () => {
    h = await startIngestHarness({
      INGEST_STREAM_STALL_TIMEOUT_MS: String(STALL_MS),
      INGEST_STREAMS_PER_PRINCIPAL: "1",
      INGEST_RATE_PER_SEC: "1000000",
      INGEST_RATE_BURST: "1000000",
    });
    await h.createShipments(carrier);
  });
  afterAll(() => h?.close());

  it.each([["application/grpc"], ["application/connect+proto"]])(
    "resets a stream whose gateway sends scans and reads no ack (%s), frees its slot, and leaves a reading stream alone",
    async (contentType) => {
      const token = await h.token({ carrier, subject: uniqueName("gw-stalled") });
      const readerToken = await h.token({ carrier, subject: uniqueName("gw-reading") });
      const stallsBefore = await h.metric("logistics_ingest_stream_stalls_total");
      const client = ownConnection(h.svc.port);
      const stalled = nonReader(h.svc.port, token, contentType);
      // A gateway that reads, on a connection of its own, sending every quarter of the limit.
      const steady = reader(client, readerToken);
      try {
        const opened = performance.now();
        // 40 messages of 50 scans: ~160 KB of acks, far past the 1 KiB window and the buffers
        // on both sides (the server reads 16 messages at most while its writes are blocked).
        stalled.send(carrier, 40, 50);
        await waitFor(() => stalled.state.status !== undefined, { message: "the stalled stream's response headers" });
        assert.equal(stalled.state.status, 200);

        // While it is open it holds the principal's one slot: another stream of that token is refused.
        const refused = reader(client, token);
        refused.call.write(scanMessage([validScan(carrier, uniqueName("refused"))]));
        await refused.ended;
        assert.equal(refused.error?.code, grpc.status.RESOURCE_EXHAUSTED, refused.error?.details);
        assert.match(refused.error!.details, /for this caller \(at most 1\)/);

        let sent = 0;
        // Until the stalled one is reset, and for two limits at least.
        while ((stalled.state.closedAt === 0 || performance.now() - opened < 2 * STALL_MS) && performance.now() - opened < 15_000) {
          steady.call.write(scanMessage([validScan(carrier, `${uniqueName("steady")}-${++sent}`)]));
          const want = sent;
          await waitFor(() => steady.responses.length >= want || steady.error !== undefined, { message: "the reading stream answers" });
          await new Promise((r) => setTimeout(r, STALL_MS / 4));
        }
        await waitFor(() => stalled.state.closedAt > 0, { message: "the stalled stream is reset", timeoutMs: 5000 });
        const after = stalled.state.closedAt - opened;
        assert.equal(stalled.state.rstCode, http2.constants.NGHTTP2_CANCEL, `RST_STREAM code ${stalled.state.rstCode}`);
        assert.ok(after >= STALL_MS && after < STALL_MS + 8000, `reset ${Math.round(after)} ms after it opened`);
        await waitFor(async () => (await h.metric("logistics_ingest_stream_stalls_total")) === stallsBefore + 1, {
          message: "the stall is counted",
        });

        // The stalled stream's slot is free: a new stream of the same token is accepted and answers.
        const next = reader(client, token);
        next.call.write(scanMessage([validScan(carrier, uniqueName("next"))]));
        await waitFor(() => next.responses.length > 0 || next.error !== undefined, { message: "a new stream of the token answers" });
        assert.equal(next.error, undefined);
        assert.equal(next.responses[0]?.acks[0]?.outcome, ScanOutcome.ACCEPTED);
        next.call.end();
        await next.ended;
        assert.equal(next.error, undefined);

        // The stream that read its acks was never touched, across more than one limit.
        assert.ok(sent >= 4, `${sent} messages on the reading stream`);
        assert.equal(steady.error, undefined);
        assert.equal(steady.responses.length, sent);
        steady.call.end();
        await steady.ended;
        assert.equal(steady.error, undefined);
        assert.equal(await h.metric("logistics_ingest_stream_stalls_total"), stallsBefore + 1, "only the stalled stream was reset");
      } finally {
        stalled.close();
        client.close();
      }
    },
  );
});
