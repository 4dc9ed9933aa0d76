import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { trace } from "@opentelemetry/api";
import { startTelemetry, type TelemetryLog } from "../src/telemetry/tracing.js";
import { startOtlpReceiver } from "../src/testing/otlp-receiver.js";
import { waitFor } from "../src/testing/wait-for.js";

describe("startTelemetry with an OTLP endpoint", () => {
  it("sends batched spans to <endpoint>/v1/traces and flushes them on shutdown", async () => {
    const collector = await startOtlpReceiver();
    try {
      const telemetry = startTelemetry({ serviceName: "otlp-test", serviceVersion: "0.0.1", otlpEndpoint: collector.url });
      const span = trace.getTracer("otlp-test").startSpan("PlanRoute");
      span.end();
      assert.equal(collector.received.length, 0, "batched, not sent at once");
      await telemetry.shutdown();

      assert.equal(collector.received.length, 1, "sent by the time shutdown resolved");
      const [req] = collector.received;
      assert.equal(req?.method, "POST");
      assert.equal(req?.path, "/v1/traces");
      assert.match(req?.contentType ?? "", /^application\/json/);
      assert.deepEqual(
        collector.spans.map((s) => [s.name, s.traceId, s.spanId, s.resource["service.name"], s.resource["service.version"]]),
        [["PlanRoute", span.spanContext().traceId, span.spanContext().spanId, "otlp-test", "0.0.1"]],
      );
    } finally {
      await collector.close();
    }
  });

  it("uses an endpoint that already names the traces path as is", async () => {
    const collector = await startOtlpReceiver();
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
    const collector = await startOtlpReceiver({ refuseWith: 400 });
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
