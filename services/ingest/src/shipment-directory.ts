import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { LRUCache } from "lru-cache";
import { decodeParties, encodeParties, withoutPartner, withPartner, type HandOverRight, type ShipmentParties } from "./scan-ownership.js";

/** The directory could not be read or written (NATS down, timeout); callers answer Unavailable. */
export class DirectoryUnavailableError extends Error {
  override readonly name = "DirectoryUnavailableError";
}

/** Why a change of a shipment's partners was refused (see scan-ownership.ts). */
export type PartnerChangeRefusal = Exclude<HandOverRight, "allowed"> | "full" | "own_carrier";

const REFUSALS: Readonly<Record<PartnerChangeRefusal, string>> = {
  full: "the shipment has the maximum number of partner carriers",
  partner: "the caller's carrier is a partner of the shipment, not its carrier",
  not_carrier: "the caller's carrier does not carry the shipment",
  own_carrier: "the shipment's own carrier is not a partner and cannot be removed",
};

/** A handover or partner removal the policy refused; the handler maps it to a Connect code. */
export class PartnerChangeRefusedError extends Error {
  override readonly name = "PartnerChangeRefusedError";
  constructor(readonly why: PartnerChangeRefusal) {
    super(REFUSALS[why]);
  }
}

/** Outcome of {@link ShipmentDirectory.addPartner} and {@link ShipmentDirectory.removePartner}. */
export interface HandOverResult {
  /** The parties as stored now. */
  readonly parties: ShipmentParties;
  /** False when the entry was left as it was (the partner already there, or already gone). */
  readonly changed: boolean;
}

/**
 * Tracking number → {@link ShipmentParties}, shared by every ingest replica: the source of truth
 * for scan ownership. Written by CreateShipment (before it answers), HandOverShipment and
 * RemoveShipmentPartner.
 */
export interface ShipmentDirectory {
  /**
   * The parties of every registered tracking number among `trackingNumbers` (unregistered ones are
   * absent). From the in-process cache when there; `fresh` skips the cache (and refreshes it).
   * @throws DirectoryUnavailableError when the store cannot be read.
   */
  lookup(trackingNumbers: readonly string[], fresh?: boolean): Promise<ReadonlyMap<string, ShipmentParties>>;
  /**
   * Registers `parties` under `trackingNumber` unless the number is taken; resolves with what is
   * stored now (equal to `parties`' shipment when this call or an earlier retry registered it).
   * @throws DirectoryUnavailableError
   */
  register(trackingNumber: string, parties: ShipmentParties): Promise<ShipmentParties>;
  /**
   * Adds `partner` to the shipment, atomically (compare-and-set on the entry's revision);
   * `authorize` sees the current parties first and throws to refuse. Undefined when the tracking
   * number is not registered.
   * @throws PartnerChangeRefusedError, DirectoryUnavailableError
   */
  addPartner(trackingNumber: string, partner: string, authorize: (current: ShipmentParties) => void): Promise<HandOverResult | undefined>;
  /**
   * Removes `partner` from the shipment and ends its term, atomically like {@link addPartner};
   * `authorize` sees the current parties first and throws to refuse. Unchanged when `partner` is
   * not a partner. Undefined when the tracking number is not registered.
   * @throws PartnerChangeRefusedError, DirectoryUnavailableError
   */
  removePartner(trackingNumber: string, partner: string, authorize: (current: ShipmentParties) => void): Promise<HandOverResult | undefined>;
}

/** Options of {@link createKvShipmentDirectory}. */
export interface KvShipmentDirectoryOptions {
  /** The bucket (`subjects.buckets.shipmentParties`), bound with a JetStream client whose timeout bounds each operation. */
  kv: KV;
  /** Entries kept in the in-process cache (INGEST_SHIPMENT_CACHE_SIZE). */
  cacheSize: number;
  /** How long a cached entry is trusted (INGEST_SHIPMENT_CACHE_TTL_SECONDS × 1000). */
  cacheTtlMs: number;
  /**
   * Reads an entry through the bucket stream's leader (`STREAM.MSG.GET`): the latest value and its
   * revision, or undefined when there is none (or it was deleted). A `kv.get` is a direct get that
   * any replica may answer, including one still catching up after a partition or a restart, so a
   * miss is confirmed here before a scan is rejected as UNKNOWN_SHIPMENT. Default: misses are final.
   */
  readFromLeader?: (trackingNumber: string) => Promise<{ value: Uint8Array; revision: number } | undefined>;
  /** Monotonic clock in ms for the cache's TTL (tests pass their own). Default `performance.now`. */
  now?: () => number;
}

/** The directory with a view of its cache (tests and memory checks). */
export interface KvShipmentDirectory extends ShipmentDirectory {
  /** Entries in the in-process cache right now, expired ones not yet dropped included. */
  readonly cached: number;
}

const CAS_ATTEMPTS = 8;

/**
 * The directory on a JetStream key-value bucket, with a bounded LRU cache of positive entries in
 * front of reads, so a hot shipment costs no round trip per scan.
 *
 * Staleness: another replica may have handed the shipment over (a cached entry lacks a partner)
 * or removed a partner (a cached entry still lists it) since an entry was cached. The shipment's
 * own carrier never changes, so a cached entry decides that carrier's scans alone; every other
 * verdict the cache could get wrong is confirmed with a `fresh` read (which also refreshes the
 * cache) by the ingestor: a WRONG_CARRIER before it is answered, and a partner's scan before it
 * is accepted. A stale entry therefore costs a read, never a wrong answer, with no message
 * between replicas (a fresh read is a direct get too: with a replicated bucket, a replica behind
 * the leader may answer it until it catches up). The replica that changes an entry caches what
 * it wrote.
 * Unregistered numbers are never cached, so a scan right after CreateShipment always finds its
 * shipment; a miss is confirmed with the bucket's leader (`readFromLeader`), because the direct
 * get behind `kv.get` may be answered by a replica that is behind. Entries expire from the cache
 * after `cacheTtlMs` and are dropped within a minute of it (the bucket's own max age bounds how
 * long a shipment stays registered).
 */
export function createKvShipmentDirectory(opts: KvShipmentDirectoryOptions): KvShipmentDirectory {
  const { kv } = opts;
  const now = opts.now ?? (() => performance.now());
  // ttlResolution 0: the clock is read at each check, instead of cached for 1 ms behind a timer
  // that each fresh reading would start.
  const cache = new LRUCache<string, ShipmentParties>({ max: opts.cacheSize, ttl: opts.cacheTtlMs, ttlResolution: 0, perf: { now } });
  // An expired entry is never served, but the LRU keeps it until it is read or evicted: a replica
  // that sees new shipments all day would fill the cache to cacheSize with them (about 350 B
  // each: ~75 MiB at the default 200,000). Every minute (or TTL, if shorter) they are dropped, so
  // the cache holds about the shipments read within one TTL. The sweep walks the cache once.
  const sweepEveryMs = Math.min(opts.cacheTtlMs, 60_000);
  let swept = now();
  const sweep = () => {
    const t = now();
    if (t - swept < sweepEveryMs) return;
    swept = t;
    cache.purgeStale();
  };
  const reading = new Map<string, Promise<{ parties: ShipmentParties; revision: number } | undefined>>();

  const unavailable = (op: string, err: unknown) =>
    new DirectoryUnavailableError(`shipment directory ${op} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });

  const readEntry = async (tn: string) => {
    let entry;
    try {
      entry = await kv.get(tn);
    } catch (err) {
      throw unavailable("read", err);
    }
    if (!entry && opts.readFromLeader) {
      // A replica behind the leader answers "no such key" for a shipment created moments ago
      // (seen after a healed partition): ask the leader before calling the number unknown.
      let confirmed;
      try {
        confirmed = await opts.readFromLeader(tn);
      } catch (err) {
        throw unavailable("read", err);
      }
      if (!confirmed) return undefined;
      const parties = decodeParties(confirmed.value);
      if (!parties) return undefined;
      cache.set(tn, parties);
      return { parties, revision: confirmed.revision };
    }
    if (!entry || entry.operation !== "PUT") return undefined;
    const parties = decodeParties(entry.value);
    if (!parties) return undefined;
    cache.set(tn, parties);
    return { parties, revision: entry.revision };
  };
  // Concurrent reads of one number (many scans of a shipment that just left the cache) share one request.
  const read = (tn: string) => {
    let p = reading.get(tn);
    if (!p) {
      p = readEntry(tn).finally(() => reading.delete(tn));
      reading.set(tn, p);
    }
    return p;
  };

  return {
    get cached() {
      return cache.size;
    },

    async lookup(trackingNumbers, fresh = false) {
      sweep();
      const found = new Map<string, ShipmentParties>();
      const misses: string[] = [];
      for (const tn of new Set(trackingNumbers)) {
        const hit = fresh ? undefined : cache.get(tn);
        if (hit) found.set(tn, hit);
        else misses.push(tn);
      }
      if (misses.length > 0) {
        const entries = await Promise.all(misses.map((tn) => (fresh ? readEntry(tn) : read(tn))));
        misses.forEach((tn, i) => {
          const e = entries[i];
          if (e) found.set(tn, e.parties);
        });
      }
      return found;
    },

    async register(tn, parties) {
      sweep();
      try {
        await kv.create(tn, encodeParties(parties));
        cache.set(tn, parties);
        return parties;
      } catch (err) {
        const taken =
          err instanceof JetStreamApiError &&
          (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);
        if (!taken) throw unavailable("register", err);
      }
      const existing = await readEntry(tn);
      if (!existing) throw new DirectoryUnavailableError(`shipment directory entry ${tn} is taken but unreadable`);
      return existing.parties;
    },

    addPartner: (tn, partner, authorize) =>
      change(tn, "handover", (current) => {
        authorize(current);
        const next = withPartner(current, partner);
        if (next === "full") throw new PartnerChangeRefusedError("full");
        return next;
      }),

    removePartner: (tn, partner, authorize) =>
      change(tn, "removal", (current) => {
        authorize(current);
        return withoutPartner(current, partner);
      }),
  };

  /**
   * Compare-and-set on the entry's revision: reads it, lets `next` decide (or throw to refuse),
   * writes over exactly the revision read, and starts again when another writer came first.
   */
  async function change(tn: string, what: string, next: (current: ShipmentParties) => ShipmentParties | "unchanged"): Promise<HandOverResult | undefined> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const current = await readEntry(tn);
      if (!current) return undefined;
      const updated = next(current.parties);
      if (updated === "unchanged") return { parties: current.parties, changed: false };
      try {
        await kv.update(tn, encodeParties(updated), current.revision);
        cache.set(tn, updated);
        return { parties: updated, changed: true };
      } catch (err) {
        const raced = err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence;
        if (!raced) throw unavailable("update", err);
      }
    }
    throw new DirectoryUnavailableError(`shipment directory entry ${tn} kept changing; retry the ${what}`);
  }
}
