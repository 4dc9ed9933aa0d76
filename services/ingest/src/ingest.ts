import { jetstream } from "@nats-io/jetstream";
import { createCatalogPublisher } from "@logistics/shared/events";
import { IngestService } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { ensureKeyValue, ensurePeerCopy, openKeyValue, readPeerEntry, createEventPublisher, createPipelinedPublisher } from "@logistics/shared/nats";
import { createFailOpenRedis } from "@logistics/shared/redis";
import { effectiveRegion, type ServiceDefinition } from "@logistics/shared/runtime";
import { createMeshValidator } from "@logistics/shared/validation";
import type { IngestConfig } from "./config.js";
import { createIngestMetrics } from "./ingest-metrics.js";
import { createIngestHandlers } from "./ingest-handlers.js";
import { createRedisRateLimiter } from "./redis-rate-limiter.js";
import { createRedisScanAdmission } from "./redis-scan-admission.js";
import { createRedisShipmentStore } from "./redis-shipment-store.js";
import { ingestPolicies, registerIngestRoutes } from "./routes.js";
import { createScanCheck } from "./scan-check.js";
import { createScanIngestor } from "./scan-ingestor.js";
import { createSemaphore } from "./semaphore.js";
import { createShipmentCreator } from "./shipment-creator.js";
import { createKvShipmentDirectory } from "./shipment-directory.js";
import { createShipmentHandover, createShipmentPartnerRemoval } from "./shipment-partners.js";

/**
 * The ingest service as the runtime starts it (from main.ts, the dev runner and tests): scan
 * ingest (validation, ownership, dedupe, durable publish), shipment creation, handover and
 * partner removal, with the shipment directory (a JetStream key-value bucket, created at start
 * with the streams when ENSURE_STREAMS is on) deciding which carriers may scan which shipment,
 * and Redis for the dedupe set, rate limits and idempotency. Redis is optional at run time: every Redis use fails open
 * (see the adapters), so a Redis outage degrades dedupe and rate limiting but never stops
 * ingest. The directory is not optional: without it scans are REJECTED/UNAVAILABLE, never
 * accepted unchecked.
 */
export const ingestService: ServiceDefinition<IngestConfig> = {
  name: "ingest",
  moduleUrl: import.meta.url,
  services: [IngestService],
  policies: ingestPolicies,
  streamLimits: (config) => [
    {
      method: IngestService.method.streamScans,
      perConnection: config.INGEST_STREAMS_PER_CONNECTION,
      perPrincipal: config.INGEST_STREAMS_PER_PRINCIPAL,
    },
  ],
  async start(ctx) {
    const { config, log } = ctx;
    const metrics = createIngestMetrics(ctx.metrics.registry);
    const { redis, reportError: onRedisError, close: closeRedis } = createFailOpenRedis({
      url: config.REDIS_URL,
      keyPrefix: config.INGEST_REDIS_KEY_PREFIX,
      commandTimeoutMs: config.INGEST_REDIS_TIMEOUT_MS,
      log,
      degradedBehaviour: "ingest goes on without dedupe hints, rate limits and shipment budgets",
      onError: (op) => metrics.redisErrors.inc({ op }),
      // Each batch sends a rate-limit take and an admission (dedupe and budget); concurrent
      // batches' commands then share socket writes (each write was a loopback TCP send).
      autoPipelining: true,
    });

    const publisher = createEventPublisher({ js: ctx.js, logger: log });
    // Its own JetStream context, so a directory request gives up after INGEST_DIRECTORY_TIMEOUT_MS.
    const directoryJs = jetstream(ctx.nats, { timeout: config.INGEST_DIRECTORY_TIMEOUT_MS });
    const bucket = ctx.subjects.buckets.shipmentParties;
    const kv = config.ENSURE_STREAMS
      ? (
          await ensureKeyValue(directoryJs, ctx.jsm, bucket, {
            replicas: config.STREAM_REPLICAS,
            maxAgeMs: config.INGEST_TRACKING_NUMBER_TTL_DAYS * 86_400_000,
          })
        ).kv
      : await openKeyValue(directoryJs, bucket);
    const peers = config.REGION_PEERS;
    if (config.ENSURE_STREAMS) {
      await ensurePeerCopy(ctx.jsm, bucket, peers, {
        replicas: config.STREAM_REPLICAS,
        maxAgeMs: config.INGEST_TRACKING_NUMBER_TTL_DAYS * 86_400_000,
      });
    }
    const region = effectiveRegion(config, config.INGEST_REGION);
    const directory = createKvShipmentDirectory({
      kv,
      cacheSize: config.INGEST_SHIPMENT_CACHE_SIZE,
      cacheTtlMs: config.INGEST_SHIPMENT_CACHE_TTL_SECONDS * 1000,
      readFromLeader: async (tn) => {
        const m = await ctx.jsm.streams.getMessage(`KV_${bucket.name}`, { last_by_subj: `$KV.${bucket.name}.${tn}` });
        const op = m?.header?.get("KV-Operation");
        if (m && (!op || op === "PUT")) return { value: m.data, revision: m.seq };
        if (m || peers.length === 0) return undefined;
        // A shipment registered in a peer region (a carrier that failed over to this one). Its
        // revision here is 0: a handover then creates the local entry (compare-and-set on "none").
        const peer = await readPeerEntry(ctx.jsm, bucket, tn);
        return peer ? { value: peer.data, revision: 0 } : undefined;
      },
    });
    metrics.observeShipmentCache(() => directory.cached);
    const admission = createRedisScanAdmission({
      redis,
      dedupeTtlSeconds: config.INGEST_DEDUPE_TTL_DAYS * 86_400,
      ...(config.INGEST_SHIPMENT_SCAN_BUDGET_BYTES > 0
        ? { budget: { limitBytes: config.INGEST_SHIPMENT_SCAN_BUDGET_BYTES, ttlSeconds: config.INGEST_SHIPMENT_BUDGET_TTL_DAYS * 86_400 } }
        : {}),
      onError: onRedisError,
    });
    // Scans go out as pipelined publishes with one reply subscription for every PubAck: per scan
    // a plain publish and a map entry, instead of a js.publish request (object, timer, error).
    const scanPipeline = createPipelinedPublisher({ nc: ctx.nats, maxInFlight: config.INGEST_MAX_INFLIGHT });
    const ingestor = createScanIngestor({
      publisher: createCatalogPublisher({ js: ctx.js, logger: log, pipeline: scanPipeline }),
      scanEvent: ctx.catalog.events.scanRecorded,
      region,
      directory,
      check: createScanCheck({
        validator: createMeshValidator(),
        maxAgeMs: config.INGEST_SCAN_MAX_AGE_HOURS * 3600_000,
        maxAheadMs: config.INGEST_SCAN_MAX_AHEAD_MINUTES * 60_000,
      }),
      admission,
      inflight: createSemaphore(config.INGEST_MAX_INFLIGHT),
      metrics,
      log,
      publishDeadlineMs: config.INGEST_PUBLISH_DEADLINE_MS,
    });
    const handlers = createIngestHandlers({
      ingestor,
      rateLimiter: createRedisRateLimiter({
        redis,
        ratePerSec: config.INGEST_RATE_PER_SEC,
        burst: config.INGEST_RATE_BURST,
        onError: onRedisError,
      }),
      createShipment: createShipmentCreator({
        publisher,
        shipmentSubject: (region) => ctx.subjects.shipmentCreated(region),
        region,
        store: createRedisShipmentStore({ redis, idempotencyTtlSeconds: config.INGEST_IDEMPOTENCY_TTL_HOURS * 3600 }),
        directory,
        publishDeadlineMs: config.INGEST_PUBLISH_DEADLINE_MS,
        onStoreError: onRedisError,
      }),
      handOver: createShipmentHandover({
        directory,
        publisher,
        handedOverSubject: (region) => ctx.subjects.shipmentHandedOver(region),
        region,
        publishDeadlineMs: config.INGEST_PUBLISH_DEADLINE_MS,
      }),
      removePartner: createShipmentPartnerRemoval({
        directory,
        publisher,
        partnerRemovedSubject: (region) => ctx.subjects.shipmentPartnerRemoved(region),
        region,
        publishDeadlineMs: config.INGEST_PUBLISH_DEADLINE_MS,
      }),
      metrics,
      streamWindow: config.INGEST_STREAM_WINDOW,
      streamIdleMs: config.INGEST_STREAM_IDLE_TIMEOUT_MS,
      streamStallMs: config.INGEST_STREAM_STALL_TIMEOUT_MS,
      log,
      drainSignal: ctx.drainSignal,
    });
    return {
      routes: (router) => registerIngestRoutes(router, handlers),
      async close() {
        scanPipeline.close();
        admission.close();
        closeRedis();
      },
    };
  },
};
