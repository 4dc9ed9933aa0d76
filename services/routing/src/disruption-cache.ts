import type { StoredDisruption } from "./route-store.js";

/** Default of {@link DisruptionCacheOptions.ttlMs}: the staleness bound when change notifications are lost unnoticed. */
export const DEFAULT_DISRUPTION_CACHE_MS = 5_000;

/** A disruption not cleared when it was read, with its end as stored (epoch microseconds, the column's precision). */
export interface ActiveDisruptionRow {
  readonly stored: StoredDisruption;
  /** Undefined: open-ended. */
  readonly endsUs: bigint | undefined;
}

/** Options for {@link createDisruptionCache}. */
export interface DisruptionCacheOptions {
  /** Reads the disruptions not cleared and not ended at `at` (`ends_at > at`), in the store's order. */
  load(at: Date): Promise<ActiveDisruptionRow[]>;
  /** How long a read is served from memory, ms; 0: every call reads. */
  ttlMs: number;
  /** Monotonic clock, ms. Default `performance.now`. */
  now?: () => number;
}

/**
 * The active disruptions, served from memory while they are known current. Disruptions change
 * rarely (ReportDisruption, ClearDisruption) while every batch that plans asks for them. What is
 * held is used only while changes are being watched ({@link DisruptionCache.watching}), only for
 * `ttlMs` after its read started, and never across an {@link DisruptionCache.invalidate} (a change
 * this replica made, or one another replica notified): a read that was under way when a change
 * came in answers its own callers but is not kept. A call for a time before the held read's is
 * read afresh, since the held read left out what had ended by then; otherwise the held
 * disruptions are filtered by the call's time exactly as the read filters (`ends_at > at`).
 */
export interface DisruptionCache {
  active(at: Date): Promise<StoredDisruption[]>;
  /** Forgets what is held and any read under way (a change was made or notified). */
  invalidate(): void;
  /** Whether changes are being notified now; while not, nothing is held and every call reads. */
  watching(on: boolean): void;
}

/** See {@link DisruptionCache}. */
export function createDisruptionCache(o: DisruptionCacheOptions): DisruptionCache {
  const now = o.now ?? (() => performance.now());
  let generation = 0;
  let watched = false;
  /** A read and what it covers: calls at `since` or later, while `generation` holds. */
  interface Read {
    readonly generation: number;
    readonly since: number;
    readonly startedAt: number;
    readonly rows: Promise<ActiveDisruptionRow[]>;
    settled: boolean;
  }
  let held: Read | undefined;

  const filter = (rows: readonly ActiveDisruptionRow[], at: Date): StoredDisruption[] => {
    const atUs = BigInt(at.getTime()) * 1000n;
    const out: StoredDisruption[] = [];
    for (const r of rows) if (r.endsUs === undefined || r.endsUs > atUs) out.push(r.stored);
    return out;
  };

  return {
    async active(at) {
      if (!watched || o.ttlMs <= 0) return filter(await o.load(at), at);
      const t = now();
      const usable = held && held.generation === generation && held.since <= at.getTime() && (!held.settled || t - held.startedAt < o.ttlMs);
      if (!usable) {
        const read: Read = { generation, since: at.getTime(), startedAt: t, rows: o.load(at), settled: false };
        held = read;
        read.rows.then(
          () => {
            read.settled = true;
          },
          () => {
            if (held === read) held = undefined;
          },
        );
      }
      return filter(await held!.rows, at);
    },
    invalidate() {
      generation++;
      held = undefined;
    },
    watching(on) {
      watched = on;
      generation++;
      held = undefined;
    },
  };
}
