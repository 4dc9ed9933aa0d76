import type { LiveNotice } from "./live-notice.js";
import type { LiveHub } from "./live-updates.js";
import type { TrackingMetrics } from "./tracking-metrics.js";
import { assertReplayable, docAtVersion, loadHistory, replaySteps, stepsBetween, type VersionStep } from "./shipment-history.js";
import { eventIdOfVersion } from "./store/derive.js";
import type { ShipmentDoc, ShipmentStore, StoredEvent } from "./store/ports.js";

/**
 * What WatchShipment streams of one shipment share in a replica: the shipment's change notices
 * (one subscription), the shipment as last known, and its recent versions as steps (the document
 * of each version and the event that made it), so that a new version is taken in once and fanned
 * out to every watcher of the shipment as the same objects.
 *
 * A notice that carries its change (live-notice.ts) and continues the shared copy (its first
 * version is the shared version + 1, or the feed has no copy yet) is taken in without reading
 * the store: the steps are replayed from the shared document and the notice's events. Anything
 * else falls back to reads, shared by the watchers as before: a gap, a version-only or malformed
 * notice, an unreadable notice (read at once), a watcher's first read and its heartbeat re-reads,
 * and a watcher further behind than the steps kept (the history, loaded once per version).
 */
export interface WatchFeed {
  /**
   * The shipment, at least at `minVersion` when the store has it: from the shared copy when that is
   * that new (and, with `readSince`, read at or after that time), else from one store read shared
   * by every watcher asking meanwhile.
   */
  current(minVersion: number, readSince?: number): Promise<ShipmentDoc | undefined>;
  /**
   * The versions after `from` (the watcher's document, or its version, 0 for none) up to
   * `target`, oldest first, as the same step objects for every watcher: from the feed's recent
   * steps when they cover the range, else replayed from the history (loaded once per version for
   * all watchers). A replay is lazy: each step is derived when the iteration reaches it, so a
   * watcher that sends each step before it asks for the next (a stream paced by its client)
   * holds one replayed step at a time, however many versions it is behind; only the newest
   * `maxSteps` are kept for the other watchers. Iterate it once. Also tells the feed that this
   * watcher is past `from`, so steps no watcher needs any more are dropped. Throws
   * VersionsTrimmedError (shipment-history.ts), before any step, when the steps are not kept and
   * `target`, trimmed to its size limit, no longer lists their events.
   */
  steps(from: ShipmentDoc | number, target: ShipmentDoc): Promise<Iterable<VersionStep>>;
  /** Stops sharing (the last watcher leaving drops the shared copy and the subscription). */
  leave(): void;
}

/** Hands out the feed of a shipment to its watchers. */
export interface WatchFeeds {
  /**
   * Joins the feed of `trackingNumber`. `onNotice` is called with the announced version of every
   * notice about the shipment (after the feed took in what it carried; for an unreadable notice,
   * with the version a read then found). The feed listens before the first read, so that no
   * change between that read and a watcher's wait is missed.
   */
  join(trackingNumber: string, onNotice?: (version: number) => void): WatchFeed;
  /** Shipments with watchers now (for tests and metrics). */
  size(): number;
}

/** Options of {@link createWatchFeeds}. */
export interface WatchFeedsOptions {
  store: Pick<ShipmentStore, "getShipment" | "listEvents">;
  /** Change notices; without it watchers only see changes on their periodic re-reads. */
  live?: LiveHub;
  /** Counts the notices by outcome (optional). */
  metrics?: Pick<TrackingMetrics, "watchNotices">;
  /** Clock of `readSince` (ms). Default `performance.now()`. */
  now?: () => number;
  /**
   * Most versions a feed keeps as steps (fewer when every watcher is past them): a watcher
   * further behind replays from the history. Default 16.
   */
  maxSteps?: number;
}

interface Member {
  /** Versions up to this one are behind the watcher (-Infinity until its first `steps`). */
  position: number;
  onNotice: ((version: number) => void) | undefined;
}

interface Entry {
  members: Set<Member>;
  doc: ShipmentDoc | undefined;
  /** When `doc` was last read from the store (ms, `now()`); -Infinity before the first read. */
  readAt: number;
  reading: { startedAt: number; promise: Promise<ShipmentDoc | undefined> } | undefined;
  history: { version: number; promise: Promise<ReadonlyMap<string, StoredEvent>> } | undefined;
  /** Recent versions by version number. */
  steps: Map<number, VersionStep>;
  stopListening: (() => void) | undefined;
}

/** Creates the per-replica feeds over `store`. */
export function createWatchFeeds(opts: WatchFeedsOptions): WatchFeeds {
  const { store, live, metrics } = opts;
  const now = opts.now ?? performance.now.bind(performance);
  const maxSteps = opts.maxSteps ?? 16;
  const entries = new Map<string, Entry>();

  const read = (tn: string, e: Entry): Promise<ShipmentDoc | undefined> => {
    if (e.reading) return e.reading.promise;
    const startedAt = now();
    const promise = store.getShipment(tn).then((doc) => {
      // A read that finished after a newer one (or a notice) keeps the newer document.
      if (!e.doc || !doc || doc.version >= e.doc.version) {
        e.doc = doc;
        e.readAt = startedAt;
      }
      return doc;
    });
    e.reading = { startedAt, promise };
    void promise
      .finally(() => {
        if (e.reading?.promise === promise) e.reading = undefined;
      })
      .catch(() => {});
    return promise;
  };

  const history = (tn: string, e: Entry, doc: ShipmentDoc): Promise<ReadonlyMap<string, StoredEvent>> => {
    const h = e.history;
    if (h && h.version >= doc.version) return h.promise;
    const promise = loadHistory(store, tn);
    e.history = { version: doc.version, promise };
    promise.catch(() => {
      if (e.history?.promise === promise) e.history = undefined;
    });
    return promise;
  };

  /** Drops the steps every watcher is past, and all but the newest `maxSteps`. */
  const prune = (e: Entry) => {
    let below = Infinity;
    for (const m of e.members) below = Math.min(below, m.position);
    let newest = 0;
    for (const v of e.steps.keys()) newest = Math.max(newest, v);
    const limit = Math.max(below, newest - maxSteps);
    for (const v of e.steps.keys()) if (v <= limit) e.steps.delete(v);
  };

  /** The steps `from + 1 .. to` when the feed holds all of them. */
  const held = (e: Entry, from: number, to: number): VersionStep[] | undefined => {
    const out: VersionStep[] = [];
    for (let v = from + 1; v <= to; v++) {
      const step = e.steps.get(v);
      if (!step) return undefined;
      out.push(step);
    }
    return out;
  };

  /** Takes in a notice's change when it continues the shared copy; whether it did. */
  const advance = (e: Entry, { doc, events }: NonNullable<LiveNotice["change"]>): boolean => {
    const base = e.doc;
    const first = doc.version - events.length + 1;
    const cause = events[events.length - 1];
    if (!cause) return false;
    if (base ? base.version === first - 1 : first === 1) {
      if (base && eventIdOfVersion(doc, base.version) !== eventIdOfVersion(base, base.version)) return false;
      try {
        for (const step of stepsBetween(base, doc, new Map(events.map((s) => [s.eventId, s])))) e.steps.set(step.version, step);
      } catch {
        return false;
      }
    } else if (!base) {
      // No shared copy yet (the first read is under way): the notice's own version needs nothing older.
      e.steps.set(doc.version, { version: doc.version, doc, cause });
    } else {
      return false;
    }
    e.doc = doc;
    // The history loaded for an older version would be loaded again for this one anyway.
    e.history = undefined;
    prune(e);
    return true;
  };

  /**
   * The steps of a replay to version `newest`, as they are derived: the feed's own object for a
   * version it keeps (another watcher's), and the newest `maxSteps` kept for the others. Nothing
   * else is held, so a long replay holds one step at a time.
   */
  function* shared(e: Entry, replayed: Iterable<VersionStep>, newest: number): Generator<VersionStep, void, undefined> {
    for (const s of replayed) {
      const kept = e.steps.get(s.version);
      if (kept) {
        yield kept;
        continue;
      }
      if (s.version > newest - maxSteps) {
        e.steps.set(s.version, s);
        prune(e);
      }
      yield s;
    }
  }

  const announce = (e: Entry, version: number) => {
    for (const m of e.members) m.onNotice?.(version);
  };

  const take = (tn: string, e: Entry, notice: LiveNotice) => {
    const { version, change } = notice;
    if (version === undefined) {
      metrics?.watchNotices.inc({ outcome: "unreadable" });
      // Unreadable: something changed. Read now (after any read that started before the notice).
      const since = now();
      const inFlight = e.reading && e.reading.startedAt < since ? e.reading.promise.catch(() => undefined) : Promise.resolve(undefined);
      void inFlight
        .then(() => read(tn, e))
        .then(
          (doc) => {
            if (doc) announce(e, doc.version);
          },
          () => {},
        );
      return;
    }
    // A notice overtaken by a read or a later notice has nothing to take in, but is still passed
    // on: a watcher behind the shared copy wakes up and takes its steps from there.
    const known = e.doc !== undefined && version <= e.doc.version;
    const taken = !known && change !== undefined && advance(e, change);
    metrics?.watchNotices.inc({ outcome: known ? "known" : taken ? "taken" : "read" });
    announce(e, version);
  };

  return {
    join(tn, onNotice) {
      let e = entries.get(tn);
      if (!e) {
        const created: Entry = {
          members: new Set(),
          doc: undefined,
          readAt: -Infinity,
          reading: undefined,
          history: undefined,
          steps: new Map(),
          stopListening: undefined,
        };
        created.stopListening = live?.listen(tn, (notice) => take(tn, created, notice));
        entries.set(tn, created);
        e = created;
      }
      const entry = e;
      const member: Member = { position: -Infinity, onNotice };
      entry.members.add(member);
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
        async steps(from, target) {
          const fromVersion = typeof from === "number" ? from : from.version;
          member.position = Math.max(member.position, fromVersion);
          const kept = held(entry, fromVersion, target.version);
          if (kept) return kept;
          // Versions a trimmed document dropped are known not to be there before the history is loaded.
          assertReplayable(from, target);
          const events = await history(tn, entry, target);
          // Another watcher may have filled them in meanwhile: share its objects.
          const filled = held(entry, fromVersion, target.version);
          if (filled) return filled;
          const base = typeof from !== "number" ? from : from === 0 ? undefined : docAtVersion(target, from, events);
          prune(entry);
          return shared(entry, replaySteps(base, target, events), target.version);
        },
        leave() {
          if (left) return;
          left = true;
          entry.members.delete(member);
          if (entry.members.size === 0 && entries.get(tn) === entry) {
            entries.delete(tn);
            entry.stopListening?.();
          }
        },
      };
    },
    size: () => entries.size,
  };
}
