import { defineConfig, int, optional, str, url, type ConfigOf } from "@logistics/shared/config";
import { baseConfigSpec, checkBaseConfig } from "@logistics/shared/runtime";

/** Environment variables of the ingest service (see the README's configuration table). */
export const ingestConfig = defineConfig(
  {
    ...baseConfigSpec({ port: 8081, metricsPort: 9101 }),
    REDIS_URL: url({
      description: "Redis for scan dedupe, rate limits and CreateShipment idempotency (ingest keeps serving when it is down)",
      protocols: ["redis:", "rediss:"],
      default: "redis://127.0.0.1:6379",
    }),
    INGEST_REDIS_KEY_PREFIX: str({
      description: "prefix of every Redis key ingest writes",
      pattern: /^[A-Za-z0-9_:.-]{0,64}$/,
      default: "ingest:",
    }),
    INGEST_REDIS_TIMEOUT_MS: int({
      description: "timeout of one Redis command; on expiry ingest carries on without Redis (fail-open)",
      min: 10,
      max: 10_000,
      default: 250,
    }),
    INGEST_REGION: optional(
      str({
        description: "deprecated, use REGION (which wins): region token of this service's events when REGION is unset (default global)",
        pattern: /^[A-Za-z0-9_-]{1,64}$/,
      }),
    ),
    INGEST_MAX_INFLIGHT: int({
      description: "scans this process deduplicates and publishes at once, over all calls",
      min: 1,
      max: 1_000_000,
      default: 10_000,
    }),
    INGEST_STREAM_WINDOW: int({
      description: "request messages of one StreamScans call processed at once; beyond it the stream is not read",
      min: 1,
      max: 64,
      default: 16,
    }),
    INGEST_STREAM_IDLE_TIMEOUT_MS: int({
      description:
        "a StreamScans call that sent no message for this long, with none of its messages being answered, is closed with Unavailable (0 = never)",
      min: 0,
      max: 86_400_000,
      default: 300_000,
    }),
    INGEST_STREAM_STALL_TIMEOUT_MS: int({
      description:
        "a StreamScans call whose gateway read no ack for this long (its flow-control window full) is reset (RST_STREAM CANCEL), giving its stream cap slots back (0 = never)",
      min: 0,
      max: 86_400_000,
      default: 60_000,
    }),
    INGEST_STREAMS_PER_CONNECTION: int({
      description: "StreamScans calls one connection may have open (0 = no cap); beyond it ResourceExhausted",
      min: 0,
      max: 100_000,
      default: 32,
    }),
    INGEST_STREAMS_PER_PRINCIPAL: int({
      description: "StreamScans calls one token subject may have open on this replica (0 = no cap); beyond it ResourceExhausted",
      min: 0,
      max: 100_000,
      default: 64,
    }),
    INGEST_PUBLISH_DEADLINE_MS: int({
      description: "time a scan's event gets to be stored (retries included) before it is rejected as UNAVAILABLE",
      min: 100,
      max: 60_000,
      default: 5000,
    }),
    INGEST_RATE_PER_SEC: int({ description: "scans per second per carrier (token bucket refill)", min: 1, default: 2000 }),
    INGEST_RATE_BURST: int({
      description: "token bucket size per carrier, in scans (at least one full SubmitScans batch)",
      min: 1000,
      default: 10_000,
    }),
    INGEST_SCAN_MAX_AGE_HOURS: int({
      description: "oldest event_time accepted, in hours before now (older: REJECT_REASON_TOO_LATE)",
      min: 1,
      default: 720,
    }),
    INGEST_SCAN_MAX_AHEAD_MINUTES: int({
      description: "furthest event_time accepted in the future, in minutes (scanner clock skew)",
      min: 0,
      default: 60,
    }),
    INGEST_SHIPMENT_SCAN_BUDGET_BYTES: int({
      description:
        "scan data one shipment may accumulate, in bytes of what its scans add to tracking's shipment document (about 290 per typical scan, at most ~3.8 KB with the longest code and text); a scan past it is rejected with SHIPMENT_FULL. Keep it well below tracking's document limit (256 KiB), which also holds the shipment's places, route and handovers. 0: no budget (load tests that pile scans on a few shipments; tracking then trims the oldest timeline entries of a shipment past its document limit)",
      min: 0,
      max: 196_608,
      default: 131_072,
    }),
    INGEST_SHIPMENT_BUDGET_TTL_DAYS: int({
      description: "days a shipment's scan-data account stays in Redis after its last accepted scan",
      min: 1,
      max: 365,
      default: 30,
    }),
    INGEST_DEDUPE_TTL_DAYS: int({
      description: "days a stored scan id stays in the Redis dedupe set (JetStream's own window on the scans stream, which holds without Redis, is SCAN_DUPLICATE_WINDOW_MINUTES)",
      min: 1,
      max: 365,
      default: 7,
    }),
    INGEST_IDEMPOTENCY_TTL_HOURS: int({
      description: "hours CreateShipment idempotency keys are remembered",
      min: 24,
      default: 48,
    }),
    INGEST_TRACKING_NUMBER_TTL_DAYS: int({
      description: "days a shipment stays in the shipment directory after its last change: its tracking number stays claimed (AlreadyExists for others) and its carriers' scans accepted",
      min: 1,
      default: 180,
    }),
    INGEST_SHIPMENT_CACHE_SIZE: int({
      description: "shipments whose carriers this process keeps in memory (LRU, about 350 B each), so scans of a hot shipment need no directory read",
      min: 1,
      max: 10_000_000,
      default: 200_000,
    }),
    INGEST_SHIPMENT_CACHE_TTL_SECONDS: int({
      description: "seconds a cached shipment directory entry is trusted before it is read again; expired entries are dropped within a minute",
      min: 1,
      max: 86_400,
      default: 600,
    }),
    INGEST_DIRECTORY_TIMEOUT_MS: int({
      description: "timeout of one shipment directory (JetStream key-value) request; on expiry scans get REJECTED/UNAVAILABLE",
      min: 100,
      max: 30_000,
      default: 2000,
    }),
  },
  (c) => [
    ...checkBaseConfig(c),
    ...(c.REGION && c.INGEST_REGION && c.INGEST_REGION !== c.REGION ? [`INGEST_REGION (${c.INGEST_REGION}) differs from REGION (${c.REGION}): drop INGEST_REGION`] : []),
  ],
);

export type IngestConfig = ConfigOf<typeof ingestConfig.spec>;
