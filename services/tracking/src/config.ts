import { bool, defineConfig, int, optional, str, url, type ConfigOf } from "@logistics/shared/config";
import { baseConfigSpec, checkBaseConfig, checkPostgresConfig, postgresConfigSpec } from "@logistics/shared/runtime";

/** Environment variables of the tracking service (see the README's configuration table). */
export const trackingConfig = defineConfig(
  {
    ...baseConfigSpec({ port: 8083, metricsPort: 9103 }),
    DATABASE_URL: url({
      description: "PostgreSQL of the shipment store (its search_path selects the schema)",
      protocols: ["postgres:", "postgresql:"],
      default: "postgres://postgres@127.0.0.1:5432/test",
    }),
    ...postgresConfigSpec(),
    REDIS_URL: url({
      description: "Redis for the shipment snapshot cache (tracking answers from the store when it is down)",
      protocols: ["redis:", "rediss:"],
      default: "redis://127.0.0.1:6379",
    }),
    TRACKING_REDIS_KEY_PREFIX: str({
      description: "prefix of every Redis key tracking writes",
      pattern: /^[A-Za-z0-9_:.-]{0,64}$/,
      default: "tracking:",
    }),
    TRACKING_REDIS_TIMEOUT_MS: int({
      description: "timeout of one Redis command; on expiry the read goes to the store",
      min: 10,
      max: 10_000,
      default: 250,
    }),
    TRACKING_CACHE_TTL_SECONDS: int({
      description: "lifetime of a cached shipment snapshot (bounds staleness after a Redis outage)",
      min: 1,
      max: 7 * 86_400,
      default: 3600,
    }),
    TRACKING_DB_POOL_SIZE: int({ description: "PostgreSQL connections of this process", min: 1, max: 200, default: 20 }),
    TRACKING_DB_MIGRATE: bool({ description: "run store migrations and create partitions at start", default: true }),
    TRACKING_DOC_CACHE_ENTRIES: int({
      description:
        "shipment documents the projector keeps in memory after writing them (~5 KB of heap each), so that a batch of shipments it wrote last skips reading them back (0 = none)",
      min: 0,
      max: 1_000_000,
      // Off until its memory is understood: a 10-minute soak at 210 scans/s with 10,000 entries
      // grew tracking's committed V8 heap by ~46 MiB/min (README, "Document cache").
      default: 0,
    }),
    TRACKING_PROJECTOR_ENABLED: bool({
      description: "run the projector (event consumers) in this process; API-only replicas set false",
      default: true,
    }),
    TRACKING_CONSUMER_PREFIX: str({
      description: "prefix of the projector's durable consumer names (shared by all replicas)",
      pattern: /^[A-Za-z0-9_-]{1,40}$/,
      default: "tracking",
    }),
    TRACKING_PROJECTOR_MAX_BATCH: int({
      description: "most events a projector consumer commits in one transaction (one batch; a shipment's events stay in order)",
      min: 1,
      max: 1024,
      // 256 capped how fast the projector caught up: under a backlog every apply took one full
      // batch per consumer, and the next pull waited for that batch's publishing and acks. 1,024
      // keeps the backlog bounded at rates where 256 let it grow (perf/README.md, "Batch size").
      default: 1024,
    }),
    TRACKING_PROJECTOR_LINGER_MS: int({
      description:
        "how long a projector batch may wait for more events (fewer, larger batches: one read, one write and one commit per batch); 0: a batch closes as soon as nothing more is waiting",
      min: 0,
      max: 1000,
      default: 0,
    }),
    TRACKING_ACK_WAIT_MS: int({
      description: "redelivery timeout of an event a projector took and did not acknowledge",
      min: 1000,
      max: 600_000,
      default: 10_000,
    }),
    TRACKING_MAX_DELIVER: int({
      description: "deliveries of one event before it is dead-lettered (with 0.5 s doubling retries up to 60 s: about 14 minutes at 20)",
      min: 2,
      max: 100,
      default: 20,
    }),
    TRACKING_REGION: optional(
      str({
        description: "deprecated, use REGION (which wins): region token of this service's events when REGION is unset (default global)",
        pattern: /^[A-Za-z0-9_-]{1,64}$/,
      }),
    ),
    TRACKING_WATCH_HEARTBEAT_MS: int({
      description: "idle time before a WatchShipment stream gets a heartbeat (and re-reads the store)",
      min: 100,
      max: 300_000,
      default: 15_000,
    }),
    TRACKING_PUBLIC_MAX_AGE_SECONDS: int({
      description: "max-age of anonymous GetShipment/ListShipmentEvents answers in shared caches (CDN); bounds how stale a public tracking page may be",
      min: 0,
      max: 3600,
      default: 5,
    }),
    TRACKING_PUBLIC_STALE_SECONDS: int({
      description: "stale-while-revalidate of anonymous read answers: a cache may serve a stale copy this long while it refreshes",
      min: 0,
      max: 86_400,
      default: 30,
    }),
    TRACKING_WATCHES_PER_CONNECTION: int({
      description: "WatchShipment calls one connection may have open (0 = no cap); beyond it ResourceExhausted",
      min: 0,
      max: 100_000,
      default: 100,
    }),
    TRACKING_WATCHES_PER_PRINCIPAL: int({
      description:
        "WatchShipment calls one token subject, or one client address for anonymous callers, may have open on this replica (0 = no cap); beyond it ResourceExhausted",
      min: 0,
      max: 100_000,
      default: 100,
    }),
    TRACKING_WATCH_CREATION_GRACE_MS: int({
      description:
        "how long a WatchShipment of a tracking number not in the read model yet waits for the shipment's creation before NotFound (0 = NotFound at once)",
      min: 0,
      max: 60_000,
      default: 2_000,
    }),
    TRACKING_WATCH_MAX_LIFETIME_MS: int({
      description: "a WatchShipment stream ends with OK after this long; clients resume",
      min: 1000,
      default: 1_800_000,
    }),
  },
  (c) => [
    ...checkBaseConfig(c),
    ...checkPostgresConfig(c),
    ...(c.REGION && c.TRACKING_REGION && c.TRACKING_REGION !== c.REGION ? [`TRACKING_REGION (${c.TRACKING_REGION}) differs from REGION (${c.REGION}): drop TRACKING_REGION`] : []),
  ],
);

export type TrackingConfig = ConfigOf<typeof trackingConfig.spec>;
