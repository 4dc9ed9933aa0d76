import * as assert from "node:assert/strict";
import * as http from "node:http";
import * as net from "node:net";
import { describe, it } from "vitest";
import { Counter, Registry } from "prom-client";
import { startMetricsServer } from "../src/telemetry/metrics-server.js";
import { createMetrics } from "../src/telemetry/metrics.js";

/** A request over a fresh keep-alive connection, so tests see what a scraper holding one sees. */
function request(url: string, method = "GET"): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: new http.Agent({ keepAlive: true }) }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** Whether something can listen on 127.0.0.1:port right now. */
function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once("error", () => resolve(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}

describe("startMetricsServer", () => {
  it("serves the registry on GET /metrics in the Prometheus text format", async () => {
    const { registry, rpcDuration } = createMetrics({ service: "metrics-server-test" });
    rpcDuration.observe({ service: "logistics.test.v1.TestService", method: "Get", code: "ok", stream: "false" }, 0.02);
    const server = await startMetricsServer({ registry, port: 0, host: "127.0.0.1" });
    try {
      assert.ok(server.port > 0, "the real port is read back");
      assert.equal(server.url, `http://127.0.0.1:${server.port}/metrics`);
      const res = await request(`${server.url}?name[]=x`);
      assert.equal(res.status, 200);
      assert.equal(res.headers["content-type"], registry.contentType);
      assert.match(res.body, /^# TYPE logistics_rpc_server_duration_seconds histogram$/m);
      assert.match(res.body, /^logistics_rpc_server_duration_seconds_count\{.*method="Get".*\} 1$/m);
      const head = await request(server.url, "HEAD");
      assert.equal(head.status, 200);
      assert.equal(head.body, "");
    } finally {
      await server.close();
    }
  });

  it("answers 404 for other paths and 405 for other methods", async () => {
    const server = await startMetricsServer({ registry: new Registry(), port: 0, host: "127.0.0.1" });
    try {
      assert.equal((await request(`http://127.0.0.1:${server.port}/`)).status, 404);
      assert.equal((await request(`http://127.0.0.1:${server.port}/metricsx`)).status, 404);
      const post = await request(server.url, "POST");
      assert.equal(post.status, 405);
      assert.equal(post.headers.allow, "GET, HEAD");
    } finally {
      await server.close();
    }
  });

  it("answers 500 when collecting fails", async () => {
    const registry = new Registry();
    new Counter({
      name: "broken_total",
      help: "a metric whose collect callback throws",
      registers: [registry],
      collect() {
        throw new Error("collector down");
      },
    });
    const server = await startMetricsServer({ registry, port: 0, host: "127.0.0.1" });
    try {
      const res = await request(server.url);
      assert.equal(res.status, 500);
      assert.match(res.body, /collector down/);
    } finally {
      await server.close();
    }
  });

  it("frees its port on close, even with a scraper's keep-alive connection open", async () => {
    const server = await startMetricsServer({ registry: new Registry(), port: 0, host: "127.0.0.1" });
    assert.equal((await request(server.url)).status, 200);
    assert.equal(await canBind(server.port), false, "the port is held while serving");
    const closing = server.close();
    assert.equal(server.close(), closing, "close is idempotent");
    await closing;
    assert.equal(await canBind(server.port), true, "the port is free after close");
    await assert.rejects(request(server.url), /ECONNREFUSED/);
  });

  it("rejects when the port is taken", async () => {
    const first = await startMetricsServer({ registry: new Registry(), port: 0, host: "127.0.0.1" });
    try {
      await assert.rejects(startMetricsServer({ registry: new Registry(), port: first.port, host: "127.0.0.1" }), /EADDRINUSE/);
    } finally {
      await first.close();
    }
  });
});
