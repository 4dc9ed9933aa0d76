import { setMaxListeners } from "node:events";
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats, natsConnectionOptions } from "../nats/connect.js";
import { createAuthInterceptor, createJwtVerifier, type MethodPolicies } from "../auth/index.js";
import { createEventCatalog, type EventCatalog } from "../events/catalog.js";
import type { Subjects } from "../nats/subjects.js";
import { ensureStreams } from "../nats/streams.js";
import { createDatabaseUnavailableInterceptor } from "../server/database-unavailable.js";
import { ServingStatus } from "../server/health.js";
import { createRequestValidationInterceptor } from "../server/request-validation.js";
import { startServer, type ServerHandle } from "../server/serve.js";
import { createStreamLimitInterceptor, type StreamLimit } from "../server/stream-limits.js";
import { createMeshValidator } from "../validation/mesh-validator.js";
import {
  createErrorLogInterceptor,
  createLogger,
  createMetrics,
  createMetricsInterceptor,
  createServerTracingInterceptor,
  startMetricsServer,
  startTelemetry,
  type Logger,
  type Metrics,
} from "../telemetry/index.js";
import type { BaseConfig } from "./base-config.js";
import { buildVersion } from "./build-version.js";

/** What a service's `start` gets: its config and the connections every service shares. */
export interface ServiceContext<C extends BaseConfig> {
  readonly config: C;
  readonly log: Logger;
  readonly nats: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly subjects: Subjects;
  /** The event catalog for this deployment's subject prefix (`catalog.subjects` is `subjects`). */
  readonly catalog: EventCatalog;
  readonly metrics: Metrics;
  /** Aborted when the service starts draining; long-lived streams end when it fires. */
  readonly drainSignal: AbortSignal;
}

/** What a service's `start` returns: its handlers, and its own resources to release. */
export interface ServiceParts {
  routes(router: ConnectRouter): void;
  /** Stops consumers and closes the service's own connections; called after RPCs drained. */
  close?(): Promise<void>;
}

/** A service, as `startService` runs it. */
export interface ServiceDefinition<C extends BaseConfig> {
  /** Short name: "ingest", "routing", "tracking", "notification". */
  name: string;
  /** The Protobuf services it serves (reflection, health). */
  services: readonly DescService[];
  /** Who may call which method. Methods without a policy are refused. */
  policies: MethodPolicies;
  /**
   * The definition module's `import.meta.url`. `runMain` reads `service.version` from the
   * package.json above it (the service's own, see `buildVersion`), wherever the process was
   * started from. Default: the shared package's version.
   */
  moduleUrl?: string;
  /** Caps on its long-lived streaming methods, per connection and per principal (from its config). */
  streamLimits?: (config: C) => StreamLimit[];
  /**
   * The service's NATS connection never receives what it publishes itself (the protocol's
   * `no_echo`), for a service that subscribes to subjects it also publishes on and handles its own
   * messages in process (tracking's change notices). Default false.
   */
  natsNoEcho?: boolean;
  /** Builds handlers and background work from the shared connections. */
  start(ctx: ServiceContext<C>): Promise<ServiceParts>;
}

/** A running service. */
export interface RunningService {
  readonly name: string;
  /** Base URL of the RPC port. */
  readonly url: string;
  readonly port: number;
  readonly metricsUrl: string;
  readonly log: Logger;
  /** Drains RPCs, stops consumers, closes connections, flushes telemetry. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts a service: NATS (+ streams) → the service's own parts → the RPC server and metrics
 * endpoint. Telemetry is process-wide and started by `runMain` (tests may run several services
 * in one process and install their own tracer provider). Every request passes tracing → metrics → internal-error log → database-unavailable mapping → auth → stream caps →
 * validation, in that order, so rejected calls are still traced and counted. Shutdown runs in reverse.
 */
export async function startService<C extends BaseConfig>(def: ServiceDefinition<C>, config: C): Promise<RunningService> {
  const log = createLogger({ service: def.name, level: config.LOG_LEVEL });
  const cleanups: Array<() => Promise<unknown>> = [];
  let closing: Promise<void> | undefined;
  const undo = async () => {
    for (const c of cleanups.reverse()) await c().catch((e: unknown) => log.error({ err: e }, "cleanup failed"));
  };
  try {
    const verifier = await createJwtVerifier({
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      maxLifetimeSec: config.JWT_MAX_LIFETIME_SECONDS,
      ...(config.JWT_JWKS_URL ? { jwksUrl: config.JWT_JWKS_URL } : {}),
      ...(config.JWT_PUBLIC_KEY_FILE ? { keyFile: config.JWT_PUBLIC_KEY_FILE } : {}),
    });
    const nats = await connectNats({
      servers: [...config.NATS_URL],
      name: def.name,
      logger: log,
      connection: {
        ...natsConnectionOptions({
          user: config.NATS_USER,
          password: config.NATS_PASSWORD,
          credsFile: config.NATS_CREDS_FILE,
          tlsCaFile: config.NATS_TLS_CA_FILE,
          tlsCertFile: config.NATS_TLS_CERT_FILE,
          tlsKeyFile: config.NATS_TLS_KEY_FILE,
        }),
        ...(def.natsNoEcho ? { noEcho: true } : {}),
      },
    });
    cleanups.push(() => nats.drain());
    const jsm = await jetstreamManager(nats);
    const js = jetstream(nats);
    const catalog = createEventCatalog(config.SUBJECT_PREFIX, config.REGION ? { region: config.REGION } : {});
    const subjects = catalog.subjects;
    if (config.ENSURE_STREAMS) {
      await ensureStreams(jsm, subjects.streamList, {
        replicas: config.STREAM_REPLICAS,
        maxAgeMs: config.STREAM_MAX_AGE_HOURS * 3_600_000,
        maxBytes: config.STREAM_MAX_BYTES,
        // Every service ensures the streams with the same setting, so none reverts another's.
        duplicateWindowMsByStream: { [subjects.streams.scans.name]: config.SCAN_DUPLICATE_WINDOW_MINUTES * 60_000 },
        // The peer regions' own events, sourced over the leaf node (nats/regions.ts).
        peers: config.REGION_PEERS,
      });
    }

    const metrics = createMetrics({ service: def.name, exemplars: config.METRICS_EXEMPLARS });
    const drain = new AbortController();
    // Open long-lived streams listen on it until they end (StreamScans: one each), as on the server's.
    setMaxListeners(0, drain.signal);
    const parts = await def.start({ config, log, nats, js, jsm, subjects, catalog, metrics, drainSignal: drain.signal });
    if (parts.close) cleanups.push(parts.close);

    const interceptors: Interceptor[] = [
      createServerTracingInterceptor(),
      createMetricsInterceptor(metrics),
      createErrorLogInterceptor(log),
      createDatabaseUnavailableInterceptor({ log }),
      createAuthInterceptor({ verifier, policies: def.policies, logger: log }),
      createStreamLimitInterceptor(def.streamLimits?.(config) ?? []),
      createRequestValidationInterceptor({ validator: createMeshValidator() }),
    ];
    const server: ServerHandle = await startServer({
      host: config.HOST,
      port: config.PORT,
      services: def.services,
      routes: parts.routes,
      interceptors,
      cors: config.CORS_ORIGINS.length ? { allowedOrigins: config.CORS_ORIGINS } : undefined,
      tls: config.TLS_CERT_FILE && config.TLS_KEY_FILE ? { cert: config.TLS_CERT_FILE, key: config.TLS_KEY_FILE } : undefined,
      trustedProxyHops: config.TRUSTED_PROXY_HOPS,
      limits: {
        headerTimeoutMs: config.HTTP_HEADER_TIMEOUT_MS,
        idleTimeoutMs: config.HTTP_IDLE_TIMEOUT_MS,
        maxConcurrentStreams: config.HTTP2_MAX_CONCURRENT_STREAMS,
        streamResetBurst: config.HTTP2_STREAM_RESET_BURST,
        streamResetRate: config.HTTP2_STREAM_RESET_RATE,
        maxHeaderBytes: config.HTTP_MAX_HEADER_BYTES,
        maxJsonBytes: config.RPC_MAX_JSON_BYTES,
        maxJsonDepth: config.RPC_MAX_JSON_DEPTH,
      },
      log,
    });
    server.drainSignal.addEventListener("abort", () => drain.abort());
    // A connection NATS closed for good (auth revoked, retries given up) leaves consumers and
    // publishers dead: report it so the orchestrator replaces this replica.
    void nats.closed().then((err) => {
      if (closing) return;
      log.error({ err }, "NATS connection closed; reporting NOT_SERVING");
      server.health.setAll(ServingStatus.NOT_SERVING);
    });
    cleanups.push(() => server.close({ graceMs: config.SHUTDOWN_GRACE_MS, drainDelayMs: config.DRAIN_DELAY_MS }));
    const metricsServer = await startMetricsServer({ registry: metrics.registry, port: config.METRICS_PORT, host: config.HOST });
    cleanups.unshift(() => metricsServer.close());

    return {
      name: def.name,
      url: server.url,
      port: server.port,
      metricsUrl: metricsServer.url,
      log,
      close: () => (closing ??= undo()),
    };
  } catch (e) {
    await undo();
    throw e;
  }
}

/**
 * Process lifecycle for a service's `main.ts`: parse config (exit 2 with every problem listed),
 * start, then drain and exit 0 on SIGTERM/SIGINT (exit 1 if draining fails).
 */
export async function runMain<C extends BaseConfig>(
  def: ServiceDefinition<C>,
  parseConfig: (env: NodeJS.ProcessEnv) => C,
): Promise<void> {
  let config: C;
  try {
    config = parseConfig(process.env);
  } catch (e) {
    process.stderr.write(`${def.name}: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  }
  const log = createLogger({ service: def.name, level: config.LOG_LEVEL });
  // Signals are caught from the first moment: one that arrives while the service is still
  // starting (the port may already answer health checks) drains it as soon as it is up.
  let signalled: string | undefined;
  let svc: RunningService | undefined;
  const onSignal = (signal: string) => {
    if (signalled) return;
    signalled = signal;
    if (svc) stop(svc, signal);
  };
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  process.once("SIGINT", () => onSignal("SIGINT"));

  const telemetry = startTelemetry({
    serviceName: def.name,
    serviceVersion: buildVersion(def.moduleUrl),
    otlpEndpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT,
    otlpProtocol: config.OTEL_EXPORTER_OTLP_PROTOCOL,
    sampleRatio: config.OTEL_TRACES_SAMPLER_ARG,
    semconvStabilityOptIn: config.OTEL_SEMCONV_STABILITY_OPT_IN,
    log,
  });
  const stop = (running: RunningService, signal: string) => {
    log.info({ signal }, "draining");
    // A handler or close step that never finishes must not keep the process alive: exit on our
    // own, before the orchestrator's SIGKILL (the Helm chart sets terminationGracePeriodSeconds
    // above this sum), so the exit is logged.
    setTimeout(() => {
      log.error({ signal }, "shutdown did not finish in time; exiting");
      process.exit(1);
    }, config.DRAIN_DELAY_MS + config.SHUTDOWN_GRACE_MS + config.SHUTDOWN_CLOSE_MS).unref();
    running
      .close()
      .then(() => telemetry.shutdown())
      .then(
        () => process.exit(0),
        (e: unknown) => {
          log.error({ err: e }, "shutdown failed");
          process.exit(1);
        },
      );
  };
  try {
    svc = await startService(def, config);
  } catch (e) {
    process.stderr.write(`${def.name}: failed to start: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  }
  svc.log.info({ url: svc.url, metrics: svc.metricsUrl }, `${def.name} ready`);
  if (signalled) stop(svc, signalled);
}
