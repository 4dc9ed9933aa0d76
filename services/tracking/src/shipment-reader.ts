import type { Shipment } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import type { ShipmentStore } from "./store/ports.js";
import type { ShipmentCache } from "./shipment-cache.js";
import { shipmentMessage } from "./shipment-view.js";
import type { TrackingMetrics } from "./tracking-metrics.js";

/** Reads current shipments: cache first, store on a miss. */
export interface ShipmentReader {
  /** The full Shipment, or undefined when the store has no such shipment. */
  get(trackingNumber: string): Promise<Shipment | undefined>;
}

/** Options of {@link createShipmentReader}. */
export interface ShipmentReaderOptions {
  store: Pick<ShipmentStore, "getShipment">;
  /** Optional: without it every read goes to the store. */
  cache?: ShipmentCache;
  metrics: Pick<TrackingMetrics, "cacheHits" | "cacheMisses" | "cacheErrors">;
  /** Called when a cache operation fails (e.g. to log, rate-limited). */
  onCacheError?: (op: "get" | "put", err: unknown) => void;
}

/**
 * Read-through: a cache hit answers at once; a miss (or an unreachable cache) reads the store and
 * fills the cache in the background with a version-guarded write, so a fill can never replace a
 * newer snapshot the projector wrote meanwhile. The cache is an optimisation only: every failure
 * of it falls back to the store, so answers stay correct while Redis is down.
 */
export function createShipmentReader(opts: ShipmentReaderOptions): ShipmentReader {
  const { store, cache, metrics } = opts;
  const cacheError = (op: "get" | "put", err: unknown) => {
    metrics.cacheErrors.inc({ op });
    opts.onCacheError?.(op, err);
  };
  return {
    async get(trackingNumber) {
      if (cache) {
        let cached: Shipment | undefined;
        try {
          cached = await cache.get(trackingNumber);
        } catch (err) {
          cacheError("get", err);
        }
        if (cached) {
          metrics.cacheHits.inc();
          return cached;
        }
      }
      metrics.cacheMisses.inc();
      const doc = await store.getShipment(trackingNumber);
      if (!doc) return undefined;
      const shipment = shipmentMessage(doc);
      if (cache) cache.put(shipment).catch((err: unknown) => cacheError("put", err));
      return shipment;
    },
  };
}
