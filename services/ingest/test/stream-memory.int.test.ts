import { afterAll, beforeAll, describe, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { Scope } from "@logistics/shared/auth";
import {
  createTestKeys,
  serviceTestEnv,
  assertHeapReturnsAfterStreams,
  compiledEntry,
  getFreePort,
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
import { bearer, openScanCall } from "../src/scan-client.js";

const STREAMS = 1000;
const CONNECTIONS = 4;
/** Heap after closing may exceed the baseline by this much (allocator and JIT noise). */
const MARGIN_BYTES = 4 * 1_048_576;

/**
 * StreamScans memory: an ingest process as deployed (its own process, run with --expose-gc),
 * 1,000 idle StreamScans calls of one carrier token opened and ended over grpc-js, heap measured
 * after full GC.
 */
describe("StreamScans memory after streams close (ingest process, grpc-js)", () => {
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
});
