/**
 * Ingest acceptance benchmark: accepted scans/s through StreamScans (grpc-js bidi client →
 * in-process ingest service on port 0 → validation, ownership (shipment directory, cached), Redis dedupe and rate limit,
 * JetStream publish with PubAck; the gateway client runs in a worker thread) versus a raw JetStream async publish of the same ScanRecorded
 * bytes (same `Nats-Msg-Id`s, the same stream configuration from `ensureStreams`) in the same run,
 * against the same nats-server. Raw and ingest runs are paired in rounds (order alternating, to even out
 * drift on a shared machine); the median per-round ratio is the figure to watch (target ≥ 70%).
 * Each round also times the same bytes through the pipelined publisher ingest itself publishes
 * with (`createPipelinedPublisher`, batches of `--batch`): `ratioToPipelined` says how far ingest
 * is from its own publisher's ceiling, where `ratio` also counts what that publisher saves over
 * `js.publish`.
 * `cpuRatio`: this process's main-thread CPU (the service's event loop; the gateway is a worker
 * thread) during an ingest run over that during the paired raw `js.publish` run (Linux only):
 * steadier than the rates when other work shares the machine.
 *
 *   node dist/perf/ingest/ingest-bench.js [--scans 20000] [--shipments 2000] [--batch 100] [--streams 2] [--unacked 32] [--rounds 3] [--window 16]
 *
 * The scans are spread over `--shipments` shipments created first through CreateShipment (10 scans
 * per shipment by default, like the design's sizing); the warm-up run reads each shipment's
 * carriers from the directory once, so the measured rounds are the hot path (cache hits, no
 * directory round trip per scan).
 *
 * The gateway is one worker for the whole run, warmed by the warm-up run and connected before
 * any round, and each run's request messages are encoded before its clock starts, as the raw
 * side's ScanRecorded bytes are: the timed region is opening the streams, ingest's work and the
 * gateway reading the acks, as the raw side's is publishing and reading PubAcks on a warm
 * connection. `--cold-gateway` measures as the bench did before: a new worker per run (a cold
 * isolate: its JIT and grpc-js channel start from nothing) that connects and encodes every
 * request message inside the timed region, which on a 2-core machine took 70-90 ms of a 4 000-scan
 * run before ingest saw its first message (for comparison with figures taken that way).
 *
 * `--phase single` (`all`: after the batched rounds, which the default `batch` runs alone)
 * measures what carriers that stream each scan as it happens cost: `--single-streams` StreamScans
 * calls (200), each sending
 * 1-scan messages with at most `--single-unacked` (1) unanswered, from a separate gateway process,
 * so the CPU of this process during the run is ingest's (process.cpuUsage; nats-server and
 * redis-server are processes of their own). Telemetry runs as in a deployed service (spans
 * recorded, not exported). Its baseline is the same scans published one `js.publish` each with as
 * many unacknowledged, in the same run and process; rounds alternate the order, and the figure to
 * compare across builds is `cpuRatio`, ingest's CPU ms per 1,000 scans over the raw publisher's.
 *
 *   node dist/perf/ingest/ingest-bench.js --phase single|all [--single-scans 10000] [--single-streams 200] [--single-unacked 1] [--single-rounds 3]
 *
 * Starts a private nats-server and redis-server (or uses NATS_URL / REDIS_URL when set). Prints
 * per phase one JSON line, then one human-readable line.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { DEFAULT_MAX_TOKEN_LIFETIME_SEC, ensureDevKeys, mintToken, Scope } from "@logistics/shared/auth";
import { ScanSchema, type Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ScanRecordedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  IngestService,
  ScanOutcome,
  StreamScansRequestSchema,
  StreamScansResponseSchema,
  type StreamScansResponse,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { connectNats, createPipelinedPublisher, ensureStreams, createSubjects } from "@logistics/shared/nats";
import { startService } from "@logistics/shared/runtime";
import { startTelemetry } from "@logistics/shared/telemetry";
import { startNatsServer, startRedisServer, uniqueName } from "@logistics/shared/testing";
import { ingestConfig, recordedEventId, ingestService, normalizeStatus } from "@logistics/ingest";
import { bearer, openScanCall, scanMessage, streamAll, type StreamRun } from "@logistics/ingest/client";
import { median } from "../lib/stats.js";

const { values: args } = parseArgs({
  options: {
    scans: { type: "string", default: "20000" },
    shipments: { type: "string", default: "2000" },
    batch: { type: "string", default: "100" },
    streams: { type: "string", default: "2" },
    unacked: { type: "string", default: "32" },
    rounds: { type: "string", default: "3" },
    window: { type: "string", default: "16" },
    "cold-gateway": { type: "boolean", default: false },
    phase: { type: "string", default: "batch" },
    "single-scans": { type: "string", default: "10000" },
    "single-streams": { type: "string", default: "200" },
    "single-unacked": { type: "string", default: "1" },
    "single-rounds": { type: "string", default: "3" },
  },
});
const TOTAL = Number(args.scans);
const SHIPMENTS = Number(args.shipments);
const BATCH = Number(args.batch);
const STREAMS = Number(args.streams);
const UNACKED = Number(args.unacked);
const ROUNDS = Number(args.rounds);
/** Request messages the service processes at once per stream (INGEST_STREAM_WINDOW). */
const WINDOW = Number(args.window);
const PHASE = args.phase;
const COLD_GATEWAY = args["cold-gateway"] === true;
if (PHASE !== "all" && PHASE !== "batch" && PHASE !== "single") throw new Error(`--phase is all, batch or single, not ${PHASE}`);
const SINGLE = {
  scans: Number(args["single-scans"]),
  streams: Number(args["single-streams"]),
  unacked: Number(args["single-unacked"]),
  rounds: Number(args["single-rounds"]),
};
/** Set in the gateway process of the single-scan phase: its job, as JSON. */
const GATEWAY_JOB_ENV = "INGEST_BENCH_GATEWAY_JOB";
const CARRIER = "acme";
const REGION = "global";

function trackingNumber(k: number): string {
  return `TN${String(k).padStart(10, "0")}`;
}

function scans(run: string, total: number): Scan[] {
  const now = Date.now();
  return Array.from({ length: total }, (_, i) =>
    create(ScanSchema, {
      eventId: `${run}-${i}`,
      trackingNumber: trackingNumber(i % SHIPMENTS),
      carrierCode: CARRIER,
      rawStatus: { code: ["PU", "AR", "DP", "OD", "DL"][i % 5] as string, text: "bench" },
      eventTime: timestampFromMs(now - 60_000),
      hubCode: "FRA",
      note: "benchmark scan",
    }),
  );
}

async function main(): Promise<void> {
  const nats = process.env["NATS_URL"] ? undefined : await startNatsServer();
  const redis = process.env["REDIS_URL"] ? undefined : await startRedisServer();
  const natsUrl = process.env["NATS_URL"] ?? (nats?.url as string);
  const redisUrl = process.env["REDIS_URL"] ?? (redis?.url as string);
  const keysDir = await mkdtemp(join(tmpdir(), "ingest-bench-keys-"));
  // Same client settings as the service (connectNats), so the baseline is the best raw publisher.
  const nc = await connectNats({ servers: natsUrl, name: "ingest-bench-raw" });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const rawSubjects = createSubjects(uniqueName("raw"));
  const svcSubjects = createSubjects(uniqueName("bench"));
  await ensureStreams(jsm, [rawSubjects.streams.scans]);

  const keys = await ensureDevKeys(keysDir);
  const svc = await startService(
    ingestService,
    ingestConfig.parse({
      HOST: "127.0.0.1",
      PORT: "0",
      METRICS_PORT: "0",
      LOG_LEVEL: "silent",
      NATS_URL: natsUrl,
      SUBJECT_PREFIX: svcSubjects.prefix,
      JWT_PUBLIC_KEY_FILE: keys.jwksPath,
      REDIS_URL: redisUrl,
      INGEST_REDIS_KEY_PREFIX: `${svcSubjects.prefix}:`,
      INGEST_REGION: REGION,
      INGEST_RATE_PER_SEC: "100000000",
      INGEST_RATE_BURST: "100000000",
      INGEST_STREAM_WINDOW: String(WINDOW),
      // The single-scan phase opens hundreds of calls on one connection, as one gateway would.
      INGEST_STREAMS_PER_CONNECTION: "0",
      INGEST_STREAMS_PER_PRINCIPAL: "0",
    }),
  );
  const pipelined = createPipelinedPublisher({ nc });
  let closeGateway: () => Promise<void> | undefined = () => undefined;
  try {
    // Raw: the bytes ingest would publish for the same scans, same window of unacknowledged scans.
    // `js`: one js.publish per message (the issue's baseline); `pipelined`: the publisher ingest uses.
    const rawRun = async (run: string, total = TOTAL, mode: "js" | "pipelined" = "js", unacked = STREAMS * WINDOW * BATCH) => {
      const subject = rawSubjects.scanRecorded(REGION, CARRIER);
      const events = scans(run, total).map((scan) => {
        const id = recordedEventId(scan.carrierCode, scan.eventId);
        const n = normalizeStatus(scan.carrierCode, scan.rawStatus?.code ?? "");
        const bytes = toBinary(
          ScanRecordedSchema,
          create(ScanRecordedSchema, { eventId: id, scan, status: n.status, kind: n.kind, recordedAt: timestampFromMs(Date.now()), region: REGION }),
        );
        return { id, bytes };
      });
      // By default the same number of scans awaiting a PubAck as the service has at most: streams × window × batch.
      const window = unacked;
      let next = 0;
      let stored = 0;
      const cpu0 = mainThreadCpuMs();
      const started = performance.now();
      if (mode === "js") {
        await Promise.all(
          Array.from({ length: Math.min(window, events.length) }, async () => {
            while (next < events.length) {
              const e = events[next++]!;
              const ack = await js.publish(subject, e.bytes, { msgID: e.id });
              if (!ack.duplicate) stored++;
            }
          }),
        );
      } else {
        // The publisher ingest uses, batches of `--batch` as ingest sends them, as many at once.
        await Promise.all(
          Array.from({ length: Math.min(STREAMS * WINDOW, Math.ceil(events.length / BATCH)) }, async () => {
            while (next < events.length) {
              const batch = events.slice(next, (next += BATCH));
              const acks = await pipelined.publishAll(batch.map((e) => ({ subject, typeName: ScanRecordedSchema.typeName, payload: e.bytes, msgId: e.id })));
              for (const a of acks) if (!(a instanceof Error) && !a.duplicate) stored++;
            }
          }),
        );
      }
      const seconds = (performance.now() - started) / 1000;
      const cpu1 = mainThreadCpuMs();
      lastRawRunCpuMs = cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 : undefined;
      if (stored !== events.length) throw new Error(`raw run stored ${stored} of ${events.length}`);
      return stored / seconds;
    };

    // Tokens for the whole run (like RUN_TOKEN_LIFETIME_SECONDS of the mesh runs): the longest
    // the service accepts by default.
    const token = await mintToken({
      privateJwkPath: keys.privateJwkPath,
      issuer: "logistics-dev",
      audience: "logistics-mesh",
      subject: "bench",
      scopes: [Scope.ScansWrite],
      carrier: CARRIER,
      expiresIn: DEFAULT_MAX_TOKEN_LIFETIME_SEC,
    });
    // The gateway runs in a worker thread, as a separate gateway process would: its encoding
    // work does not share the service's event loop. One warm worker for the run (see the header),
    // or with --cold-gateway a new one per run.
    const gateway = COLD_GATEWAY ? undefined : await startGatewayWorker(svc.port);
    closeGateway = () => gateway?.close();
    const ingestRun = async (run: string, total = TOTAL) => {
      const job: GatewayJob = { port: svc.port, token, run, total, batch: BATCH, streams: STREAMS, unacked: UNACKED };
      const m = gateway ? await gateway.run(job) : await coldGatewayRun(job);
      const top = Object.entries(m.outcomes).sort((a, b) => b[1] - a[1]).slice(0, 5);
      if (m.accepted !== total) throw new Error(`ingest accepted ${m.accepted} of ${total}: ${JSON.stringify(Object.fromEntries(top))}`);
      return m.accepted / m.seconds;
    };

    // The shipments the scans belong to, created as an order system would.
    const orders = createClient(IngestService, createGrpcTransport({ baseUrl: svc.url }));
    const orderHeaders = {
      authorization: `Bearer ${await mintToken({
        privateJwkPath: keys.privateJwkPath,
        issuer: "logistics-dev",
        audience: "logistics-mesh",
        subject: "bench-orders",
        scopes: [Scope.ShipmentsWrite],
        expiresIn: DEFAULT_MAX_TOKEN_LIFETIME_SEC,
      })}`,
    };
    let nextShipment = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (nextShipment < SHIPMENTS) {
          const k = nextShipment++;
          await orders.createShipment(
            {
              idempotencyKey: `bench-order-${k}`,
              trackingNumber: trackingNumber(k),
              carrierCode: CARRIER,
              customerId: "bench-customer",
              serviceLevel: ServiceLevel.STANDARD,
              origin: { countryCode: "DE", city: "Frankfurt", location: { latitude: 50.11, longitude: 8.68 } },
              destination: { countryCode: "US", city: "Chicago", location: { latitude: 41.88, longitude: -87.63 } },
              parcel: { weightGrams: 1000 },
            },
            { headers: orderHeaders },
          );
        }
      }),
    );

    if (PHASE !== "single") {
      // Warm-up: one scan per shipment (JIT, connections, and each shipment's owners read from the
      // directory once, as a gateway's steady state has them cached).
      await rawRun(uniqueName("warm_raw"), SHIPMENTS);
      await rawRun(uniqueName("warm_rawp"), SHIPMENTS, "pipelined");
      await ingestRun(uniqueName("warm_ingest"), SHIPMENTS);
      await batchPhase(rawRun, ingestRun);
    }
    if (PHASE !== "batch") await singlePhase(rawRun, svc.port, token);
  } finally {
    await closeGateway();
    await svc.close();
    pipelined.close();
    await nc.close();
    await redis?.stop();
    await nats?.stop();
    await rm(keysDir, { recursive: true, force: true });
  }
}


type RawRun = (run: string, total?: number, mode?: "js" | "pipelined", unacked?: number) => Promise<number>;

/** The batched rounds: accepted scans/s through StreamScans (`--batch` scans a message) vs raw JetStream publish. */
async function batchPhase(rawRun: RawRun, ingestRun: (run: string) => Promise<number>): Promise<void> {
  const rounds: Array<{ raw: number; rawPipelined: number; ingest: number; ratio: number; ratioToPipelined: number; cpuRatio?: number }> = [];
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate the order so drift on a shared machine does not favour one side.
    let raw = 0;
    let rawPipelined = 0;
    let ingest = 0;
    let rawCpu: number | undefined;
    let ingestCpu: number | undefined;
    const timedRaw = async () => {
      raw = await rawRun(uniqueName("raw"));
      rawCpu = lastRawRunCpuMs;
    };
    const timedIngest = async () => {
      const c0 = mainThreadCpuMs();
      ingest = await ingestRun(uniqueName("ing"));
      const c1 = mainThreadCpuMs();
      ingestCpu = c0 !== undefined && c1 !== undefined ? c1 - c0 : undefined;
    };
    if (r % 2 === 0) {
      await timedRaw();
      rawPipelined = await rawRun(uniqueName("rawp"), TOTAL, "pipelined");
      await timedIngest();
    } else {
      await timedIngest();
      rawPipelined = await rawRun(uniqueName("rawp"), TOTAL, "pipelined");
      await timedRaw();
    }
    rounds.push({
      raw: Math.round(raw),
      rawPipelined: Math.round(rawPipelined),
      ingest: Math.round(ingest),
      ratio: Number((ingest / raw).toFixed(3)),
      ratioToPipelined: Number((ingest / rawPipelined).toFixed(3)),
      ...(rawCpu && ingestCpu !== undefined ? { cpuRatio: Number((ingestCpu / rawCpu).toFixed(2)) } : {}),
    });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const report = {
    name: "ingest-stream-scans-vs-raw-jetstream",
    scans: TOTAL,
    shipments: SHIPMENTS,
    batch: BATCH,
    streams: STREAMS,
    unackedMessagesPerStream: UNACKED,
    serviceWindow: WINDOW,
    rounds,
    rawPublishPerSec: median(rounds.map((x) => x.raw)),
    rawPipelinedPublishPerSec: median(rounds.map((x) => x.rawPipelined)),
    ingestAcceptedPerSec: median(rounds.map((x) => x.ingest)),
    ratio: median(rounds.map((x) => x.ratio)),
    ratioToPipelined: median(rounds.map((x) => x.ratioToPipelined)),
    target: 0.7,
    // Main-thread CPU of an ingest run (the service: the gateway is a worker thread) over that of
    // a raw js.publish run of the same scans; steadier than the rates on a shared machine.
    ...(rounds.every((x) => x.cpuRatio !== undefined) ? { cpuRatio: median(rounds.map((x) => x.cpuRatio as number)) } : {}),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.stdout.write(
    `ingest StreamScans ${report.ingestAcceptedPerSec} accepted scans/s vs raw JetStream publish ${report.rawPublishPerSec}/s ` +
      `(medians of ${ROUNDS} paired rounds): ratio ${(report.ratio * 100).toFixed(1)}% (target >= 70%); ` +
      `per round ${rounds.map((x) => `${(x.ratio * 100).toFixed(0)}%`).join(", ")}; ` +
      `vs the same bytes through ingest's pipelined publisher (${report.rawPipelinedPublishPerSec}/s): ${(report.ratioToPipelined * 100).toFixed(1)}%` +
      `${report.cpuRatio !== undefined ? `; main-thread CPU per scan ${report.cpuRatio}x raw js.publish's` : ""}\n`,
  );
}

/**
 * CPU time of this process's main thread in ms (Linux: /proc, in clock ticks of 10 ms), or
 * undefined where it cannot be read. The worker threads' CPU (the batched phase's gateway) is not in it.
 */
function mainThreadCpuMs(): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces): utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SEC;
  } catch {
    return undefined;
  }
}
/** Main-thread CPU ms of the last raw run's timed region (its events are encoded before it). */
let lastRawRunCpuMs: number | undefined;
/** USER_HZ, the unit of /proc's CPU times: 100 on every Linux architecture Node.js runs on. */
const CLOCK_TICKS_PER_SEC = 100;

/** What a gateway reports back. */
interface GatewayResult {
  accepted: number;
  seconds: number;
  outcomes: Record<string, number>;
}

/** Runs {@link gateway} in a process of its own, so the CPU this process uses meanwhile is the service's. */
function gatewayProcess(job: GatewayJob): Promise<GatewayResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), process.argv.slice(2), {
      env: { ...process.env, [GATEWAY_JOB_ENV]: JSON.stringify(job) },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    let result: GatewayResult | undefined;
    child.once("message", (m) => (result = m as GatewayResult));
    child.once("error", reject);
    child.once("exit", (code) => (result ? resolve(result) : reject(new Error(`gateway process exited with ${code} and no result`))));
  });
}

/**
 * The single-scan phase (see the header): ingest's CPU per 1,000 scans when every message
 * carries one scan, over many streams, against raw `js.publish` of the same scans.
 */
async function singlePhase(rawRun: RawRun, port: number, token: string): Promise<void> {
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  /** Scans/s and CPU ms of this process per 1,000 scans while `run` runs. */
  const measured = async (total: number, run: () => Promise<number>) => {
    const cpu0 = cpuMs();
    const t0 = performance.now();
    const done = await run();
    const wallMs = performance.now() - t0;
    const cpu = cpuMs() - cpu0;
    return { perSec: done / (wallMs / 1000), cpuMsPer1k: (cpu * 1000) / total, cpuShare: cpu / wallMs };
  };
  const ingestRun = (run: string, total: number) =>
    measured(total, async () => {
      const job: GatewayJob = { port, token, run, total, batch: 1, streams: SINGLE.streams, unacked: SINGLE.unacked };
      const m = await gatewayProcess(job);
      if (m.accepted !== total) {
        const top = Object.entries(m.outcomes).sort((a, b) => b[1] - a[1]).slice(0, 5);
        throw new Error(`ingest accepted ${m.accepted} of ${total}: ${JSON.stringify(Object.fromEntries(top))}`);
      }
      return m.accepted;
    });
  const raw = (run: string, total: number) =>
    measured(total, async () => {
      await rawRun(run, total, "js", SINGLE.streams * SINGLE.unacked);
      return total;
    });

  // A deployed service records every span (runMain starts telemetry): so does this phase.
  const telemetry = startTelemetry({ serviceName: "ingest" });
  try {
    // Warm-up as long as a round: the first rounds cost up to half again as much otherwise (JIT).
    await raw(uniqueName("s_warm_raw"), SINGLE.scans);
    await ingestRun(uniqueName("s_warm_ing"), Math.max(SINGLE.scans, SHIPMENTS));
    const rounds: Array<{ ingestPerSec: number; rawPerSec: number; ingestCpuMsPer1k: number; rawCpuMsPer1k: number; ingestCpuShare: number; cpuRatio: number }> = [];
    for (let r = 0; r < SINGLE.rounds; r++) {
      let i: Awaited<ReturnType<typeof measured>>;
      let b: Awaited<ReturnType<typeof measured>>;
      if (r % 2 === 0) {
        b = await raw(uniqueName("s_raw"), SINGLE.scans);
        i = await ingestRun(uniqueName("s_ing"), SINGLE.scans);
      } else {
        i = await ingestRun(uniqueName("s_ing"), SINGLE.scans);
        b = await raw(uniqueName("s_raw"), SINGLE.scans);
      }
      rounds.push({
        ingestPerSec: Math.round(i.perSec),
        rawPerSec: Math.round(b.perSec),
        ingestCpuMsPer1k: Number(i.cpuMsPer1k.toFixed(1)),
        rawCpuMsPer1k: Number(b.cpuMsPer1k.toFixed(1)),
        ingestCpuShare: Number(i.cpuShare.toFixed(2)),
        cpuRatio: Number((i.cpuMsPer1k / b.cpuMsPer1k).toFixed(2)),
      });
    }
    const report = {
      name: "ingest-single-scan-messages-cpu",
      scans: SINGLE.scans,
      streams: SINGLE.streams,
      unackedMessagesPerStream: SINGLE.unacked,
      rounds,
      ingestCpuMsPer1k: Number(median(rounds.map((x) => x.ingestCpuMsPer1k)).toFixed(1)),
      rawCpuMsPer1k: Number(median(rounds.map((x) => x.rawCpuMsPer1k)).toFixed(1)),
      cpuRatio: Number(median(rounds.map((x) => x.cpuRatio)).toFixed(2)),
      ingestAcceptedPerSec: Math.round(median(rounds.map((x) => x.ingestPerSec))),
      rawPublishPerSec: Math.round(median(rounds.map((x) => x.rawPerSec))),
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.stdout.write(
      `ingest, 1-scan messages on ${SINGLE.streams} streams: ${report.ingestCpuMsPer1k} CPU ms per 1,000 scans ` +
        `(${report.ingestAcceptedPerSec} scans/s) vs raw js.publish ${report.rawCpuMsPer1k} ms (${report.rawPublishPerSec}/s): ` +
        `ratio ${report.cpuRatio} (medians of ${SINGLE.rounds} rounds; per round ${rounds.map((x) => x.cpuRatio).join(", ")})\n`,
    );
  } finally {
    await telemetry.shutdown();
  }
}

/** What a gateway worker streams. */
interface GatewayJob {
  port: number;
  token: string;
  run: string;
  total: number;
  batch: number;
  streams: number;
  unacked: number;
}

/**
 * Streams the run's scans over `job.streams` StreamScans calls on `client` and reports accepted
 * scans and seconds. `encodedBeforehand`: the request messages are encoded before the clock
 * starts (the warm gateway); else grpc-js encodes them as they are written (inside it).
 */
async function streamRun(job: GatewayJob, client: grpc.Client, encodedBeforehand: boolean): Promise<GatewayResult> {
  const all = scans(job.run, job.total);
  const perStream = Math.ceil(all.length / job.streams);
  const plans = Array.from({ length: job.streams }, (_, s) => {
    const mine = all.slice(s * perStream, (s + 1) * perStream);
    const messages = [];
    for (let i = 0; i < mine.length; i += job.batch) messages.push(scanMessage(mine.slice(i, i + job.batch)));
    return messages;
  });
  const md = bearer(job.token);
  let started: number;
  let runs: StreamRun[];
  if (encodedBeforehand) {
    const encoded = plans.map((messages) => messages.map((m) => Buffer.from(toBinary(StreamScansRequestSchema, m))));
    started = performance.now();
    runs = await Promise.all(encoded.map((messages) => streamAll(encodedScanCall(client, md), messages, job.unacked)));
  } else {
    started = performance.now();
    runs = await Promise.all(plans.map((messages) => streamAll(openScanCall(client, md), messages, job.unacked)));
  }
  const seconds = (performance.now() - started) / 1000;
  const acks = runs.flatMap((r) => r.responses.flatMap((x) => x.acks));
  const accepted = acks.filter((a) => a.outcome === ScanOutcome.ACCEPTED).length;
  const outcomes: Record<string, number> = {};
  for (const a of acks) {
    const k = `${ScanOutcome[a.outcome]}${a.detail ? ` ${a.detail.slice(0, 80)}` : ""}`;
    outcomes[k] = (outcomes[k] ?? 0) + 1;
  }
  for (const r of runs) if (r.status.code !== 0) outcomes[`stream status ${r.status.code} ${r.status.details}`] = (outcomes[`stream status ${r.status.code} ${r.status.details}`] ?? 0) + 1;
  return { accepted, seconds, outcomes };
}

/** A StreamScans call whose request messages are written as bytes encoded beforehand (the same bytes on the wire). */
function encodedScanCall(client: grpc.Client, md: grpc.Metadata): grpc.ClientDuplexStream<Buffer, StreamScansResponse> {
  return client.makeBidiStreamRequest(
    "/logistics.ingest.v1.IngestService/StreamScans",
    (b: Buffer) => b,
    (b: Buffer) => fromBinary(StreamScansResponseSchema, b),
    md,
  );
}

/** Gateway for one run (a fresh worker or the single phase's process): its own client, encoding inside the timed region. */
async function gateway(job: GatewayJob): Promise<void> {
  const client = new grpc.Client(`127.0.0.1:${job.port}`, grpc.credentials.createInsecure());
  try {
    const result = await streamRun(job, client, false);
    if (parentPort) parentPort.postMessage(result);
    else await new Promise<void>((resolve, reject) => process.send?.(result, (err: Error | null) => (err ? reject(err) : resolve())));
  } finally {
    client.close();
  }
}

/** The --cold-gateway run: a new worker thread for this run only. */
function coldGatewayRun(job: GatewayJob): Promise<GatewayResult> {
  return new Promise((resolve, reject) => {
    // The worker parses the same options (shipments, batch, ...) as this thread.
    const worker = new Worker(new URL(import.meta.url), { workerData: job, argv: process.argv.slice(2) });
    worker.once("message", (m: GatewayResult) => resolve(m));
    worker.once("error", reject);
  });
}

/** What the main thread tells the warm gateway worker: start with this, then one job per run. */
interface WarmGatewayData {
  warm: { port: number };
}

/** The warm gateway (see the header): one worker and one connected client for every batched run. */
async function startGatewayWorker(port: number): Promise<{ run(job: GatewayJob): Promise<GatewayResult>; close(): Promise<void> }> {
  const data: WarmGatewayData = { warm: { port } };
  const worker = new Worker(new URL(import.meta.url), { workerData: data, argv: process.argv.slice(2) });
  const next = () =>
    new Promise<unknown>((resolve, reject) => {
      const onError = (err: Error) => {
        worker.off("message", onMessage);
        reject(err);
      };
      const onMessage = (m: unknown) => {
        worker.off("error", onError);
        resolve(m);
      };
      worker.once("message", onMessage);
      worker.once("error", onError);
    });
  await next(); // connected
  return {
    async run(job) {
      const reply = next();
      worker.postMessage(job);
      return (await reply) as GatewayResult;
    },
    async close() {
      await worker.terminate();
    },
  };
}

/** The warm gateway worker's loop: connect once, then answer each job with its result. */
async function warmGateway(port: number): Promise<void> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())));
  const parent = parentPort as NonNullable<typeof parentPort>;
  parent.on("message", (job: GatewayJob) => {
    streamRun(job, client, true).then(
      (result) => parent.postMessage(result),
      (err: unknown) => {
        throw err;
      },
    );
  });
  parent.postMessage("connected");
}

const gatewayJob = process.env[GATEWAY_JOB_ENV];
if (!isMainThread) {
  const data = workerData as GatewayJob | WarmGatewayData;
  if ("warm" in data) await warmGateway(data.warm.port);
  else await gateway(data);
} else if (gatewayJob) await gateway(JSON.parse(gatewayJob) as GatewayJob);
else await main();
