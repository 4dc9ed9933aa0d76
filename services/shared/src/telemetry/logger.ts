import { hostname } from "node:os";
import { isSpanContextValid, trace } from "@opentelemetry/api";
import pino from "pino";

/** The logger every service uses: a pino logger. */
export type Logger = pino.Logger;

/** Where log lines go: anything pino can write to (a stream with `write(line)`). */
export type LogDestination = pino.DestinationStream;

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** The service name, written as `service` on every line. */
  service: string;
  /** Lowest level written (`trace`, `debug`, `info`, `warn`, `error`, `fatal`, `silent`). Default `info`. */
  level?: string;
  /** Where lines are written. Default: standard output. */
  destination?: LogDestination;
}

/**
 * Creates the service's JSON logger. Every line is one JSON object with:
 * - `level` as its label (`"info"`), `time` in ISO 8601 UTC, `msg`;
 * - `service`, `pid` and `hostname`;
 * - `trace_id`, `span_id` and `trace_flags` of the OpenTelemetry span active when the line is
 *   written (W3C hex forms), so a log search can jump to the trace and back. Lines written
 *   outside any span, or before telemetry is started, carry none of these keys.
 *
 * Errors logged under `err` are serialized with their type, message and stack (pino's default).
 */
export function createLogger(opts: LoggerOptions): Logger {
  const options: pino.LoggerOptions = {
    level: opts.level ?? "info",
    base: { service: opts.service, pid: process.pid, hostname: hostname() },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: {
      level: (label) => ({ level: label }),
    },
    mixin: traceFields,
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

/** The log fields naming the active span, or none outside a (valid) span. */
function traceFields(): Record<string, string> {
  const spanContext = trace.getActiveSpan()?.spanContext();
  if (spanContext === undefined || !isSpanContextValid(spanContext)) return {};
  return {
    trace_id: spanContext.traceId,
    span_id: spanContext.spanId,
    trace_flags: `0${spanContext.traceFlags.toString(16)}`.slice(-2),
  };
}
