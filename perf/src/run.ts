/**
 * `npm run perf`: the short performance run (under five minutes). Every target is judged as a
 * ratio against a baseline measured in the same run on the same machine, or as a latency at a
 * stated rate, because absolute numbers on small shared machines are noise. Writes
 * perf/results/<date>/ (summary.md, results.json, ghz JSON, SVG plots).
 *
 * Usage: see USAGE below (`npm run perf -- --help` prints it).
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { DEV_DATA_DIR, provideMeshServers, type MeshServers } from "@logistics/dev";
import { asLoadResult, runE2e, type E2eResult } from "./e2e/e2e-bench.js";
import { postToGhzWeb, toGhzReport, type GhzReport } from "./lib/ghz-report.js";
import { RUN_TOKEN_LIFETIME_SECONDS, startMeshProcesses, scrapeGauges, type MeshProcesses, type MeshService } from "./lib/mesh-processes.js";
import { childPids, CpuSampler, loadAverage, rssMiB, type ProcessGroup } from "./lib/proc.js";
import { writeReport, type ScenarioResult } from "./lib/report.js";
import { SOAK_FLOOR_RULE } from "./lib/floor-verdict.js";
import { judgeSoakMemory, soakMemorySection, type MemorySample } from "./lib/soak-memory.js";
import { mean, slopeVerdict } from "./lib/stats.js";
import {
  collapsed,
  costTable,
  fmtMs,
  highestSustained,
  LOAD_GENERATOR,
  meshTotal,
  nextRate,
  SIZING,
  sizingTable,
  targetRows,
  type BenchFigures,
  type E2eFigures,
} from "./lib/summary.js";
import { linePlot } from "./lib/svg-plot.js";
import { imageNodeMajor, runtimeNote } from "./lib/runtime.js";

const here = dirname(fileURLToPath(import.meta.url)); // perf/dist
const repoRoot = resolve(here, "..", "..");
const resultsRoot = join(repoRoot, "perf", "results");

const USAGE = `  npm run perf                          short run: service benches, then end to end at 300/s and a
                                        search for the highest sustained rate (1,000/s next if 300/s holds)
  npm run perf -- --only e2e            some parts only (ingest, get-shipment, route-planning, notification-claim, store-apply, e2e)
  npm run perf -- --label "before"      a label in the report's title (e.g. before/after a change)
  npm run perf -- --soak                10-minute soak at 70% of the last report's highest sustained rate
  npm run perf -- --soak --soak-rate 200 --soak-minutes 10
  npm run perf -- --rejudge-soak perf/results/<dir>   a soak's memory samples judged again (writes soak-memory-floors.md)
  npm run perf -- --ghz-web URL         also post the ghz reports to a ghz-web server
  npm run perf -- --only e2e --service-node-args=--max-semi-space-size=32   a Node.js setting for every service (options starting with -- need the = form)
  npm run perf -- --scenario-hour 1     the scenario's routes planned from 01:00 UTC whatever the hour (they change hourly otherwise)
  npm run perf -- --warmup-seconds 0    end-to-end windows right after the ramp (cold processes; default 10 s at the full rate first)
  npm run perf -- --only e2e --profile  also CPU profiles of every service in each end-to-end run
                                        (<results>/profiles/e2e-<rate>/<service>/*.cpuprofile)
`;

const { values: args } = parseArgs({
  options: {
    help: { type: "boolean", short: "h", default: false },
    soak: { type: "boolean", default: false },
    "soak-minutes": { type: "string", default: "10" },
    "soak-rate": { type: "string" },
    /** A soak report's folder: its memory samples judged again by today's rule (nothing is started). */
    "rejudge-soak": { type: "string" },
    "ghz-web": { type: "string" },
    out: { type: "string" },
    only: { type: "string" },
    label: { type: "string" },
    /** Every service of every end-to-end run under `node --cpu-prof` (profiles next to the report). */
    profile: { type: "boolean", default: false },
    /** Node.js options for every service of every end-to-end run (space-separated), e.g. "--max-semi-space-size=32": trying a runtime setting. */
    "service-node-args": { type: "string" },
    /** Wall-clock budget of this process (the build before it is not counted). */
    "budget-seconds": { type: "string", default: "280" },
    /** Rates tried first; the search continues from them (1,000/s next while nothing failed). */
    rates: { type: "string", default: "300" },
    /** Only the rates given with --rates (no search beyond them): paired comparisons at fixed rates. */
    "no-search": { type: "boolean", default: false },
    /** Settle bound of every end-to-end run (default: 15 s at 300/s, 8 s otherwise). */
    "settle-seconds": { type: "string" },
    /**
     * Seconds at the full rate between each end-to-end run's ramp and its window: every run starts
     * a fresh mesh, and its first seconds (unoptimized code, empty pools and caches) are a cold
     * start, not the rate it sustains. 0 measures from the ramp's end (the harness before 2026-12-05).
     */
    "warmup-seconds": { type: "string", default: "10" },
    /** The UTC hour of day the scenario's routes are planned from (default: the hour the run starts). */
    "scenario-hour": { type: "string" },
  },
});

if (args.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

const started = performance.now();
const budgetMs = Number(args["budget-seconds"]) * 1000;
const remainingMs = () => budgetMs - (performance.now() - started);
const stamp = new Date().toISOString().replace(/[:]/g, "-").replace(/\..+$/, "");
const outDir = resolve(args.out ?? join(resultsRoot, stamp));
const wanted = (name: string) => !args.only || args.only.split(",").includes(name);
const log = (line: string) => process.stdout.write(`${line}\n`);

const MESH: MeshService[] = ["ingest", "routing", "tracking", "notification"];
/**
 * Memory sampling period of the soak. A window's lowest sample sits above the true low after a GC
 * by up to this period × how fast the heap climbs between GCs (ingest: ~2.4 MiB/s at 140 scans/s,
 * so up to 24 MiB with 10 s samples, 5 MiB with 2 s).
 */
const MEMORY_SAMPLE_MS = 2_000;
/** Ingest's per-carrier rate limit is raised so the harness measures capacity, not the limiter's setting. */
/**
 * The harness is one principal on one connection per service: it watches every shipment in flight
 * (like a backend for many users) and streams at full rate, so per-caller limits are off.
 */
const MESH_ENV = {
  INGEST_RATE_PER_SEC: "1000000",
  INGEST_RATE_BURST: "1000000",
  TRACKING_WATCHES_PER_CONNECTION: "0",
  TRACKING_WATCHES_PER_PRINCIPAL: "0",
  // One webhook receiver takes every webhook of the run (~0.5 per scan): with the default 4
  // requests in flight per endpoint it, not the mesh, capped deliveries at ~50-100/s.
  NOTIFICATION_ENDPOINT_CONCURRENCY: "32",
};

function gitDescribe(): string {
  try {
    const hash = execFileSync("git", ["-C", repoRoot, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
    const subject = execFileSync("git", ["-C", repoRoot, "log", "-1", "--format=%s"], { encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["-C", repoRoot, "status", "--porcelain", "--", "services", "dev", "perf/src"], { encoding: "utf8" }).trim();
    return `${hash} (${subject})${dirty ? " with uncommitted changes" : ""}`;
  } catch {
    return "unknown";
  }
}

/** The runtime line of a report (see {@link runtimeNote}). */
function runtimeLine(): string {
  const dockerfile = join(repoRoot, "Dockerfile");
  return runtimeNote(process.version, existsSync(dockerfile) ? imageNodeMajor(readFileSync(dockerfile, "utf8")) : undefined);
}

function machineLine(): string {
  return `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
}

/** Runs a compiled bench script (bounded in time) and returns the last JSON object it printed. */
async function runBench(script: string, argv: string[], env: Record<string, string>, timeoutMs: number): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, [join(here, script), ...argv], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (d: string) => {
    out += d;
    process.stdout.write(d);
  });
  const timer = setTimeout(() => child.kill("SIGTERM"), timeoutMs);
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${script} exited with ${code ?? "a signal"}${code === null ? ` (time limit ${timeoutMs / 1000} s)` : ""}`);
  const lines = out.trim().split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    if (!lines[i]!.startsWith("{")) continue;
    for (let j = i; j < lines.length; j++) {
      if (!lines[j]!.startsWith("}") && j !== i) continue;
      try {
        const v = JSON.parse(lines.slice(i, j + 1).join("\n")) as unknown;
        if (v && typeof v === "object") return v as Record<string, unknown>;
      } catch {
        // not a complete object yet
      }
    }
  }
  throw new Error(`${script} printed no JSON summary`);
}

interface BenchSpec {
  name: string;
  script: string;
  args: string[];
  env?: Record<string, string>;
  timeoutMs: number;
  target: string;
}

/** Service benches, each against its own same-run baseline; sized to fit the short run. */
const BENCHES: BenchSpec[] = [
  {
    name: "ingest",
    script: "ingest/ingest-bench.js",
    // Rounds of 12,000 scans (about half a second each way here): 4,000 took ~0.2 s, and single
    // rounds then swung 0.55-1.14 between runs on a shared machine.
    args: ["--scans", "12000", "--shipments", "1200", "--rounds", "5"],
    timeoutMs: 75_000,
    target: "accepted rate >= 70% of raw JetStream publish",
  },
  {
    name: "get-shipment",
    script: "tracking/get-shipment-bench.js",
    args: [],
    env: { BENCH_SECONDS: "2", BENCH_ROUNDS: "3", BENCH_SHIPMENTS: "100" },
    timeoutMs: 50_000,
    target: "GetShipment (cache hit) >= 70% of a bare echo RPC",
  },
  { name: "route-planning", script: "routing/plan-bench.js", args: ["800"], timeoutMs: 30_000, target: "earliest-arrival planning vs static Dijkstra (reported)" },
  {
    name: "notification-claim",
    script: "notification/claim-bench.js",
    args: ["--small", "1000", "--large", "20000", "--claims", "40", "--rounds", "3"],
    timeoutMs: 45_000,
    target: "claimDue calls/s with 20,000 due deliveries >= 80% of the rate with 1,000 (the claim does not grow with the backlog)",
  },
  {
    name: "store-apply",
    script: "store/apply-bench.js",
    // 40,000 events a round: the raw side lasts ~0.5 s (at 3,000 it lasted ~50 ms and rounds swung 5%-32%).
    args: ["--events", "40000", "--rounds", "3", "--per-event", "600"],
    timeoutMs: 150_000,
    target: "batched apply >= 25% of a raw multi-row write of the same rows (history, claims, shipments); vs the history rows alone and the per-event apply reported",
  },
];

function benchFigures(j: Record<string, Record<string, unknown>>): BenchFigures {
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
  const out: BenchFigures = {};
  const ing = j["ingest"];
  if (ing && num(ing["ratio"]) !== undefined) {
    out.ingest = { ratio: num(ing["ratio"])!, ingestPerSec: num(ing["ingestAcceptedPerSec"]) ?? NaN, rawPerSec: num(ing["rawPublishPerSec"]) ?? NaN };
  }
  const st = j["store-apply"];
  // The target's reference is a raw multi-row write of the same rows the apply writes (history,
  // claims, shipments); the history rows alone, the reference of earlier reports, are shown beside.
  if (st && num(st["ratioBatchedVsRawAllRows"]) !== undefined) {
    out.store = {
      ratio: num(st["ratioBatchedVsRawAllRows"])!,
      batchedPerSec: num((st["adapterBatched"] as Record<string, unknown>)?.["eventsPerSec"]) ?? NaN,
      rawPerSec: num((st["rawAllRows"] as Record<string, unknown>)?.["eventsPerSec"]) ?? NaN,
      historyOnly: {
        ratio: num(st["ratioBatchedVsRaw"]) ?? NaN,
        rawPerSec: num((st["rawInsert"] as Record<string, unknown>)?.["rowsPerSec"]) ?? NaN,
      },
    };
  }
  const cl = j["notification-claim"];
  if (cl && num(cl["ratio"]) !== undefined) {
    out.claim = {
      ratio: num(cl["ratio"])!,
      largePerSec: num(cl["largeClaimsPerSec"]) ?? NaN,
      smallPerSec: num(cl["smallClaimsPerSec"]) ?? NaN,
      large: num(cl["largeBacklog"]) ?? NaN,
      small: num(cl["smallBacklog"]) ?? NaN,
    };
  }
  const gs = j["get-shipment"];
  if (gs && num(gs["ratio"]) !== undefined) {
    out.getShipment = {
      ratio: num(gs["ratio"])!,
      getPerSec: num((gs["getShipment"] as Record<string, unknown>)?.["rps"]) ?? NaN,
      echoPerSec: num((gs["echo"] as Record<string, unknown>)?.["rps"]) ?? NaN,
    };
  }
  return out;
}

/** PostgreSQL and Redis of their own (unless given), so their CPU is the mesh's alone. */
interface Infra {
  /** PostgreSQL for the end-to-end runs (its postmaster's pid when started here). */
  pg: { url: string; pid?: number };
  redis: { url: string };
  redisPid?: number;
  notes: string[];
}

/** The servers of the whole run, provided once (see {@link provideMeshServers}) before any bench. */
let servers: MeshServers | undefined;

function startInfra(): Infra {
  if (!servers) throw new Error("the run's servers are not provided");
  const notes: string[] = [];
  notes.push(
    servers.pids.postgres
      ? `PostgreSQL: a private cluster on loopback for the runs (${servers.postgres ? `${servers.postgres.version}, ${servers.postgres.binaries} binaries; ` : ""}fsync and synchronous_commit on, shared_buffers 128 MB); ` +
          `its CPU is the postmaster and all its children (backends, WAL writer, checkpointer, autovacuum).`
      : `PostgreSQL: DATABASE_URL (not started here); its CPU cannot be told apart from other users' and is left out of the cost table.`,
  );
  notes.push(
    `Redis: ${servers.pids.redis ? "a private redis-server" : "REDIS_URL (not started here, its CPU is not counted)"} for the end-to-end runs; NATS: a private nats-server per mesh.`,
  );
  return {
    pg: { url: servers.databaseUrl, ...(servers.pids.postgres ? { pid: servers.pids.postgres } : {}) },
    redis: { url: servers.redisUrl },
    ...(servers.pids.redis ? { redisPid: servers.pids.redis } : {}),
    notes,
  };
}

function cpuGroups(mesh: MeshProcesses, infra: Infra): ProcessGroup[] {
  const groups: ProcessGroup[] = MESH.map((name) => ({ name, pids: () => [mesh.pids[name]] }));
  if (mesh.nats.pid) groups.push({ name: "nats-server", pids: () => [mesh.nats.pid!] });
  if (infra.redisPid) groups.push({ name: "redis-server", pids: () => [infra.redisPid!] });
  const pgPid = infra.pg.pid;
  if (pgPid) groups.push({ name: "postgres", pids: () => [pgPid, ...childPids(pgPid)] });
  return groups;
}

/** The serializable figures of a run (results.json and the tables). */
function figures(r: E2eResult): E2eFigures {
  return {
    rate: r.rate,
    offeredPerSec: r.offered.perSec,
    sentPerSec: r.sent.perSec,
    ackedPerSec: r.acked.perSec,
    clientUnacked: r.backlogAtEnd.clientUnacked,
    maxConsumerBacklog: r.backlogAtEnd.maxConsumer,
    sustained: r.sustained,
    failed: r.failed,
    p50: r.p50,
    p99: r.p99,
    visibleMissing: r.visible.missing,
    visibleByLaterVersion: r.visible.byLaterVersion,
    webhooks: r.webhooks,
    cost: r.cost,
    load: r.load,
  };
}

/** `--service-node-args`, split on spaces. */
const serviceNodeArgs = (args["service-node-args"] ?? "").split(" ").filter((a) => a !== "");

/** One end-to-end run on a fresh mesh (an overloaded rate would leave a backlog that pollutes the next). */
async function e2eAt(infra: Infra, rate: number, windowMs: number, settleMs: number): Promise<{ result: E2eResult; wallMs: number }> {
  const t = performance.now();
  log(`e2e ${rate}/s: starting the mesh (load ${loadAverage()[0]})`);
  const mesh = await startMeshProcesses(
    MESH_ENV,
    { databaseUrl: infra.pg.url, redisUrl: infra.redis.url },
    {
      nodeArgs: (service) => [
        ...serviceNodeArgs,
        ...(args.profile ? ["--cpu-prof", `--cpu-prof-dir=${join(outDir, "profiles", `e2e-${rate}`, service)}`] : []),
      ],
    },
  );
  log(`e2e ${rate}/s: mesh up after ${((performance.now() - t) / 1000).toFixed(1)} s`);
  try {
    const result = await runE2e(mesh, {
      rate,
      windowMs,
      settleMs,
      warmupMs: Number(args["warmup-seconds"]) * 1000,
      ...(args["scenario-hour"] !== undefined ? { scenarioHourUtc: Number(args["scenario-hour"]) } : {}),
      cpu: new CpuSampler(cpuGroups(mesh, infra), LOAD_GENERATOR),
      databaseUrl: infra.pg.url,
      log,
    });
    log(
      `e2e ${rate}/s: offered ${result.offered.perSec.toFixed(0)}/s, sent ${result.sent.perSec.toFixed(0)}/s, acked in window ${result.acked.perSec.toFixed(0)}/s, ` +
        `ack→visible p99 ${fmtMs(result.p99.ackToVisibleMs)}, ack→webhook p99 ${fmtMs(result.p99.ackToWebhookMs)} ` +
        `(${result.webhooks.received}/${result.webhooks.expected}), mesh ${meshTotal(result.cost.perThousandScans).toFixed(0)} ms CPU per 1,000 scans, ` +
        `sustained ${result.sustained}${result.sustained ? "" : ` (${result.failed.join("; ")})`}`,
    );
    await snapshotMetrics(mesh, join(outDir, "metrics", `e2e-${rate}`));
    return { result, wallMs: performance.now() - t };
  } finally {
    await mesh.close();
  }
}

/**
 * Every service's Prometheus exposition after a run (the notices taken or read, the projector's
 * batch sizes, the store's round trips...): what a counter says about where the time went.
 */
async function snapshotMetrics(mesh: MeshProcesses, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await Promise.all(
    MESH.map(async (svc) => {
      const text = await fetch(`http://127.0.0.1:${mesh.metricsPorts[svc]}/metrics`).then(
        (r) => r.text(),
        (err: unknown) => `# not scraped: ${String(err)}\n`,
      );
      await writeFile(join(dir, `${svc}.prom`), text);
    }),
  );
}

/** `<stream>/<durable>` without the run's unique stream prefix: `SCANS/tracking-scans`. */
function durableLabel(name: string): string {
  return name.replace(/^[^/]*_([A-Z]+\/)/, "$1");
}

function throughputPlot(name: string, r: E2eResult): string {
  const pick = (k: "sent" | "acked" | "visible" | "webhooks") => ({ label: `${k}/s`, points: r.timeline.map((x) => [x.t, x[k]] as const) });
  return linePlot([pick("sent"), pick("acked"), pick("visible"), pick("webhooks")], {
    title: `${name}: per second (0 = window start; before: ramp, after ${r.windowMs / 1000} s: settle)`,
    xLabel: "second",
    yLabel: "scans / webhooks per second",
  });
}

function backlogPlot(name: string, samples: E2eResult["backlog"]): string {
  const consumers = [...new Set(samples.flatMap((s) => Object.keys(s.perConsumer)))];
  const short = (c: string) => durableLabel(c).slice(0, 40);
  return linePlot(
    consumers.map((c) => ({ label: short(c), points: samples.map((s) => [s.t, s.perConsumer[c] ?? 0] as const) })),
    { title: `${name}: JetStream backlog per durable (pending + ack pending)`, xLabel: "second", yLabel: "messages" },
  );
}

function e2eRow(r: E2eResult): string {
  const b = r.backlogAtEnd;
  return (
    `| ${r.rate} | ${r.offered.perSec.toFixed(0)} | ${r.sent.perSec.toFixed(0)} (max lag ${fmtMs(r.sent.maxLagMs)}) | ${r.acked.perSec.toFixed(0)} | ` +
    `${b.clientUnacked} / ${b.maxConsumer} | ${fmtMs(r.p50.sendToAckMs)} / ${fmtMs(r.p99.sendToAckMs)} | ${fmtMs(r.p50.ackToVisibleMs)} / ${fmtMs(r.p99.ackToVisibleMs)} | ` +
    `${r.visible.missing} | ${r.webhooks.received} / ${r.webhooks.expected} | ${fmtMs(r.p50.ackToWebhookMs)} / ${fmtMs(r.p99.ackToWebhookMs)} | ` +
    `${r.sustained ? "yes" : `no: ${r.failed.join("; ")}`} | ${r.load.start[0]?.toFixed(1)} → ${r.load.end[0]?.toFixed(1)} |`
  );
}

function e2eScenario(r: E2eResult, best: boolean): ScenarioResult {
  const label = best && r.rate !== 300 ? `e2e-${r.rate}-highest-sustained` : `e2e-${r.rate}`;
  const goal = r.rate === 300 ? 250 : 1000;
  const s = r.scenario;
  return {
    name: label,
    description:
      `Open-loop schedule at ${r.rate} scans/s offered for a ${r.windowMs / 1000} s window, after a ${((r.timing.rampMs - (r.timing.warmupMs ?? 0)) / 1000).toFixed(1)} s ramp ` +
      `${r.timing.warmupMs ? `and ${(r.timing.warmupMs / 1000).toFixed(0)} s at the full rate (warm-up, on fresh processes)` : "(warm-up)"}. Shipments created through CreateShipment at the matching rate (${r.offered.shipments} in the window), each scanned along ` +
      `its planned route (${s.scansPerShipment.min}–${s.scansPerShipment.max} scans, mean ${s.scansPerShipment.mean.toFixed(1)}, ${s.scanGapMs} ms apart, ` +
      `over ${s.streams} StreamScans calls) and watched through WatchShipment from creation to delivery (peak ${s.watchersPeak} watchers); ` +
      `a webhook subscription for the carrier. All four services as separate processes with NATS, PostgreSQL and Redis on this machine. ` +
      `The series is ack → visible; the "baseline" series is ack → webhook of the same scans.`,
    result: asLoadResult(r.ackToVisible, r.windowMs),
    baseline: { name: `${label} ack→webhook`, result: asLoadResult(r.ackToWebhook, r.windowMs) },
    target: {
      text: `ack → visible p99 <= ${goal} ms`,
      met: r.p99.ackToVisibleMs <= goal,
      value: `${fmtMs(r.p99.ackToVisibleMs)}${r.sustained ? "" : ", rate not sustained"}`,
    },
    notes: [
      `offered ${r.offered.scans} scans in the window (${r.offered.perSec.toFixed(0)}/s); sent by its end ${r.sent.inWindow} (${r.sent.perSec.toFixed(0)}/s); ` +
        `sends more than 100 ms behind schedule ${r.sent.lateOver100ms}, max lag ${fmtMs(r.sent.maxLagMs)}` +
        (r.sent.creationFailures ? `; ${r.sent.creationFailures} CreateShipment calls failed (${r.sent.droppedForFailedCreation} scans not sent)` : ""),
      `acks received within the window ${r.acked.inWindow} (${r.acked.perSec.toFixed(0)}/s); window scans acked only after it ${r.acked.afterWindow}; rejected ${r.acked.rejected}` +
        (Object.keys(r.acked.rejectReasons).length ? ` (${Object.entries(r.acked.rejectReasons).map(([k, v]) => `${v}× ${k}`).join("; ")})` : ""),
      `backlog at the window's end: ${r.backlogAtEnd.clientUnacked} scans unacked at the client; per durable ` +
        `${Object.entries(r.backlogAtEnd.perConsumer).map(([k, v]) => `${durableLabel(k)} ${v}`).join(", ") || "—"}`,
      `send → ack (from the intended send time) p50 ${fmtMs(r.p50.sendToAckMs)}, p99 ${fmtMs(r.p99.sendToAckMs)}`,
      `ack → visible p50 ${fmtMs(r.p50.ackToVisibleMs)}, p99 ${fmtMs(r.p99.ackToVisibleMs)}; never visible by the end of settling: ${r.visible.missing}; first seen inside a later version of their shipment: ${r.visible.byLaterVersion}`,
      `webhooks implied by the visible status changes: ${r.webhooks.expected}, received ${r.webhooks.received}, missing ${r.webhooks.missing}` +
        `${r.webhooks.unknownForInvisible ? ` (plus unknown for ${r.webhooks.unknownForInvisible} scans never visible)` : ""}; ` +
        `other webhooks (creations) ${r.webhooks.otherReceived}; ack → webhook p50 ${fmtMs(r.p50.ackToWebhookMs)}, p99 ${fmtMs(r.p99.ackToWebhookMs)}`,
      `settled ${r.timing.settledEarly ? "completely" : "until the bound"} after ${(r.timing.settleMs / 1000).toFixed(1)} s; setup ${(r.timing.setupMs / 1000).toFixed(1)} s`,
      `sustained (acked in the window ≥ 98% of offered, backlog at its end ≤ 1 s of traffic, ack → visible p99 ≤ 1 s): ${r.sustained ? "yes" : `no — ${r.failed.join("; ")}`}`,
      `load average ${r.load.start.map((x) => x.toFixed(1)).join(" ")} at start, ${r.load.end.map((x) => x.toFixed(1)).join(" ")} at the window's end; ` +
        `machine busy ${r.cost.machineBusyCores.toFixed(2)} of 2 cores in the window, ${r.cost.otherCores.toFixed(2)} of them outside this run`,
    ],
    plots: [
      { file: `${label}-throughput.svg`, svg: throughputPlot(label, r), title: "throughput" },
      { file: `${label}-backlog.svg`, svg: backlogPlot(label, r.backlog), title: "backlog" },
    ],
  };
}

/** The statements that took PostgreSQL's time in one run's window (pg_stat_statements). */
function statementsSection(r: E2eFigures): string[] {
  const st = r.cost.pg?.statements;
  if (!st || st.length === 0) return [];
  return [
    `## PostgreSQL statements at ${r.rate}/s`,
    "",
    "From pg_stat_statements (with planning tracked), reset when the window opened: calls per accepted scan, and planning and " +
      "execution time per 1,000 scans, the statements that took the most time first. The server's CPU beyond these is " +
      "connection and protocol work, commits and WAL writing, and background processes.",
    "",
    "| statement | calls / scan | rows / call | plan ms per 1,000 scans | exec ms per 1,000 scans |",
    "|---|---:|---:|---:|---:|",
    ...st.map((s) => `| \`${s.query.replace(/\|/g, "\\|")}\` | ${s.callsPerScan.toFixed(2)} | ${s.rowsPerCall.toFixed(1)} | ${s.planMsPerThousandScans.toFixed(0)} | ${s.execMsPerThousandScans.toFixed(0)} |`),
    "",
  ];
}

async function shortRun(): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const loadAtStart = loadAverage();
  const commit = gitDescribe();
  const extra: string[] = ["", "## Service micro-benchmarks (each against its same-run baseline)", ""];
  const benchJson: Record<string, Record<string, unknown>> = {};
  for (const b of BENCHES) {
    if (!wanted(b.name)) continue;
    const t = performance.now();
    const load = loadAverage()[0];
    try {
      const j = await runBench(b.script, b.args, b.env ?? {}, b.timeoutMs);
      benchJson[b.name] = j;
      extra.push(
        `### ${b.name}`,
        "",
        `Target: ${b.target}. Took ${((performance.now() - t) / 1000).toFixed(0)} s; load average ${load.toFixed(1)} at its start.`,
        "",
        "```json",
        JSON.stringify(j, null, 2),
        "```",
        "",
      );
    } catch (e) {
      extra.push(`### ${b.name}`, "", `Not measured: ${e instanceof Error ? e.message : String(e)}`, "");
    }
  }
  await writeFile(join(outDir, "benches.json"), JSON.stringify(benchJson, null, 2));

  const runs: E2eResult[] = [];
  const e2eNotes: string[] = [];
  let infraNotes: string[] = [];
  if (wanted("e2e")) {
    const infra = startInfra();
    infraNotes = infra.notes;
    try {
      const windowMs = 10_000;
      let lastWall = 45_000;
      const fits = () => remainingMs() > lastWall * 1.1 + 5_000;
      const queue = args.rates.split(",").map(Number).filter((x) => x > 0);
      for (;;) {
        const rate = queue.shift() ?? (args["no-search"] ? undefined : nextRate(runs));
        if (rate === undefined) break;
        if (!fits()) {
          e2eNotes.push(`Stopped the rate search before ${rate}/s: the ${budgetMs / 1000} s budget of the short run would be exceeded.`);
          break;
        }
        // 300/s carries the latency targets: give its webhooks a longer bound to arrive.
        const settle = args["settle-seconds"] ? Number(args["settle-seconds"]) * 1000 : rate === 300 ? 15_000 : 8_000;
        const { result, wallMs } = await e2eAt(infra, rate, windowMs, settle);
        runs.push(result);
        lastWall = wallMs;
        if (runs.length >= 5) break;
      }
    } finally {
      }
  }

  const figs = runs.map(figures);
  const benches = benchFigures(benchJson);
  const targets = targetRows(figs, benches);
  const best = highestSustained(figs);
  const loadAtEnd = loadAverage();
  const tookS = (performance.now() - started) / 1000;
  const head: string[] = [
    ...(args.label ? [`**${args.label}**`, ""] : []),
    `Commit: ${commit}. Machine: ${machineLine()}. Load average (1/5/15 min) ${loadAtStart.map((x) => x.toFixed(1)).join(" / ")} at the start, ` +
      `${loadAtEnd.map((x) => x.toFixed(1)).join(" / ")} at the end: the two cores are shared with other work, so quote ratios from one run. ` +
      `The run took ${tookS.toFixed(0)} s (plus the build).`,
    "",
    ...infraNotes.map((n) => `- ${n}`),
    `- ${runtimeLine()}`,
    ...(serviceNodeArgs.length > 0 ? [`- Services started with the Node.js options \`${serviceNodeArgs.join(" ")}\` (\`--service-node-args\`).`] : []),
    "",
    "## Targets (issue 13)",
    "",
    "| target | measured | verdict |",
    "|---|---|---|",
    ...targets.map((t) => `| ${t.target} | ${t.measured} | ${t.verdict === "pass" ? "pass" : t.verdict === "MISS" ? "**MISS**" : t.verdict} |`),
    "",
    "*Sustained* = acked within the measured window ≥ 98% of the offered rate, AND the backlog at the window's end is bounded " +
      "(scans unacked at the client and every JetStream durable's pending + ack-pending ≤ one second of offered traffic), AND ack → visible " +
      "p99 ≤ 1 s, counting scans never visible by the end of settling as slower than every measured one.",
    "",
  ];
  if (figs.length) {
    // The highest sustained run, else the lowest rate (whose cost is the least understated by queued work).
    const ref = best ?? [...figs].sort((a, b) => a.rate - b.rate)[0]!;
    const refUsable = !collapsed(ref);
    head.push(
      "## Cost per scan (CPU ms per 1,000 scans, from /proc over the measured window)",
      "",
      `Per component: utime + stime from /proc/<pid>/stat over the ${runs[0]!.windowMs / 1000} s window, divided by the scans acked in it ` +
        `(shipment creations at the matching rate, about one per ${runs[0]!.scenario.scansPerShipment.mean.toFixed(1)} scans, included). ` +
        `† = rate not sustained: work piled up in queues, so its cost per scan is understated; ‡ = less than half the offered scans were ` +
        `acked in the window (the mesh was swamped), so no cost per scan is given. The idle column is the mesh with no traffic ` +
        `(before the ramp). ` +
        (refUsable
          ? `At ${ref.rate}/s${best ? " (the highest sustained rate)" : ""} the mesh costs **${meshTotal(ref.cost.perThousandScans).toFixed(0)} ms per 1,000 scans** ` +
            `(≈ ${(meshTotal(ref.cost.perThousandScans) / 1000).toFixed(1)} cores per 1,000 scans/s) plus ${(ref.cost.perThousandScans[LOAD_GENERATOR] ?? NaN).toFixed(0)} ms in the load generator.`
          : ""),
      "",
      ...costTable(figs),
      "",
      "## Sizing from this run's cost per scan",
      "",
      `From the ${ref.rate}/s run${best ? " (the highest sustained rate)" : " (not sustained: its cost per scan is understated, so are these cores)"}: ` +
        `busy cores = CPU per scan × rate + idle CPU × instances. Assumptions: the peak is planned at ≤ ${SIZING.utilization * 100}% of the ` +
        `allotted cores (bursts, redeliveries, GC pauses, losing a replica); ${SIZING.coresPerReplica} core per service replica (one event loop), ` +
        `at least ${SIZING.minReplicas} replicas per service; PostgreSQL one primary (replicas for reads and failover not counted), at least ` +
        `${SIZING.minPgCores} cores; NATS ${SIZING.natsNodes} nodes with replicated streams and Redis ${SIZING.redisNodes} nodes, each node doing the ` +
        `measured single-node work. Traffic mix as measured (one new shipment per ` +
        `${runs[0]!.scenario.scansPerShipment.mean.toFixed(1)} scans, a watcher per moving shipment, a webhook per status change).` +
        (ref.cost.pg
          ? ` PostgreSQL at the 10M/day peak: ${(ref.cost.pg.commitsPerScan * 3000).toFixed(0)} commits/s and ` +
            `${((ref.cost.pg.walBytesPerScan * 3000) / 2 ** 20).toFixed(1)} MiB/s of WAL.`
          : ""),
      "",
      ...(refUsable ? sizingTable(ref.cost.perThousandScans, ref.cost.idleMsPerSec) : ["No sizing: even the lowest rate tried swamped the mesh here."]),
      "",
      ...statementsSection(ref),
      "## End-to-end runs",
      "",
      "| rate | offered/s | sent/s | acked in window/s | unacked at end (client / max durable) | send → ack p50 / p99 | ack → visible p50 / p99 | never visible | webhooks received / expected | ack → webhook p50 / p99 | sustained | load avg |",
      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
      ...[...runs].sort((a, b) => a.rate - b.rate).map(e2eRow),
      "",
      ...e2eNotes,
      "",
    );
  }
  const scenarios = [...runs].sort((a, b) => a.rate - b.rate).map((r) => e2eScenario(r, best?.rate === r.rate));
  const path = await writeReport(outDir, `Performance report${args.label ? ` — ${args.label}` : ""}`, scenarios, extra, head);
  for (const r of runs) {
    const label = scenarios.find((s) => s.name.startsWith(`e2e-${r.rate}`))?.name ?? `e2e-${r.rate}`;
    await writeFile(join(outDir, `${label}-send-to-ack.ghz.json`), JSON.stringify(toGhzReport(`${label} send→ack`, asLoadResult(r.sendToAck, r.windowMs)), null, 2));
  }
  await writeFile(
    join(outDir, "results.json"),
    JSON.stringify(
      {
        label: args.label ?? null,
        date: new Date().toISOString(),
        commit,
        machine: machineLine(),
        load: { start: loadAtStart, end: loadAtEnd },
        tookSeconds: tookS,
        highestSustained: best?.rate ?? null,
        targets,
        benches,
        e2e: figs,
        e2eDetails: runs.map((r) => ({ ...r, sendToAck: undefined, ackToVisible: undefined, ackToWebhook: undefined })),
      },
      null,
      2,
    ),
  );
  log(`report: ${path} (${tookS.toFixed(0)} s)`);
  if (args["ghz-web"]) {
    for (const f of (await readdir(outDir)).filter((f) => f.endsWith(".ghz.json"))) {
      const rep = JSON.parse(await readFile(join(outDir, f), "utf8")) as GhzReport;
      await postToGhzWeb(args["ghz-web"], rep);
    }
  }
}

/** The highest sustained rate of the newest report that has one. */
async function lastHighestSustained(): Promise<{ rate: number; dir: string } | undefined> {
  if (!existsSync(resultsRoot)) return undefined;
  for (const d of (await readdir(resultsRoot)).sort().reverse()) {
    try {
      const j = JSON.parse(await readFile(join(resultsRoot, d, "results.json"), "utf8")) as { highestSustained?: number | null };
      if (j.highestSustained) return { rate: j.highestSustained, dir: d };
    } catch {
      // no results.json
    }
  }
  return undefined;
}

/** The prom-client default gauges the soak samples from each service, and ingest's bounded cache. */
const HEAP_GAUGES = [
  "nodejs_heap_size_used_bytes",
  "nodejs_heap_size_total_bytes",
  "nodejs_external_memory_bytes",
  "logistics_ingest_shipment_cache_entries",
] as const;

async function soak(): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const minutes = Number(args["soak-minutes"]);
  // The run's tokens must outlive the soak, its setup and its settling (an hour left for those).
  const maxMinutes = (RUN_TOKEN_LIFETIME_SECONDS - 3600) / 60;
  if (!(minutes > 0) || minutes > maxMinutes) {
    throw new Error(`--soak-minutes must be more than 0 and at most ${maxMinutes} (the run's tokens live ${RUN_TOKEN_LIFETIME_SECONDS / 3600} h)`);
  }
  let rate: number;
  let rateWhy: string;
  if (args["soak-rate"]) {
    rate = Number(args["soak-rate"]);
    rateWhy = "given on the command line";
  } else {
    const last = await lastHighestSustained();
    if (!last) throw new Error("no report with a highest sustained rate in perf/results: run `npm run perf` first or pass --soak-rate");
    rate = Math.max(10, Math.round((0.7 * last.rate) / 5) * 5);
    rateWhy = `70% of the highest sustained rate (${last.rate}/s) in results/${last.dir}`;
  }
  const loadAtStart = loadAverage();
  const commit = gitDescribe();
  const infra = startInfra();
  const mesh = await startMeshProcesses(MESH_ENV, { databaseUrl: infra.pg.url, redisUrl: infra.redis.url });
  const samples: Array<{ at: number; svc: string; rssMiB: number; heapMiB?: number; heapTotalMiB?: number; externalMiB?: number; cacheEntries?: number }> = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const at = performance.now();
      for (const svc of MESH) {
        const rss = rssMiB(mesh.pids[svc]);
        // Heap used is judged; V8's committed heap and external (Buffers, off-heap) memory say what
        // else an RSS floor holds.
        const g = await scrapeGauges(mesh.metricsPorts[svc], HEAP_GAUGES).catch(() => ({}) as Partial<Record<(typeof HEAP_GAUGES)[number], number>>);
        const mib = (v: number | undefined) => (v === undefined ? undefined : v / 2 ** 20);
        const heap = {
          heapMiB: mib(g.nodejs_heap_size_used_bytes),
          heapTotalMiB: mib(g.nodejs_heap_size_total_bytes),
          externalMiB: mib(g.nodejs_external_memory_bytes),
          cacheEntries: g.logistics_ingest_shipment_cache_entries,
        };
        if (rss !== undefined) samples.push({ at, svc, rssMiB: rss, ...Object.fromEntries(Object.entries(heap).filter(([, v]) => v !== undefined)) });
      }
      await new Promise((r) => setTimeout(r, MEMORY_SAMPLE_MS));
    }
  })();
  let r: E2eResult;
  try {
    log(`soak: ${minutes} min at ${rate}/s (${rateWhy})`);
    r = await runE2e(mesh, {
      rate,
      windowMs: minutes * 60_000,
      settleMs: 30_000,
      timelineBucketMs: 10_000,
      backlogIntervalMs: 5_000,
      cpu: new CpuSampler(cpuGroups(mesh, infra), LOAD_GENERATOR),
      databaseUrl: infra.pg.url,
      log,
    });
  } finally {
    sampling = false;
    await sampler;
    await mesh.close();
  }
  // Seconds relative to the load's window; memory is judged on its floors after the warm-up, up to
  // the load's end (the settle afterwards is not load).
  const memory: MemorySample[] = samples.map(({ at, ...m }) => ({ t: (at - r.timing.windowStartedAt) / 1000, ...m }));
  const memVerdicts = judgeSoakMemory(memory, MESH, minutes * 60);
  const md: string[] = [
    `# Soak: ${minutes} minutes at ${rate} scans/s${args.label ? ` — ${args.label}` : ""}`,
    "",
    `Date: ${new Date().toISOString()}. Commit: ${commit}. Machine: ${machineLine()}. Rate: ${rateWhy}. ` +
      `Load average ${loadAtStart.map((x) => x.toFixed(1)).join(" / ")} at the start, ${loadAverage().map((x) => x.toFixed(1)).join(" / ")} at the end.`,
    "",
    ...infra.notes.map((n) => `- ${n}`),
    `- ${runtimeLine()}`,
    "",
    `Load: offered ${r.offered.perSec.toFixed(0)}/s, sent ${r.sent.perSec.toFixed(0)}/s, acked ${r.acked.perSec.toFixed(0)}/s; ` +
      `ack → visible p50 ${fmtMs(r.p50.ackToVisibleMs)}, p99 ${fmtMs(r.p99.ackToVisibleMs)} (never visible ${r.visible.missing}; first seen inside a later version ${r.visible.byLaterVersion}); ` +
      `ack → webhook p50 ${fmtMs(r.p50.ackToWebhookMs)}, p99 ${fmtMs(r.p99.ackToWebhookMs)} (${r.webhooks.received} of ${r.webhooks.expected}); ` +
      `mesh ${meshTotal(r.cost.perThousandScans).toFixed(0)} ms CPU per 1,000 scans, load generator ${(r.cost.perThousandScans[LOAD_GENERATOR] ?? NaN).toFixed(0)}.`,
    "",
    ...soakMemorySection(memory, memVerdicts),
  ];
  const judgedBacklog = r.backlog.filter((s) => s.t >= 60 && s.t <= minutes * 60).map((s) => [s.t, s.total] as const);
  const bl = slopeVerdict(judgedBacklog, minutes, () => Math.max(50, r.offered.perSec));
  const consumers = [...new Set(r.backlog.flatMap((s) => Object.keys(s.perConsumer)))];
  md.push(
    "",
    "## Consumer backlog",
    "",
    `JetStream num_pending + num_ack_pending per durable, every 5 s. *No backlog growth* = the least-squares growth of the total over the ` +
      `load (after its first minute) is at most one second of offered traffic (${Math.max(50, r.offered.perSec).toFixed(0)} messages).`,
    "",
    `Total: mean ${bl.mean.toFixed(0)}, slope ${bl.slopePerMin.toFixed(1)} messages/min, growth over the soak ${bl.growth.toFixed(0)}: ` +
      `**${bl.flat ? "no backlog growth" : "BACKLOG GROWS"}**.`,
    "",
    "| durable | mean | max | at the end of the load |",
    "|---|---:|---:|---:|",
  );
  const inLoad = r.backlog.filter((s) => s.t >= 0 && s.t <= minutes * 60);
  for (const c of consumers) {
    const v = inLoad.map((s) => s.perConsumer[c] ?? 0);
    md.push(`| ${durableLabel(c)} | ${mean(v).toFixed(0)} | ${Math.max(0, ...v)} | ${v.at(-1) ?? "—"} |`);
  }
  md.push("", "![rss](soak-rss.svg) ![heap](soak-heap.svg) ![backlog](soak-backlog.svg) ![latency](soak-latency.svg) ![throughput](soak-throughput.svg)", "");
  const series = (key: "rssMiB" | "heapMiB") =>
    MESH.map((svc) => ({ label: svc, points: memory.flatMap((x) => (x.svc === svc && x[key] !== undefined ? [[x.t, x[key]] as const] : [])) }));
  await writeFile(join(outDir, "soak-rss.svg"), linePlot(series("rssMiB"), { title: "RSS per service", xLabel: "seconds", yLabel: "MiB" }));
  await writeFile(join(outDir, "soak-heap.svg"), linePlot(series("heapMiB"), { title: "V8 heap used per service", xLabel: "seconds", yLabel: "MiB" }));
  await writeFile(join(outDir, "soak-backlog.svg"), backlogPlot("soak", r.backlog));
  await writeFile(join(outDir, "soak-throughput.svg"), throughputPlot("soak", r));
  await writeFile(
    join(outDir, "soak-latency.svg"),
    linePlot(
      [
        { label: "ack→visible p50", points: r.ackToVisible.timeline.map((x) => [x.second, x.p50Us / 1000] as const) },
        { label: "ack→visible p99", points: r.ackToVisible.timeline.map((x) => [x.second, x.p99Us / 1000] as const) },
        { label: "ack→webhook p99", points: r.ackToWebhook.timeline.map((x) => [x.second, x.p99Us / 1000] as const) },
      ],
      { title: "soak: latency per 10 s of intended send time", xLabel: "second", yLabel: "ms" },
    ),
  );
  await writeFile(join(outDir, "soak.md"), md.join("\n") + "\n");
  await writeFile(
    join(outDir, "soak.json"),
    JSON.stringify(
      { rate, minutes, commit, memory, memoryRule: SOAK_FLOOR_RULE, memVerdicts, backlog: r.backlog, backlogVerdict: bl, e2e: figures(r) },
      null,
      2,
    ),
  );
  await writeFile(join(outDir, "soak-ack-to-visible.ghz.json"), JSON.stringify(toGhzReport("soak ack→visible", asLoadResult(r.ackToVisible, r.windowMs)), null, 2));
  log(`soak report: ${join(outDir, "soak.md")}`);
}

/**
 * Judges the memory samples of a soak report (its soak.json) again by today's rule and writes
 * soak-memory-floors.md beside them; soak.md keeps the verdict of the build that ran it.
 */
async function rejudgeSoak(dir: string): Promise<void> {
  const j = JSON.parse(await readFile(join(dir, "soak.json"), "utf8")) as { minutes: number; memory: MemorySample[] };
  const services = [...new Set(j.memory.map((m) => m.svc))];
  const md = [
    `# Soak memory judged on floors: ${basename(dir)}`,
    "",
    `The memory samples of this soak (soak.json) judged by the floor rule (perf/README.md, "Soak"); soak.md keeps the verdict it was run with.`,
    "",
    ...soakMemorySection(j.memory, judgeSoakMemory(j.memory, services, j.minutes * 60)),
  ];
  await writeFile(join(dir, "soak-memory-floors.md"), md.join("\n") + "\n");
  log(md.join("\n"));
}

if (args["rejudge-soak"]) {
  await rejudgeSoak(resolve(args["rejudge-soak"]));
} else {
  // PostgreSQL and Redis for every bench and end-to-end run: DATABASE_URL / REDIS_URL when set,
  // otherwise private servers (the benches and meshes that need NATS start their own).
  servers = await provideMeshServers({
    database: "perf",
    dataDir: join(DEV_DATA_DIR, `perf-${process.pid}`),
    durable: true,
    // The end-to-end report lists the statements that cost the most per scan (pg_stat_statements).
    postgresSettings: { shared_preload_libraries: "'pg_stat_statements'", "pg_stat_statements.track": "'top'", "pg_stat_statements.track_planning": "on" },
    log,
  });
  process.env["DATABASE_URL"] = servers.databaseUrl;
  process.env["REDIS_URL"] = servers.redisUrl;
  try {
    await (args.soak ? soak() : shortRun());
  } finally {
    await servers.stop();
  }
}
