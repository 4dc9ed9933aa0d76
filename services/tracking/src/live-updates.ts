import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Subjects } from "@logistics/shared/nats";

/*
 * Cross-replica "shipment changed" notices over core NATS (`subjects.liveShipment`). The projector
 * that commits a change publishes the new version; every API replica with watchers of that
 * shipment subscribes and re-reads the store. Notices are hints, not data: a lost notice only
 * delays a watcher until its next periodic re-read, and the watcher always derives what it sends
 * from the store, so replicas can never disagree.
 */

/** Publishes change notices. */
export interface LiveNotifier {
  /** Announces that `trackingNumber` reached `version` (fire and forget). */
  notify(trackingNumber: string, version: number): void;
}

/** Creates the notifier the projector uses. */
export function createLiveNotifier(nc: NatsConnection, subjects: Pick<Subjects, "liveShipment">): LiveNotifier {
  return {
    notify(trackingNumber, version) {
      try {
        nc.publish(subjects.liveShipment(trackingNumber), String(version));
      } catch {
        // A closed or draining connection: watchers catch up on their next periodic re-read.
      }
    },
  };
}

/** Receives change notices for the shipments this replica's watchers follow. */
export interface LiveHub {
  /**
   * Calls `listener` with the announced version for every notice about `trackingNumber` until the
   * returned function is called. One NATS subscription per watched shipment, shared by its watchers.
   */
  listen(trackingNumber: string, listener: (version: number) => void): () => void;
  /** Unsubscribes everything. */
  close(): void;
}

/** Creates the hub an API replica's WatchShipment handlers share. */
export function createLiveHub(nc: NatsConnection, subjects: Pick<Subjects, "liveShipment">): LiveHub {
  const entries = new Map<string, { sub: Subscription; listeners: Set<(version: number) => void> }>();
  return {
    listen(trackingNumber, listener) {
      let entry = entries.get(trackingNumber);
      if (!entry) {
        const listeners = new Set<(version: number) => void>();
        const sub = nc.subscribe(subjects.liveShipment(trackingNumber), {
          callback: (err, msg) => {
            if (err) return;
            const version = Number(new TextDecoder().decode(msg.data));
            if (!Number.isSafeInteger(version)) return;
            for (const l of listeners) l(version);
          },
        });
        entry = { sub, listeners };
        entries.set(trackingNumber, entry);
      }
      const current = entry;
      current.listeners.add(listener);
      return () => {
        current.listeners.delete(listener);
        if (current.listeners.size === 0 && entries.get(trackingNumber) === current) {
          entries.delete(trackingNumber);
          current.sub.unsubscribe();
        }
      };
    },
    close() {
      for (const { sub } of entries.values()) sub.unsubscribe();
      entries.clear();
    },
  };
}
