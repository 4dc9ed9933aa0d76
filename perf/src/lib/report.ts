import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { toGhzReport, type GhzReport } from "./ghz-report.js";
import { pMs, rps, type LoadResult } from "./load-generator.js";
import { linePlot } from "./svg-plot.js";

/** One measured scenario, optionally beside the baseline it is judged against. */
export interface ScenarioResult {
  name: string;
  description: string;
  result: LoadResult;
  baseline?: { name: string; result: LoadResult };
  /** The target as a sentence and whether it was met, e.g. "rate >= 70% of baseline". */
  target?: { text: string; met: boolean; value: string };
  notes?: string[];
  /**
   * Plots of its own, written next to the standard ones; one named `<name>-throughput.svg`
   * replaces the standard throughput plot.
   */
  plots?: Array<{ file: string; svg: string; title: string }>;
}

/**
 * Writes ghz JSON, SVG plots and a Markdown summary for every scenario into `dir`: `head` lines
 * after the title, then the scenario table and sections, then `extra`.
 */
export async function writeReport(
  dir: string,
  title: string,
  scenarios: readonly ScenarioResult[],
  extra: string[] = [],
  head: string[] = [],
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const md: string[] = [`# ${title}`, "", `Date: ${new Date().toISOString()}`, "", ...head];
  if (scenarios.length > 0) md.push("| scenario | mode | rate (calls/s) | p50 ms | p99 ms | errors | baseline rate | ratio | target |");
  if (scenarios.length > 0) md.push("|---|---|---|---|---|---|---|---|---|");
  for (const s of scenarios) {
    const reports: Array<[string, GhzReport]> = [[s.name, toGhzReport(s.name, s.result)]];
    if (s.baseline) reports.push([`${s.name}.baseline`, toGhzReport(s.baseline.name, s.baseline.result)]);
    for (const [file, rep] of reports) await writeFile(join(dir, `${file}.ghz.json`), JSON.stringify(rep, null, 2));
    const errors = Object.entries(s.result.statusCodes).filter(([k]) => k !== "OK").reduce((a, [, v]) => a + v, 0);
    const base = s.baseline ? rps(s.baseline.result) : undefined;
    md.push(
      `| ${s.name} | ${s.result.mode} | ${rps(s.result).toFixed(0)} | ${pMs(s.result, 50).toFixed(2)} | ${pMs(s.result, 99).toFixed(2)} | ${errors} | ${base?.toFixed(0) ?? "—"} | ${base ? ((rps(s.result) / base) * 100).toFixed(0) + "%" : "—"} | ${s.target ? `${s.target.met ? "met" : "MISSED"}: ${s.target.text} (${s.target.value})` : "—"} |`,
    );
    const runs = [{ label: s.name, r: s.result }, ...(s.baseline ? [{ label: s.baseline.name, r: s.baseline.result }] : [])];
    await writeFile(
      join(dir, `${s.name}-latency.svg`),
      linePlot(
        runs.flatMap(({ label, r }) => [
          { label: `${label} p50`, points: r.timeline.map((t) => [t.second, t.p50Us / 1000] as const) },
          { label: `${label} p99`, points: r.timeline.map((t) => [t.second, t.p99Us / 1000] as const) },
        ]),
        { title: `${s.name}: latency over time`, xLabel: "second", yLabel: "ms" },
      ),
    );
    await writeFile(
      join(dir, `${s.name}-percentiles.svg`),
      linePlot(
        runs.map(({ label, r }) => ({
          label,
          points: [50, 75, 90, 95, 99, 99.9, 99.99].map((p) => [100 / (100 - p), r.histogram.getValueAtPercentile(p) / 1000] as const),
        })),
        { title: `${s.name}: latency by percentile (x = 1/(1-p): 2 = p50, 100 = p99)`, xLabel: "1/(1-p)", yLabel: "ms", logX: true },
      ),
    );
    const own = new Set((s.plots ?? []).map((p) => p.file));
    if (!own.has(`${s.name}-throughput.svg`)) {
      await writeFile(
        join(dir, `${s.name}-throughput.svg`),
        linePlot(
          runs.map(({ label, r }) => ({ label, points: r.timeline.map((t) => [t.second, t.count] as const) })),
          { title: `${s.name}: completed calls per second`, xLabel: "second", yLabel: "calls/s" },
        ),
      );
    }
    for (const p of s.plots ?? []) await writeFile(join(dir, p.file), p.svg);
  }
  md.push("");
  for (const s of scenarios) {
    md.push(`## ${s.name}`, "", s.description, "");
    for (const n of s.notes ?? []) md.push(`- ${n}`);
    const others = (s.plots ?? []).filter((p) => p.file !== `${s.name}-throughput.svg`).map((p) => ` ![${p.title}](${p.file})`);
    md.push("", `![latency](${s.name}-latency.svg) ![percentiles](${s.name}-percentiles.svg) ![throughput](${s.name}-throughput.svg)${others.join("")}`, "");
  }
  md.push(...extra);
  const path = join(dir, "summary.md");
  await writeFile(path, md.join("\n") + "\n");
  return path;
}
