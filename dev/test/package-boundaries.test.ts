import * as assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { describe, it } from "vitest";
import { repoRoot } from "@logistics/shared/testing";

/*
 * The workspace's package boundaries, checked on the sources. `exports` maps already stop a
 * deep import by package name from compiling; these checks cover what they cannot: relative
 * imports that climb out of a package, and which package may depend on which.
 */

interface Pkg {
  readonly name: string;
  readonly dir: string;
  readonly dependencies: readonly string[];
}

const rootPkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { workspaces: string[] };
const packages: Pkg[] = rootPkg.workspaces.map((dir) => {
  const pj = JSON.parse(readFileSync(join(repoRoot, dir, "package.json"), "utf8")) as {
    name: string;
    dependencies?: Record<string, string>;
  };
  return { name: pj.name, dir, dependencies: Object.keys(pj.dependencies ?? {}).filter((d) => d.startsWith("@logistics/")) };
});
const byName = new Map(packages.map((p) => [p.name, p]));
const SERVICES = ["@logistics/ingest", "@logistics/routing", "@logistics/tracking", "@logistics/notification"];

/** Every TypeScript source of a package (src, test), generated code excluded. */
function sources(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(join(repoRoot, d), { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (["node_modules", "dist", "gen", "results"].includes(e.name)) continue;
        walk(p);
      } else if (/\.(ts|mts)$/.test(e.name) && !e.name.endsWith(".d.ts")) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** The module specifiers a file imports (static, dynamic and re-exports). */
function specifiers(file: string): string[] {
  const src = readFileSync(join(repoRoot, file), "utf8");
  return [...src.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)"([^"]+)"/gm)].map((m) => m[1] as string);
}

describe("package boundaries", () => {
  it("lists every workspace package with its internal dependencies declared", () => {
    assert.ok(packages.length >= 8, "services/shared, the four services, web, dev and perf");
    for (const p of packages) for (const d of p.dependencies) assert.ok(byName.has(d), `${p.name} depends on unknown ${d}`);
  });

  for (const pkg of packages) {
    it(`${pkg.name}: no relative import leaves the package, and every package it imports is a declared dependency`, () => {
      const files = sources(pkg.dir);
      assert.ok(files.length > 0, `${pkg.dir} has sources`);
      for (const file of files) {
        for (const spec of specifiers(file)) {
          if (spec.startsWith(".")) {
            const target = normalize(join(dirname(file), spec));
            assert.ok(!relative(pkg.dir, target).startsWith(".."), `${file} imports ${spec}, outside ${pkg.dir}: use the package's public entry`);
          } else if (spec.startsWith("@logistics/")) {
            const dep = spec.split("/").slice(0, 2).join("/");
            if (dep === pkg.name) continue;
            assert.ok(pkg.dependencies.includes(dep), `${file} imports ${spec}, but ${pkg.name} does not declare ${dep}`);
          }
        }
      }
    });
  }

  it("keeps the layers: shared imports no other package, services and the page import only shared", () => {
    assert.deepEqual(byName.get("@logistics/shared")?.dependencies, []);
    for (const name of [...SERVICES, "@logistics/web"]) {
      const deps = byName.get(name)?.dependencies ?? [];
      assert.deepEqual(deps.filter((d) => d !== "@logistics/shared"), [], `${name} may depend on @logistics/shared only`);
    }
    for (const p of packages) {
      if (p.name === "@logistics/dev" || p.name === "@logistics/perf") continue;
      assert.ok(!p.dependencies.includes("@logistics/dev") && !p.dependencies.includes("@logistics/perf"), `${p.name} must not depend on the runner or perf`);
    }
  });
});
