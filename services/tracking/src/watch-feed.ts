import { loadHistory } from "./shipment-history.js";
import type { ShipmentDoc, ShipmentStore, StoredEvent } from "./store/ports.js";

/**
 * What WatchShipment streams of one shipment share in a replica: the shipment as last read and its
 * history, so that a new version is read from the store once and fanned out to every watcher of
 * the shipment, not read once per watcher.
 */
export interface WatchFeed {
  /**
   * The shipment, at least at `minVersion` when the store has it: from the shared copy when that is
   * that new (and, with `readSince`, read at or after that time), else from one store read shared
   * by every watcher asking meanwhile.
   */
  current(minVersion: number, readSince?: number): Promise<ShipmentDoc | undefined>;
  /** The shipment's stored events (for `doc`'s version or later), loaded once per version for all watchers. */
  history(doc: ShipmentDoc): Promise<ReadonlyMap<string, StoredEvent>>;
  /** Stops sharing (the last watcher leaving drops the shared copy). */
  leave(): void;
}

/** Hands out the feed of a shipment to its watchers. */
export interface WatchFeeds {
  join(trackingNumber: string): WatchFeed;
  /** Shipments with watchers now (for tests and metrics). */
  size(): number;
}

interface Entry {
  refs: number;
  doc: ShipmentDoc | undefined;
  /** When `doc` was read (ms, `now()`); -Infinity before the first read. */
  readAt: number;
  reading: { startedAt: number; promise: Promise<ShipmentDoc | undefined> } | undefined;
  history: { version: number; promise: Promise<ReadonlyMap<string, StoredEvent>> } | undefined;
}

/** Creates the per-replica feeds over `store`. */
export function createWatchFeeds(store: Pick<ShipmentStore, "getShipment" | "listEvents">, now: () => number = performance.now.bind(performance)): WatchFeeds {
  const entries = new Map<string, Entry>();

  const read = (tn: string, e: Entry): Promise<ShipmentDoc | undefined> => {
    if (e.reading) return e.reading.promise;
    const startedAt = now();
    const promise = store.getShipment(tn).then(
      (doc) => {
        // A read that finished after a newer one keeps the newer document.
        if (!e.doc || !doc || doc.version >= e.doc.version) {
          e.doc = doc;
          e.readAt = startedAt;
        }
        return doc;
      },
    );
    e.reading = { startedAt, promise };
    void promise.finally(() => {
      if (e.reading?.promise === promise) e.reading = undefined;
    }).catch(() => {});
    return promise;
  };

  return {
    join(tn) {
      let e = entries.get(tn);
      if (!e) {
        e = { refs: 0, doc: undefined, readAt: -Infinity, reading: undefined, history: undefined };
        entries.set(tn, e);
      }
      const entry = e;
      entry.refs++;
      let left = false;
      const fresh = (minVersion: number, readSince: number) =>
        entry.doc !== undefined && entry.doc.version >= minVersion && entry.readAt >= readSince;
      return {
        async current(minVersion, readSince = -Infinity) {
          if (fresh(minVersion, readSince)) return entry.doc;
          // A read in flight counts when it started late enough; one more read at most if what it
          // found is still older than the version a notice announced.
          for (let attempt = 0; attempt < 2; attempt++) {
            const inFlight = entry.reading && entry.reading.startedAt >= readSince ? entry.reading.promise : undefined;
            const doc = await (inFlight ?? read(tn, entry));
            if (!doc || doc.version >= minVersion) return doc;
            if (fresh(minVersion, readSince)) return entry.doc;
            readSince = now();
          }
          return entry.doc;
        },
        history(doc) {
          const h = entry.history;
          if (h && h.version >= doc.version) return h.promise;
          const promise = loadHistory(store, tn);
          entry.history = { version: doc.version, promise };
          promise.catch(() => {
            if (entry.history?.promise === promise) entry.history = undefined;
          });
          return promise;
        },
        leave() {
          if (left) return;
          left = true;
          entry.refs--;
          if (entry.refs === 0 && entries.get(tn) === entry) entries.delete(tn);
        },
      };
    },
    size: () => entries.size,
  };
}
