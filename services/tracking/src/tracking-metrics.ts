import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { exemplarsEnabled } from "@logistics/shared/telemetry";

/** The tracking service's own instruments. */
export interface TrackingMetrics {
  /**
   * `logistics_tracking_ack_to_visible_seconds`: from ingest's `ScanRecorded.recorded_at` (just
   * before its PubAck) to the scan being committed in the read model. First applications only.
   */
  readonly ackToVisible: Histogram<never>;
  /** `logistics_tracking_projected_events_total{type, outcome}`: events the projector handled (outcome applied|duplicate). */
  readonly projectedEvents: Counter<"type" | "outcome">;
  /**
   * `logistics_tracking_store_apply_events`: events per store apply of the projector, its three
   * consumers' waiting batches merged (group-apply.ts). Grows with the load: the cost per event falls.
   */
  readonly storeApplyEvents: Histogram<never>;
  /** `logistics_tracking_projector_failures_total{type}`: events the projector could not apply or publish, by catalog event (`scan.recorded`, ...): retried (redelivered with backoff) or dead-lettered. */
  readonly projectorFailures: Counter<"type">;
  /** `logistics_tracking_cache_hits_total`: shipment reads served from the cache. */
  readonly cacheHits: Counter<never>;
  /** `logistics_tracking_cache_misses_total`: shipment reads that went to the store (cache empty or unreachable). */
  readonly cacheMisses: Counter<never>;
  /** `logistics_tracking_cache_errors_total{op}`: failed cache operations (get|put). */
  readonly cacheErrors: Counter<"op">;
  /** `logistics_tracking_watchers`: open WatchShipment streams on this replica. */
  readonly watchers: Gauge<never>;
  /** `logistics_tracking_published_changes_total{type}`: StatusChanged / EtaChanged published. */
  readonly publishedChanges: Counter<"type">;
  /**
   * `logistics_tracking_watch_notices_total{outcome}`: change notices the watch feeds received
   * (watch-feed.ts): `taken` (the change it carried was taken in, no store read), `read` (version
   * only, a gap or a change that did not check out: the watchers read), `known` (a version the
   * feed had already), `unreadable` (read at once).
   */
  readonly watchNotices: Counter<"outcome">;
  /**
   * `logistics_tracking_watch_creation_waits_total{outcome}`: watches of a shipment the read model
   * did not hold yet that waited for its creation: `appeared` or `not_found` (the grace ran out).
   */
  readonly watchCreationWaits: Counter<"outcome">;
}

/** Registers the tracking instruments on `registry` (the service's `ctx.metrics.registry`). */
export function createTrackingMetrics(registry: Registry): TrackingMetrics {
  const registers = [registry];
  return {
    ackToVisible: new Histogram({
      name: "logistics_tracking_ack_to_visible_seconds",
      help: "Lag from a scan's acceptance by ingest (recorded_at) to its commit in the tracking read model",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
      enableExemplars: exemplarsEnabled(registry),
    }),
    projectedEvents: new Counter({
      name: "logistics_tracking_projected_events_total",
      help: "Events applied to the read model by the projector",
      labelNames: ["type", "outcome"],
      registers,
    }),
    storeApplyEvents: new Histogram({
      name: "logistics_tracking_store_apply_events",
      help: "Events per store apply of the projector (its consumers' waiting batches merged into one transaction)",
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
      registers,
    }),
    projectorFailures: new Counter({
      name: "logistics_tracking_projector_failures_total",
      help: "Projector handler failures (redelivered with backoff, dead-lettered on the last delivery)",
      labelNames: ["type"],
      registers,
    }),
    cacheHits: new Counter({ name: "logistics_tracking_cache_hits_total", help: "Shipment reads served by the cache", registers }),
    cacheMisses: new Counter({ name: "logistics_tracking_cache_misses_total", help: "Shipment reads served by the store", registers }),
    cacheErrors: new Counter({
      name: "logistics_tracking_cache_errors_total",
      help: "Failed cache operations (the store answers instead)",
      labelNames: ["op"],
      registers,
    }),
    watchers: new Gauge({ name: "logistics_tracking_watchers", help: "Open WatchShipment streams", registers }),
    publishedChanges: new Counter({
      name: "logistics_tracking_published_changes_total",
      help: "StatusChanged and EtaChanged events published",
      labelNames: ["type"],
      registers,
    }),
    watchNotices: new Counter({
      name: "logistics_tracking_watch_notices_total",
      help: "Change notices received by the WatchShipment feeds, by what they cost (taken: no store read)",
      labelNames: ["outcome"],
      registers,
    }),
    watchCreationWaits: new Counter({
      name: "logistics_tracking_watch_creation_waits_total",
      help: "WatchShipment calls that waited for a shipment not in the read model yet, by outcome (appeared, not_found)",
      labelNames: ["outcome"],
      registers,
    }),
  };
}
