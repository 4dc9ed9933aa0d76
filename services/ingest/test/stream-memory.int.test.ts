import { afterAll, beforeAll, describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
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
import { ScanSchema } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import type { StreamScansResponse } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { bearer, openScanCall, scanMessage } from "../src/scan-client.js";

const STREAMS = 1000;
const CONNECTIONS = 4;
/** Heap after closing may exceed the baseline by this much (allocator and JIT noise). */
const MARGIN_BYTES = 4 * 1_048_576;
/** Messages one open call carries while its heap is watched (a message retained costs about 2 KB). */
const MESSAGES = 20_000;
/** Growth allowed while they pass: about 400 bytes a message, a fifth of what retaining them costs. */
const MESSAGES_MARGIN_BYTES = 8 * 1_048_576;

/**
 * StreamScans memory: an ingest process as deployed (its own process, run with --expose-gc),
 * 1,000 idle StreamScans calls of one carrier token opened and ended over grpc-js, and one call
 * that stays open while it carries many messages (as a carrier gateway's does for hours); heap
 * measured after full GC.
 */
describe("StreamScans memory (ingest process, grpc-js)", () => {
  let nats: NatsServerHandle;
  let svc: ProbedProcess;
  let keys: TestKeys | undefined;
  let token: string;
  let port: number;
  let metricsUrl: string;

  beforeAll(async () => {
    nats = await startNatsServer();
    keys = await createTestKeys("ingest-memory");
    token = await keys.token({
      subject: "gateway-acme",
      carrier: "acme",
      scopes: [Scope.ScansWrite],
    });
    port = await getFreePort();
    const metricsPort = await getFreePort();
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    const prefix = uniqueName("ingmem");
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

  it(`keeps its heap flat while one open StreamScans call carries ${MESSAGES} messages`, async () => {
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
    const call = openScanCall(client, bearer(token));
    let answered = 0;
    call.on("data", (r: StreamScansResponse) => (answered += r.acks.length));
    call.on("error", () => {});
    // One scan a message, as a gateway sends at a modest rate; another carrier's scans are
    // answered REJECTED without I/O, and every message goes through the stream all the same.
    let sent = 0;
    const send = async (n: number) => {
      for (let end = sent + n; sent < end; ) {
        for (const stop = Math.min(end, sent + 200); sent < stop; sent++) {
          const scan = create(ScanSchema, {
            eventId: `mem-${sent}`,
            trackingNumber: "MEMTEST000001",
            carrierCode: "other",
            rawStatus: { code: "AR" },
            eventTime: timestampFromMs(Date.now()),
          });
          call.write(scanMessage([scan]));
        }
        await waitFor(() => answered === sent, { message: `${sent} scans answered`, timeoutMs: 60_000, signal: svc.proc.exitSignal });
      }
    };
    try {
      await send(2_000);
      const before = await svc.heapAfterGc();
      await send(MESSAGES);
      const after = await svc.heapAfterGc();
      console.info(`StreamScans x${MESSAGES} messages on one open call: heap ${mib(before.heapUsed)} -> ${mib(after.heapUsed)} MiB`);
      if (after.heapUsed > before.heapUsed + MESSAGES_MARGIN_BYTES) {
        throw new Error(`heap grew ${mib(after.heapUsed - before.heapUsed)} MiB over ${MESSAGES} messages of an open call`);
      }
    } finally {
      call.end();
      client.close();
    }
  });
});
