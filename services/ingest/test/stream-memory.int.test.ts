import { afterAll, beforeAll, describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { Scope } from "@logistics/shared/auth";
import {
  createTestKeys,
  serviceTestEnv,
  assertHeapReturnsAfterStreams,
  compiledEntry,
  getFreePort,
  mib,
  readMetric,
  spawnProbedProcess,
  startNatsServer,
  testRedisUrl,
  uniqueName,
  waitFor,
  type NatsServerHandle,
  type ProbedProcess,
  type TestKeys,
} from "@logistics/shared/testing";
import { ScanSchema, type Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { IngestService, ScanOutcome, type StreamScansResponse } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { bearer, openScanCall, scanMessage } from "../src/scan-client.js";
import { shipmentRequest, validScan } from "./ingest-harness.js";

const STREAMS = 1000;
const CONNECTIONS = 4;
/** Heap after closing may exceed the baseline by this much (allocator and JIT noise). */
const MARGIN_BYTES = 4 * 1_048_576;
/** Messages one open call carries while its heap is watched (a message retained costs about 2 KB). */
const MESSAGES = 20_000;
/** Growth allowed while they pass: about 400 bytes a message, a fifth of what retaining them costs. */
const MESSAGES_MARGIN_BYTES = 8 * 1_048_576;
/** Accepted scans one open call carries while its heap is watched (each published, deduped, owner-checked). */
const ACCEPTED = 10_000;
/** Growth allowed while they pass: about 400 bytes a scan (a kept ScanRecorded event alone is larger). */
const ACCEPTED_MARGIN_BYTES = 4 * 1_048_576;
/** Shipments the accepted scans are spread over (created first, so the directory cache stops growing). */
const SHIPMENTS = 32;

/**
 * StreamScans memory: an ingest process as deployed (its own process, run with --expose-gc),
 * 1,000 idle StreamScans calls of one carrier token opened and ended over grpc-js, and one call
 * that stays open while it carries many messages (as a carrier gateway's does for hours): scans
 * rejected without I/O, then scans accepted through the whole path (directory, Redis, JetStream);
 * heap measured after full GC.
 */
describe("StreamScans memory (ingest process, grpc-js)", () => {
  let nats: NatsServerHandle;
  let svc: ProbedProcess;
  let keys: TestKeys | undefined;
  let token: string;
  let ordersToken: string;
  let port: number;
  let metricsUrl: string;
  let prefix: string;

  beforeAll(async () => {
    nats = await startNatsServer();
    keys = await createTestKeys("ingest-memory");
    token = await keys.token({
      subject: "gateway-acme",
      carrier: "acme",
      scopes: [Scope.ScansWrite],
    });
    ordersToken = await keys.token({ subject: "order-system", scopes: [Scope.ShipmentsWrite] });
    port = await getFreePort();
    const metricsPort = await getFreePort();
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    prefix = uniqueName("ingmem");
    svc = spawnProbedProcess(compiledEntry("services/ingest/src/main.ts"), {
      ...serviceTestEnv({ natsUrl: nats.url, prefix, jwksPath: keys.jwksPath }),
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      LOG_LEVEL: "warn",
      REDIS_URL: testRedisUrl(),
      INGEST_REDIS_KEY_PREFIX: `${prefix}:`,
      // Caps off: this measures what open streams cost, not who may open them.
      INGEST_STREAMS_PER_CONNECTION: "0",
      INGEST_STREAMS_PER_PRINCIPAL: "0",
      // The carrier's scan rate limit too: a pass of 200 one-scan messages answered faster than
      // 2,000/s (the default) had some answered RESOURCE_EXHAUSTED, not the accepted path measured.
      INGEST_RATE_PER_SEC: "1000000",
      INGEST_RATE_BURST: "1000000",
    });
    await waitFor(async () => (await readMetric(metricsUrl, "rpc_server_open_streams")) !== undefined, {
      message: "ingest process up",
      signal: svc.proc.exitSignal,
      timeoutMs: 60_000,
    });
  });
  afterAll(async () => {
    await svc?.proc.stop();
    await nats?.stop();
    await keys?.remove();
  });

  /** Opens `n` idle calls over `CONNECTIONS` connections; resolves once the server counts them open. */
  async function openCalls(n: number) {
    const clients = Array.from({ length: CONNECTIONS }, () =>
      new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }),
    );
    const calls = Array.from({ length: n }, (_, i) => {
      const call = openScanCall(clients[i % CONNECTIONS]!, bearer(token));
      call.on("error", () => {});
      call.on("data", () => {});
      return call;
    });
    await waitFor(async () => (await readMetric(metricsUrl, "rpc_server_open_streams")) === n, {
      message: `${n} calls open on the server`,
      timeoutMs: 120_000,
      signal: svc.proc.exitSignal,
    });
    return {
      async close() {
        // Half of them end cleanly (half-close), half are cancelled as a vanished gateway's would be.
        calls.forEach((c, i) => (i % 2 === 0 ? c.end() : c.cancel()));
        await waitFor(async () => (await readMetric(metricsUrl, "rpc_server_open_streams")) === 0, {
          message: "no stream open on the server",
          timeoutMs: 60_000,
        });
        for (const c of clients) c.close();
      },
    };
  }

  it(`returns to its baseline heap after ${STREAMS} idle StreamScans calls of one token end`, async () => {
    await assertHeapReturnsAfterStreams(svc, openCalls, { label: "StreamScans", streams: STREAMS, marginBytes: MARGIN_BYTES });
  });

  /**
   * One open call over its own connection, sending one-scan messages (`scanOf(i)` for the i-th)
   * 200 at a time and waiting for their answers, as a gateway sends at a modest rate.
   */
  function oneCall(scanOf: (i: number) => Scan) {
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
    const call = openScanCall(client, bearer(token));
    let answered = 0;
    let accepted = 0;
    call.on("data", (r: StreamScansResponse) => {
      answered += r.acks.length;
      for (const a of r.acks) if (a.outcome === ScanOutcome.ACCEPTED) accepted++;
    });
    call.on("error", () => {});
    let sent = 0;
    return {
      get accepted() {
        return accepted;
      },
      async send(n: number) {
        for (let end = sent + n; sent < end; ) {
          for (const stop = Math.min(end, sent + 200); sent < stop; sent++) call.write(scanMessage([scanOf(sent)]));
          await waitFor(() => answered === sent, { message: `${sent} scans answered`, timeoutMs: 60_000, signal: svc.proc.exitSignal });
        }
      },
      close() {
        call.end();
        client.close();
      },
    };
  }

  /** Heap after GC before and after `n` messages on `c` (after a warm-up of `warmUp`); fails past `marginBytes`. */
  async function assertFlatOver(c: ReturnType<typeof oneCall>, label: string, o: { warmUp: number; n: number; marginBytes: number }) {
    await c.send(o.warmUp);
    const before = await svc.heapAfterGc();
    await c.send(o.n);
    const after = await svc.heapAfterGc();
    console.info(`${label}: heap ${mib(before.heapUsed)} -> ${mib(after.heapUsed)} MiB (rss ${mib(before.rss)} -> ${mib(after.rss)} MiB)`);
    if (after.heapUsed > before.heapUsed + o.marginBytes) {
      throw new Error(`${label}: heap grew ${mib(after.heapUsed - before.heapUsed)} MiB`);
    }
  }

  it(`keeps its heap flat while one open StreamScans call carries ${MESSAGES} messages`, async () => {
    // Another carrier's scans are answered REJECTED without I/O, and every message goes through
    // the stream all the same.
    const c = oneCall((i) =>
      create(ScanSchema, {
        eventId: `mem-${i}`,
        trackingNumber: "MEMTEST000001",
        carrierCode: "other",
        rawStatus: { code: "AR" },
        eventTime: timestampFromMs(Date.now()),
      }),
    );
    try {
      await assertFlatOver(c, `StreamScans x${MESSAGES} messages on one open call`, { warmUp: 2_000, n: MESSAGES, marginBytes: MESSAGES_MARGIN_BYTES });
    } finally {
      c.close();
    }
  });

  it(`keeps its heap flat while one open StreamScans call carries ${ACCEPTED} accepted scans`, async () => {
    // Every scan takes the whole path: ownership (the directory, cached after the first scan of
    // each shipment), the Redis rate limit and dedupe rounds, a pipelined publish and its PubAck.
    const orders = createClient(IngestService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    const tn = (k: number) => `MEMACC${String(k).padStart(6, "0")}`;
    for (let k = 0; k < SHIPMENTS; k++) {
      await orders.createShipment(shipmentRequest(`${prefix}-${k}`, { trackingNumber: tn(k) }), { headers: { authorization: `Bearer ${ordersToken}` } });
    }
    const c = oneCall((i) => validScan("acme", `acc-${i}`, { trackingNumber: tn(i % SHIPMENTS) }));
    try {
      await assertFlatOver(c, `StreamScans x${ACCEPTED} accepted scans on one open call`, { warmUp: 2_000, n: ACCEPTED, marginBytes: ACCEPTED_MARGIN_BYTES });
      if (c.accepted !== 2_000 + ACCEPTED) throw new Error(`${c.accepted} of ${2_000 + ACCEPTED} scans accepted: the path measured is not the accepted one`);
    } finally {
      c.close();
    }
  });
});
