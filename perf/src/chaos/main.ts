/**
 * `npm run chaos`: the full fault schedule against the mesh on a three-node JetStream cluster, with
 * its report in perf/results/chaos-<date>/ (report.md, results.json). Exits 1 when the checker
 * finds a violated invariant.
 *
 *   npm run chaos                          # a new seed
 *   npm run chaos -- --seed 20261203       # repeat a run's schedule
 *   npm run chaos -- --faults redis-kill,rolling-restart --settle 15
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { repoRoot } from "@logistics/shared/testing";
import { runChaos } from "./chaos-run.js";
import { FAULTS, type FaultName } from "./faults.js";
import { canPartition } from "./netns-cluster.js";
import { chaosMarkdown } from "./report.js";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    faults: { type: "string" },
    baseline: { type: "string", default: "30" },
    settle: { type: "string", default: "25" },
    rate: { type: "string", default: "5" },
    carriers: { type: "string", default: "acme,globex,initech,umbrella" },
    out: { type: "string" },
  },
});
const seed = values.seed ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
let faults = (values.faults ? values.faults.split(",") : [...FAULTS]) as FaultName[];
for (const f of faults) if (!FAULTS.includes(f)) throw new Error(`unknown fault ${f}; one of ${FAULTS.join(", ")}`);
if (faults.includes("nats-partition") && !canPartition()) {
  console.log("[chaos] nats-partition left out: it needs root and `ip netns` (network namespaces)");
  faults = faults.filter((f) => f !== "nats-partition");
}
const stamp = new Date().toISOString().slice(0, 19).replace(/:/g, "-");
const out = values.out ?? join(repoRoot, "perf", "results", `chaos-${stamp}`);
const logDir = join(tmpdir(), `chaos-logs-${stamp}`);

const result = await runChaos({
  seed,
  faults,
  baselineMs: Number(values.baseline) * 1000,
  settleMs: Number(values.settle) * 1000,
  carriers: values.carriers.split(","),
  ratePerCarrier: Number(values.rate),
  slots: 6,
  logDir,
  log: (line) => console.log(`[chaos] ${line}`),
});
mkdirSync(out, { recursive: true });
const command = `npm run chaos -- --seed ${seed}${values.faults ? ` --faults ${values.faults}` : ""}`;
writeFileSync(join(out, "report.md"), chaosMarkdown(result, command));
writeFileSync(join(out, "results.json"), JSON.stringify(result, null, 2) + "\n");
console.log(chaosMarkdown(result, command));
console.log(`[chaos] report: ${out}/report.md; service logs: ${logDir}`);
process.exit(result.checker.ok ? 0 : 1);
