import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
} from "@opentelemetry/api";
import { codeName, codeOf, observeStream } from "./observe-stream.js";
import {
  emitsLegacy,
  LegacyRpcSystem,
  LegacySemConv,
  RpcSystemName,
  SemConv,
  serverAttributes,
} from "./semconv.js";
import { headersCarrier } from "./trace-carriers.js";

/** The tracer name RPC spans are created with. */
export const RPC_TRACER_NAME = "logistics.rpc";

/** Options of the tracing interceptors. */
export interface TracingInterceptorOptions {
  /** Tracer for the spans. Default: `trace.getTracer("logistics.rpc")` looked up at each call. */
  tracer?: Tracer;
}

/**
 * A Connect server interceptor that traces every call with a SERVER span:
 * - the caller's W3C trace context (`traceparent`, `tracestate`, `baggage` headers, as sent by
 *   gRPC, gRPC-Web and Connect clients) becomes the span's parent; without one a new trace starts;
 * - the span follows the stable RPC conventions (semantic-conventions 1.45): it is named after
 *   the fully qualified method (`logistics.ingest.v1.IngestService/StreamScans`), which is also
 *   its `rpc.method`, and carries `rpc.system.name` (`grpc` for gRPC and gRPC-Web, `connectrpc`
 *   for the Connect protocol), `server.address`/`server.port` (the authority the client called)
 *   and, when the call ends, `rpc.status_code` (gRPC: `OK`, `NOT_FOUND`...; Connect: `ok`,
 *   `not_found`...) and on failure `error.type` (the same code). With
 *   `OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup` the old `rpc.system`, `rpc.service`,
 *   `rpc.grpc.status_code` and `rpc.connect_rpc.error_code` are set as well;
 * - it is the active span while later interceptors and the handler run, including a streaming
 *   handler's body as its messages are produced, so logs and outgoing calls join the trace;
 * - unary calls end the span when the handler returns; streaming calls when the response stream
 *   ends, fails, or is abandoned (client gone, deadline);
 * - a failure sets status ERROR with the error message and the code; errors that are not
 *   ConnectErrors (answered as `Internal`) and `Internal`/`Unknown`/`DataLoss` errors are also
 *   recorded as exception events.
 *
 * Put it first among the server's interceptors so that everything after it (authentication,
 * metrics, validation) runs inside the span. Without a started telemetry SDK it costs little and
 * records nothing.
 */
export function createServerTracingInterceptor(opts: TracingInterceptorOptions = {}): Interceptor {
  return (next) => async (req) => {
    const tracer = opts.tracer ?? trace.getTracer(RPC_TRACER_NAME);
    const parent = propagation.extract(ROOT_CONTEXT, req.header, headersCarrier);
    const system = rpcSystem(req.header.get("content-type"));
    const span = tracer.startSpan(
      `${req.service.typeName}/${req.method.name}`,
      { kind: SpanKind.SERVER, attributes: rpcAttributes(req, system) },
      parent,
    );
    return traced(span, trace.setSpan(parent, span), system, Code.Internal, req, next);
  };
}

/**
 * A Connect client interceptor that traces every outgoing call with a CLIENT span (named and
 * attributed like the server's) child of the active span, and sends its context to the server
 * in the request headers (`traceparent`, `tracestate`, `baggage`). Streaming calls end the span
 * when the response stream ends, fails or is abandoned by the reader.
 */
export function createClientTracingInterceptor(opts: TracingInterceptorOptions = {}): Interceptor {
  return (next) => async (req) => {
    const tracer = opts.tracer ?? trace.getTracer(RPC_TRACER_NAME);
    const parent = context.active();
    const system = rpcSystem(req.header.get("content-type"));
    const span = tracer.startSpan(
      `${req.service.typeName}/${req.method.name}`,
      { kind: SpanKind.CLIENT, attributes: rpcAttributes(req, system) },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    propagation.inject(ctx, req.header, headersCarrier);
    return traced(span, ctx, system, Code.Unknown, req, next);
  };
}

type Next = Parameters<Interceptor>[0];
type Req = Parameters<Next>[0];
type Res = Awaited<ReturnType<Next>>;

/** Runs the call inside `ctx` and ends `span` when the call (or its response stream) is over. */
async function traced(span: Span, ctx: Context, system: RpcSystem, fallback: Code, req: Req, next: Next): Promise<Res> {
  const finish = (err: unknown) => endSpan(span, system, fallback, err);
  let res: Res;
  try {
    res = await context.with(ctx, () => next(req));
  } catch (err) {
    finish(err);
    throw err;
  }
  if (!res.stream) {
    finish(undefined);
    return res;
  }
  return { ...res, message: observeStream(res.message, { context: ctx, signal: req.signal, onEnd: finish }) };
}

function endSpan(span: Span, system: RpcSystem, fallback: Code, err: unknown): void {
  const legacy = emitsLegacy("rpc");
  const code = err === undefined ? 0 : codeOf(err, fallback);
  const status = statusCode(system, code);
  span.setAttribute(SemConv.RPC_STATUS_CODE, status);
  if (legacy) span.setAttribute(LegacySemConv.RPC_GRPC_STATUS_CODE, code);
  if (err === undefined) {
    span.end();
    return;
  }
  span.setAttribute(SemConv.ERROR_TYPE, status);
  if (legacy && system === RpcSystemName.CONNECTRPC) span.setAttribute(LegacySemConv.RPC_CONNECT_RPC_ERROR_CODE, codeName(code));
  const message = err instanceof ConnectError ? err.rawMessage : err instanceof Error ? err.message : String(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  if (!(err instanceof ConnectError) || code === Code.Internal || code === Code.Unknown || code === Code.DataLoss) {
    const cause = err instanceof ConnectError && err.cause instanceof Error ? err.cause : err;
    span.recordException(cause instanceof Error ? cause : String(cause));
  }
  span.end();
}

type RpcSystem = (typeof RpcSystemName)[keyof typeof RpcSystemName];

/** gRPC and gRPC-Web requests are `application/grpc...`; everything else is the Connect protocol. */
function rpcSystem(contentType: string | null): RpcSystem {
  return contentType?.startsWith("application/grpc") ? RpcSystemName.GRPC : RpcSystemName.CONNECTRPC;
}

/** The attributes known when the call starts. */
function rpcAttributes(req: Req, system: RpcSystem): Attributes {
  const attributes: Attributes = {
    [SemConv.RPC_SYSTEM_NAME]: system,
    [SemConv.RPC_METHOD]: `${req.service.typeName}/${req.method.name}`,
    ...serverAttributes(req.url),
  };
  if (emitsLegacy("rpc")) {
    attributes[LegacySemConv.RPC_SYSTEM] = system === RpcSystemName.GRPC ? LegacyRpcSystem.GRPC : LegacyRpcSystem.CONNECT_RPC;
    attributes[LegacySemConv.RPC_SERVICE] = req.service.typeName;
  }
  return attributes;
}

/**
 * `rpc.status_code`: gRPC's status name (`OK`, `CANCELLED`, `NOT_FOUND`) for gRPC calls, the
 * Connect error code (`canceled`, `not_found`, and `ok` for success) for Connect calls.
 */
function statusCode(system: RpcSystem, code: Code | 0): string {
  const name = codeName(code);
  if (system === RpcSystemName.CONNECTRPC) return name;
  return code === Code.Canceled ? "CANCELLED" : name.toUpperCase();
}
