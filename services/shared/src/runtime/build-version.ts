import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The version of the build a module belongs to: `version` of the nearest package.json of this
 * project (`@logistics/<name>` or the root `logistics-mesh`) found by walking up from the module
 * `from`. A service passes its own module's URL, so the version is its package's
 * (`services/<name>/package.json`, copied into the container image beside `dist/` by the same
 * build that compiled the code). It does not depend on how the process was started:
 * `node services/<name>/dist/main.js`, as the image runs it, sets no `npm_package_version`.
 * Undefined when no such package.json is found. Default `from`: this module (the shared
 * package's version).
 */
export function buildVersion(from: string = import.meta.url): string | undefined {
  let dir = dirname(fileURLToPath(from));
  for (;;) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: unknown; version?: unknown };
        if (isProjectPackage(pkg.name) && typeof pkg.version === "string") return pkg.version;
      } catch {
        // Not JSON: keep walking up.
      }
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

function isProjectPackage(name: unknown): boolean {
  return name === "logistics-mesh" || (typeof name === "string" && name.startsWith("@logistics/"));
}
