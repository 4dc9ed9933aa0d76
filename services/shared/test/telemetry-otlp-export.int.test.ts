import * as assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "vitest";
import { trace } from "@opentelemetry/api";
import { startTelemetry, type TelemetryLog } from "../src/telemetry/tracing.js";
import { waitFor } from "../src/testing/wait-for.js";

interface Received {
  readonly method: string;
  readonly path: string;
  readonly contentType: string | undefined;
  readonly body: string;
}

/** A stand-in OTLP/HTTP collector on a loopback port, answering every request with `status`. */
async function startCollector(status = 200): Promise<{ url: string; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (body += chunk));
    req.on("end", () => {
      received.push({ method: req.method ?? "", path: req.url ?? "", contentType: req.headers["content-type"], body });
      res.writeHead(status, { "content-type": "application/json" }).end(status === 200 ? "{}" : '{"message":"rejected"}');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

interface OtlpAttribute {
  key: string;
  value: { stringValue?: string };
}
interface OtlpExport {
  resourceSpans: Array<{
    resource: { attributes: OtlpAttribute[] };
    scopeSpans: Array<{ spans: Array<{ name: string; traceId: string; spanId: string }> }>;
  }>;
}

describe("startTelemetry with an OTLP endpoint", () => {
  it("sends batched spans to <endpoint>/v1/traces and flushes them on shutdown", async () => {
    const collector = await startCollector();
    try {
      const telemetry = startTelemetry({ serviceName: "otlp-test", serviceVersion: "0.0.1", otlpEndpoint: collector.url });
      const span = trace.getTracer("otlp-test").startSpan("PlanRoute");
      span.end();
      assert.equal(collector.received.length, 0, "batched, not sent at once");
      await telemetry.shutdown();

      assert.equal(collector.received.length, 1, "sent by the time shutdown resolved");
      const [req] = collector.received as [Received];
      assert.equal(req.method, "POST");
      assert.equal(req.path, "/v1/traces");
      assert.match(req.contentType ?? "", /^application\/json/);
      const payload = JSON.parse(req.body) as OtlpExport;
      const rs = payload.resourceSpans[0]!;
      const attr = (key: string) => rs.resource.attributes.find((a) => a.key === key)?.value.stringValue;
      assert.equal(attr("service.name"), "otlp-test");
      assert.equal(attr("service.version"), "0.0.1");
      const exported = rs.scopeSpans.flatMap((s) => s.spans);
      assert.deepEqual(
        exported.map((s) => [s.name, s.traceId, s.spanId]),
        [["PlanRoute", span.spanContext().traceId, span.spanContext().spanId]],
      );
    } finally {
      await collector.close();
    }
  });

  it("uses an endpoint that already names the traces path as is", async () => {
    const collector = await startCollector();
    try {
      const telemetry = startTelemetry({ serviceName: "otlp-test", otlpEndpoint: `${collector.url}/custom/v1/traces` });
      trace.getTracer("otlp-test").startSpan("x").end();
      await telemetry.shutdown();
      assert.deepEqual(
        collector.received.map((r) => r.path),
        ["/custom/v1/traces"],
      );
    } finally {
      await collector.close();
    }
  });

  it("reports spans a collector refuses to the given log, and rejects forceFlush", async () => {
    const collector = await startCollector(400);
    const reports: Array<{ level: string; obj: Record<string, unknown>; msg?: string }> = [];
    const log: TelemetryLog = {
      warn: (obj, msg) => reports.push({ level: "warn", obj: { ...obj }, ...(msg === undefined ? {} : { msg }) }),
      error: (obj, msg) => reports.push({ level: "error", obj: { ...obj }, ...(msg === undefined ? {} : { msg }) }),
    };
    try {
      const telemetry = startTelemetry({ serviceName: "otlp-test", otlpEndpoint: collector.url, log });
      try {
        const tracer = trace.getTracer("otlp-test");
        tracer.startSpan("refused").end();
        await assert.rejects(telemetry.forceFlush(), "an explicit flush learns that the export failed");

        // A full batch (512 spans) is exported at once, in the background: its failure can only
        // be reported to the log.
        for (let i = 0; i < 512; i++) tracer.startSpan(`refused-${i}`).end();
        await waitFor(() => reports.length > 0, { timeoutMs: 10_000, message: "the background export failure reported" });
        assert.equal(reports[0]!.level, "error");
        assert.equal(reports[0]!.obj.component, "opentelemetry");
        assert.equal(collector.received.length, 2);
        assert.ok(collector.received.every((r) => r.path === "/v1/traces"));
      } finally {
        await telemetry.shutdown();
      }
    } finally {
      await collector.close();
    }
  });
});
