/**
 * The soak's memory verdict, judged on floors. Pure.
 *
 * A Node.js process's heap used (and, less so, its RSS) is a sawtooth: it climbs while the process
 * allocates and drops at each major GC. A line fitted through samples of it measures where in the
 * teeth the samples fell (above all the last ones: a run that ends near a peak looks like growth)
 * and how tall the teeth are, not what the process retains; it can call a healthy process growing,
 * and pass a leak under teeth that shrink. What a process retains shows in the floors, the lows
 * after each GC: each window's lowest sample is one, and a robust line through them says whether
 * they rise.
 */
import { linearRegression, median, theilSenSlope } from "./stats.js";

/** How floors are taken and judged. */
export interface FloorRule {
  /** Seconds from the load's start not judged: JIT, connection pools, caches and V8's heap sizing settle first. */
  readonly warmupS: number;
  /** Length of the windows whose lowest sample is a floor, seconds. */
  readonly windowS: number;
  /** Fewest floors that give a verdict (Theil–Sen needs a few to outvote one odd floor). */
  readonly minWindows: number;
  /** Fewest samples a window needs for its lowest to count as a floor (a sampler that stalled leaves fewer). */
  readonly minSamplesPerWindow: number;
  /** Floor slopes under this are flat, MiB per minute... */
  readonly limitMiBPerMin: number;
  /** ...or under this share of the median floor per 10 minutes, whichever is larger. */
  readonly limitShareOfFloorPer10Min: number;
}

/**
 * The soak's rule. 1 MiB/min is ~125 B kept per scan at 140 scans/s, an order of magnitude under
 * the leak the soak found on 2026-12-03 (~2 KB per message), yet 1.4 GiB a day: it reaches the
 * chart's memory limits (512–768 Mi per service) within hours, so it must not pass. Slower growth
 * is within the scatter of the 8 floors of a 10-minute run. The 5% of the floor per 10 minutes
 * (0.5%/min) only binds above a 200 MiB floor: the floors of large processes scatter by more
 * (V8 returning and retaking heap pages moved tracking's RSS floors between 199 and 256 MiB in
 * the 2026-12-03T19-27-56 soak).
 */
export const SOAK_FLOOR_RULE: FloorRule = Object.freeze({
  warmupS: 120,
  windowS: 60,
  minWindows: 5,
  minSamplesPerWindow: 3,
  limitMiBPerMin: 1,
  limitShareOfFloorPer10Min: 0.05,
});

export type FloorVerdictKind = "flat" | "growing" | "not enough data";

/** One series judged on its floors. */
export interface FloorVerdict {
  readonly verdict: FloorVerdictKind;
  /** Each window's lowest sample: when (seconds from the load's start) and its value. Windows with too few samples are left out. */
  readonly floors: ReadonlyArray<{ readonly t: number; readonly value: number }>;
  /** Theil–Sen slope through the floors, per minute; NaN without a verdict. */
  readonly floorSlopePerMin: number;
  /** The median floor (the base of the relative limit); NaN without floors. */
  readonly floor: number;
  /** Floor slopes under this are flat: max(limitMiBPerMin, limitShareOfFloorPer10Min × floor / 10). */
  readonly limitPerMin: number;
  /** Least-squares slope through every judged sample, per minute: reported for comparison, never judged. */
  readonly rawSlopePerMin: number;
  /** Samples judged (warm-up excluded). */
  readonly samples: number;
}

/**
 * Judges a series of (seconds from the load's start, value) samples taken over a load that ends at
 * `loadEndS`: the full windows after the warm-up each give their lowest sample, and the series is
 * flat when the Theil–Sen slope through those floors is under the rule's limit. Fewer than
 * `minWindows` floors give "not enough data", never a verdict.
 */
export function floorVerdict(
  points: ReadonlyArray<readonly [number, number]>,
  loadEndS: number,
  rule: FloorRule = SOAK_FLOOR_RULE,
): FloorVerdict {
  const judged = points.filter(([t, v]) => t >= rule.warmupS && t <= loadEndS && Number.isFinite(v));
  const windows = Math.max(0, Math.floor((loadEndS - rule.warmupS) / rule.windowS));
  const lowest: Array<{ t: number; value: number; n: number } | undefined> = Array.from({ length: windows }, () => undefined);
  for (const [t, value] of judged) {
    // A sample at the load's very end belongs to the last window; past the last full one, to none.
    const i = t === loadEndS ? windows - 1 : Math.floor((t - rule.warmupS) / rule.windowS);
    if (i < 0 || i >= windows) continue;
    const w = lowest[i];
    if (!w) lowest[i] = { t, value, n: 1 };
    else {
      w.n++;
      if (value < w.value) Object.assign(w, { t, value });
    }
  }
  const floors = lowest.filter((w) => w !== undefined && w.n >= rule.minSamplesPerWindow).map((w) => ({ t: w!.t, value: w!.value }));
  const floor = median(floors.map((f) => f.value));
  const limitPerMin = Math.max(rule.limitMiBPerMin, Number.isFinite(floor) ? (rule.limitShareOfFloorPer10Min * floor) / 10 : 0);
  const rawSlopePerMin = judged.length >= 2 ? linearRegression(judged.map(([t, v]) => [t / 60, v] as const)).slope : NaN;
  if (floors.length < rule.minWindows) {
    return { verdict: "not enough data", floors, floorSlopePerMin: NaN, floor, limitPerMin, rawSlopePerMin, samples: judged.length };
  }
  const floorSlopePerMin = theilSenSlope(floors.map((f) => [f.t / 60, f.value] as const));
  return {
    verdict: floorSlopePerMin < limitPerMin ? "flat" : "growing",
    floors,
    floorSlopePerMin,
    floor,
    limitPerMin,
    rawSlopePerMin,
    samples: judged.length,
  };
}
