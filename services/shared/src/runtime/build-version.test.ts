import * as assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, it } from "vitest";
import { buildVersion } from "./build-version.js";

describe("buildVersion", () => {
  it("reads the version of the service's package.json above its module, as the image lays it out", async () => {
    const dir = await mkdtemp(join(tmpdir(), "build-version-"));
    try {
      // /app/package.json and /app/services/ingest/{package.json,dist/ingest.js}, as in the image.
      const dist = join(dir, "services", "ingest", "dist");
      await mkdir(dist, { recursive: true });
      await writeFile(join(dir, "package.json"), JSON.stringify({ name: "logistics-mesh", version: "1.4.2" }));
      await writeFile(join(dir, "services", "ingest", "package.json"), JSON.stringify({ name: "@logistics/ingest", version: "1.4.3" }));
      assert.equal(buildVersion(pathToFileURL(join(dist, "ingest.js")).href), "1.4.3");
      // A package.json of something else on the way up is skipped.
      await writeFile(join(dist, "package.json"), JSON.stringify({ type: "module" }));
      assert.equal(buildVersion(pathToFileURL(join(dist, "ingest.js")).href), "1.4.3");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("finds the shared package's version from its own module, without npm's environment", () => {
    const shared = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    assert.equal(buildVersion(), shared.version);
  });

  it("is undefined where no project package.json exists", async () => {
    const dir = await mkdtemp(join(tmpdir(), "build-version-"));
    try {
      assert.equal(buildVersion(pathToFileURL(join(dir, "main.js")).href), undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
