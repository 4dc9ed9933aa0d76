import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import net, { type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, it } from "vitest";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { createWebhookSender, RESPONSE_EXCERPT_BYTES, type WebhookRequest, type WebhookSender, type WebhookSenderOptions } from "../src/webhook-sender.js";

/** Where a request arrived: its connection (1-based, in accept order) and its place on it. */
interface Arrival {
  readonly connection: number;
  readonly onConnection: number;
  readonly deliveryId: string;
  readonly body: string;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, at: Arrival) => void;

/** A real HTTP(S) endpoint on loopback that counts its connections. */
interface TestEndpoint {
  readonly port: number;
  /** Connections accepted. */
  connections: number;
  /** Connections closed (by either side). */
  closed: number;
  readonly requests: Arrival[];
  /** TLS server name (SNI) of each connection. */
  readonly servernames: Array<string | false>;
  close(): Promise<void>;
}

const ok: Handler = (_req, res) => res.end("ok");

async function startEndpoint(
  handler: Handler = ok,
  opts: { host?: string; port?: number; tls?: { key: Buffer; cert: Buffer } } = {},
): Promise<TestEndpoint> {
  const sockets = new Set<Socket>();
  const ids = new WeakMap<Socket, { id: number; served: number }>();
  const endpoint: TestEndpoint = {
    port: 0,
    connections: 0,
    closed: 0,
    requests: [],
    servernames: [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const conn = ids.get(req.socket) as { id: number; served: number };
      const at: Arrival = {
        connection: conn.id,
        onConnection: ++conn.served,
        deliveryId: String(req.headers["logistics-delivery-id"]),
        body: Buffer.concat(chunks).toString("utf8"),
      };
      endpoint.requests.push(at);
      handler(req, res, at);
    });
  };
  const server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, listener) : http.createServer(listener);
  // Node's default (5 s, announced as `Keep-Alive: timeout=5`) would make the sender drop idle
  // connections after 4 s: long enough here that a closed connection was closed for the reason
  // a test is about.
  server.keepAliveTimeout = 120_000;
  // The socket a request sees: the TLS socket for https, the TCP socket for http.
  server.on(opts.tls ? "secureConnection" : "connection", (s: Socket & { servername?: string | false }) => {
    ids.set(s, { id: ++endpoint.connections, served: 0 });
    if (opts.tls) endpoint.servernames.push(s.servername ?? false);
    sockets.add(s);
    s.on("close", () => {
      sockets.delete(s);
      endpoint.closed++;
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => resolve());
  });
  Object.assign(endpoint, { port: (server.address() as AddressInfo).port });
  return endpoint;
}

describe("createWebhookSender (real HTTP and HTTPS endpoints on loopback)", () => {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  const endpoint = async (...args: Parameters<typeof startEndpoint>) => {
    const e = await startEndpoint(...args);
    cleanups.push(() => e.close());
    return e;
  };
  const sender = (over: Partial<WebhookSenderOptions> = {}): WebhookSender => {
    // A long idle time, so a connection closed in a test was closed for the reason under test.
    const s = createWebhookSender({ maxSocketsPerEndpoint: 4, keepAliveIdleMs: 60_000, ...over });
    cleanups.push(() => s.close());
    return s;
  };
  /**
   * A POST to `url`, pinned to `address`. The host names used here (`*.invalid`, `*.test`) do not
   * resolve, so a request reaches the endpoint only through the pin.
   */
  const post = (url: string, opts: { address?: string; timeoutMs?: number } = {}): WebhookRequest => {
    const id = uniqueName("dlv");
    return {
      target: { url: new URL(url), address: opts.address ?? "127.0.0.1", family: 4 },
      body: JSON.stringify({ id }),
      headers: { "Content-Type": "application/json", "Logistics-Delivery-Id": id },
      timeoutMs: opts.timeoutMs ?? 5000,
    };
  };
  const at = (e: TestEndpoint, host = "hooks.invalid") => `http://${host}:${e.port}/hooks`;

  it("sends sequential deliveries to one endpoint over one connection", async () => {
    const e = await endpoint();
    const s = sender();
    for (let i = 0; i < 5; i++) {
      const r = await s.send(post(at(e)));
      assert.equal(r.status, 200);
      assert.equal(r.excerpt, "ok");
    }
    assert.equal(e.connections, 1);
    assert.deepEqual(e.requests.map((q) => q.onConnection), [1, 2, 3, 4, 5]);
  });

  it("opens at most maxSocketsPerEndpoint connections for concurrent deliveries", async () => {
    // The first answer waits until two requests are in at once: the pool does open two.
    let held: Array<() => void> | undefined = [];
    const e = await endpoint((_req, res) => {
      if (!held) return void res.end("ok");
      held.push(() => res.end("ok"));
      if (held.length === 2) {
        const answers = held;
        held = undefined;
        for (const a of answers) a();
      }
    });
    const s = sender({ maxSocketsPerEndpoint: 2 });
    const results = await Promise.all(Array.from({ length: 6 }, () => s.send(post(at(e)))));
    assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200, 200]);
    assert.equal(e.connections, 2);
  });

  it("drops the connection after a body larger than the excerpt, and keeps it after a small 4xx", async () => {
    const bodies = ["x".repeat(2 * RESPONSE_EXCERPT_BYTES), "nope", "y".repeat(RESPONSE_EXCERPT_BYTES), "ok"];
    const e = await endpoint((_req, res, a) => {
      const i = e.requests.indexOf(a);
      res.statusCode = i === 1 ? 404 : 200;
      res.end(bodies[i]);
    });
    const s = sender();
    const big = await s.send(post(at(e)));
    assert.equal(big.status, 200);
    assert.equal(big.excerpt, "x".repeat(RESPONSE_EXCERPT_BYTES));
    await waitFor(() => e.closed === 1, { message: "the connection that brought the large body to be closed" });
    const refused = await s.send(post(at(e)));
    assert.deepEqual([refused.status, refused.excerpt], [404, "nope"]);
    // A body of exactly the excerpt size is read to its end: the connection is kept too.
    assert.equal((await s.send(post(at(e)))).excerpt.length, RESPONSE_EXCERPT_BYTES);
    assert.equal((await s.send(post(at(e)))).status, 200);
    assert.deepEqual(e.requests.map((q) => [q.connection, q.onConnection]), [[1, 1], [2, 1], [2, 2], [2, 3]]);
  });

  it("bounds a stalled response by timeoutMs and does not reuse its connection", async () => {
    const e = await endpoint((_req, res, a) => {
      const i = e.requests.indexOf(a);
      if (i === 0) res.writeHead(200).write("partial"); // headers and a few bytes, then nothing
      else if (i === 1) return; // no answer at all
      else res.end("ok");
    });
    const s = sender();
    const started = performance.now();
    const stalledBody = await s.send(post(at(e), { timeoutMs: 300 }));
    const elapsed = performance.now() - started;
    assert.deepEqual([stalledBody.status, stalledBody.error, stalledBody.excerpt], [200, "", "partial"]);
    assert.ok(elapsed >= 290 && elapsed < 2300, `ended by the time limit (${elapsed.toFixed(0)} ms)`);
    await waitFor(() => e.closed === 1, { message: "the stalled connection to be closed" });
    const silent = await s.send(post(at(e), { timeoutMs: 300 }));
    assert.deepEqual([silent.status, silent.error], [0, "timed out after 300 ms"]);
    await waitFor(() => e.closed === 2, { message: "the silent connection to be closed" });
    assert.equal((await s.send(post(at(e)))).status, 200);
    assert.equal(e.connections, 3);
  });

  it("ends at once with what arrived when the receiver goes away mid-body", async () => {
    const e = await endpoint((req, res) => {
      res.writeHead(200).write("par", () => req.socket.destroy());
    });
    const s = sender();
    const started = performance.now();
    const r = await s.send(post(at(e), { timeoutMs: 10_000 }));
    assert.deepEqual([r.status, r.error, r.excerpt], [200, "", "par"]);
    assert.ok(performance.now() - started < 5000, "not held until the time limit");
  });

  it("does not apply the idle timeout to a request in flight, and closes an idle connection after it", async () => {
    const e = await endpoint((_req, res) => void setTimeout(() => res.end("ok"), 300));
    const s = sender({ keepAliveIdleMs: 100 });
    const r = await s.send(post(at(e)));
    assert.deepEqual([r.status, r.error], [200, ""], "answered after 3 idle periods, still received");
    await waitFor(() => e.closed === 1, { message: "the idle connection to be closed by the sender" });
  });

  it("opens a new connection per delivery when keep-alive is off (keepAliveIdleMs 0)", async () => {
    const e = await endpoint();
    const s = sender({ keepAliveIdleMs: 0 });
    for (let i = 0; i < 3; i++) assert.equal((await s.send(post(at(e)))).status, 200);
    assert.equal(e.connections, 3);
  });

  it("delivers after the server closed an idle connection", async () => {
    const e = await endpoint((req, res) => {
      res.on("finish", () => req.socket.end());
      res.end("ok");
    });
    const s = sender();
    assert.equal((await s.send(post(at(e)))).status, 200);
    await waitFor(() => e.closed === 1, { message: "the server to close the connection" });
    const r = await s.send(post(at(e)));
    assert.deepEqual([r.status, r.error], [200, ""]);
    assert.equal(e.connections, 2);
  });

  it("sends a request once more on a new connection when the server resets a reused one before answering", async () => {
    // The keep-alive race made deterministic: the server drops a connection at its second request.
    const e = await endpoint((req, res, a) => (a.onConnection === 2 ? req.socket.destroy() : res.end("ok")));
    const s = sender();
    const first = post(at(e));
    const second = post(at(e));
    assert.equal((await s.send(first)).status, 200);
    const r = await s.send(second);
    assert.deepEqual([r.status, r.error, r.excerpt], [200, "", "ok"]);
    const id = (q: WebhookRequest) => q.headers["Logistics-Delivery-Id"];
    assert.deepEqual(
      e.requests.map((q) => [q.deliveryId, q.connection, q.onConnection]),
      [[id(first), 1, 1], [id(second), 1, 2], [id(second), 2, 1]],
      "the same delivery, byte for byte, on a new connection",
    );
    assert.equal(e.requests[1]?.body, e.requests[2]?.body);
  });

  it("does not resend after a reset of a new connection, and resends at most once", async () => {
    const fresh = await endpoint((req) => req.socket.destroy());
    const s = sender();
    const r = await s.send(post(at(fresh)));
    assert.equal(r.status, 0);
    assert.equal(r.error, "connection closed before a response");
    assert.match(r.errorDetail ?? "", /^ECONNRESET: /);
    assert.equal(fresh.requests.length, 1, "a new connection's reset is the worker's to retry (with backoff)");

    const afterFirst = await endpoint((req, res, a) => (afterFirst.requests.indexOf(a) === 0 ? res.end("ok") : req.socket.destroy()));
    assert.equal((await s.send(post(at(afterFirst)))).status, 200);
    const twice = await s.send(post(at(afterFirst)));
    assert.equal(twice.status, 0);
    assert.equal(twice.error, "connection closed before a response");
    assert.equal(afterFirst.requests.length, 3, "the first delivery, the second and its one resend");
  });

  it("tells the subscriber the class of a failure, and the operator its detail", async () => {
    const s = sender();
    const gone = await startEndpoint();
    await gone.close();
    const refused = await s.send(post(at(gone)));
    assert.deepEqual([refused.status, refused.error], [0, "connection failed"]);
    assert.match(refused.errorDetail ?? "", new RegExp(`^ECONNREFUSED: connect ECONNREFUSED 127\\.0\\.0\\.1:${gone.port}$`));

    // Something that is not an HTTP server answers on the port.
    // It reads what comes, or it would never see the sender close the connection (and close() would wait).
    const banner = net.createServer((socket) => socket.end("SSH-2.0-OpenSSH_9.6\r\n").resume());
    await new Promise<void>((resolve) => banner.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise((resolve) => banner.close(resolve)));
    const bannerPort = (banner.address() as AddressInfo).port;
    const notHttp = await s.send(post(`http://hooks.invalid:${bannerPort}/hooks`));
    assert.deepEqual([notHttp.status, notHttp.error], [0, "invalid HTTP response"]);
    assert.match(notHttp.errorDetail ?? "", /^HPE_/);

    // https to a plain http endpoint: the handshake fails.
    const plain = await endpoint();
    const tlsToPlain = await s.send(post(`https://hooks.invalid:${plain.port}/hooks`));
    assert.deepEqual([tlsToPlain.status, tlsToPlain.error], [0, "TLS error"]);
    assert.match(tlsToPlain.errorDetail ?? "", /^EPROTO: /);

    for (const r of [refused, notHttp, tlsToPlain]) {
      assert.doesNotMatch(r.error, /127\.0\.0\.1|\d{3,}|[A-Z]{2,}_/, "no address, port or error code for the subscriber");
    }
    const answered = await s.send(post(at(plain)));
    assert.deepEqual([answered.status, answered.error, answered.errorDetail], [200, "", undefined]);
  });

  it("connects to the pinned address, with one pool per address of an endpoint", async () => {
    const one = await endpoint();
    // Another endpoint on the same port of another loopback address.
    const two = await endpoint(ok, { host: "127.0.0.2", port: one.port });
    const s = sender();
    const url = at(one, "hooks.invalid");
    assert.equal((await s.send(post(url, { address: "127.0.0.1" }))).status, 200);
    // The name now resolves elsewhere (the worker re-checks it before every attempt): a pooled
    // connection to the old address must not carry it.
    assert.equal((await s.send(post(url, { address: "127.0.0.2" }))).status, 200);
    assert.equal((await s.send(post(url, { address: "127.0.0.1" }))).status, 200);
    assert.deepEqual([one.requests.length, one.connections, two.requests.length, two.connections], [2, 1, 1, 1]);
    assert.equal(s.pooledEndpoints(), 2);
  });

  it("keeps at most maxEndpoints pools, closing the least recently used", async () => {
    const [a, b, c] = [await endpoint(), await endpoint(), await endpoint()] as [TestEndpoint, TestEndpoint, TestEndpoint];
    const s = sender({ maxEndpoints: 2 });
    for (const e of [a, b, c]) assert.equal((await s.send(post(at(e)))).status, 200);
    assert.equal(s.pooledEndpoints(), 2);
    await waitFor(() => a.closed === 1, { message: "the evicted pool's connection to be closed" });
    assert.deepEqual([b.closed, c.closed], [0, 0]);
    // b is used again (kept), then a comes back on a new connection and c, now the oldest, goes.
    assert.equal((await s.send(post(at(b)))).status, 200);
    assert.equal((await s.send(post(at(a)))).status, 200);
    await waitFor(() => c.closed === 1, { message: "the least recently used pool to be closed" });
    assert.deepEqual([a.connections, b.connections, b.closed, s.pooledEndpoints()], [2, 1, 0, 2]);
  });

  it("lets a request of an evicted pool finish, then closes its connection", async () => {
    let answer: (() => void) | undefined;
    const slow = await endpoint((_req, res) => void (answer = () => res.end("late")));
    const other = await endpoint();
    const s = sender({ maxEndpoints: 1 });
    const pending = s.send(post(at(slow)));
    await waitFor(() => answer, { message: "the slow request to arrive" });
    assert.equal((await s.send(post(at(other)))).status, 200);
    assert.equal(slow.closed, 0, "not cut while in flight");
    answer?.();
    const r = await pending;
    assert.deepEqual([r.status, r.excerpt], [200, "late"]);
    await waitFor(() => slow.closed === 1, { message: "the evicted pool to be closed after its last request" });
  });

  it("closes every connection on close, and sends nothing after", async () => {
    const [a, b] = [await endpoint(), await endpoint()] as [TestEndpoint, TestEndpoint];
    const s = sender();
    for (const e of [a, b]) assert.equal((await s.send(post(at(e)))).status, 200);
    s.close();
    await waitFor(() => a.closed === 1 && b.closed === 1, { message: "pooled connections to be closed" });
    assert.deepEqual(await s.send(post(at(a))), { status: 0, error: "webhook sender closed", durationMs: 0, excerpt: "", retryAfter: undefined });
    assert.equal(a.requests.length, 1);
    assert.equal(s.pooledEndpoints(), 0);
  });

  describe("over https (self-signed certificate for hooks.test)", () => {
    let dir: string;
    let tls: { key: Buffer; cert: Buffer };
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), "webhook-tls-"));
      execFileSync("openssl", [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-subj", "/CN=hooks.test", "-addext", "subjectAltName=DNS:hooks.test",
        "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
      ], { stdio: "ignore" });
      tls = { key: await readFile(join(dir, "key.pem")), cert: await readFile(join(dir, "cert.pem")) };
    });
    afterAll(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it("keeps one TLS connection for sequential deliveries, named by the URL's host (SNI) at the pinned address", async () => {
      const e = await endpoint(ok, { tls });
      const s = sender({ ca: tls.cert });
      for (let i = 0; i < 4; i++) assert.equal((await s.send(post(`https://hooks.test:${e.port}/hooks`))).status, 200);
      assert.equal(e.connections, 1);
      assert.deepEqual(e.servernames, ["hooks.test"]);
    });

    it("still checks the certificate against the URL's host, not the pinned address", async () => {
      const e = await endpoint(ok, { tls });
      const wrongName = await sender({ ca: tls.cert }).send(post(`https://other.test:${e.port}/hooks`));
      assert.deepEqual([wrongName.status, wrongName.error], [0, "TLS error"]);
      assert.match(wrongName.errorDetail ?? "", /^ERR_TLS_CERT_ALTNAME_INVALID: /);
      const untrusted = await sender().send(post(`https://hooks.test:${e.port}/hooks`));
      assert.deepEqual([untrusted.status, untrusted.error], [0, "TLS error"]);
      assert.match(untrusted.errorDetail ?? "", /^DEPTH_ZERO_SELF_SIGNED_CERT: /);
      assert.equal(e.requests.length, 0);
    });
  });
});
