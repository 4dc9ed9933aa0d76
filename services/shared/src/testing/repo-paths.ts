import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The repository root: the nearest ancestor of this module holding this project's package.json.
 * Found by walking up, so it is the same whether this module runs from source (tests) or from dist/.
 */
export const repoRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: unknown }).name === "logistics-mesh") return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error("repository root (package.json of logistics-mesh) not found");
    dir = up;
  }
})();

/**
 * The compiled JavaScript of a source file, for tests that start an entry point as its own
 * process (as deployed): `services/ingest/src/main.ts` → `<root>/services/ingest/dist/main.js` (each
 * workspace package builds its `src/` into its own `dist/`).
 * `npm run build` produces it; the integration test project builds once before its tests run.
 */
export function compiledEntry(sourcePath: string): string {
  const m = /^((?:services\/[^/]+|dev|perf))\/src\/(.+)\.ts$/.exec(sourcePath);
  if (!m) throw new Error(`not a package source file: ${sourcePath}`);
  const file = join(repoRoot, m[1] as string, "dist", `${m[2] as string}.js`);
  if (!existsSync(file)) throw new Error(`${file} does not exist: run \`npm run build\` first`);
  return file;
}
