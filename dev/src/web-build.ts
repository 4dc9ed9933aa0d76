import { join } from "node:path";

/** Options for {@link buildWebPage}. */
export interface BuildWebPageOptions {
  /** The repository root (holds `services/web`). */
  readonly repoRoot: string;
  /** Where the page is written. Default `services/web/dist` (as in services/web/vite.config.ts). */
  readonly outDir?: string;
  /** Vite's log level. Default "warn". */
  readonly logLevel?: "info" | "warn" | "error" | "silent";
}

/**
 * Builds the tracking page (services/web) with Vite's API and returns the output folder. Vite is
 * a development dependency, loaded only when a build is asked for.
 */
export async function buildWebPage(o: BuildWebPageOptions): Promise<string> {
  const webRoot = join(o.repoRoot, "services", "web");
  const outDir = o.outDir ?? join(webRoot, "dist");
  const vite = await import("vite");
  await vite.build({
    root: webRoot,
    configFile: join(webRoot, "vite.config.ts"),
    logLevel: o.logLevel ?? "warn",
    build: { outDir, emptyOutDir: true },
  });
  return outDir;
}
