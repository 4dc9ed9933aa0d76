export {
  createClientTracingInterceptor,
  createServerTracingInterceptor,
  RPC_TRACER_NAME,
  type TracingInterceptorOptions,
} from "./connect-tracing.js";
export {
  emitsLegacy,
  LegacyRpcSystem,
  LegacySemConv,
  redactedUrl,
  RpcSystemName,
  SemConv,
  serverAttributes,
  setSemconvStabilityOptIn,
  type SemconvCategory,
} from "./semconv.js";
export { inMessageTrace, type MessageTraceOptions } from "./message-trace.js";
export { createErrorLogInterceptor, type ErrorLog } from "./error-log.js";
export { createLogger, type LogDestination, type Logger, type LoggerOptions } from "./logger.js";
export {
  createMetrics,
  createMetricsInterceptor,
  DEFAULT_RPC_DURATION_BUCKETS,
  exemplarsEnabled,
  observeWithExemplar,
  type MetricsOptions,
  type RpcDurationLabel,
  type RpcInFlightLabel,
  type Metrics,
} from "./metrics.js";
export { startMetricsServer, type MetricsServerHandle, type MetricsServerOptions } from "./metrics-server.js";
export {
  extractFromGrpcMetadata,
  grpcMetadataCarrier,
  headersCarrier,
  injectIntoGrpcMetadata,
} from "./trace-carriers.js";
export { startTelemetry, type OtlpProtocol, type TelemetryHandle, type TelemetryLog, type TelemetryOptions } from "./tracing.js";
