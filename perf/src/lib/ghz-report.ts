import type { LoadResult } from "./load-generator.js";

/**
 * A report in ghz's JSON format (durations in nanoseconds, histogram marks in seconds), so
 * ghz-web can import it and people who use ghz can compare like for like.
 */
export interface GhzReport {
  name: string;
  endReason: "timeout" | "normal";
  date: string;
  count: number;
  total: number;
  average: number;
  fastest: number;
  slowest: number;
  rps: number;
  latencyDistribution: Array<{ percentage: number; latency: number }>;
  histogram: Array<{ mark: number; count: number; frequency: number }>;
  statusCodeDistribution: Record<string, number>;
  errorDistribution: Record<string, number>;
  options: Record<string, unknown>;
}

const PERCENTILES = [10, 25, 50, 75, 90, 95, 99];

export function toGhzReport(name: string, r: LoadResult, options: Record<string, unknown> = {}): GhzReport {
  const h = r.histogram;
  const count = Number(h.totalCount);
  const ns = (us: number) => Math.round(us * 1000);
  const fastest = count ? h.minNonZeroValue : 0;
  const slowest = count ? h.maxValue : 0;
  // ghz buckets the range between fastest and slowest into ten marks.
  const buckets = 10;
  const width = Math.max(1, (slowest - fastest) / buckets);
  const histogram: GhzReport["histogram"] = [];
  for (let i = 0; i <= buckets; i++) {
    const upper = fastest + width * i;
    const lower = i === 0 ? 0 : fastest + width * (i - 1);
    const c = count ? Math.round(percentileRank(r, upper) * count) - Math.round(percentileRank(r, lower) * count) : 0;
    histogram.push({ mark: upper / 1e6, count: Math.max(0, c), frequency: count ? Math.max(0, c) / count : 0 });
  }
  return {
    name,
    endReason: "normal",
    date: r.startedAt.toISOString(),
    count,
    total: Math.round(r.durationMs * 1e6),
    average: ns(h.mean),
    fastest: ns(fastest),
    slowest: ns(slowest),
    rps: count / (r.durationMs / 1000),
    latencyDistribution: PERCENTILES.map((p) => ({ percentage: p, latency: ns(h.getValueAtPercentile(p)) })),
    histogram,
    statusCodeDistribution: r.statusCodes,
    errorDistribution: r.errors,
    options: { mode: r.mode, dropped: r.dropped, ...options },
  };
}

/** Share of recorded values <= valueUs (binary search over percentiles; HDR has no direct CDF). */
function percentileRank(r: LoadResult, valueUs: number): number {
  let lo = 0;
  let hi = 100;
  for (let i = 0; i < 30; i++) {
    const mid = (lo + hi) / 2;
    if (r.histogram.getValueAtPercentile(mid) <= valueUs) lo = mid;
    else hi = mid;
  }
  return lo / 100;
}

/**
 * Posts a report to a ghz-web server (`POST <base>/api/ingest/`), which files it under a new
 * project; returns the server's answer. Only ever called when the operator passes a URL.
 */
export async function postToGhzWeb(baseUrl: string, report: GhzReport): Promise<unknown> {
  const res = await fetch(new URL("/api/ingest/", baseUrl), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(report),
  });
  if (!res.ok) throw new Error(`ghz-web answered ${res.status}: ${await res.text()}`);
  return res.json();
}
