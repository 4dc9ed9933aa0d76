import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type Tracer,
} from "@opentelemetry/api";
import { codeName, codeOf, observeStream } from "./observe-stream.js";
import { headersCarrier } from "./trace-carriers.js";

/**
 * OpenTelemetry RPC semantic-convention attribute keys set on RPC spans. They are still
 * "incubating" upstream, so they are copied here instead of importing the unstable entry point.
 */
export const RpcAttributes = Object.freeze({
  SYSTEM: "rpc.system",
  SERVICE: "rpc.service",
  METHOD: "rpc.method",
  /** The numeric status code; Connect codes are gRPC's codes, so it is set for every protocol. */
  GRPC_STATUS_CODE: "rpc.grpc.status_code",
  /** The Connect error code name (`not_found`), on failed calls over the Connect protocol. */
  CONNECT_RPC_ERROR_CODE: "rpc.connect_rpc.error_code",
});

/** `rpc.system` values: gRPC and gRPC-Web calls, and Connect protocol calls. */
export const RpcSystem = Object.freeze({ GRPC: "grpc", CONNECT_RPC: "connect_rpc" });

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
 * - the span is named `<package.Service>/<Method>` and carries `rpc.system` (`grpc` for gRPC and
 *   gRPC-Web, `connect_rpc` for the Connect protocol), `rpc.service`, `rpc.method` and, when the
 *   call ends, `rpc.grpc.status_code` (0 on success);
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
      {
        kind: SpanKind.SERVER,
        attributes: {
          [RpcAttributes.SYSTEM]: system,
          [RpcAttributes.SERVICE]: req.service.typeName,
          [RpcAttributes.METHOD]: req.method.name,
        },
      },
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
      {
        kind: SpanKind.CLIENT,
        attributes: {
          [RpcAttributes.SYSTEM]: system,
          [RpcAttributes.SERVICE]: req.service.typeName,
          [RpcAttributes.METHOD]: req.method.name,
        },
      },
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
async function traced(span: Span, ctx: Context, system: string, fallback: Code, req: Req, next: Next): Promise<Res> {
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

function endSpan(span: Span, system: string, fallback: Code, err: unknown): void {
  if (err === undefined) {
    span.setAttribute(RpcAttributes.GRPC_STATUS_CODE, 0);
    span.end();
    return;
  }
  const code = codeOf(err, fallback);
  span.setAttribute(RpcAttributes.GRPC_STATUS_CODE, code);
  if (system === RpcSystem.CONNECT_RPC) span.setAttribute(RpcAttributes.CONNECT_RPC_ERROR_CODE, codeName(code));
  const message = err instanceof ConnectError ? err.rawMessage : err instanceof Error ? err.message : String(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  if (!(err instanceof ConnectError) || code === Code.Internal || code === Code.Unknown || code === Code.DataLoss) {
    const cause = err instanceof ConnectError && err.cause instanceof Error ? err.cause : err;
    span.recordException(cause instanceof Error ? cause : String(cause));
  }
  span.end();
}

/** gRPC and gRPC-Web requests are `application/grpc...`; everything else is the Connect protocol. */
function rpcSystem(contentType: string | null): string {
  return contentType?.startsWith("application/grpc") ? RpcSystem.GRPC : RpcSystem.CONNECT_RPC;
}
