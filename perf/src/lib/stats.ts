/** Small statistics for reports. Pure. */
import type { Histogram } from "hdr-histogram-js";

/** Least-squares line through `points` (x, y): slope per unit of x, intercept, and r². */
export function linearRegression(points: ReadonlyArray<readonly [number, number]>): { slope: number; intercept: number; r2: number; n: number } {
  const n = points.length;
  if (n < 2) return { slope: 0, intercept: points[0]?.[1] ?? 0, r2: 0, n };
  let sx = 0;
  let sy = 0;
  for (const [x, y] of points) {
    sx += x;
    sy += y;
  }
  const mx = sx / n;
  const my = sy / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (const [x, y] of points) {
    sxx += (x - mx) ** 2;
    sxy += (x - mx) * (y - my);
    syy += (y - my) ** 2;
  }
  const slope = sxx === 0 ? 0 : sxy / sxx;
  const r2 = sxx === 0 || syy === 0 ? 0 : (sxy * sxy) / (sxx * syy);
  return { slope, intercept: my - slope * mx, r2, n };
}

/**
 * Theil–Sen slope through `points` (x, y): the median of the slopes between every pair of points
 * with distinct x. Robust: fewer than ~29% of the points, however far off, cannot set it (a line
 * through the others wins). NaN with fewer than two distinct x. O(n²): meant for tens of points.
 */
export function theilSenSlope(points: ReadonlyArray<readonly [number, number]>): number {
  const slopes: number[] = [];
  for (let i = 0; i < points.length; i++) {
    const [xi, yi] = points[i]!;
    for (let k = i + 1; k < points.length; k++) {
      const [xk, yk] = points[k]!;
      if (xk !== xi) slopes.push((yk - yi) / (xk - xi));
    }
  }
  return median(slopes);
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function mean(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Growth over `minutes` from a least-squares line through (seconds, value) points, and whether it stays within `flatWithin(mean)`. */
export function slopeVerdict(
  points: ReadonlyArray<readonly [number, number]>,
  minutes: number,
  flatWithin: (meanValue: number) => number,
): { slopePerMin: number; growth: number; mean: number; flat: boolean; n: number } {
  const fit = linearRegression(points.map(([t, v]) => [t / 60, v] as const)); // per minute
  const m = mean(points.map(([, v]) => v));
  const growth = fit.slope * minutes;
  return { slopePerMin: fit.slope, growth, mean: m, flat: growth <= flatWithin(m), n: fit.n };
}

/** Percentile (ms) of a series with its missing values counted as larger than all measured ones. */
export function seriesPercentileMs(s: { histogram: Histogram; missing: number }, p: number): number {
  const known = Number(s.histogram.totalCount);
  const n = known + s.missing;
  if (n === 0) return NaN;
  const rank = Math.ceil((p / 100) * n);
  if (rank > known) return Infinity;
  return s.histogram.getValueAtPercentile(Math.min(100, (rank / known) * 100)) / 1000;
}
