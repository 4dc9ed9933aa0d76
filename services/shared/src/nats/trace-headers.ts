import { context, propagation, type Context, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";
import { Match, type MsgHdrs } from "@nats-io/transport-node";

/** Writes propagation fields (`traceparent`, `tracestate`, baggage...) as NATS headers. */
export const natsHeaderSetter: TextMapSetter<MsgHdrs> = {
  set(carrier, key, value) {
    carrier.set(key, value);
  },
};

/** Reads propagation fields from NATS headers, ignoring header-name case. */
export const natsHeaderGetter: TextMapGetter<MsgHdrs | undefined> = {
  keys(carrier) {
    return carrier ? carrier.keys() : [];
  },
  get(carrier, key) {
    if (!carrier || !carrier.has(key, Match.IgnoreCase)) return undefined;
    return carrier.get(key, Match.IgnoreCase);
  },
};

/**
 * Injects the trace context of `ctx` (default: the active context) into `headers` using the
 * globally registered propagator (W3C `traceparent`/`tracestate` when telemetry is set up; a
 * no-op otherwise).
 */
export function injectTraceContext(headers: MsgHdrs, ctx: Context = context.active()): void {
  propagation.inject(ctx, headers, natsHeaderSetter);
}

/**
 * Extracts the trace context carried by `headers` with the global propagator, on top of `base`
 * (default: the active context). Returns `base` unchanged when the headers carry none.
 */
export function extractTraceContext(headers: MsgHdrs | undefined, base: Context = context.active()): Context {
  return propagation.extract(base, headers, natsHeaderGetter);
}
