/** The soak report's memory section: each service's RSS and heap used, judged on their floors. Pure. */
import { floorVerdict, SOAK_FLOOR_RULE, type FloorRule, type FloorVerdict, type FloorVerdictKind } from "./floor-verdict.js";
import { median } from "./stats.js";

/**
 * One memory sample of one service: seconds from the load's start, RSS, and, when its /metrics
 * answered, V8 heap used, V8 heap committed (heap total) and external memory (Buffers and other
 * off-heap allocations V8 is told of; soaks before 2026-12-05 sampled heap used only).
 */
export interface MemorySample {
  readonly t: number;
  readonly svc: string;
  readonly rssMiB: number;
  readonly heapMiB?: number;
  readonly heapTotalMiB?: number;
  readonly externalMiB?: number;
  /**
   * Entries of the service's bounded in-process cache, when it reports one (ingest's shipment
   * directory cache, `logistics_ingest_shipment_cache_entries`): a cache that is still filling makes
   * the heap's floors climb for as long as its TTL without a leak.
   */
  readonly cacheEntries?: number;
}

/** A service's memory verdict: growing when either floor grows; flat only when both are flat. */
export interface ServiceMemoryVerdict {
  readonly verdict: FloorVerdictKind;
  readonly rss: FloorVerdict;
  readonly heap: FloorVerdict;
  /** The end of the load judged (seconds from its start). */
  readonly loadEndS: number;
}

/** Judges every service's RSS and heap-used floors over a load that ends at `loadEndS`. */
export function judgeSoakMemory(
  memory: readonly MemorySample[],
  services: readonly string[],
  loadEndS: number,
  rule: FloorRule = SOAK_FLOOR_RULE,
): Record<string, ServiceMemoryVerdict> {
  const out: Record<string, ServiceMemoryVerdict> = {};
  for (const svc of services) {
    const mine = memory.filter((m) => m.svc === svc);
    const rss = floorVerdict(mine.map((m) => [m.t, m.rssMiB] as const), loadEndS, rule);
    const heap = floorVerdict(mine.flatMap((m) => (m.heapMiB === undefined ? [] : [[m.t, m.heapMiB] as const])), loadEndS, rule);
    const kinds = [rss.verdict, heap.verdict];
    const verdict = kinds.includes("growing") ? "growing" : kinds.includes("not enough data") ? "not enough data" : "flat";
    out[svc] = { verdict, rss, heap, loadEndS };
  }
  return out;
}

const num = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : "—");
const shown = (v: FloorVerdictKind) => (v === "growing" ? "**growing**" : v);

/** The "Memory per service" section of soak.md (markdown lines) for judged samples. */
export function soakMemorySection(
  memory: readonly MemorySample[],
  verdicts: Readonly<Record<string, ServiceMemoryVerdict>>,
  rule: FloorRule = SOAK_FLOOR_RULE,
): string[] {
  const services = Object.keys(verdicts);
  const times = memory.filter((m) => m.svc === services[0]).map((m) => m.t);
  const intervalS = median(times.slice(1).map((t, i) => t - times[i]!));
  const lines = [
    "## Memory per service",
    "",
    `Judged on floors. RSS from /proc/<pid>/status and V8 heap used from each service's /metrics, sampled every ${num(intervalS, 0)} s. ` +
      `From ${rule.warmupS / 60} minutes into the load (warm-up) to its end, each full ${rule.windowS} s window's lowest sample is a floor ` +
      "(the low after a GC, to within how far memory climbs in one sampling interval), and the Theil–Sen slope through the floors (the " +
      "median of the slopes between every pair) is the *floor slope*. *Flat* = a floor slope under the *limit*, " +
      `max(${rule.limitMiBPerMin} MiB/min, ${rule.limitShareOfFloorPer10Min * 100}% of the median floor per 10 minutes); fewer than ` +
      `${rule.minWindows} floors give no verdict. A service is flat when its RSS and heap floors both are. The least-squares slope through ` +
      "every sample after the warm-up is shown for comparison, not judged: on a GC sawtooth it follows the teeth's height and where the " +
      "last samples fell.",
    "",
    "| service | memory | floors (MiB), window by window | floor slope (MiB/min) | limit (MiB/min) | least squares, all samples (MiB/min) | verdict |",
    "|---|---|---|---:|---:|---:|---|",
  ];
  for (const svc of services) {
    const v = verdicts[svc]!;
    for (const [label, f] of [["RSS", v.rss], ["heap used", v.heap]] as const) {
      lines.push(
        `| ${svc} | ${label} | ${f.floors.map((x) => x.value.toFixed(0)).join(" ") || "—"} | ${num(f.floorSlopePerMin, 2)} | ` +
          `${num(f.limitPerMin, 2)} | ${num(f.rawSlopePerMin, 2)} | ${shown(f.verdict)} |`,
      );
    }
  }
  const named = (kind: FloorVerdictKind) =>
    services
      .filter((s) => verdicts[s]!.verdict === kind)
      .map((s) => {
        const v = verdicts[s]!;
        const which = kind === "flat" ? [] : [v.rss.verdict === kind && "RSS", v.heap.verdict === kind && "heap used"].filter(Boolean);
        return which.length ? `${s} (${which.join(", ")})` : s;
      });
  const parts = (["growing", "not enough data", "flat"] as const).flatMap((k) => (named(k).length ? [`${shown(k)}: ${named(k).join(", ")}`] : []));
  lines.push("", `Memory — ${parts.join("; ")}.`);
  return [...lines, ...breakdownLines(memory, verdicts, rule), ...cacheLines(memory, verdicts, rule)];
}

/**
 * Not judged: each window's last reading of a service's bounded cache (see
 * {@link MemorySample.cacheEntries}), so a heap floor that climbs can be set against a cache that
 * fills. Empty when no service reported one.
 */
function cacheLines(memory: readonly MemorySample[], verdicts: Readonly<Record<string, ServiceMemoryVerdict>>, rule: FloorRule): string[] {
  const lines: string[] = [];
  for (const [svc, judged] of Object.entries(verdicts)) {
    const mine = memory.filter((m) => m.svc === svc && m.cacheEntries !== undefined && m.t >= rule.warmupS && m.t <= judged.loadEndS);
    if (mine.length === 0) continue;
    const byWindow = new Map<number, number>();
    for (const m of mine) byWindow.set(Math.floor((m.t - rule.warmupS) / rule.windowS), m.cacheEntries!);
    const readings = [...byWindow.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
    lines.push(`| ${svc} | ${readings.map((v) => v.toLocaleString("en-US")).join(" ")} |`);
  }
  if (lines.length === 0) return [];
  return [
    "",
    "Bounded caches (not judged; each window's last reading): ingest's shipment directory cache " +
      "(`logistics_ingest_shipment_cache_entries`, about 350 B of heap per entry) holds the shipments scanned within its TTL " +
      "(INGEST_SHIPMENT_CACHE_TTL_SECONDS, 10 minutes by default): while it fills, the heap's floors climb with it.",
    "",
    "| service | cache entries, window by window |",
    "|---|---|",
    ...lines,
  ];
}

/**
 * Not judged: the floors of V8's committed heap and of external memory, which say whether an RSS
 * floor that moves is the heap V8 keeps committed or memory outside it. Empty for samples that
 * have neither (older soaks).
 */
function breakdownLines(memory: readonly MemorySample[], verdicts: Readonly<Record<string, ServiceMemoryVerdict>>, rule: FloorRule): string[] {
  const kinds = [
    ["V8 heap committed", (m: MemorySample) => m.heapTotalMiB],
    ["external", (m: MemorySample) => m.externalMiB],
  ] as const;
  if (!memory.some((m) => m.heapTotalMiB !== undefined || m.externalMiB !== undefined)) return [];
  const lines = [
    "",
    "What else the RSS floors hold (not judged; same windows, floors and slopes as above): V8's committed heap (`nodejs_heap_size_total_bytes`) " +
      "and external memory (`nodejs_external_memory_bytes`: Buffers and other off-heap allocations V8 knows of). RSS above committed heap + " +
      "external is code, stacks, the allocator's free lists and native libraries' own memory.",
    "",
    "| service | memory | floors (MiB), window by window | floor slope (MiB/min) |",
    "|---|---|---|---:|",
  ];
  for (const [svc, judged] of Object.entries(verdicts)) {
    const mine = memory.filter((m) => m.svc === svc);
    for (const [label, pick] of kinds) {
      const points = mine.flatMap((m) => {
        const v = pick(m);
        return v === undefined ? [] : [[m.t, v] as const];
      });
      const f = floorVerdict(points, judged.loadEndS, rule);
      lines.push(`| ${svc} | ${label} | ${f.floors.map((x) => x.value.toFixed(0)).join(" ") || "—"} | ${num(f.floorSlopePerMin, 2)} |`);
    }
  }
  return lines;
}
