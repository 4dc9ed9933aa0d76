import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { trace } from "@opentelemetry/api";
import { createLogger, type LogDestination } from "./logger.js";
import { startTelemetry } from "./tracing.js";

/** A destination keeping every line written, parsed. */
function capture(): LogDestination & { readonly lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return {
    lines,
    write(line: string) {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    },
  };
}

describe("createLogger", () => {
  it("writes JSON lines with the service, a level label and an ISO timestamp", () => {
    const out = capture();
    const log = createLogger({ service: "tracking", destination: out });
    log.info({ shipment: "S1" }, "status changed");
    assert.equal(out.lines.length, 1);
    const line = out.lines[0]!;
    assert.equal(line.service, "tracking");
    assert.equal(line.level, "info");
    assert.equal(line.msg, "status changed");
    assert.equal(line.shipment, "S1");
    assert.equal(typeof line.time, "string");
    assert.match(line.time as string, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    assert.equal(line.pid, process.pid);
  });

  it("defaults to level info and honours a given level", () => {
    const out = capture();
    createLogger({ service: "routing", destination: out }).debug("hidden");
    assert.equal(out.lines.length, 0);
    createLogger({ service: "routing", level: "debug", destination: out }).debug("shown");
    assert.equal(out.lines.length, 1);
    assert.equal(out.lines[0]!.level, "debug");
  });

  it("works without telemetry started and writes no trace keys", () => {
    const out = capture();
    const log = createLogger({ service: "ingest", destination: out });
    trace.getTracer("logger-test").startActiveSpan("no-sdk", (span) => {
      log.info("inside a no-op span");
      span.end();
    });
    assert.equal(out.lines.length, 1);
    assert.ok(!("trace_id" in out.lines[0]!));
    assert.ok(!("span_id" in out.lines[0]!));
  });

  it("adds the active span's trace_id and span_id, and none outside a span", async () => {
    const telemetry = startTelemetry({ serviceName: "logger-test" });
    try {
      const out = capture();
      const log = createLogger({ service: "notification", destination: out });
      const ids = await trace.getTracer("logger-test").startActiveSpan("deliver", async (span) => {
        await Promise.resolve();
        log.info("delivering webhook");
        span.end();
        return span.spanContext();
      });
      log.info("outside");

      assert.equal(out.lines.length, 2);
      const [inside, outside] = out.lines as [Record<string, unknown>, Record<string, unknown>];
      assert.match(ids.traceId, /^[0-9a-f]{32}$/);
      assert.equal(inside.trace_id, ids.traceId);
      assert.equal(inside.span_id, ids.spanId);
      assert.equal(inside.trace_flags, "01");
      assert.ok(!("trace_id" in outside), "no trace_id outside any span");
      assert.ok(!("span_id" in outside));
    } finally {
      await telemetry.shutdown();
    }
  });
});
