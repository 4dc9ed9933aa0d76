import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, it } from "vitest";
import { findOnPath, repoRoot } from "@logistics/shared/testing";

const run = promisify(execFile);
const rulesDir = join(repoRoot, "charts", "logistics-mesh", "rules");
const rulesFile = join(rulesDir, "logistics-mesh.rules.yaml");
const testFile = join(rulesDir, "logistics-mesh.rules.test.yaml");

/**
 * The recording and alerting rules, checked and unit-tested by Prometheus' own `promtool`
 * (Debian's `prometheus` package; .ci/run installs it). Without it the tests say so and skip.
 */
describe("Prometheus rules (promtool)", () => {
  const promtool = findOnPath("promtool");
  const why = "no promtool on PATH (install Debian's prometheus package)";
  const title = (t: string) => (promtool ? t : `${t} (skipped: ${why})`);

  it.skipIf(!promtool)(title("promtool check rules: the rules file is valid and its expressions parse"), async () => {
    const { stdout } = await run(promtool!, ["check", "rules", rulesFile]);
    const found = /SUCCESS: (\d+) rules found/.exec(stdout);
    assert.ok(found, stdout);
    assert.ok(Number(found[1]) >= 40, `recording and alerting rules (${found[1]})`);
  });

  it.skipIf(!promtool)(title("promtool test rules: every SLO's burn-rate alerts and the backlog alerts fire when they must, and only then"), async () => {
    const res = await run(promtool!, ["test", "rules", testFile]).catch((e: { stdout?: string; stderr?: string }) => e);
    assert.match(String(res.stdout), /SUCCESS/, `${String(res.stdout)}${String(res.stderr ?? "")}`);
  });

  it.skipIf(!promtool)(title("the unit tests can fail: freshness thresholds no error ratio reaches leave the alert silent, and promtool says so"), async () => {
    const dir = await mkdtemp(join(tmpdir(), "rules-mutant-"));
    try {
      const rules = await readFile(rulesFile, "utf8");
      // Every freshness threshold raised above 1, which no error ratio can pass.
      const mutant = rules.replace(/(namespace:logistics_scan_not_visible:ratio_rate\w+) > [0-9.]+/g, "$1 > 2");
      assert.notEqual(mutant, rules, "the threshold is where the mutation expects it");
      await writeFile(join(dir, "logistics-mesh.rules.yaml"), mutant);
      await copyFile(testFile, join(dir, "logistics-mesh.rules.test.yaml"));
      const res = await run(promtool!, ["test", "rules", join(dir, "logistics-mesh.rules.test.yaml")]).then(
        (r) => ({ failed: false, out: r.stdout + r.stderr }),
        (e: { stdout?: string; stderr?: string }) => ({ failed: true, out: `${e.stdout ?? ""}${e.stderr ?? ""}` }),
      );
      assert.ok(res.failed, "promtool reports the missing alert");
      assert.match(res.out, /alertname: ScanFreshnessBudgetBurn/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
