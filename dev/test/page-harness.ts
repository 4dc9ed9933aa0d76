import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { getFreePort, repoRoot } from "@logistics/shared/testing";
import { listWebHubs } from "../src/hub-directory.js";
import { buildWebPage } from "../src/web-build.js";
import { startWebServer, type WebServerHandle } from "../src/web-server.js";
import { startE2eMesh, type E2eMesh, type MeshServiceName } from "./e2e-mesh.js";

/** Debian's Chromium, driven headless by playwright-core. */
export const CHROMIUM = "/usr/bin/chromium";

/** Why the browser tests cannot run here, or undefined when they can. */
export const browserMissing: string | undefined = existsSync(CHROMIUM)
  ? undefined
  : `no headless Chromium at ${CHROMIUM} (apt-get install chromium)`;

/** Where browser tests leave screenshots (gitignored). */
export const artifacts = join(repoRoot, "test-artifacts");

/** The tracking page served next to a mesh, and a browser to open it in. */
export interface PageHarness {
  readonly mesh: E2eMesh;
  readonly web: WebServerHandle;
  readonly browser: Browser;
  /** The built page (`index.html`, `assets/`). */
  readonly outDir: string;
  /** Closes the browser, the web server and the mesh, and removes the build. */
  close(): Promise<void>;
}

/**
 * Builds the page (Vite) while the mesh starts, serves the page on a free port with the routing
 * network's hubs and the mesh's tracking URL (allowed by CORS), and launches Chromium.
 */
export async function startPageHarness(o: {
  readonly services: readonly MeshServiceName[];
  readonly optional?: readonly MeshServiceName[];
}): Promise<PageHarness> {
  const webPort = await getFreePort();
  const outDir = await mkdtemp(join(tmpdir(), "tracking-page-"));
  await mkdir(artifacts, { recursive: true });
  let mesh: E2eMesh | undefined;
  let web: WebServerHandle | undefined;
  let browser: Browser | undefined;
  const close = async () => {
    await browser?.close();
    await web?.close();
    await mesh?.close();
    await rm(outDir, { recursive: true, force: true });
  };
  try {
    const [built, started] = await Promise.all([
      buildWebPage({ repoRoot, outDir, logLevel: "error" }),
      startE2eMesh({
        services: o.services,
        ...(o.optional ? { optional: o.optional } : {}),
        env: { CORS_ORIGINS: `http://127.0.0.1:${webPort}` },
      }),
    ]);
    mesh = started;
    web = await startWebServer({ root: built, port: webPort, trackingUrl: mesh.get("tracking").url, hubs: listWebHubs() });
    const { chromium } = await import("playwright-core");
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    return { mesh, web, browser, outDir, close };
  } catch (e) {
    await close();
    throw e;
  }
}
