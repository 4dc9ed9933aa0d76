/**
 * GetShipment (cache hit) throughput against a bare echo RPC, side by side in one run.
 *
 * One server (the shared `startServer`, with the same interceptor chain as every service:
 * tracing → metrics → auth → validation) serves both TrackingService and
 * logistics.perf.v1.EchoService on one port. A grpc-js client drives each RPC in turn with the
 * same concurrency for the same time, alternating rounds so machine noise hits both alike.
 * GetShipment is called anonymously for shipments whose snapshots are in Redis, so every call is
 * a cache hit (checked with the hit/miss counters). Target: GetShipment ≥ 70% of echo's rate.
 *
 * Run (after `npm run build`): `node perf/dist/tracking/get-shipment-bench.js`
 * Environment: BENCH_SECONDS (per round, default 5), BENCH_ROUNDS (default 3),
 * BENCH_CONCURRENCY (default 32), BENCH_SHIPMENTS (cached shipments read, default 200), REDIS_URL,
 * DATABASE_URL (set by `npm run perf`, which provides the servers).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Interceptor } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { Redis } from "ioredis";
import { createAuthInterceptor, createJwtVerifier, ensureDevKeys, policiesForService } from "@logistics/shared/auth";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { EchoRequestSchema, EchoResponseSchema, EchoService } from "@logistics/shared/gen/logistics/perf/v1/echo_pb.js";
import {
  GetShipmentRequestSchema,
  GetShipmentResponseSchema,
  TrackingService,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createRequestValidationInterceptor, startServer } from "@logistics/shared/server";
import { createMetrics, createMetricsInterceptor, createServerTracingInterceptor } from "@logistics/shared/telemetry";
import { createTestSchema, testRedisUrl, uniqueName } from "@logistics/shared/testing";
import { createMeshValidator } from "@logistics/shared/validation";
import { createPostgresShipmentStore } from "@logistics/tracking/store";
import {
  registerTrackingRoutes,
  trackingPolicies,
  createRedisShipmentCache,
  createShipmentReader,
  shipmentMessage,
  createTrackingMetrics,
  createTrackingHandlers,
} from "@logistics/tracking";

const SECONDS = Number(process.env["BENCH_SECONDS"] ?? 5);
const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 3);
const CONCURRENCY = Number(process.env["BENCH_CONCURRENCY"] ?? 32);
const SHIPMENTS = Number(process.env["BENCH_SHIPMENTS"] ?? 200);

interface RunResult {
  calls: number;
  errors: number;
  seconds: number;
  latenciesMs: number[];
}

/** Keeps `concurrency` unary calls in flight for `seconds`. */
async function drive(call: (i: number) => Promise<void>, seconds: number, concurrency: number): Promise<RunResult> {
  const end = performance.now() + seconds * 1000;
  let calls = 0;
  let errors = 0;
  const latenciesMs: number[] = [];
  const started = performance.now();
  const worker = async (w: number) => {
    let i = w;
    while (performance.now() < end) {
      const t = performance.now();
      try {
        await call(i);
        calls++;
        latenciesMs.push(performance.now() - t);
      } catch {
        errors++;
      }
      i += concurrency;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  return { calls, errors, seconds: (performance.now() - started) / 1000, latenciesMs };
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number);
}

function summarize(name: string, runs: RunResult[]) {
  const calls = runs.reduce((a, r) => a + r.calls, 0);
  const errors = runs.reduce((a, r) => a + r.errors, 0);
  const seconds = runs.reduce((a, r) => a + r.seconds, 0);
  const lat = runs.flatMap((r) => r.latenciesMs).sort((a, b) => a - b);
  return {
    name,
    calls,
    errors,
    rps: calls / seconds,
    p50Ms: percentile(lat, 50),
    p99Ms: percentile(lat, 99),
  };
}

async function main(): Promise<void> {
  const redisUrl = testRedisUrl();
  const schema = await createTestSchema({ connectionString: process.env["DATABASE_URL"], prefix: "bench_trk" });
  const keysDir = await mkdtemp(join(tmpdir(), "bench-keys-"));
  const keyPrefix = `${uniqueName("bench")}:`;
  const store = await createPostgresShipmentStore({ connectionString: schema.connectionString, maxConnections: 10 });
  const redis = new Redis(redisUrl, { keyPrefix, enableOfflineQueue: true, maxRetriesPerRequest: 0, commandTimeout: 1000 });
  const cleanup: Array<() => Promise<unknown>> = [
    () => rm(keysDir, { recursive: true, force: true }),
    () => schema.drop(),
    () => store.close(),
    async () => {
      const keys = await redis.keys(`${keyPrefix}*`);
      const own = keys.map((k) => k.slice(keyPrefix.length));
      if (own.length > 0) await redis.del(...own);
      redis.disconnect();
    },
  ];
  try {
    const metrics = createMetrics({ service: "tracking" });
    const tm = createTrackingMetrics(metrics.registry);
    const cache = createRedisShipmentCache({ redis, ttlSeconds: 3600 });
    const reader = createShipmentReader({ store, cache, metrics: tm });

    const tns: string[] = [];
    const t0 = Date.UTC(2026, 10, 20, 8);
    for (let i = 0; i < SHIPMENTS; i++) {
      const tn = `BENCH${String(i).padStart(8, "0")}`;
      tns.push(tn);
      await store.applyEvent({
        type: "shipment.created",
        message: create(ShipmentCreatedSchema, {
          eventId: `c.${tn}`,
          trackingNumber: tn,
          createdAt: timestampFromMs(t0),
          shipmentId: `s_${tn}`,
          carrierCode: "acme",
          customerId: "cust-1",
          serviceLevel: ServiceLevel.STANDARD,
          origin: { countryCode: "DE", city: "Frankfurt", location: { latitude: 50.11, longitude: 8.68 } },
          destination: { countryCode: "FR", city: "Paris", location: { latitude: 48.86, longitude: 2.35 } },
        }),
      });
      const kinds = [ScanKind.PICKUP, ScanKind.HUB_ARRIVAL, ScanKind.HUB_DEPARTURE];
      for (const [k, kind] of kinds.entries()) {
        await store.applyEvent({
          type: "scan.recorded",
          message: create(ScanRecordedSchema, {
            eventId: `s.${tn}.${k}`,
            kind,
            scan: {
              trackingNumber: tn,
              eventTime: timestampFromMs(t0 + (k + 1) * 3_600_000),
              carrierCode: "acme",
              rawStatus: { code: `K${kind}`, text: ScanKind[kind] },
              hubCode: "FRA",
              location: { latitude: 50.03, longitude: 8.57 },
            },
          }),
        });
      }
      const doc = await store.getShipment(tn);
      if (doc) await cache.put(shipmentMessage(doc));
    }

    const keys = await ensureDevKeys(keysDir);
    const verifier = await createJwtVerifier({ issuer: "logistics-dev", audience: "logistics-mesh", keyFile: keys.jwksPath });
    const policies = new Map([...trackingPolicies, ...policiesForService(EchoService, { echo: { scopes: [], anonymous: true } })]);
    const interceptors: Interceptor[] = [
      createServerTracingInterceptor(),
      createMetricsInterceptor(metrics),
      createAuthInterceptor({ verifier, policies }),
      createRequestValidationInterceptor({ validator: createMeshValidator() }),
    ];
    const handlers = createTrackingHandlers({ store, reader, metrics: tm });
    const server = await startServer({
      host: "127.0.0.1",
      port: 0,
      services: [TrackingService, EchoService],
      interceptors,
      routes(router) {
        registerTrackingRoutes(router, handlers);
        router.service(EchoService, { echo: (req) => ({ payload: req.payload }) });
      },
    });
    cleanup.unshift(() => server.close({ graceMs: 1000 }));

    const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    cleanup.unshift(async () => client.close());
    const unary = <I, O>(path: string, ser: (m: I) => Buffer, de: (b: Buffer) => O, req: I) =>
      new Promise<O>((resolve, reject) =>
        client.makeUnaryRequest(path, ser, de, req, (err, res) => (err || res === undefined ? reject(err ?? new Error("empty")) : resolve(res))),
      );
    const echoReq = create(EchoRequestSchema, { payload: new Uint8Array(32) });
    const echo = async () => {
      await unary(
        "/logistics.perf.v1.EchoService/Echo",
        (m: typeof echoReq) => Buffer.from(toBinary(EchoRequestSchema, m)),
        (b: Buffer) => fromBinary(EchoResponseSchema, b),
        echoReq,
      );
    };
    const getReqs = tns.map((tn) => create(GetShipmentRequestSchema, { trackingNumber: tn }));
    const get = async (i: number) => {
      const res = await unary(
        "/logistics.tracking.v1.TrackingService/GetShipment",
        (m: (typeof getReqs)[number]) => Buffer.from(toBinary(GetShipmentRequestSchema, m)),
        (b: Buffer) => fromBinary(GetShipmentResponseSchema, b),
        getReqs[i % getReqs.length] as (typeof getReqs)[number],
      );
      if (!res.shipment) throw new Error("no shipment");
    };

    // Warm-up (JIT, connections), then alternating measured rounds.
    await drive(echo, 1, CONCURRENCY);
    await drive(get, 1, CONCURRENCY);
    const hitsBefore = (await tm.cacheHits.get()).values[0]?.value ?? 0;
    const missesBefore = (await tm.cacheMisses.get()).values[0]?.value ?? 0;
    const echoRuns: RunResult[] = [];
    const getRuns: RunResult[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      echoRuns.push(await drive(echo, SECONDS, CONCURRENCY));
      getRuns.push(await drive(get, SECONDS, CONCURRENCY));
    }
    const hits = ((await tm.cacheHits.get()).values[0]?.value ?? 0) - hitsBefore;
    const misses = ((await tm.cacheMisses.get()).values[0]?.value ?? 0) - missesBefore;

    const e = summarize("logistics.perf.v1.EchoService/Echo", echoRuns);
    const g = summarize("logistics.tracking.v1.TrackingService/GetShipment (cache hit)", getRuns);
    const ratio = g.rps / e.rps;
    const report = {
      transport: "grpc-js over h2c, one connection",
      concurrency: CONCURRENCY,
      rounds: ROUNDS,
      secondsPerRound: SECONDS,
      echo: e,
      getShipment: g,
      cache: { hits, misses },
      ratio,
      target: 0.7,
      pass: ratio >= 0.7,
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(
      `echo ${e.rps.toFixed(0)} rps (p50 ${e.p50Ms.toFixed(2)} ms, p99 ${e.p99Ms.toFixed(2)} ms); ` +
        `GetShipment ${g.rps.toFixed(0)} rps (p50 ${g.p50Ms.toFixed(2)} ms, p99 ${g.p99Ms.toFixed(2)} ms); ` +
        `ratio ${(ratio * 100).toFixed(1)}% (target ≥ 70%); cache hits ${hits}, misses ${misses}\n`,
    );
  } finally {
    for (const c of cleanup) await c().catch((err: unknown) => process.stderr.write(`cleanup: ${String(err)}\n`));
  }
}

await main();
