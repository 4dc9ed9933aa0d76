import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, it } from "vitest";
import { createClient, type CallOptions } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createEventPublisher } from "@logistics/shared/nats";
import type { RunningService } from "@logistics/shared/runtime";
import { getFreePort, spawnManagedProcess, uniqueName, waitFor, type ManagedProcess } from "@logistics/shared/testing";
import { createdEvent, createTrackingTestEnv, publishFixture, scanEvent, trackingNumber, type TrackingTestEnv } from "./tracking-fixtures.js";

const MAX_AGE_S = 2;

/** nginx as a shared cache in front of tracking, configured the way a CDN edge behaves by default. */
function nginxConfig(dir: string, port: number, upstream: string): string {
  return `
daemon off;
user root;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=tracking:1m inactive=10m;
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass ${upstream};
      proxy_http_version 1.1;
      proxy_cache tracking;
      proxy_cache_revalidate on;
      add_header X-Cache-Status $upstream_cache_status always;
    }
  }
}
`;
}

function onPath(binary: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${binary}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

// .ci/run installs Debian's nginx; elsewhere the suite says why it did not run.
const title = "public tracking reads through a real caching proxy (nginx)";
describe.skipIf(!onPath("nginx"))(onPath("nginx") ? title : `${title} (skipped: no nginx on PATH)`, () => {
  let env: TrackingTestEnv;
  let svc: RunningService;
  let nc: NatsConnection;
  let nginx: ManagedProcess;
  let dir: string;
  let edgeUrl: string;
  const tn = trackingNumber(uniqueName("h").replace(/_/g, "").toUpperCase().slice(0, 10), 1);
  const t0 = Date.UTC(2026, 10, 22, 8, 0, 0);
  const at = (h: number) => new Date(t0 + h * 3_600_000);

  /** A GetShipment through `baseUrl` as an HTTP GET, with the answer's headers. */
  async function read(baseUrl: string, opts: CallOptions = {}) {
    const client = createClient(TrackingService, createConnectTransport({ baseUrl, httpVersion: "1.1", useHttpGet: true }));
    let headers = new Headers();
    const res = await client.getShipment(
      { trackingNumber: tn },
      { ...opts, signal: AbortSignal.timeout(5000), onHeader: (h) => (headers = h) },
    );
    return { shipment: res.shipment, headers, cache: headers.get("x-cache-status") };
  }

  beforeAll(async () => {
    env = await createTrackingTestEnv();
    svc = await env.start({ TRACKING_PUBLIC_MAX_AGE_SECONDS: String(MAX_AGE_S), TRACKING_PUBLIC_STALE_SECONDS: "0" });
    nc = await connect({ servers: env.nats.url });
    const publisher = createEventPublisher({ js: jetstream(nc) });
    await publishFixture(publisher, env.subjects, createdEvent(tn, at(0)));
    await publishFixture(publisher, env.subjects, scanEvent(tn, 1, ScanKind.PICKUP, at(1)));
    await waitFor(async () => (await read(svc.url)).shipment?.version === 2n, { timeoutMs: 30_000, message: "version 2 visible" });

    dir = await mkdtemp(join(tmpdir(), "edge-cache-"));
    const port = await getFreePort();
    await writeFile(join(dir, "nginx.conf"), nginxConfig(dir, port, svc.url));
    nginx = spawnManagedProcess("nginx", ["-p", dir, "-c", join(dir, "nginx.conf")]);
    edgeUrl = `http://127.0.0.1:${port}`;
    await waitFor(
      async () => {
        await fetch(edgeUrl, { signal: AbortSignal.timeout(1000) });
        return true;
      },
      { timeoutMs: 15_000, signal: nginx.exitSignal, message: "nginx listening" },
    );
  }, 90_000);

  afterAll(async () => {
    await nginx?.stop();
    await nc?.drain();
    await env?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("marks anonymous answers public with a short max-age and an ETag of the version and content", async () => {
    const { headers } = await read(svc.url);
    assert.equal(headers.get("cache-control"), `public, max-age=${MAX_AGE_S}, stale-while-revalidate=0`);
    assert.match(headers.get("etag") ?? "", /^"2\.[A-Za-z0-9_-]{22}"$/);
    assert.match(headers.get("vary") ?? "", /authorization/i);
  });

  it("answers a GET whose If-None-Match names the current ETag with 304 and no body", async () => {
    const { shipment, headers } = await read(svc.url);
    assert.ok(shipment);
    const etag = headers.get("etag") ?? "";
    const url = new URL(`${svc.url}/${TrackingService.typeName}/GetShipment`);
    url.searchParams.set("connect", "v1");
    url.searchParams.set("encoding", "json");
    url.searchParams.set("message", JSON.stringify({ trackingNumber: tn }));
    const fresh = await fetch(url, { headers: { "if-none-match": etag }, signal: AbortSignal.timeout(5000) });
    assert.equal(fresh.status, 304);
    assert.equal(await fresh.text(), "");
    assert.equal(fresh.headers.get("etag"), etag);
    // The same version with other content (another region's copy before they converge) is stale.
    const other = etag.replace(/\.[^"]+/, ".AAAAAAAAAAAAAAAAAAAAAA");
    const stale = await fetch(url, { headers: { "if-none-match": other }, signal: AbortSignal.timeout(5000) });
    assert.equal(stale.status, 200);
    assert.equal(((await stale.json()) as { shipment: { version: string } }).shipment.version, "2");
  });

  it("serves repeated reads from the proxy's cache", async () => {
    const first = await read(edgeUrl);
    assert.equal(first.shipment?.version, 2n);
    const again = await Promise.all([read(edgeUrl), read(edgeUrl), read(edgeUrl)]);
    for (const r of again) {
      assert.equal(r.cache, "HIT");
      assert.equal(r.shipment?.version, 2n);
    }
  });

  it("never serves the public copy to a caller with a token, nor stores its private answer", async () => {
    await read(edgeUrl); // the public copy is in the cache
    const token = await env.token(["shipments:read"]);
    const auth = { headers: { authorization: `Bearer ${token}` } };
    for (let i = 0; i < 2; i++) {
      const r = await read(edgeUrl, auth);
      assert.notEqual(r.cache, "HIT");
      assert.equal(r.headers.get("cache-control"), "private, no-cache");
      assert.equal(r.shipment?.customerId, "cust-1", "the full view, not the cached public one");
    }
    const anonymous = await read(edgeUrl);
    assert.equal(anonymous.cache, "HIT");
    assert.equal(anonymous.shipment?.customerId, "", "the public view");
  });

  it("shows a status change through the cache within the max-age, and revalidates with 304 meanwhile", async () => {
    // Unchanged: once the copy expires the proxy revalidates it and the origin answers 304.
    await waitFor(async () => (await read(edgeUrl)).cache === "REVALIDATED", {
      timeoutMs: (MAX_AGE_S + 5) * 1000,
      message: "an expired copy revalidated with the origin",
    });
    const publisher = createEventPublisher({ js: jetstream(nc) });
    await publishFixture(publisher, env.subjects, scanEvent(tn, 2, ScanKind.OUT_FOR_DELIVERY, at(2)));
    await waitFor(async () => (await read(svc.url)).shipment?.version === 3n, { timeoutMs: 30_000, message: "version 3 applied" });
    const applied = Date.now();
    await waitFor(async () => (await read(edgeUrl)).shipment?.status === ShipmentStatus.OUT_FOR_DELIVERY, {
      timeoutMs: (MAX_AGE_S + 5) * 1000,
      intervalMs: 100,
      message: "the change visible through the cache",
    });
    const lag = Date.now() - applied;
    assert.ok(lag <= MAX_AGE_S * 1000 + 2000, `visible through the cache ${lag} ms after it was applied (max-age ${MAX_AGE_S} s)`);
  });
});
