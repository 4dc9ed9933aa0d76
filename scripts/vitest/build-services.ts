/**
 * Global setup of the `integration` test project: compiles the packages (`tsc -b tsconfig.build.json`,
 * as `npm run build` and the Docker image do) before any integration test runs. A few tests start
 * an entry point as its own process, exactly as deployed (`node services/<name>/dist/main.js`,
 * the token CLI), and the chart test checks that the image's entry points exist. Everything else
 * runs from the TypeScript sources. Incremental (project references): an unchanged tree
 * rebuilds in a few seconds.
 */
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export default async function buildServices(): Promise<void> {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  const args = [tsc, "-b", "tsconfig.build.json"];
  await new Promise<void>((resolve, reject) => {
    execFile(process.execPath, args, { cwd: root, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`tsc -b tsconfig.build.json failed:\n${stdout}${stderr}`));
      else resolve();
    });
  });
}
