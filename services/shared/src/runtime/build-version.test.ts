import * as assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, it } from "vitest";
import { buildVersion } from "./build-version.js";

describe("buildVersion", () => {
  it("reads the version of the project's package.json above the module, as the image lays it out", async () => {
    const dir = await mkdtemp(join(tmpdir(), "build-version-"));
    try {
      // /app/package.json and /app/services/shared/dist/runtime/start-service.js, as in the image.
      const runtime = join(dir, "services", "shared", "dist", "runtime");
      await mkdir(runtime, { recursive: true });
      await writeFile(join(dir, "package.json"), JSON.stringify({ name: "logistics-mesh", version: "1.4.2" }));
      // The workspace package's own package.json on the way up is skipped.
      await writeFile(join(dir, "services", "shared", "package.json"), JSON.stringify({ name: "@logistics/shared", version: "9.9.9" }));
      assert.equal(buildVersion(pathToFileURL(join(runtime, "start-service.js")).href), "1.4.2");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("finds this repository's version from its own module, without npm's environment", () => {
    const root = JSON.parse(readFileSync(new URL("../../../../package.json", import.meta.url), "utf8")) as { version: string };
    assert.equal(buildVersion(), root.version);
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
