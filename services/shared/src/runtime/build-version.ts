import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The version of the build this process runs: `version` of the project's package.json, found by
 * walking up from this module (in the container image that is `/app/package.json`, copied in by
 * the same build that compiled the code). It does not depend on how the process was started:
 * `node services/<name>/dist/main.js`, as the image runs it, sets no `npm_package_version`. Undefined when no
 * package.json named `logistics-mesh` is found.
 */
export function buildVersion(from: string = import.meta.url): string | undefined {
  let dir = dirname(fileURLToPath(from));
  for (;;) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: unknown; version?: unknown };
        if (pkg.name === "logistics-mesh" && typeof pkg.version === "string") return pkg.version;
      } catch {
        // Not JSON: keep walking up.
      }
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}
