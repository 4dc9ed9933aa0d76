import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { exemplarsEnabled } from "@logistics/shared/telemetry";

/** Label values of {@link IngestMetrics.scans}. */
export type ScanOutcomeLabel = "accepted" | "duplicate" | "rejected";

/** The ingest service's own instruments. */
export interface IngestMetrics {
  /**
   * `logistics_ingest_scans_total{carrier, outcome, reason}`: one per ack sent. `carrier` is the
   * token's carrier for carrier gateways; for internal callers the scan's carrier once the
   * shipment directory confirmed it, else `_invalid` / `_unverified` (see `carrierLabel`).
   */
  readonly scans: Counter<"carrier" | "outcome" | "reason">;
  /** `logistics_ingest_publish_duration_seconds{result}`: publish of one event until its PubAck (all attempts). */
  readonly publishDuration: Histogram<"result">;
  /**
   * `logistics_ingest_scan_ack_seconds{result}`: from a batch of scans reaching the ingestor to
   * its acks being ready, once per scan; `result` is `unavailable` for REJECTED/UNAVAILABLE acks
   * (no PubAck in time, directory unreadable), else `ok`. The scan ack latency SLO's histogram.
   */
  readonly scanAck: Histogram<"result">;
  /** `logistics_ingest_inflight_scans`: scans being processed (awaiting dedupe or PubAck) in this process. */
  readonly inflight: Gauge;
  /** `logistics_ingest_unmapped_status_total{carrier}`: scans whose raw code no status table knows. */
  readonly unmappedStatus: Counter<"carrier">;
  /** `logistics_ingest_rate_limited_total{route}`: requests refused by the rate limit. */
  readonly rateLimited: Counter<"route">;
  /** `logistics_ingest_redis_errors_total{op}`: Redis calls that failed and were failed open. */
  readonly redisErrors: Counter<"op">;
  /** `logistics_ingest_shipments_total{result}`: CreateShipment outcomes (created, replayed). */
  readonly shipments: Counter<"result">;
  /**
   * `logistics_ingest_stream_stalls_total`: StreamScans calls reset because their gateway read no
   * ack for INGEST_STREAM_STALL_TIMEOUT_MS (each is logged at warn with its caller).
   */
  readonly streamStalls: Counter;
  /**
   * Serves `logistics_ingest_shipment_cache_entries`, the shipment directory's in-process cache
   * size (`size` read at each scrape). The cache fills with the shipments scanned within
   * INGEST_SHIPMENT_CACHE_TTL_SECONDS (up to INGEST_SHIPMENT_CACHE_SIZE): a process's heap grows
   * with it for that long after a start, then stays level.
   */
  observeShipmentCache(size: () => number): void;
}

/** Creates the ingest instruments on `registry` (the service's registry, served at /metrics). */
export function createIngestMetrics(registry: Registry): IngestMetrics {
  const registers = [registry];
  let cacheSize: (() => number) | undefined;
  new Gauge({
    name: "logistics_ingest_shipment_cache_entries",
    help: "Shipments (tracking number to carriers) in this process's directory cache, expired ones not yet dropped included",
    registers,
    collect() {
      if (cacheSize) this.set(cacheSize());
    },
  });
  return {
    observeShipmentCache(size) {
      cacheSize = size;
    },
    scans: new Counter({
      name: "logistics_ingest_scans_total",
      help: "Scans acknowledged, by carrier, outcome and reject reason",
      labelNames: ["carrier", "outcome", "reason"],
      registers,
    }),
    publishDuration: new Histogram({
      name: "logistics_ingest_publish_duration_seconds",
      help: "Time from publishing a scan event to its JetStream PubAck, retries included",
      labelNames: ["result"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
      enableExemplars: exemplarsEnabled(registry),
    }),
    scanAck: new Histogram({
      name: "logistics_ingest_scan_ack_seconds",
      help: "Time from a batch of scans reaching ingest to their acks (validation, ownership, dedupe, PubAck), per scan; result=unavailable for UNAVAILABLE rejections",
      labelNames: ["result"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
      enableExemplars: exemplarsEnabled(registry),
    }),
    inflight: new Gauge({
      name: "logistics_ingest_inflight_scans",
      help: "Scans being deduplicated or published by this process",
      registers,
    }),
    unmappedStatus: new Counter({
      name: "logistics_ingest_unmapped_status_total",
      help: "Scans whose raw carrier status code is not in any status table",
      labelNames: ["carrier"],
      registers,
    }),
    rateLimited: new Counter({
      name: "logistics_ingest_rate_limited_total",
      help: "Scan requests refused because the caller's rate limit was exhausted",
      labelNames: ["route"],
      registers,
    }),
    redisErrors: new Counter({
      name: "logistics_ingest_redis_errors_total",
      help: "Redis operations that failed; ingest carried on without them (fail-open)",
      labelNames: ["op"],
      registers,
    }),
    shipments: new Counter({
      name: "logistics_ingest_shipments_total",
      help: "CreateShipment results",
      labelNames: ["result"],
      registers,
    }),
    streamStalls: new Counter({
      name: "logistics_ingest_stream_stalls_total",
      help: "StreamScans calls reset because the gateway read no ack within the stall timeout",
      registers,
    }),
  };
}
