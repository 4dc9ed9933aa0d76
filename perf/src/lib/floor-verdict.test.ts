import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { floorVerdict, SOAK_FLOOR_RULE } from "./floor-verdict.js";
import { judgeSoakMemory, soakMemorySection, type MemorySample } from "./soak-memory.js";
import { slopeVerdict, theilSenSlope } from "./stats.js";

const MIN = 60;

/** A deterministic ±`amplitude` jitter (mulberry32), so every run sees the same samples. */
function jitter(seed: number, amplitude: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32 - 0.5) * 2 * amplitude;
  };
}

/**
 * Heap-like samples every `everyS` seconds of a 10-minute load: `floor(t)`, plus GC teeth of
 * `height(t)` that climb for `periodS` and drop back, plus ±1 MiB of jitter. `endPhase` is where in
 * a tooth the load ends (0.95: just before a GC, at a peak).
 */
function sawtooth(o: {
  floor: (t: number) => number;
  height: (t: number) => number;
  periodS?: number;
  endPhase?: number;
  everyS?: number;
  endS?: number;
}): Array<[number, number]> {
  const { periodS = 45, endPhase = 0.95, everyS = 2, endS = 10 * MIN } = o;
  const offset = endPhase * periodS - (endS % periodS);
  const noise = jitter(7, 1);
  const out: Array<[number, number]> = [];
  for (let t = 0; t <= endS; t += everyS) {
    const phase = (((t + offset) % periodS) + periodS) % periodS / periodS;
    out.push([t, o.floor(t) + o.height(t) * phase + noise()]);
  }
  return out;
}

/** The verdict the soak gave before floors: a least-squares line through every sample from minute 1, flat under max(10 MiB, 10% of the mean) over 10 minutes. */
const oldVerdictFlat = (points: ReadonlyArray<readonly [number, number]>) =>
  slopeVerdict(points.filter(([t]) => t >= MIN && t <= 10 * MIN), 10, (m) => Math.max(10, 0.1 * m)).flat;

describe("floorVerdict", () => {
  it("judges a flat floor under teeth that grow taller, in a run that ends at a peak, flat", () => {
    const points = sawtooth({ floor: () => 50, height: (t) => 30 + (90 * t) / (10 * MIN) });
    const v = floorVerdict(points, 10 * MIN);
    assert.equal(v.verdict, "flat");
    assert.ok(Math.abs(v.floorSlopePerMin) < 0.5, `floor slope ${v.floorSlopePerMin}`);
    assert.equal(v.floors.length, 8, "one floor per minute from minute 2 to 10");
    assert.ok(v.floors.every((f) => f.value < 58), "every floor is near the low after a GC");
    // The samples fool a line through all of them: it follows the teeth.
    assert.ok(v.rawSlopePerMin > 2, `raw slope ${v.rawSlopePerMin}`);
    assert.equal(oldVerdictFlat(points), false, "the least-squares verdict called this growing");
  });

  it("judges a leak of 2 MiB/min under tall teeth that shrink growing", () => {
    const points = sawtooth({ floor: (t) => 60 + (2 * t) / MIN, height: (t) => 150 - (110 * t) / (10 * MIN), endPhase: 0.1 });
    const v = floorVerdict(points, 10 * MIN);
    assert.equal(v.verdict, "growing");
    assert.ok(Math.abs(v.floorSlopePerMin - 2) < 0.5, `floor slope ${v.floorSlopePerMin}`);
    assert.ok(v.rawSlopePerMin < 0, `raw slope ${v.rawSlopePerMin}: the shrinking teeth hide the leak`);
    assert.equal(oldVerdictFlat(points), true, "the least-squares verdict passed this leak");
  });

  it("judges a step in the first judged minute followed by a flat floor flat, and a step halfway growing", () => {
    const teeth = { height: () => 60 };
    // Floors 50, then 70 for seven minutes: most pairs of floors are level, and their median slope is.
    const early = sawtooth({ ...teeth, floor: (t) => (t < 3 * MIN ? 50 : 70) });
    const e = floorVerdict(early, 10 * MIN);
    assert.equal(e.verdict, "flat");
    assert.deepEqual(
      e.floors.map((f) => Math.round(f.value / 10) * 10),
      [50, 70, 70, 70, 70, 70, 70, 70],
    );
    assert.equal(oldVerdictFlat(early), false, "the least-squares verdict called the step growth");
    // Four floors at 50, four at 70: ten minutes cannot tell this from the start of a leak.
    const halfway = sawtooth({ ...teeth, floor: (t) => (t < 6 * MIN ? 50 : 70) });
    assert.equal(floorVerdict(halfway, 10 * MIN).verdict, "growing");
  });

  it("gives no verdict with fewer floors than the rule needs", () => {
    const flat = (endS: number) => sawtooth({ floor: () => 50, height: () => 60, endS });
    // A 6-minute load: four one-minute windows after the two-minute warm-up.
    const short = floorVerdict(flat(6 * MIN), 6 * MIN);
    assert.equal(short.verdict, "not enough data");
    assert.equal(short.floors.length, 4);
    assert.ok(Number.isNaN(short.floorSlopePerMin));
    // A 10-minute load whose sampler stalled in four windows (two samples each): those windows are no floors.
    const stalled = flat(10 * MIN).filter(([t]) => t < 5 * MIN || t >= 9 * MIN || t % MIN < 4);
    const s = floorVerdict(stalled, 10 * MIN);
    assert.equal(s.verdict, "not enough data");
    assert.equal(s.floors.length, 4);
    // The same full run has its eight floors and a verdict.
    assert.equal(floorVerdict(flat(10 * MIN), 10 * MIN).verdict, "flat");
  });

  it("allows 1 MiB/min up to a 200 MiB floor and 5% of the floor per 10 minutes above", () => {
    const line = (floor: number, perMin: number) => Array.from({ length: 301 }, (_, i) => [i * 2, floor + (perMin * i * 2) / MIN] as const);
    assert.equal(floorVerdict(line(100, 0), 10 * MIN).limitPerMin, SOAK_FLOOR_RULE.limitMiBPerMin);
    assert.equal(floorVerdict(line(100, 1.2), 10 * MIN).verdict, "growing");
    assert.equal(floorVerdict(line(100, 0.8), 10 * MIN).verdict, "flat");
    const big = floorVerdict(line(400, 1.5), 10 * MIN);
    assert.ok(Math.abs(big.limitPerMin - 0.005 * big.floor) < 1e-9 && big.limitPerMin > 2);
    assert.equal(big.verdict, "flat");
    assert.equal(floorVerdict(line(400, 2.5), 10 * MIN).verdict, "growing");
  });
});

describe("theilSenSlope", () => {
  it("is the slope of a line, which one point far off does not move", () => {
    const pts = Array.from({ length: 8 }, (_, i) => [i, 10 + 3 * i] as [number, number]);
    assert.equal(theilSenSlope(pts), 3);
    pts[6] = [6, 500];
    assert.equal(theilSenSlope(pts), 3);
    assert.ok(Number.isNaN(theilSenSlope([[1, 2]])));
    assert.ok(Number.isNaN(theilSenSlope([[1, 2], [1, 5]])), "no two distinct x");
  });
});

describe("judgeSoakMemory", () => {
  it("calls a service growing when either floor grows, and reports which", () => {
    const rss = sawtooth({ floor: (t) => 150 + (3 * t) / MIN, height: () => 20 });
    const heap = sawtooth({ floor: () => 50, height: () => 60 });
    const memory: MemorySample[] = [
      ...rss.map(([t, v], i) => ({ t, svc: "ingest", rssMiB: v, heapMiB: heap[i]![1] })),
      ...heap.map(([t, v]) => ({ t, svc: "routing", rssMiB: 130, heapMiB: v })),
      // No heap samples at all (its /metrics never answered).
      ...heap.map(([t]) => ({ t, svc: "tracking", rssMiB: 200 })),
    ];
    const v = judgeSoakMemory(memory, ["ingest", "routing", "tracking"], 10 * MIN);
    assert.deepEqual(
      Object.entries(v).map(([svc, x]) => [svc, x.verdict, x.rss.verdict, x.heap.verdict]),
      [
        ["ingest", "growing", "growing", "flat"],
        ["routing", "flat", "flat", "flat"],
        ["tracking", "not enough data", "flat", "not enough data"],
      ],
    );
    const md = soakMemorySection(memory, v).join("\n");
    assert.match(md, /sampled every 2 s/);
    assert.match(md, /\| ingest \| RSS \| (\d+ ){7}\d+ \| 3\.\d\d \| 1\.00 \| [\d.]+ \| \*\*growing\*\* \|/);
    assert.match(md, /Memory — \*\*growing\*\*: ingest \(RSS\); not enough data: tracking \(heap used\); flat: routing\./);
    assert.doesNotMatch(md, /V8 heap committed/, "samples without heap total or external (older soaks) get no breakdown");
    assert.doesNotMatch(md, /Bounded caches/, "no cache reported, no cache table");
  });

  it("lists a service's bounded cache by window, after the warm-up and within the load only", () => {
    // A cache filling at 45 entries/s, sampled every 2 s; a reading after the load must not show.
    const memory: MemorySample[] = [];
    for (let t = 0; t <= 10 * MIN; t += 2) memory.push({ t, svc: "ingest", rssMiB: 150, heapMiB: 50, cacheEntries: 45 * t });
    memory.push({ t: 10 * MIN + 20, svc: "ingest", rssMiB: 150, heapMiB: 50, cacheEntries: 1 });
    memory.push({ t: 5 * MIN, svc: "routing", rssMiB: 100, heapMiB: 30 });
    const md = soakMemorySection(memory, judgeSoakMemory(memory, ["ingest", "routing"], 10 * MIN)).join("\n");
    const row = md.split("\n").find((l) => l.startsWith("| ingest | ") && !l.includes("RSS") && !l.includes("heap"));
    // Windows start at 2 minutes: the last readings of minutes 2–3, ..., 9–10 (and 10:00 itself).
    assert.equal(row, "| ingest | 8,010 10,710 13,410 16,110 18,810 21,510 24,210 26,910 27,000 |");
    assert.ok(!md.split("\n").some((l) => l.startsWith("| routing | ") && /^\| routing \| [\d,]+( [\d,]+)* \|$/.test(l)), "routing reported no cache");
  });

  it("adds the floors of V8's committed heap and of external memory, over the judged load only", () => {
    const total = sawtooth({ floor: (t) => 80 + (2 * t) / MIN, height: () => 10 });
    const memory: MemorySample[] = [
      ...total.map(([t, v]) => ({ t, svc: "ingest", rssMiB: 150, heapMiB: 50, heapTotalMiB: v, externalMiB: 12 })),
      // After the load (the settle): a drop that must not become a floor.
      { t: 10 * MIN + 20, svc: "ingest", rssMiB: 150, heapMiB: 50, heapTotalMiB: 1, externalMiB: 1 },
    ];
    const md = soakMemorySection(memory, judgeSoakMemory(memory, ["ingest"], 10 * MIN)).join("\n");
    const row = (label: string) => md.split("\n").find((l) => l.startsWith(`| ingest | ${label} |`));
    const floors = (label: string) => row(label)!.split("|")[3]!.trim().split(" ").map(Number);
    assert.ok(floors("V8 heap committed").every((f) => f >= 80), `no floor from after the load: ${row("V8 heap committed")}`);
    assert.match(row("V8 heap committed")!, /\| 2\.\d\d \|$/);
    assert.match(row("external")!, /\| 0\.00 \|$/);
  });
});
