/**
 * The report's judgement tables, as pure functions of the measured figures (so the verdicts are
 * unit-tested): issue 13's targets with pass/miss, and CPU cost per scan per component.
 */

/** What the tables need from one end-to-end run (also what results.json keeps of it). */
export interface E2eFigures {
  rate: number;
  offeredPerSec: number;
  sentPerSec: number;
  ackedPerSec: number;
  clientUnacked: number;
  maxConsumerBacklog: number;
  sustained: boolean;
  failed: string[];
  p50: { sendToAckMs: number; ackToVisibleMs: number; ackToWebhookMs: number };
  p99: { sendToAckMs: number; ackToVisibleMs: number; ackToWebhookMs: number };
  visibleMissing: number;
  /** Window scans first seen inside a later version of their shipment (e2e-bench.ts; absent in reports before 2026-12-06T16). */
  visibleByLaterVersion?: number;
  webhooks: { expected: number; received: number; missing: number; unknownForInvisible: number };
  cost: { scans: number; perThousandScans: Record<string, number>; idleMsPerSec: Record<string, number>; machineBusyCores: number; otherCores: number; pg?: { commitsPerScan: number; walBytesPerScan: number; statements?: Array<{ query: string; callsPerScan: number; execMsPerThousandScans: number; planMsPerThousandScans: number; rowsPerCall: number }> } };
  load: { start: number[]; end: number[] };
}

/** The service benches' ratios (undefined when a bench was not run or failed). */
export interface BenchFigures {
  ingest?: { ratio: number; ingestPerSec: number; rawPerSec: number };
  /**
   * Batched apply vs a raw multi-row write of the same rows (every row the apply writes: history,
   * claims, shipments upsert), and, reported, vs the history rows alone (the reference up to 2026-12-04).
   */
  store?: { ratio: number; batchedPerSec: number; rawPerSec: number; historyOnly?: { ratio: number; rawPerSec: number } };
  getShipment?: { ratio: number; getPerSec: number; echoPerSec: number };
  /** Notification claimDue calls/s with a large backlog of due deliveries vs a small one. */
  claim?: { ratio: number; largePerSec: number; smallPerSec: number; large: number; small: number };
}

export type Verdict = "pass" | "MISS" | "not measured";

export interface TargetRow {
  target: string;
  measured: string;
  verdict: Verdict;
}

/** Milliseconds for a table: "∞" (never observed within the deadline) for Infinity. */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return Number.isNaN(ms) ? "—" : "not reached";
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/** The highest rate judged sustained, if any. */
export function highestSustained(runs: readonly E2eFigures[]): E2eFigures | undefined {
  return runs.filter((r) => r.sustained).sort((a, b) => b.rate - a.rate)[0];
}

/** Issue 13's targets, judged from one run's figures. */
export function targetRows(runs: readonly E2eFigures[], benches: BenchFigures): TargetRow[] {
  const rows: TargetRow[] = [];
  const best = highestSustained(runs);
  const tried = [...runs].sort((a, b) => a.rate - b.rate).map((r) => `${r.rate}/s ${r.sustained ? "✓" : "✗"}`).join(", ");
  if (runs.length === 0) rows.push({ target: "highest sustained rate ≥ 1,000 scans/s", measured: "no end-to-end run", verdict: "not measured" });
  else {
    rows.push({
      target: "highest sustained rate ≥ 1,000 scans/s",
      measured: best
        ? `${best.rate}/s (acked ${best.ackedPerSec.toFixed(0)}/s, ack → visible p99 ${fmtMs(best.p99.ackToVisibleMs)}; tried ${tried})`
        : `none of the tried rates (${tried})`,
      verdict: best && best.rate >= 1000 ? "pass" : "MISS",
    });
  }
  const at300 = runs.find((r) => r.rate === 300);
  if (!at300) {
    rows.push({ target: "ack → visible p99 ≤ 250 ms at 300 scans/s", measured: "no run at 300/s", verdict: "not measured" });
    rows.push({ target: "ack → webhook p99 ≤ 2 s at 300 scans/s", measured: "no run at 300/s", verdict: "not measured" });
  } else {
    const note = at300.sustained ? "" : " (300/s not sustained)";
    rows.push({
      target: "ack → visible p99 ≤ 250 ms at 300 scans/s",
      measured: `${fmtMs(at300.p99.ackToVisibleMs)}${at300.visibleMissing ? `, ${at300.visibleMissing} scans never visible` : ""}${note}`,
      verdict: at300.p99.ackToVisibleMs <= 250 ? "pass" : "MISS",
    });
    const w = at300.webhooks;
    rows.push({
      target: "ack → webhook p99 ≤ 2 s at 300 scans/s",
      measured:
        `${fmtMs(at300.p99.ackToWebhookMs)} (${w.received} of ${w.expected} expected webhooks arrived` +
        `${w.unknownForInvisible ? `; ${w.unknownForInvisible} scans never visible, their webhooks not counted` : ""})${note}`,
      verdict: at300.p99.ackToWebhookMs <= 2000 && w.unknownForInvisible === 0 ? "pass" : "MISS",
    });
  }
  const ratioRow = (target: string, goal: number, ratio: number | undefined, detail: string): TargetRow =>
    ratio === undefined
      ? { target, measured: "bench not run or failed", verdict: "not measured" }
      : { target, measured: `${pct(ratio)} (${detail})`, verdict: ratio >= goal ? "pass" : "MISS" };
  const { ingest, store, getShipment, claim } = benches;
  rows.push(
    ratioRow(
      "ingest accepted rate ≥ 70% of raw JetStream publish",
      0.7,
      ingest?.ratio,
      ingest ? `${ingest.ingestPerSec.toFixed(0)} vs ${ingest.rawPerSec.toFixed(0)} scans/s` : "",
    ),
    ratioRow(
      "batched store apply ≥ 25% of raw multi-row INSERT of the same rows",
      0.25,
      store?.ratio,
      store
        ? `${store.batchedPerSec.toFixed(0)} vs ${store.rawPerSec.toFixed(0)} events/s, the raw side writing every row the apply writes` +
            (store.historyOnly
              ? `; vs the history rows alone: ${pct(store.historyOnly.ratio)} (${store.batchedPerSec.toFixed(0)} vs ${store.historyOnly.rawPerSec.toFixed(0)} rows/s)`
              : "")
        : "",
    ),
    ratioRow(
      "GetShipment (cache hit) ≥ 70% of a bare echo RPC",
      0.7,
      getShipment?.ratio,
      getShipment ? `${getShipment.getPerSec.toFixed(0)} vs ${getShipment.echoPerSec.toFixed(0)} rps` : "",
    ),
    ratioRow(
      "notification claim does not grow with the backlog: large-backlog claims/s ≥ 80% of small-backlog",
      0.8,
      claim?.ratio,
      claim ? `${claim.largePerSec.toFixed(0)} claims/s with ${claim.large} due vs ${claim.smallPerSec.toFixed(0)} with ${claim.small}` : "",
    ),
  );
  return rows;
}

/** The processes that make up the mesh's cost, in report order; "load generator" is listed apart. */
export const MESH_COMPONENTS = ["ingest", "routing", "tracking", "notification", "nats-server", "redis-server", "postgres"] as const;
export const LOAD_GENERATOR = "load generator";

/** Sum of the mesh's components (ms per 1,000 scans); NaN parts (not measured) are left out. */
export function meshTotal(perThousand: Readonly<Record<string, number>>): number {
  return MESH_COMPONENTS.reduce((a, k) => a + (Number.isFinite(perThousand[k]) ? perThousand[k]! : 0), 0);
}

/** Less than half the offered scans were acked in the window: a cost per acked scan means nothing. */
export function collapsed(r: Pick<E2eFigures, "ackedPerSec" | "offeredPerSec">): boolean {
  return r.ackedPerSec < 0.5 * r.offeredPerSec;
}

/**
 * Markdown table: CPU ms per 1,000 scans per component, one column per run, plus the idle rate.
 * Runs where less than half the offered scans were acked show ‡ instead of figures.
 */
export function costTable(runs: readonly E2eFigures[]): string[] {
  if (runs.length === 0) return [];
  const sorted = [...runs].sort((a, b) => a.rate - b.rate);
  const head = `| component | ${sorted.map((r) => `${r.rate}/s${r.sustained ? "" : " †"}`).join(" | ")} | idle (ms/s, at ${sorted[0]!.rate}/s run) |`;
  const sep = `|---|${sorted.map(() => "---:").join("|")}|---:|`;
  const f = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "—" : x.toFixed(0));
  const lines = [head, sep];
  for (const k of [...MESH_COMPONENTS, "mesh total", LOAD_GENERATOR]) {
    const cells = sorted.map((r) =>
      collapsed(r) ? "‡" : k === "mesh total" ? `**${f(meshTotal(r.cost.perThousandScans))}**` : f(r.cost.perThousandScans[k]),
    );
    const idle = k === "mesh total" ? meshTotal(sorted[0]!.cost.idleMsPerSec) : sorted[0]!.cost.idleMsPerSec[k];
    lines.push(`| ${k === "mesh total" ? "**mesh total**" : k} | ${cells.join(" | ")} | ${f(idle)} |`);
  }
  lines.push(`| scans accepted in the window | ${sorted.map((r) => String(r.cost.scans)).join(" | ")} | |`);
  lines.push(`| PostgreSQL commits / scan | ${sorted.map((r) => (r.cost.pg ? r.cost.pg.commitsPerScan.toFixed(2) : "—")).join(" | ")} | |`);
  lines.push(`| PostgreSQL WAL bytes / scan | ${sorted.map((r) => (r.cost.pg ? r.cost.pg.walBytesPerScan.toFixed(0) : "—")).join(" | ")} | |`);
  lines.push(`| machine busy (cores of 2) | ${sorted.map((r) => r.cost.machineBusyCores.toFixed(2)).join(" | ")} | |`);
  lines.push(`| other processes on the machine (cores) | ${sorted.map((r) => r.cost.otherCores.toFixed(2)).join(" | ")} | |`);
  lines.push(`| load average (1 min) at start → end | ${sorted.map((r) => `${r.load.start[0]?.toFixed(1)} → ${r.load.end[0]?.toFixed(1)}`).join(" | ")} | |`);
  return lines;
}

/**
 * Next rate to try: the target rate while nothing failed below it, else between the highest
 * sustained and the lowest failed rate on a geometric scale (steps of 25/s); undefined when the
 * two are within 25% of each other (or nothing below 25/s is left).
 */
export function nextRate(tried: ReadonlyArray<{ rate: number; sustained: boolean }>, target = 1000): number | undefined {
  const ok = tried.filter((r) => r.sustained).map((r) => r.rate);
  const lo = ok.length ? Math.max(...ok) : 0;
  const hi = Math.min(Infinity, ...tried.filter((r) => !r.sustained && r.rate > lo).map((r) => r.rate));
  let next: number;
  if (hi === Infinity) next = lo < target ? target : lo * 2;
  else if (lo === 0) next = hi / 2;
  else next = Math.sqrt(lo * hi);
  next = Math.round(next / 25) * 25;
  if (next < 25 || next <= lo || next >= hi || tried.some((r) => r.rate === next) || hi / Math.max(lo, 1) < 1.25) return undefined;
  return next;
}

/** The definition of "sustained", with the reasons a run missed it. */
export function judgeSustained(r: {
  offeredPerSec: number;
  ackedPerSec: number;
  clientUnacked: number;
  maxConsumerBacklog: number;
  ackToVisibleP99Ms: number;
  /** Services that exited during the run (`MeshProcesses.exited()`): the run measured a mesh without them. */
  exited?: readonly string[];
}): { sustained: boolean; failed: string[] } {
  const failed: string[] = (r.exited ?? []).map((e) => `${e} during the run`);
  if (!(r.ackedPerSec >= 0.98 * r.offeredPerSec)) {
    failed.push(`acked ${r.ackedPerSec.toFixed(0)}/s in the window < 98% of offered ${r.offeredPerSec.toFixed(0)}/s`);
  }
  const bound = Math.max(50, r.offeredPerSec); // one second of traffic
  if (r.clientUnacked > bound) failed.push(`${r.clientUnacked} scans unacked at the window's end (> ${bound.toFixed(0)}, 1 s of traffic)`);
  if (r.maxConsumerBacklog > bound) failed.push(`a consumer backlog of ${r.maxConsumerBacklog} at the window's end (> ${bound.toFixed(0)}, 1 s of traffic)`);
  if (!(r.ackToVisibleP99Ms <= 1000)) {
    failed.push(`ack → visible p99 ${Number.isFinite(r.ackToVisibleP99Ms) ? `${r.ackToVisibleP99Ms.toFixed(0)} ms` : "not reached (too many never visible)"} > 1 s`);
  }
  return { sustained: failed.length === 0, failed };
}

/** Assumptions of the sizing table, stated in the report next to it. */
export const SIZING = {
  /** Peak CPU planned at no more than this share of what is allotted (bursts, redeliveries, GC, a lost replica). */
  utilization: 0.6,
  /** Cores per service replica: one Node event loop uses about one core. */
  coresPerReplica: 1,
  /** Replicas per service at least (availability). */
  minReplicas: 2,
  /** NATS JetStream nodes (replicated streams, R3): each node stores every message. */
  natsNodes: 3,
  /** Redis nodes (primary + replica). */
  redisNodes: 2,
  /** Cores of the PostgreSQL primary at least. */
  minPgCores: 2,
} as const;

/** Traffic the sizing is for: average and peak scans per second. */
export interface SizingCase {
  name: string;
  avgPerSec: number;
  peakPerSec: number;
}

export const SIZING_CASES: readonly SizingCase[] = [
  { name: "1M shipments/day", avgPerSec: 70, peakPerSec: 300 },
  { name: "10M shipments/day", avgPerSec: 700, peakPerSec: 3000 },
];

export interface SizingRow {
  component: string;
  /** Busy cores at the average and the peak rate (cost per scan × rate + idle cost). */
  avgCores: number;
  peakCores: number;
  /** Replicas (services), nodes (NATS, Redis) or 1 (PostgreSQL primary). */
  instances: number;
  /** Cores to allot in total for the component. */
  allotCores: number;
}

/**
 * Replicas and cores for a traffic case from the measured CPU per 1,000 scans and idle CPU per
 * process (ms/s): busy cores = cost × rate + idle × instances; instances so that the peak stays
 * under {@link SIZING}.utilization of the allotted cores.
 */
export function sizing(perThousand: Readonly<Record<string, number>>, idleMsPerSec: Readonly<Record<string, number>>, c: SizingCase): SizingRow[] {
  const u = SIZING.utilization;
  const cost = (k: string) => (Number.isFinite(perThousand[k]) ? perThousand[k]! / 1000 / 1000 : 0); // core-seconds per scan
  const idle = (k: string) => (Number.isFinite(idleMsPerSec[k]) ? idleMsPerSec[k]! / 1000 : 0); // cores per instance
  const rows: SizingRow[] = [];
  for (const k of ["ingest", "routing", "tracking", "notification"]) {
    let n = SIZING.minReplicas;
    while ((cost(k) * c.peakPerSec + idle(k) * n) / (n * SIZING.coresPerReplica) > u) n++;
    rows.push({
      component: k,
      avgCores: cost(k) * c.avgPerSec + idle(k) * n,
      peakCores: cost(k) * c.peakPerSec + idle(k) * n,
      instances: n,
      allotCores: n * SIZING.coresPerReplica,
    });
  }
  const cluster = (k: string, label: string, nodes: number, min: number) => {
    // Every node of a replicated cluster does (about) the whole work.
    const perNodePeak = cost(k) * c.peakPerSec + idle(k);
    const perNodeCores = Math.max(min, Math.ceil(perNodePeak / u));
    rows.push({
      component: label,
      avgCores: nodes * (cost(k) * c.avgPerSec + idle(k)),
      peakCores: nodes * perNodePeak,
      instances: nodes,
      allotCores: nodes * perNodeCores,
    });
  };
  cluster("postgres", "PostgreSQL (primary)", 1, SIZING.minPgCores);
  cluster("nats-server", `NATS (${SIZING.natsNodes} nodes)`, SIZING.natsNodes, 1);
  cluster("redis-server", `Redis (${SIZING.redisNodes} nodes)`, SIZING.redisNodes, 1);
  return rows;
}

/** Markdown table of {@link sizing} for every case. */
export function sizingTable(perThousand: Readonly<Record<string, number>>, idleMsPerSec: Readonly<Record<string, number>>, cases = SIZING_CASES): string[] {
  const lines = [
    `| component | ${cases.map((c) => `${c.name}: busy cores avg / peak (${c.avgPerSec}/s / ${c.peakPerSec}/s) | replicas or nodes | cores allotted`).join(" | ")} |`,
    `|---|${cases.map(() => "---:|---:|---:").join("|")}|`,
  ];
  const all = cases.map((c) => sizing(perThousand, idleMsPerSec, c));
  for (let i = 0; i < all[0]!.length; i++) {
    const cells = all.map((rows) => {
      const r = rows[i]!;
      return `${r.avgCores.toFixed(2)} / ${r.peakCores.toFixed(2)} | ${r.instances} | ${r.allotCores}`;
    });
    lines.push(`| ${all[0]![i]!.component} | ${cells.join(" | ")} |`);
  }
  const totals = all.map((rows) => {
    const sum = (f: (r: SizingRow) => number) => rows.reduce((a, r) => a + f(r), 0);
    return `**${sum((r) => r.avgCores).toFixed(1)} / ${sum((r) => r.peakCores).toFixed(1)}** | | **${sum((r) => r.allotCores)}**`;
  });
  lines.push(`| **total** | ${totals.join(" | ")} |`);
  return lines;
}
