/**
 * Ends every Vitest run with what other tools read: the notes tests recorded (`annotate`), every
 * skipped test with its reason, coverage per service when coverage ran, and one plain last line
 * `N passed, N failed, N skipped`. Failures outside any test (a file that did not load, an
 * unhandled error) count as failed too, so the line never reads clean when the run was not.
 */
import { relative } from "node:path";
import type { Reporter, SerializedError, TestModule } from "vitest/node";

/** The parts of an istanbul coverage map (what `@vitest/coverage-v8` hands to reporters) used here. */
interface Totals {
  total: number;
  covered: number;
}
interface FileSummary {
  lines: Totals;
  statements: Totals;
  branches: Totals;
  functions: Totals;
}
interface CoverageMapLike {
  files(): string[];
  fileCoverageFor(file: string): { toSummary(): FileSummary };
}

const METRICS = ["statements", "branches", "functions", "lines"] as const;
const LEAST_COVERED = 8;

function isCoverageMap(v: unknown): v is CoverageMapLike {
  return typeof v === "object" && v !== null && typeof (v as CoverageMapLike).files === "function";
}

const pct = (t: Totals) => (t.total === 0 ? "100.0" : ((100 * t.covered) / t.total).toFixed(1));

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")).join("\n");
}

/** Coverage per workspace package (`services/<name>`, `dev`), and the files with the most uncovered lines. */
export function coverageReport(map: CoverageMapLike, root: string): string {
  const perService = new Map<string, FileSummary & { files: number }>();
  const files: Array<{ file: string; s: FileSummary }> = [];
  for (const file of map.files()) {
    const rel = relative(root, file);
    const s = map.fileCoverageFor(file).toSummary();
    files.push({ file: rel, s });
    const name = /^(services\/[^/]+|dev|perf)\//.exec(rel)?.[1] ?? "(other)";
    const acc = perService.get(name) ?? {
      files: 0,
      lines: { total: 0, covered: 0 },
      statements: { total: 0, covered: 0 },
      branches: { total: 0, covered: 0 },
      functions: { total: 0, covered: 0 },
    };
    acc.files++;
    for (const m of METRICS) {
      acc[m].total += s[m].total;
      acc[m].covered += s[m].covered;
    }
    perService.set(name, acc);
  }
  const all = { lines: { total: 0, covered: 0 }, statements: { total: 0, covered: 0 }, branches: { total: 0, covered: 0 }, functions: { total: 0, covered: 0 } };
  const rows = [["package", "files", "% stmts", "% branch", "% funcs", "% lines"]];
  for (const [name, s] of [...perService].sort(([a], [b]) => a.localeCompare(b))) {
    rows.push([name, String(s.files), ...METRICS.map((m) => pct(s[m]))]);
    for (const m of METRICS) {
      all[m].total += s[m].total;
      all[m].covered += s[m].covered;
    }
  }
  rows.push(["all", String(files.length), ...METRICS.map((m) => pct(all[m]))]);
  const least = files
    .map(({ file, s }) => ({ file, uncovered: s.lines.total - s.lines.covered, s }))
    .filter((f) => f.uncovered > 0)
    .sort((a, b) => b.uncovered - a.uncovered)
    .slice(0, LEAST_COVERED);
  const leastRows = [["most uncovered lines", "uncovered", "% lines"], ...least.map((f) => [f.file, String(f.uncovered), pct(f.s.lines)])];
  return `coverage per service\n${table(rows)}\n\n${table(leastRows)}\n`;
}

export class SummaryReporter implements Reporter {
  private coverage: CoverageMapLike | undefined;

  constructor(private readonly root: string) {}

  onCoverage(coverage: unknown): void {
    if (isCoverageMap(coverage)) this.coverage = coverage;
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError>): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    const notes: string[] = [];
    const skips: string[] = [];
    for (const module of modules) {
      const file = relative(this.root, module.moduleId);
      for (const test of module.children.allTests()) {
        const r = test.result();
        if (r.state === "passed") passed++;
        else if (r.state === "failed") failed++;
        else if (r.state === "skipped") {
          skipped++;
          skips.push(`${file} > ${test.fullName}${r.note ? `: ${r.note}` : ""}`);
        }
        for (const a of test.annotations()) notes.push(`${file} > ${test.fullName}: ${a.message}`);
      }
      // Errors outside any test: the file did not load, or a suite's beforeAll/afterAll threw.
      failed += module.errors().length;
      for (const suite of module.children.allSuites()) failed += suite.errors().length;
    }
    const out: string[] = [""];
    if (notes.length) out.push("notes", ...notes.map((n) => `  ${n}`), "");
    if (skips.length) out.push("skipped", ...skips.map((s) => `  ${s}`), "");
    if (this.coverage) out.push(coverageReport(this.coverage, this.root));
    out.push(`${passed} passed, ${failed} failed, ${skipped} skipped`);
    process.stdout.write(out.join("\n") + "\n");
  }
}
