import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createCatalogPublisher } from "@logistics/shared/events";
import { createPipelinedPublisher } from "@logistics/shared/nats";
import { startConsumerLagSampler } from "@logistics/shared/operations";
import { createFailOpenRedis } from "@logistics/shared/redis";
import { effectiveRegion, pgTimeouts, type ServiceDefinition } from "@logistics/shared/runtime";
import { createPostgresShipmentStore } from "./store/postgres/postgres-shipment-store.js";
import type { TrackingConfig } from "./config.js";
import { createLiveHub, createLiveNotifier } from "./live-updates.js";
import { projectorConsumers, startProjector, type Projector } from "./projector.js";
import { trackingPolicies, registerTrackingRoutes } from "./routes.js";
import { createRedisShipmentCache } from "./shipment-cache.js";
import { createShipmentReader } from "./shipment-reader.js";
import { createTrackingMetrics } from "./tracking-metrics.js";
import { createTrackingHandlers } from "./tracking-handlers.js";
import { createShipmentMessages } from "./watch-messages.js";

/** Minimum pause between two warnings about the cache being unavailable. */
const CACHE_WARN_INTERVAL_MS = 30_000;

/**
 * The tracking service as the runtime starts it (from main.ts, the dev runner and tests): the
 * PostgreSQL shipment store, the Redis snapshot cache, the projector (unless
 * TRACKING_PROJECTOR_ENABLED=false) and the TrackingService handlers.
 */
export const trackingService: ServiceDefinition<TrackingConfig> = {
  name: "tracking",
  moduleUrl: import.meta.url,
  services: [TrackingService],
  policies: trackingPolicies,
  // The replica's own change notices reach its watchers in process (live-updates.ts): NATS
  // sending each one back (a document and its events, per changed shipment) only to be skipped
  // was a second copy of the busiest subject through the broker and the socket.
  natsNoEcho: true,
  streamLimits: (config) => [
    {
      method: TrackingService.method.watchShipment,
      perConnection: config.TRACKING_WATCHES_PER_CONNECTION,
      perPrincipal: config.TRACKING_WATCHES_PER_PRINCIPAL,
    },
  ],
  async start(ctx) {
    const { config, log } = ctx;
    const metrics = createTrackingMetrics(ctx.metrics.registry);
    const store = await createPostgresShipmentStore({
      connectionString: config.DATABASE_URL,
      maxConnections: config.TRACKING_DB_POOL_SIZE,
      timeouts: pgTimeouts(config),
      migrate: config.TRACKING_DB_MIGRATE,
      documentCacheEntries: config.TRACKING_DOC_CACHE_ENTRIES,
    });
    const { redis, reportError: onCacheError, close: closeRedis } = createFailOpenRedis({
      url: config.REDIS_URL,
      keyPrefix: config.TRACKING_REDIS_KEY_PREFIX,
      commandTimeoutMs: config.TRACKING_REDIS_TIMEOUT_MS,
      log,
      degradedBehaviour: "shipment reads are served from the store",
      warnIntervalMs: CACHE_WARN_INTERVAL_MS,
      // The projector refreshes every shipment of a batch at once, and reads arrive together.
      autoPipelining: true,
    });
    const cache = createRedisShipmentCache({ redis, ttlSeconds: config.TRACKING_CACHE_TTL_SECONDS });
    const reader = createShipmentReader({ store, cache, metrics, onCacheError });
    const live = createLiveHub(ctx.nats, ctx.subjects);
    // One rendering of each version for the cache refresh and this replica's watchers.
    const shipmentMessages = createShipmentMessages();

    // The projector's status and ETA events go out as pipelined publishes with one reply
    // subscription for every PubAck (as ingest's scans): per event a plain publish and a map entry,
    // instead of a js.publish request (its object, headers, timer and settled error).
    const eventPipeline = createPipelinedPublisher({ nc: ctx.nats });
    let projector: Projector | undefined;
    try {
      if (config.TRACKING_PROJECTOR_ENABLED) {
        projector = await startProjector({
          js: ctx.js,
          jsm: ctx.jsm,
          nc: ctx.nats,
          catalog: ctx.catalog,
          store,
          cache,
          notifier: createLiveNotifier(ctx.nats, ctx.subjects, live),
          shipmentMessages,
          publisher: createCatalogPublisher({ js: ctx.js, logger: log, pipeline: eventPipeline }),
          metrics,
          registry: ctx.metrics.registry,
          durablePrefix: config.TRACKING_CONSUMER_PREFIX,
          maxBatch: config.TRACKING_PROJECTOR_MAX_BATCH,
          lingerMs: config.TRACKING_PROJECTOR_LINGER_MS,
          // Three consumers with two batches in flight each: six connections at most, the rest of
          // the pool stays with the RPCs.
          maxInFlightBatches: config.TRACKING_DB_POOL_SIZE >= 12 ? 2 : 1,
          ackWaitMs: config.TRACKING_ACK_WAIT_MS,
          maxDeliver: config.TRACKING_MAX_DELIVER,
          defaultRegion: effectiveRegion(config, config.TRACKING_REGION),
          ...(config.REGION ? { ownRegion: config.REGION } : {}),
          logger: log,
        });
      }
    } catch (err) {
      eventPipeline.close();
      live.close();
      closeRedis();
      await store.close();
      throw err;
    }

    // Every replica reports the projector's backlog, also one running without the projector
    // (TRACKING_PROJECTOR_ENABLED=false): a stalled or absent projector shows as growing lag.
    const backlog = startConsumerLagSampler({
      js: ctx.js,
      jsm: ctx.jsm,
      registry: ctx.metrics.registry,
      consumers: projectorConsumers(ctx.catalog, config.TRACKING_CONSUMER_PREFIX),
      deadLetterStream: ctx.subjects.streams.deadLetters.name,
      intervalMs: config.BACKLOG_SAMPLE_MS,
      log,
    });

    const handlers = createTrackingHandlers({
      store,
      reader,
      live,
      shipmentMessages,
      metrics,
      heartbeatMs: config.TRACKING_WATCH_HEARTBEAT_MS,
      maxStreamLifetimeMs: config.TRACKING_WATCH_MAX_LIFETIME_MS,
      creationGraceMs: config.TRACKING_WATCH_CREATION_GRACE_MS,
      readCache: {
        maxAgeSeconds: config.TRACKING_PUBLIC_MAX_AGE_SECONDS,
        staleWhileRevalidateSeconds: config.TRACKING_PUBLIC_STALE_SECONDS,
      },
    });
    return {
      routes: (router) => registerTrackingRoutes(router, handlers),
      async close() {
        await backlog.close();
        await projector?.close();
        eventPipeline.close();
        live.close();
        closeRedis();
        await store.close();
      },
    };
  },
};
