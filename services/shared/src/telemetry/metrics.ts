import type { Interceptor } from "@connectrpc/connect";
import { Code } from "@connectrpc/connect";
import { isSpanContextValid, trace, TraceFlags } from "@opentelemetry/api";
import { collectDefaultMetrics, Gauge, Histogram, Registry, type LabelValues, type OpenMetricsContentType } from "prom-client";
import { codeName, codeOf, observeStream } from "./observe-stream.js";

/** Labels of {@link Metrics.rpcDuration}. */
export type RpcDurationLabel = "service" | "method" | "code" | "stream";
/** Labels of {@link Metrics.rpcInFlight}. */
export type RpcInFlightLabel = "service" | "method";

/**
 * Default buckets of the RPC duration histogram, in seconds: from 1 ms for cache hits to 30 min
 * for long-lived watch streams.
 */
export const DEFAULT_RPC_DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800,
]);

/** Options of {@link createMetrics}. */
export interface MetricsOptions {
  /** The service name (`ingest`, `tracking`...), set as the `app` label on every metric of the registry. */
  service: string;
  /** Prefix of this project's metric names. Default `logistics_`. Node.js process metrics keep their standard names. */
  prefix?: string;
  /** Buckets of the RPC duration histogram in seconds. Default {@link DEFAULT_RPC_DURATION_BUCKETS}. */
  buckets?: readonly number[];
  /**
   * Serve the OpenMetrics text format and keep, on every latency histogram bucket, the trace and
   * span ids of the latest observation made inside a sampled span (an exemplar), so a slow bucket
   * on a dashboard links to a trace. Off by default: the scrape format changes (Prometheus reads
   * it, and stores exemplars with `--enable-feature=exemplar-storage`), and OpenMetrics names
   * counters without their `_total` suffix in `# TYPE` lines.
   */
  exemplars?: boolean;
}

/** A service's metrics registry and its RPC instruments. */
export interface Metrics {
  /** The registry to serve (see `startMetricsServer`) and to register further metrics on. */
  readonly registry: Registry;
  /**
   * `<prefix>rpc_server_duration_seconds`: time from the call reaching the server's interceptors
   * to its response being complete (for streams, the end of the response stream). Labels:
   * `service` (`logistics.tracking.v1.TrackingService`), `method` (`GetShipment`), `code` (`ok`,
   * `not_found`..., Connect's names) and `stream` (`true` for streaming methods).
   */
  readonly rpcDuration: Histogram<RpcDurationLabel>;
  /** `<prefix>rpc_server_in_flight`: calls started and not yet complete. Labels `service`, `method`. */
  readonly rpcInFlight: Gauge<RpcInFlightLabel>;
  /**
   * `<prefix>rpc_server_open_streams`: streaming calls (client, server or bidi) open on this
   * replica. Labels `service`, `method`. Long-lived streams stay on the replica that accepted
   * them, so this (not CPU) is the load signal an autoscaler follows for streaming services
   * (see charts/README.md, "Autoscaling").
   */
  readonly rpcOpenStreams: Gauge<RpcInFlightLabel>;
}

/**
 * Creates a registry of its own (not prom-client's global one, so several can coexist in a
 * process, e.g. in tests) with Node.js process metrics (CPU, memory, event loop lag, GC, handles)
 * and the RPC instruments. Record RPCs with {@link createMetricsInterceptor}.
 */
export function createMetrics(opts: MetricsOptions): Metrics {
  const prefix = opts.prefix ?? "logistics_";
  const registry = new Registry();
  // Typed as the default (Prometheus) registry everywhere; only its served format differs.
  if (opts.exemplars) (registry as unknown as Registry<OpenMetricsContentType>).setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  registry.setDefaultLabels({ app: opts.service });
  collectDefaultMetrics({ register: registry });
  const rpcDuration = new Histogram<RpcDurationLabel>({
    name: `${prefix}rpc_server_duration_seconds`,
    help: "Duration of RPCs handled by this server, to the end of the response (stream)",
    labelNames: ["service", "method", "code", "stream"],
    buckets: [...(opts.buckets ?? DEFAULT_RPC_DURATION_BUCKETS)],
    registers: [registry],
    enableExemplars: exemplarsEnabled(registry),
  });
  const rpcInFlight = new Gauge<RpcInFlightLabel>({
    name: `${prefix}rpc_server_in_flight`,
    help: "RPCs being handled by this server",
    labelNames: ["service", "method"],
    registers: [registry],
  });
  const rpcOpenStreams = new Gauge<RpcInFlightLabel>({
    name: `${prefix}rpc_server_open_streams`,
    help: "Streaming RPCs open on this server",
    labelNames: ["service", "method"],
    registers: [registry],
  });
  return { registry, rpcDuration, rpcInFlight, rpcOpenStreams };
}

/**
 * A Connect server interceptor recording every call in `metrics`: the in-flight gauge (and, for
 * streaming calls, the open-streams gauge) while it runs and, once complete, its duration and outcome code in the histogram. A streaming call is
 * complete when its response stream ends, fails or is abandoned (`canceled`); errors that are not
 * ConnectErrors count as `internal`, as the server answers them.
 */
export function createMetricsInterceptor(
  metrics: Pick<Metrics, "rpcDuration" | "rpcInFlight"> & Partial<Pick<Metrics, "rpcOpenStreams">>,
): Interceptor {
  return (next) => async (req) => {
    const labels = { service: req.service.typeName, method: req.method.name };
    const stream = req.stream ? "true" : "false";
    const openStreams = req.method.methodKind !== "unary" ? metrics.rpcOpenStreams : undefined;
    const started = process.hrtime.bigint();
    metrics.rpcInFlight.inc(labels);
    openStreams?.inc(labels);
    const done = (err: unknown) => {
      metrics.rpcInFlight.dec(labels);
      openStreams?.dec(labels);
      const code = err === undefined ? 0 : codeOf(err, Code.Internal);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      observeWithExemplar(metrics.rpcDuration, { ...labels, code: codeName(code), stream }, seconds);
    };
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      done(err);
      throw err;
    }
    if (!res.stream) {
      done(undefined);
      return res;
    }
    return { ...res, message: observeStream(res.message, { signal: req.signal, onEnd: done }) };
  };
}

/**
 * Whether histograms registered on `registry` can carry exemplars (it serves OpenMetrics, see
 * {@link MetricsOptions.exemplars}): pass it as a histogram's `enableExemplars`.
 */
export function exemplarsEnabled(registry: Registry): boolean {
  return (registry.contentType as string) === Registry.OPENMETRICS_CONTENT_TYPE;
}

/**
 * Observes `value` in `histogram` (`count` times: one observation per item of a batch that took
 * `value`). When the histogram keeps exemplars and a sampled span is active, the bucket's exemplar
 * becomes `{trace_id, span_id}` of that span (set once, by the last of the `count`); otherwise
 * these are plain observations.
 */
export function observeWithExemplar<T extends string>(histogram: Histogram<T>, labels: LabelValues<T>, value: number, count = 1): void {
  if (!(histogram as { enableExemplars?: boolean }).enableExemplars) {
    for (let i = 0; i < count; i++) histogram.observe(labels, value);
    return;
  }
  if (count < 1) return;
  const none = {} as LabelValues<T>;
  for (let i = 1; i < count; i++) histogram.observe({ labels, value, exemplarLabels: none });
  const sc = trace.getActiveSpan()?.spanContext();
  const sampled = sc !== undefined && isSpanContextValid(sc) && (sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED;
  const exemplarLabels = (sampled ? { trace_id: sc.traceId, span_id: sc.spanId } : none) as LabelValues<T>;
  histogram.observe({ labels, value, exemplarLabels });
}
