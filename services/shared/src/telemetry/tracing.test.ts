import * as assert from "node:assert/strict";
import { setImmediate as tick } from "node:timers/promises";
import { describe, it } from "vitest";
import { context, isSpanContextValid, propagation, ROOT_CONTEXT, trace, TraceFlags } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace";
import { headersCarrier } from "./trace-carriers.js";
import { startTelemetry } from "./tracing.js";

const tracer = () => trace.getTracer("tracing-test");

describe("startTelemetry", () => {
  it("refuses a second start while running, and starts again after shutdown", async () => {
    const first = startTelemetry({ serviceName: "a" });
    try {
      assert.throws(() => startTelemetry({ serviceName: "b" }), /already started/);
    } finally {
      await first.shutdown();
    }
    const second = startTelemetry({ serviceName: "b" });
    await second.shutdown();
  });

  it("has an idempotent shutdown that returns the API to no-ops", async () => {
    const exporter = new InMemorySpanExporter();
    const telemetry = startTelemetry({ serviceName: "shutdown-test", spanExporter: exporter });
    tracer().startSpan("before").end();
    await telemetry.forceFlush();
    assert.equal(exporter.getFinishedSpans().length, 1);
    const [a, b] = [telemetry.shutdown(), telemetry.shutdown()];
    assert.equal(a, b, "later calls return the first call's promise");
    await a;

    const span = tracer().startSpan("after");
    assert.equal(span.isRecording(), false);
    assert.equal(isSpanContextValid(span.spanContext()), false);
    const headers = new Headers();
    propagation.inject(trace.setSpan(ROOT_CONTEXT, span), headers, headersCarrier);
    assert.equal(headers.get("traceparent"), null, "no propagator registered any more");
    span.end();
  });

  it("without an exporter still starts traces, keeps them active across awaits and propagates them", async () => {
    const telemetry = startTelemetry({ serviceName: "no-export" });
    try {
      await tracer().startActiveSpan("work", async (span) => {
        assert.equal(isSpanContextValid(span.spanContext()), true);
        await tick();
        assert.equal(trace.getActiveSpan()?.spanContext().spanId, span.spanContext().spanId, "active after an await");
        const headers = new Headers();
        propagation.inject(context.active(), headers, headersCarrier);
        assert.equal(headers.get("traceparent"), `00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`);
        span.end();
      });
    } finally {
      await telemetry.shutdown();
    }
  });

  it("exports ended spans to the given exporter with the service resource", async () => {
    const exporter = new InMemorySpanExporter();
    const telemetry = startTelemetry({
      serviceName: "export-test",
      serviceVersion: "9.9.9",
      spanExporter: exporter,
      resourceAttributes: { "deployment.environment.name": "test" },
    });
    try {
      tracer().startSpan("unit").end();
      await telemetry.forceFlush();
      const spans = exporter.getFinishedSpans();
      assert.deepEqual(
        spans.map((s) => s.name),
        ["unit"],
      );
      const attrs = spans[0]!.resource.attributes;
      assert.equal(attrs["service.name"], "export-test");
      assert.equal(attrs["service.version"], "9.9.9");
      assert.equal(attrs["deployment.environment.name"], "test");
      assert.equal(typeof attrs["service.instance.id"], "string");
    } finally {
      await telemetry.shutdown();
    }
  });

  it("with sampleRatio 0 records no new trace but follows a sampled caller", async () => {
    const exporter = new InMemorySpanExporter();
    const telemetry = startTelemetry({ serviceName: "sampling", spanExporter: exporter, sampleRatio: 0 });
    try {
      const root = tracer().startSpan("root");
      assert.equal(root.isRecording(), false);
      assert.equal(isSpanContextValid(root.spanContext()), true, "unsampled traces still have ids to log and propagate");
      assert.equal(root.spanContext().traceFlags & TraceFlags.SAMPLED, 0);
      root.end();

      const traceId = "0af7651916cd43dd8448eb211c80319c";
      const incoming = new Headers({ traceparent: `00-${traceId}-b7ad6b7169203331-01` });
      const parent = propagation.extract(ROOT_CONTEXT, incoming, headersCarrier);
      const child = tracer().startSpan("child", {}, parent);
      assert.equal(child.isRecording(), true);
      child.end();
      await telemetry.forceFlush();
      assert.deepEqual(
        exporter.getFinishedSpans().map((s) => [s.name, s.spanContext().traceId]),
        [["child", traceId]],
      );
    } finally {
      await telemetry.shutdown();
    }
  });

  it("propagates W3C baggage", async () => {
    const telemetry = startTelemetry({ serviceName: "baggage" });
    try {
      const ctx = propagation.extract(ROOT_CONTEXT, new Headers({ baggage: "carrier=DHL" }), headersCarrier);
      assert.equal(propagation.getBaggage(ctx)?.getEntry("carrier")?.value, "DHL");
    } finally {
      await telemetry.shutdown();
    }
  });

  it("rejects a sample ratio outside [0, 1] and an endpoint that is not an http(s) URL", () => {
    assert.throws(() => startTelemetry({ serviceName: "x", sampleRatio: 1.5 }), RangeError);
    assert.throws(() => startTelemetry({ serviceName: "x", sampleRatio: Number.NaN }), RangeError);
    assert.throws(() => startTelemetry({ serviceName: "x", otlpEndpoint: "otel collector" }), /not a valid URL/);
    assert.throws(() => startTelemetry({ serviceName: "x", otlpEndpoint: "collector:4318" }), /http\(s\) URL/);
  });
});
