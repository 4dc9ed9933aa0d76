import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Subjects } from "@logistics/shared/nats";
import { decodeNotice, encodeNotice, type LiveNotice, type NoticeChange } from "./live-notice.js";

/*
 * Cross-replica "shipment changed" notices over core NATS (`subjects.liveShipment`). The projector
 * that commits a change publishes one notice per shipment and batch: the new version, and when it
 * fits (live-notice.ts) the new document and the events applied since the version before, so that
 * the watchers of the shipment on every API replica can follow without reading the store
 * (watch-feed.ts). Notices are hints, not the truth: a lost, garbled, out-of-order or version-only
 * notice makes the watchers read the store, and a heartbeat re-read catches a lost last one.
 */

/** Publishes change notices. */
export interface LiveNotifier {
  /**
   * Announces that `trackingNumber` reached `version` (fire and forget), with `change` (the
   * document at `version` and the events of the versions since the last notice) when given.
   */
  notify(trackingNumber: string, version: number, change?: NoticeChange): void;
}

/** Creates the notifier the projector uses. */
export function createLiveNotifier(nc: NatsConnection, subjects: Pick<Subjects, "liveShipment">): LiveNotifier {
  return {
    notify(trackingNumber, version, change) {
      try {
        nc.publish(subjects.liveShipment(trackingNumber), encodeNotice(version, change));
      } catch {
        // A closed or draining connection: watchers catch up on their next periodic re-read.
      }
    },
  };
}

/** Receives change notices for the shipments this replica's watchers follow. */
export interface LiveHub {
  /**
   * Calls `listener` with every notice about `trackingNumber` until the returned function is
   * called, decoded once however many listeners (live-notice.ts: an unreadable notice arrives
   * empty). One NATS subscription per watched shipment, shared by its listeners.
   */
  listen(trackingNumber: string, listener: (notice: LiveNotice) => void): () => void;
  /** Unsubscribes everything. */
  close(): void;
}

/** Creates the hub an API replica's WatchShipment handlers share. */
export function createLiveHub(nc: NatsConnection, subjects: Pick<Subjects, "liveShipment">): LiveHub {
  const entries = new Map<string, { sub: Subscription; listeners: Set<(notice: LiveNotice) => void> }>();
  return {
    listen(trackingNumber, listener) {
      let entry = entries.get(trackingNumber);
      if (!entry) {
        const listeners = new Set<(notice: LiveNotice) => void>();
        const sub = nc.subscribe(subjects.liveShipment(trackingNumber), {
          callback: (err, msg) => {
            if (err) return;
            const notice = decodeNotice(trackingNumber, msg.data);
            for (const l of listeners) l(notice);
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
