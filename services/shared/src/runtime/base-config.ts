import { DEFAULT_MAX_TOKEN_LIFETIME_SEC } from "../auth/index.js";
import { topologyProblems } from "../nats/regions.js";
import { bool, fraction, int, list, oneOf, optional, port, str, url, urlList } from "../config/env-config.js";

/**
 * JWT_MAX_LIFETIME_SECONDS, the longest bearer token lifetime (`exp` − `iat`) the services accept.
 * Declared once for the services' config and for the mint-token CLI, which refuses to mint what
 * the services would refuse. There is no "no maximum" value: an operator whose identity provider
 * issues longer tokens raises it (up to 30 days) while moving to shorter ones, and a leaked token
 * still dies within it. The minimum of a minute catches a value given in the wrong unit.
 */
export const jwtMaxLifetimeSeconds = int({
  description:
    "longest lifetime (exp - iat) of a bearer token accepted, in seconds; tokens must carry exp and iat, and an iat in the future is refused",
  min: 60,
  max: 30 * 86_400,
  default: DEFAULT_MAX_TOKEN_LIFETIME_SEC,
});

/** Defaults that differ per service (so all four can run side by side on one machine). */
export interface BaseConfigDefaults {
  port: number;
  metricsPort: number;
}

/**
 * The environment variables every service reads: where it listens, how it authenticates
 * callers, where NATS is, telemetry and shutdown timing. Services spread this into their own
 * `defineConfig` spec and add what is theirs.
 */
export function baseConfigSpec(d: BaseConfigDefaults) {
  return {
    HOST: str({ description: "listen address", default: "0.0.0.0" }),
    PORT: port({ description: "gRPC / gRPC-Web / Connect port (h2c and HTTP/1.1 on one port)", default: d.port }),
    METRICS_PORT: port({ description: "Prometheus /metrics port (0 = pick a free port)", default: d.metricsPort }),
    METRICS_EXEMPLARS: bool({
      description:
        "serve /metrics as OpenMetrics with trace exemplars on latency histograms (Prometheus needs --enable-feature=exemplar-storage)",
      default: false,
    }),
    LOG_LEVEL: oneOf({
      description: "pino log level",
      values: ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const,
      default: "info",
    }),
    NATS_URL: urlList({
      description: "NATS servers, comma-separated",
      protocols: ["nats:", "tls:", "ws:", "wss:"],
      default: ["nats://127.0.0.1:4222"],
    }),
    SUBJECT_PREFIX: str({
      description: "root token of every NATS subject and stream name",
      pattern: /^[A-Za-z0-9_-]{1,32}$/,
      default: "logistics",
    }),
    REGION: optional(
      str({
        description:
          "this region's name: the region token of every event and subject it produces, and its nats-server's JetStream domain; unset = one region (events say `global`, consumers read every region)",
        pattern: /^[A-Za-z0-9_-]{1,64}$/,
      }),
    ),
    REGION_PEERS: list({
      description:
        "the other regions (their JetStream domains, comma-separated) whose scans, shipments, routes and shipment directory this region sources over the leaf node connection; needs REGION",
      default: [],
    }),
    STREAM_REPLICAS: int({ description: "JetStream stream replicas (3 in production)", min: 1, max: 5, default: 1 }),
    STREAM_MAX_AGE_HOURS: int({
      description: "how long JetStream keeps events (0 = until other limits); consumers must catch up within it",
      min: 0,
      default: 168,
    }),
    SCAN_DUPLICATE_WINDOW_MINUTES: int({
      description:
        "JetStream duplicate window of the scans stream: a scan resent within it is DUPLICATE even while Redis is down (costs about 200 B of server memory per scan held, on every replica)",
      min: 2,
      max: 1440,
      default: 60,
    }),
    STREAM_MAX_BYTES: int({
      description:
        "bytes each JetStream stream may hold (0 = no byte limit); a full stream refuses new publishes rather than dropping unconsumed events",
      min: 0,
      default: 0,
    }),
    NATS_USER: optional(str({ description: "NATS user name (with NATS_PASSWORD)" })),
    NATS_PASSWORD: optional(str({ description: "NATS password of NATS_USER", secret: true })),
    NATS_CREDS_FILE: optional(str({ description: "NATS credentials file (user JWT and nkey seed) for decentralized auth" })),
    NATS_TLS_CA_FILE: optional(str({ description: "PEM CA bundle that signed the NATS servers' certificates" })),
    NATS_TLS_CERT_FILE: optional(str({ description: "PEM client certificate for NATS servers that verify clients (with NATS_TLS_KEY_FILE)" })),
    NATS_TLS_KEY_FILE: optional(str({ description: "PEM private key file of NATS_TLS_CERT_FILE" })),
    JWT_ISSUER: str({ description: "expected `iss` of bearer tokens", default: "logistics-dev" }),
    JWT_AUDIENCE: str({ description: "expected `aud` of bearer tokens", default: "logistics-mesh" }),
    JWT_JWKS_URL: optional(url({ description: "JWKS endpoint with the token signing keys", protocols: ["https:", "http:"] })),
    JWT_PUBLIC_KEY_FILE: optional(str({ description: "JWKS JSON or PEM public key file with the token signing keys" })),
    JWT_MAX_LIFETIME_SECONDS: jwtMaxLifetimeSeconds,
    CORS_ORIGINS: list({ description: "browser origins allowed to call (comma-separated, * for any)", default: [] }),
    TLS_CERT_FILE: optional(str({ description: "PEM certificate; with TLS_KEY_FILE serves TLS (HTTP/2 + HTTP/1.1 via ALPN)" })),
    TLS_KEY_FILE: optional(str({ description: "PEM private key for TLS_CERT_FILE", secret: true })),
    OTEL_EXPORTER_OTLP_ENDPOINT: optional(
      url({ description: "OTLP/HTTP collector base URL for traces", protocols: ["http:", "https:"] }),
    ),
    OTEL_EXPORTER_OTLP_PROTOCOL: oneOf({
      description: "OTLP/HTTP encoding of exported spans",
      values: ["http/json", "http/protobuf"] as const,
      default: "http/json",
    }),
    OTEL_TRACES_SAMPLER_ARG: fraction({
      description:
        "share of new traces recorded (parent-based: a request or event that arrives sampled stays sampled); below 1 saves the CPU of recording spans at high rates, trace context is propagated either way",
      default: 1,
    }),
    OTEL_SEMCONV_STABILITY_OPT_IN: optional(
      str({
        description:
          "comma-separated; rpc/dup and messaging/dup also emit the pre-1.38 RPC and messaging attribute names (rpc.system, rpc.service, rpc.grpc.status_code, messaging.system) next to the stable ones",
      }),
    ),
    OTEL_RESOURCE_ATTRIBUTES: optional(
      str({
        description: "more OpenTelemetry resource attributes, key=value pairs separated by commas (read by the SDK)",
        pattern: /^[^=,\s]+=[^,]*(,[^=,\s]+=[^,]*)*$/,
      }),
    ),
    SHUTDOWN_GRACE_MS: int({ description: "time in-flight RPCs and streams get to finish on SIGTERM", min: 0, default: 10_000 }),
    DRAIN_DELAY_MS: int({
      description: "wait after turning NOT_SERVING before refusing connections (lets load balancers notice)",
      min: 0,
      default: 0,
    }),
    SHUTDOWN_CLOSE_MS: int({
      description:
        "after in-flight RPCs end: time to stop consumers, drain NATS and flush telemetry before the process exits anyway",
      min: 1000,
      default: 10_000,
    }),
    HTTP_HEADER_TIMEOUT_MS: int({
      description:
        "time a connection to PORT gets, from its first byte, to send complete request headers (HTTP/1.1) or its preface and first stream (HTTP/2); also before the protocol is known",
      min: 100,
      max: 300_000,
      default: 10_000,
    }),
    HTTP_IDLE_TIMEOUT_MS: int({
      description: "a connection to PORT with no request or stream open for this long is closed (HTTP/2 with GOAWAY)",
      min: 1000,
      max: 3_600_000,
      default: 120_000,
    }),
    HTTP2_MAX_CONCURRENT_STREAMS: int({
      description: "streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused",
      min: 1,
      max: 100_000,
      default: 1000,
    }),
    HTTP2_STREAM_RESET_BURST: int({
      description:
        "stream resets (RST_STREAM) one HTTP/2 connection may send before a GOAWAY, refilled at HTTP2_STREAM_RESET_RATE per second (the rapid-reset defence; Node 20 ignores it and keeps 1000 at 33/s)",
      min: 100,
      max: 10_000_000,
      default: 10_000,
    }),
    HTTP2_STREAM_RESET_RATE: int({
      description: "stream resets per second refilled into HTTP2_STREAM_RESET_BURST",
      min: 1,
      max: 1_000_000,
      default: 1000,
    }),
    HTTP_MAX_HEADER_BYTES: int({
      description: "largest request header block in bytes (HTTP/1.1: 431; HTTP/2: ResourceExhausted)",
      min: 4096,
      max: 1_048_576,
      default: 16_384,
    }),
    RPC_MAX_JSON_BYTES: int({
      description: "largest JSON request message (Connect JSON, +json), after decompression, checked before parsing (beyond: ResourceExhausted)",
      min: 1024,
      max: 64 * 1_048_576,
      default: 4 * 1_048_576,
    }),
    RPC_MAX_JSON_DEPTH: int({
      description: "deepest nesting of objects and arrays in a JSON request message, checked before parsing (beyond: InvalidArgument)",
      min: 8,
      max: 1000,
      default: 64,
    }),
    TRUSTED_PROXY_HOPS: int({
      description:
        "proxies in front of PORT that append to x-forwarded-for; the client address (anonymous stream caps) is that many entries from the right (0: the peer address, header ignored)",
      min: 0,
      max: 10,
      default: 0,
    }),
    ENSURE_STREAMS: bool({ description: "create or update the JetStream streams at start", default: true }),
    BACKLOG_SAMPLE_MS: int({
      description:
        "how often the service samples the backlog it reports as metrics (its durable consumers' pending messages and oldest unprocessed age, dead letters; notification's due deliveries); 0 = never",
      min: 0,
      default: 15_000,
    }),
  };
}

type Base = ReturnType<typeof baseConfigSpec>;
/** Parsed base configuration. */
export type BaseConfig = { readonly [K in keyof Base]: Base[K] extends { parse(raw: string): infer T } ? T : never };

/** Cross-field checks the per-variable parsers cannot do; returns problems to report. */
export function checkBaseConfig(c: BaseConfig): string[] {
  const problems: string[] = [];
  if (!c.JWT_JWKS_URL && !c.JWT_PUBLIC_KEY_FILE) {
    problems.push("one of JWT_JWKS_URL or JWT_PUBLIC_KEY_FILE is required (token signing keys)");
  }
  if (Boolean(c.TLS_CERT_FILE) !== Boolean(c.TLS_KEY_FILE)) {
    problems.push("TLS_CERT_FILE and TLS_KEY_FILE must be set together");
  }
  if (Boolean(c.NATS_USER) !== Boolean(c.NATS_PASSWORD)) {
    problems.push("NATS_USER and NATS_PASSWORD must be set together");
  }
  if (c.NATS_USER && c.NATS_CREDS_FILE) {
    problems.push("set NATS_USER/NATS_PASSWORD or NATS_CREDS_FILE, not both");
  }
  if (Boolean(c.NATS_TLS_CERT_FILE) !== Boolean(c.NATS_TLS_KEY_FILE)) {
    problems.push("NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE must be set together");
  }
  if (c.REGION_PEERS.length > 0 && !c.REGION) problems.push("REGION_PEERS needs REGION (the name of this region)");
  if (c.REGION) problems.push(...topologyProblems({ region: c.REGION, peers: c.REGION_PEERS }).map((p) => `REGION/REGION_PEERS: ${p}`));
  if (c.STREAM_MAX_AGE_HOURS > 0 && c.SCAN_DUPLICATE_WINDOW_MINUTES > c.STREAM_MAX_AGE_HOURS * 60) {
    problems.push("SCAN_DUPLICATE_WINDOW_MINUTES must not exceed STREAM_MAX_AGE_HOURS (JetStream keeps ids only as long as messages)");
  }
  return problems;
}

/**
 * The region a service produces events for: REGION, else its legacy per-service setting
 * (INGEST_REGION, TRACKING_REGION), else "global".
 */
export function effectiveRegion(c: Pick<BaseConfig, "REGION">, legacy?: string): string {
  return c.REGION ?? legacy ?? "global";
}
