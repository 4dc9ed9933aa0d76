/**
 * Planner benchmark: time-dependent earliest-arrival planning (what PlanRoute does per request:
 * nearest-hub lookup for both places, then the scheduled search) against a plain static Dijkstra
 * over the same graph, in the same process and run, on the same random origin/destination pairs
 * (fixed seed). Absolute numbers depend on the machine; the ratio is the figure to compare.
 *
 * The planner keeps, per destination and service level, a lower bound on the time left to the
 * destination from every hub, computed on a destination's first plan (about one static Dijkstra)
 * and kept for the planner's life: a running service pays it once per destination and level, at
 * most hubs × 4 times. Before timing, the bench plans once to every destination with every level
 * (origins fixed, not drawn from the seeded pairs) so the timed rows show the per-plan cost of a
 * running service; that pass is reported on its own line ("first plans") and in the JSON summary
 * (`firstPlans`). The timed rows and the pairs are the same as before the cache existed.
 *
 *   npm run build && node perf/dist/routing/plan-bench.js [pairs]
 */
import { performance } from "node:perf_hooks";
import {
  hubNetworkData,
  createHubNetwork,
  createPlanner,
  MODES_BY_SERVICE_LEVEL,
  NoRouteError,
  type ServiceLevelName,
  createSpatialIndex,
} from "@logistics/routing";
import { seededRandom } from "@logistics/shared/testing";

interface Stats {
  name: string;
  ops: number;
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
  meanUs: number;
}

/**
 * Runs the operations interleaved (op 0 on pair i, op 1 on pair i, ...) so that load from other
 * processes on a shared machine hits every operation alike, and times each call.
 */
function measureInterleaved(names: readonly string[], n: number, ops: readonly ((i: number) => void)[]): Stats[] {
  const warm = Math.min(500, n);
  for (let i = 0; i < warm; i++) for (const op of ops) op(i);
  const times = ops.map(() => new Float64Array(n));
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < ops.length; k++) {
      const s = performance.now();
      ops[k]!(i);
      times[k]![i] = performance.now() - s;
    }
  }
  return times.map((t, k) => {
    const total = t.reduce((a, b) => a + b, 0);
    t.sort();
    const q = (p: number) => t[Math.min(n - 1, Math.floor(p * n))]! * 1000;
    return { name: names[k]!, ops: n, opsPerSec: (n / total) * 1000, p50Us: q(0.5), p99Us: q(0.99), meanUs: (total / n) * 1000 };
  });
}

const pairs = Number(process.argv[2] ?? 5000);
const network = createHubNetwork(hubNetworkData);
const planner = createPlanner(network);
const spatial = createSpatialIndex(network.hubs);
const rnd = seededRandom(20261125);
const levels: ServiceLevelName[] = ["ECONOMY", "STANDARD", "EXPRESS", "OVERNIGHT"];
const readyBase = Date.UTC(2026, 10, 25, 0, 0);
const od = Array.from({ length: pairs }, () => {
  const o = network.hubs[Math.floor(rnd() * network.hubs.length)]!;
  const d = network.hubs[Math.floor(rnd() * network.hubs.length)]!;
  const jitter = () => (rnd() - 0.5) * 0.4;
  return {
    origin: { lat: o.lat + jitter(), lon: o.lon + jitter() },
    destination: { lat: d.lat + jitter(), lon: d.lon + jitter() },
    level: levels[Math.floor(rnd() * levels.length)]!,
    readyAt: readyBase + Math.floor(rnd() * 7 * 24 * 60) * 60_000,
  };
});
const hubsOf = od.map((q) => ({
  o: spatial.nearest(q.origin, { limit: 1 })[0]!.item.index,
  d: spatial.nearest(q.destination, { limit: 1 })[0]!.item.index,
}));

// Fill the planner's per-destination caches, as a running service has (see the header).
const firstPlansStart = process.cpuUsage();
let firstPlans = 0;
for (let d = 0; d < network.hubs.length; d++) {
  for (const level of levels) {
    try {
      planner.plan({ origin: (d + 1) % network.hubs.length, destination: d, readyAt: readyBase, modes: MODES_BY_SERVICE_LEVEL[level] });
    } catch (e) {
      if (!(e instanceof NoRouteError)) throw e;
    }
    firstPlans++;
  }
}
const firstPlansCpu = process.cpuUsage(firstPlansStart);
const firstPlansMeanUs = (firstPlansCpu.user + firstPlansCpu.system) / firstPlans;

let noRoute = 0;
const planOnce = (i: number, alternatives: number) => {
  const q = od[i]!;
  const o = spatial.nearest(q.origin, { limit: 1 })[0]!.item;
  const d = spatial.nearest(q.destination, { limit: 1 })[0]!.item;
  try {
    planner.planAlternatives({ origin: o.index, destination: d.index, readyAt: q.readyAt, modes: MODES_BY_SERVICE_LEVEL[q.level] }, alternatives);
  } catch (e) {
    if (!(e instanceof NoRouteError)) throw e;
    noRoute++;
  }
};

const staticOnce = (i: number) => {
  planner.staticShortestPath(hubsOf[i]!.o, hubsOf[i]!.d, MODES_BY_SERVICE_LEVEL[od[i]!.level]);
};
const results = measureInterleaved(
  ["static Dijkstra (transit-time weights)", "PlanRoute planner (time-dependent, best route)"],
  pairs,
  [staticOnce, (i) => planOnce(i, 0)],
);
const noRouteBest = noRoute;
const altPairs = Math.max(1, Math.floor(pairs / 5));
results.push(
  ...measureInterleaved(
    ["static Dijkstra (paired with the next row)", "PlanRoute planner (best + 2 alternatives)"],
    altPairs,
    [staticOnce, (i) => planOnce(i, 2)],
  ),
);

process.stdout.write(
  `hub network: ${network.hubs.length} hubs, ${network.lanes.length} lanes; ${pairs} random O/D pairs (seed 20261125), node ${process.version}\n`,
);
const ratios: number[] = [];
results.forEach((r, i) => {
  // Rows come in pairs (static, planner) measured interleaved; the ratio is planner / static.
  const base = results[i - (i % 2)]!;
  const ratio = r.opsPerSec / base.opsPerSec;
  ratios.push(ratio);
  process.stdout.write(
    `${r.name.padEnd(50)} ${r.opsPerSec.toFixed(0).padStart(8)} ops/s  p50 ${r.p50Us.toFixed(0).padStart(6)} µs  ` +
      `p99 ${r.p99Us.toFixed(0).padStart(6)} µs  ratio to static: ops/s ${ratio.toFixed(3)}, ` +
      `p50 ${(base.p50Us / r.p50Us).toFixed(3)}\n`,
  );
});
process.stdout.write(`planner calls without a route within the horizon (best-route run, incl. warm-up): ${noRouteBest}\n`);
process.stdout.write(
  `first plans (one per destination and service level, before timing; fill the planner's caches): ${firstPlans}, ` +
    `mean ${firstPlansMeanUs.toFixed(0)} µs CPU\n`,
);
process.stdout.write(
  `${JSON.stringify({
    network: { hubs: network.hubs.length, lanes: network.lanes.length },
    pairs,
    firstPlans: { plans: firstPlans, meanCpuUs: firstPlansMeanUs },
    results: results.map((r, i) => ({ ...r, ratioToStatic: ratios[i] })),
  })}\n`,
);
