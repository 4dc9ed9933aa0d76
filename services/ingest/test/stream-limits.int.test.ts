import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { ScanOutcome, type StreamScansRequest, type StreamScansResponse } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { bearer, openScanCall, scanMessage, startIngestHarness, validScan, type IngestHarness } from "./ingest-harness.js";

const PER_CONNECTION = 4;
const PER_PRINCIPAL = 6;

/** An idle StreamScans call: what it received and how it ended. */
interface Call {
  call: grpc.ClientDuplexStream<StreamScansRequest, StreamScansResponse>;
  responses: StreamScansResponse[];
  error?: grpc.ServiceError;
  /** Settles when the call has its final status. */
  ended: Promise<unknown>;
}

function open(client: grpc.Client, token: string): Call {
  const call = openScanCall(client, bearer(token));
  const c: Call = { call, responses: [], ended: new Promise((r) => call.on("status", r)) };
  c.call.on("data", (r: StreamScansResponse) => c.responses.push(r));
  c.call.on("error", (e: grpc.ServiceError) => (c.error = e));
  return c;
}

/** A client with a connection of its own (grpc-js otherwise shares one per target). */
const ownConnection = (port: number) =>
  new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });

describe("StreamScans stream caps (real ingest service, grpc-js)", () => {
  let h: IngestHarness;
  const carrier = "acme";
  let n = 0;
  beforeAll(async () => {
    h = await startIngestHarness({
      INGEST_STREAMS_PER_CONNECTION: String(PER_CONNECTION),
      INGEST_STREAMS_PER_PRINCIPAL: String(PER_PRINCIPAL),
      // What is under test is the per-connection cap, not HTTP/2's own stream bound: with 2,000
      // calls opened at once and the refusals slow on a loaded machine, more than the default
      // 1,000 streams were open together and nghttp2 refused some (seen by grpc-js as Internal).
      HTTP2_MAX_CONCURRENT_STREAMS: "4096",
    });
    await h.createShipments(carrier);
  });
  afterAll(() => h?.close());

  /** Waits until `expectRefused` calls failed; then each other call must still answer a scan. */
  async function settle(calls: Call[], expectRefused: number): Promise<{ open: Call[]; refused: Call[] }> {
    await waitFor(() => calls.filter((c) => c.error).length >= expectRefused, { message: `${expectRefused} calls refused`, timeoutMs: 60_000 });
    const openCalls = calls.filter((c) => !c.error);
    for (const c of openCalls) c.call.write(scanMessage([validScan(carrier, `${uniqueName("lim")}-${++n}`)]));
    await waitFor(() => openCalls.every((c) => c.responses.length > 0 || c.error), { message: "open calls answer" });
    for (const c of openCalls) {
      assert.equal(c.error, undefined);
      assert.equal(c.responses[0]?.acks[0]?.outcome, ScanOutcome.ACCEPTED);
    }
    return { open: openCalls, refused: calls.filter((c) => c.error) };
  }

  async function endAll(calls: Call[]) {
    for (const c of calls) if (!c.error) c.call.end();
    await Promise.all(calls.map((c) => c.ended));
  }

  it("holds at most the per-connection cap of 2,000 idle streams of one carrier token on one connection; the rest get RESOURCE_EXHAUSTED", async () => {
    const token = await h.token({ carrier, subject: uniqueName("gw") });
    const client = ownConnection(h.svc.port);
    const calls = Array.from({ length: 2000 }, () => open(client, token));
    try {
      const { open: ok, refused } = await settle(calls, 2000 - PER_CONNECTION);
      assert.equal(ok.length, PER_CONNECTION);
      assert.equal(refused.length, 2000 - PER_CONNECTION);
      for (const c of refused) assert.equal(c.error?.code, grpc.status.RESOURCE_EXHAUSTED, c.error?.details);
      assert.match(refused[0]!.error!.details, /too many open IngestService\.StreamScans calls on this connection \(at most 4\)/);
    } finally {
      await endAll(calls);
      client.close();
    }
  });

  it("holds at most the per-principal cap of one token across connections, frees slots on close, and leaves other carriers alone", async () => {
    const token = await h.token({ carrier, subject: uniqueName("gw") });
    const clients = Array.from({ length: 3 }, () => ownConnection(h.svc.port));
    const calls = clients.flatMap((c) => Array.from({ length: PER_CONNECTION }, () => open(c, token)));
    const other = ownConnection(h.svc.port);
    try {
      const { open: ok, refused } = await settle(calls, 3 * PER_CONNECTION - PER_PRINCIPAL);
      assert.equal(ok.length, PER_PRINCIPAL);
      assert.match(refused[0]!.error!.details, /for this caller \(at most 6\)/);

      // Another gateway is not held back by this one's streams.
      const otherToken = await h.token({ carrier, subject: uniqueName("gw-other") });
      const others = Array.from({ length: PER_CONNECTION }, () => open(other, otherToken));
      assert.equal((await settle(others, 0)).open.length, PER_CONNECTION);
      await endAll(others);

      // Streams that end give their slots back.
      await endAll(calls);
      const again = clients.flatMap((c) => Array.from({ length: 2 }, () => open(c, token)));
      assert.equal((await settle(again, 0)).open.length, 6);
      await endAll(again);
    } finally {
      await endAll(calls);
      for (const c of [...clients, other]) c.close();
    }
  });
});

describe("StreamScans idle timeout (real ingest service, grpc-js)", () => {
  const IDLE_MS = 1000;
  let h: IngestHarness;
  const carrier = "acme";
  beforeAll(async () => {
    h = await startIngestHarness({ INGEST_STREAM_IDLE_TIMEOUT_MS: String(IDLE_MS), INGEST_STREAMS_PER_PRINCIPAL: "2" });
    await h.createShipments(carrier);
  });
  afterAll(() => h?.close());

  it("closes a half-open stream that stopped sending with UNAVAILABLE, gives its slot back, and leaves a busy stream open", async () => {
    const token = await h.token({ carrier, subject: uniqueName("gw") });
    const client = ownConnection(h.svc.port);
    try {
      // The idle one sends one message, is answered, then says nothing and never half-closes.
      const idle = open(client, token);
      idle.call.write(scanMessage([validScan(carrier, uniqueName("idle"))]));
      // The busy one sends a message every quarter of the timeout, for three timeouts.
      const busy = open(client, token);
      const t0 = performance.now();
      let sent = 0;
      while (performance.now() - t0 < 3 * IDLE_MS) {
        busy.call.write(scanMessage([validScan(carrier, `${uniqueName("busy")}-${++sent}`)]));
        const want = sent;
        await waitFor(() => busy.responses.length >= want || busy.error !== undefined, { message: "busy stream answers" });
        await new Promise((r) => setTimeout(r, IDLE_MS / 4));
      }
      await waitFor(() => idle.error !== undefined, { message: "the idle stream is closed", timeoutMs: 10_000 });
      assert.equal(idle.responses.length, 1);
      assert.equal(idle.responses[0]?.acks[0]?.outcome, ScanOutcome.ACCEPTED);
      assert.equal(idle.error?.code, grpc.status.UNAVAILABLE, idle.error?.details);
      assert.match(idle.error!.details, /stream idle.*resend/);
      assert.equal(busy.error, undefined, "a stream that keeps sending is never idle");
      assert.equal(busy.responses.length, sent);

      // The idle stream's slot under the per-principal cap of 2 is free again.
      const third = open(client, token);
      third.call.write(scanMessage([validScan(carrier, uniqueName("third"))]));
      await waitFor(() => third.responses.length > 0 || third.error !== undefined, { message: "a new stream answers" });
      assert.equal(third.error, undefined);
      busy.call.end();
      third.call.end();
      await Promise.all([busy.ended, third.ended, idle.ended]);
      assert.equal(busy.error, undefined);
    } finally {
      client.close();
    }
  });
});
