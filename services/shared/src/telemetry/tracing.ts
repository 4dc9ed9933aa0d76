import {
  context,
  diag,
  DiagLogLevel,
  logs,
  propagation,
  ProxyTracerProvider,
  trace,
  type Attributes,
  type DiagLogger,
  type TracerProvider,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OTLPProtoTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import {
  defaultResource,
  envDetector,
  hostDetector,
  processDetector,
  resourceFromAttributes,
  serviceInstanceIdDetector,
} from "@opentelemetry/resources";
import { NodeSDK } from "@opentelemetry/sdk-node";
import {
  BatchSpanProcessor,
  NoopSpanProcessor,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type SpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import { setSemconvStabilityOptIn } from "./semconv.js";

/** The narrow logging interface telemetry reports its own failures to (pino loggers satisfy it). */
export interface TelemetryLog {
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** The OTLP/HTTP encodings (`OTEL_EXPORTER_OTLP_PROTOCOL` values) the exporter speaks. */
export type OtlpProtocol = "http/json" | "http/protobuf";

/** Options of {@link startTelemetry}. */
export interface TelemetryOptions {
  /** `service.name` of every span (e.g. `tracking`). */
  serviceName: string;
  /** `service.version` of every span. Default: not set. */
  serviceVersion?: string;
  /**
   * Base URL of an OTLP/HTTP collector (e.g. `http://otel-collector:4318`); spans are batched and
   * sent (encoded as `otlpProtocol` says) to `<endpoint>/v1/traces` (a URL already ending in `/v1/traces` is used as
   * is). Default: no OTLP export.
   */
  otlpEndpoint?: string;
  /**
   * OTLP/HTTP encoding: `http/json` (default) or `http/protobuf` (what most collectors and
   * backends take most cheaply).
   */
  otlpProtocol?: OtlpProtocol;
  /**
   * An extra exporter that receives every ended span at once (a SimpleSpanProcessor), e.g. an
   * `InMemorySpanExporter` in tests. Default: none.
   */
  spanExporter?: SpanExporter;
  /**
   * Share of new traces recorded, 0 to 1. Calls that arrive with a trace context follow the
   * caller's sampling decision, so a trace is recorded in every service or in none. Default 1.
   */
  sampleRatio?: number;
  /** More resource attributes (e.g. `k8s.pod.name`, `deployment.environment.name`). */
  resourceAttributes?: Attributes;
  /**
   * An `OTEL_SEMCONV_STABILITY_OPT_IN` value: `rpc/dup` and `messaging/dup` add the old attribute
   * names of those conventions to the stable ones (see `setSemconvStabilityOptIn`). Default: stable
   * names only.
   */
  semconvStabilityOptIn?: string;
  /**
   * Where failures inside the SDK are reported (a collector refusing or not taking spans, a full
   * queue dropping them), at warn and error. Default: nowhere.
   */
  log?: TelemetryLog;
}

/** A running telemetry SDK. */
export interface TelemetryHandle {
  /** The SDK's tracer provider (the API's no-op provider if `OTEL_SDK_DISABLED=true`). */
  readonly tracerProvider: TracerProvider;
  /** Exports every ended span that is still buffered; rejects if an export fails. */
  forceFlush(): Promise<void>;
  /**
   * Flushes buffered spans, stops the exporters and unregisters the global tracer provider,
   * context manager and propagator, so the OpenTelemetry API is back to no-ops and
   * {@link startTelemetry} may be called again. Never rejects: spans that cannot be exported (the
   * collector is down; the exporter retries for up to 10 s) are reported to `log`. Idempotent:
   * later calls return the first call's promise.
   */
  shutdown(): Promise<void>;
}

let running: TelemetryHandle | undefined;

/**
 * Starts OpenTelemetry tracing for this process with the Node SDK and registers it globally:
 * - an AsyncLocalStorage context manager, so the active span follows async calls (and appears in
 *   logs, see `createLogger`);
 * - W3C Trace Context and Baggage propagators (`traceparent`, `tracestate`, `baggage`) for gRPC
 *   metadata, HTTP headers and NATS message headers;
 * - a resource with `service.name`, `service.version`, host, process and a per-process
 *   `service.instance.id`;
 * - a parent-based sampler with ratio `sampleRatio` for new traces;
 * - span processors: batched OTLP/HTTP export to `otlpEndpoint`, and/or immediate export to
 *   `spanExporter`.
 *
 * Without an endpoint or exporter spans are still created (trace ids are generated, propagated and
 * logged) but not exported. No instrumentations are loaded: RPCs and NATS messages are traced by
 * this project's own interceptors and wrappers.
 *
 * Before this is called (and after `shutdown`) the OpenTelemetry API is a no-op: interceptors and
 * loggers keep working and simply record nothing. The SDK honours the standard switches it reads
 * itself (`OTEL_SDK_DISABLED`, `OTEL_LOG_LEVEL`, span limit variables); everything else comes from
 * these options.
 *
 * @throws Error when telemetry is already running in this process (one SDK per process: the
 *   OpenTelemetry API keeps a single global provider).
 * @throws RangeError when `sampleRatio` is outside [0, 1]; Error when `otlpEndpoint` is not an http(s) URL.
 */
export function startTelemetry(opts: TelemetryOptions): TelemetryHandle {
  if (running !== undefined) {
    throw new Error("telemetry is already started in this process: shut the running instance down first");
  }
  const sampleRatio = opts.sampleRatio ?? 1;
  if (!(sampleRatio >= 0 && sampleRatio <= 1)) {
    throw new RangeError(`sampleRatio must be between 0 and 1, got ${sampleRatio}`);
  }

  const spanProcessors: SpanProcessor[] = [];
  if (opts.otlpEndpoint !== undefined) {
    const url = otlpTracesUrl(opts.otlpEndpoint);
    const exporter = opts.otlpProtocol === "http/protobuf" ? new OTLPProtoTraceExporter({ url }) : new OTLPTraceExporter({ url });
    spanProcessors.push(new BatchSpanProcessor({ exporter }));
  }
  if (opts.spanExporter !== undefined) {
    spanProcessors.push(new SimpleSpanProcessor({ exporter: opts.spanExporter }));
  }
  if (spanProcessors.length === 0) {
    // The SDK creates no tracer provider without a processor, and the API's no-op tracer would
    // then never start a new trace: keep a real provider that simply drops ended spans.
    spanProcessors.push(new NoopSpanProcessor());
  }

  const sdk = new NodeSDK({
    serviceName: opts.serviceName,
    resource: defaultResource().merge(
      resourceFromAttributes({
        ...opts.resourceAttributes,
        [ATTR_SERVICE_NAME]: opts.serviceName,
        ...(opts.serviceVersion !== undefined ? { [ATTR_SERVICE_VERSION]: opts.serviceVersion } : {}),
      }),
    ),
    // envDetector: OTEL_RESOURCE_ATTRIBUTES (the Helm chart puts the pod, namespace and node there).
    resourceDetectors: [envDetector, hostDetector, processDetector, serviceInstanceIdDetector],
    contextManager: new AsyncLocalStorageContextManager(),
    textMapPropagator: new CompositePropagator({
      propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
    }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(sampleRatio) }),
    spanProcessors,
    // Traces only: metrics are served by prom-client and logs by pino. Empty lists keep the SDK
    // from configuring OTLP metric and log exporters from its environment defaults.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
  });
  setSemconvStabilityOptIn(opts.semconvStabilityOptIn);
  if (opts.log !== undefined) {
    diag.setLogger(diagLogger(opts.log), { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
  }
  sdk.start();

  const global = trace.getTracerProvider();
  const tracerProvider = global instanceof ProxyTracerProvider ? global.getDelegate() : global;
  let stopped: Promise<void> | undefined;
  const handle: TelemetryHandle = {
    tracerProvider,
    async forceFlush() {
      await Promise.all(spanProcessors.map((p) => p.forceFlush()));
    },
    shutdown() {
      stopped ??= sdk
        .shutdown()
        .catch((err: unknown) => opts.log?.error({ component: "opentelemetry", err }, "could not export the last spans"))
        .finally(() => {
          trace.disable();
          context.disable();
          propagation.disable();
          logs.disable();
          if (opts.log !== undefined) diag.disable();
          setSemconvStabilityOptIn(undefined);
          if (running === handle) running = undefined;
        });
      return stopped;
    },
  };
  running = handle;
  return handle;
}

/** `<endpoint>/v1/traces`, unless the endpoint already names the traces path. */
function otlpTracesUrl(endpoint: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new Error(`otlpEndpoint ${JSON.stringify(endpoint)} is not a valid URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`otlpEndpoint ${JSON.stringify(endpoint)} must be an http(s) URL (OTLP over HTTP)`);
  }
  if (!url.pathname.endsWith("/v1/traces")) {
    url.pathname = `${url.pathname.replace(/\/+$/, "")}/v1/traces`;
  }
  return url.toString();
}

function diagLogger(log: TelemetryLog): DiagLogger {
  const details = (args: unknown[]) => {
    const err = args.find((a) => a instanceof Error);
    const rest = args.filter((a) => a !== err).map((a) => (typeof a === "string" ? a : safeJson(a)));
    return { component: "opentelemetry", ...(err !== undefined ? { err } : {}), ...(rest.length > 0 ? { details: rest } : {}) };
  };
  const none = () => {};
  return {
    error: (message, ...args) => log.error(details(args), message),
    warn: (message, ...args) => log.warn(details(args), message),
    info: none,
    debug: none,
    verbose: none,
  };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
