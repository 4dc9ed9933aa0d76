import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { startWebServer, type WebServerHandle } from "./web-server.js";

/** A raw GET (no URL normalisation by the client, so `..` reaches the server as sent). */
function get(url: string, path: string): Promise<{ status: number; type: string; cache: string; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method: "GET" }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          type: String(res.headers["content-type"] ?? ""),
          cache: String(res.headers["cache-control"] ?? ""),
          body,
        }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

describe("startWebServer", () => {
  let dir: string;
  let root: string;
  let web: WebServerHandle;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "web-server-"));
    root = join(dir, "site");
    await mkdir(join(root, "assets"), { recursive: true });
    await writeFile(join(root, "index.html"), "<!doctype html><title>page</title>");
    await writeFile(join(root, "assets", "app-123.js"), "console.log(1)");
    await writeFile(join(dir, "secret.txt"), "do not serve");
    web = await startWebServer({
      root,
      port: 0,
      trackingUrl: "http://127.0.0.1:8083",
      hubs: [{ code: "FRA", name: "Frankfurt", city: "Frankfurt", countryCode: "DE", latitude: 50, longitude: 8.5, timeZone: "Europe/Berlin" }],
    });
  });
  afterAll(async () => {
    await web?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("serves index.html at / and for page paths, uncached", async () => {
    for (const path of ["/", "/?t=ABCD12345678", "/track/ABCD12345678"]) {
      const res = await get(web.url, path);
      assert.equal(res.status, 200, path);
      assert.match(res.type, /^text\/html/);
      assert.match(res.body, /<title>page<\/title>/);
      assert.equal(res.cache, "no-cache");
    }
  });

  it("serves hashed assets with their type and a long cache lifetime", async () => {
    const res = await get(web.url, "/assets/app-123.js");
    assert.equal(res.status, 200);
    assert.match(res.type, /^text\/javascript/);
    assert.match(res.cache, /immutable/);
  });

  it("tells the page where tracking is and which hubs exist", async () => {
    const config = await get(web.url, "/config.json");
    assert.deepEqual(JSON.parse(config.body), { trackingUrl: "http://127.0.0.1:8083", hubsUrl: "hubs.json" });
    assert.equal(config.cache, "no-store");
    const hubs = JSON.parse((await get(web.url, "/hubs.json")).body) as Array<{ code: string; timeZone: string }>;
    assert.deepEqual(hubs.map((h) => [h.code, h.timeZone]), [["FRA", "Europe/Berlin"]]);
  });

  it("answers 404 for a missing file and never serves files outside the root", async () => {
    assert.equal((await get(web.url, "/assets/missing.js")).status, 404);
    for (const path of ["/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt"]) {
      const res = await get(web.url, path);
      assert.doesNotMatch(res.body, /do not serve/, path);
    }
  });
});
