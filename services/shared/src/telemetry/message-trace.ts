import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Link,
  type Span,
  type Tracer,
} from "@opentelemetry/api";

/** Options of {@link inMessageTrace}. */
export interface MessageTraceOptions {
  /** Tracer for the span. Default: `trace.getTracer("logistics.rpc")`. */
  tracer?: Tracer;
  /**
   * The message's own W3C trace context (`traceparent`, `tracestate`), when its sender traced
   * it. A valid `traceparent` makes the span its child (the sender's trace continues); an absent
   * or invalid one starts a new trace. Default: none.
   */
  carrier?: { readonly traceparent?: string; readonly tracestate?: string };
  /** Attributes of the span. */
  attributes?: Attributes;
}

/**
 * Runs `fn` for one message of a long-lived stream in a span of its own, outside the stream's
 * trace: the span is the root of a new trace (or continues the message's own `carrier`
 * context), and **links** to the span active when this is called (the stream's RPC span).
 * Traces stay bounded however long the stream lives, and every message's work is still one
 * click away from the stream, and the stream from each message, in a trace viewer.
 *
 * The span is active while `fn` runs (logs and outgoing calls join its trace), is INTERNAL, ends
 * when `fn` settles, and has status ERROR with the message if `fn` rejects.
 */
export async function inMessageTrace<T>(name: string, opts: MessageTraceOptions, fn: (span: Span) => Promise<T>): Promise<T> {
  const tracer = opts.tracer ?? trace.getTracer("logistics.rpc");
  const stream = trace.getSpanContext(context.active());
  const links: Link[] = stream ? [{ context: stream, attributes: { "logistics.link": "stream" } }] : [];
  const parent = messageContext(opts.carrier);
  const span = tracer.startSpan(name, { kind: SpanKind.INTERNAL, links, ...(opts.attributes ? { attributes: opts.attributes } : {}) }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    span.end();
  }
}

/** The context a message's own trace fields carry (W3C, through the global propagator), else a fresh root. */
function messageContext(carrier: MessageTraceOptions["carrier"]): typeof ROOT_CONTEXT {
  if (!carrier?.traceparent) return ROOT_CONTEXT;
  const fields: Record<string, string> = { traceparent: carrier.traceparent };
  if (carrier.tracestate) fields["tracestate"] = carrier.tracestate;
  return propagation.extract(ROOT_CONTEXT, fields);
}
