import { randomUUID } from "node:crypto";
import { headers, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { Subjects } from "@logistics/shared/nats";
import { decodeNotice, encodeNotice, localNotice, type LiveNotice, type NoticeChange } from "./live-notice.js";

/*
 * Cross-replica "shipment changed" notices over core NATS (`subjects.liveShipment`). The projector
 * that commits a change publishes one notice per shipment and batch: the new version, and when it
 * fits (live-notice.ts) the new document and the events applied since the version before, so that
 * the watchers of the shipment on every API replica can follow without reading the store
 * (watch-feed.ts). Notices are hints, not the truth: a lost, garbled, out-of-order or version-only
 * notice makes the watchers read the store, and a heartbeat re-read catches a lost last one.
 *
 * The replica whose projector committed a change hands the notice to its own watchers in process
 * (the document object as written and the events as stored: nothing to decode, and the Shipment
 * rendered for the cache refresh is the one those watchers send) and tags what it publishes with
 * its origin, so its own subscriptions skip the echo. Other replicas, and replicas that do not
 * know the tag, take the notice from NATS.
 */

/** Header naming the process that published a notice (a random id per process). */
export const NOTICE_ORIGIN_HEADER = "Logistics-Notice-Origin";

/** Publishes change notices. */
export interface LiveNotifier {
  /**
   * Announces that `trackingNumber` reached `version` (fire and forget), with `change` (the
   * document at `version` and the events of the versions since the last notice) when given.
   */
  notify(trackingNumber: string, version: number, change?: NoticeChange): void;
}

/**
 * Creates the notifier the projector uses. With `local` (the replica's hub), the replica's own
 * watchers get each notice in process and the hub skips its echo from NATS.
 */
export function createLiveNotifier(nc: NatsConnection, subjects: Pick<Subjects, "liveShipment">, local?: LiveHub): LiveNotifier {
  const h = local ? headers() : undefined;
  if (h && local) h.set(NOTICE_ORIGIN_HEADER, local.origin);
  return {
    notify(trackingNumber, version, change) {
      try {
        nc.publish(subjects.liveShipment(trackingNumber), encodeNotice(version, change), h ? { headers: h } : undefined);
      } catch {
        // A closed or draining connection: watchers catch up on their next periodic re-read.
      }
      local?.deliver(trackingNumber, () => localNotice(version, change));
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
  /**
   * Hands a notice of this process to the listeners of `trackingNumber`, made by `notice` only
   * when there are some (most shipments have no watcher on a given replica). A listener that
   * throws does not keep it from the others.
   */
  deliver(trackingNumber: string, notice: () => LiveNotice): void;
  /** This process's origin tag: notices published with it are not taken from NATS again. */
  readonly origin: string;
  /** Unsubscribes everything. */
  close(): void;
}

/** Creates the hub an API replica's WatchShipment handlers share. */
export function createLiveHub(nc: NatsConnection, subjects: Pick<Subjects, "liveShipment">): LiveHub {
  const entries = new Map<string, { sub: Subscription; listeners: Set<(notice: LiveNotice) => void> }>();
  const origin = randomUUID();
  const fanOut = (listeners: ReadonlySet<(notice: LiveNotice) => void>, notice: LiveNotice) => {
    for (const l of listeners) {
      try {
        l(notice);
      } catch {
        // A watcher's failure is its own; the heartbeat re-read covers it.
      }
    }
  };
  return {
    origin,
    listen(trackingNumber, listener) {
      let entry = entries.get(trackingNumber);
      if (!entry) {
        const listeners = new Set<(notice: LiveNotice) => void>();
        const sub = nc.subscribe(subjects.liveShipment(trackingNumber), {
          callback: (err, msg) => {
            if (err) return;
            // Delivered in process already (`deliver`).
            if (msg.headers?.get(NOTICE_ORIGIN_HEADER) === origin) return;
            fanOut(listeners, decodeNotice(trackingNumber, msg.data));
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
    deliver(trackingNumber, notice) {
      const entry = entries.get(trackingNumber);
      if (entry) fanOut(entry.listeners, notice());
    },
    close() {
      for (const { sub } of entries.values()) sub.unsubscribe();
      entries.clear();
    },
  };
}
