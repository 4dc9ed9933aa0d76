import type { Redis } from "ioredis";
import type { ScanDedupe } from "./scan-ingestor.js";

/**
 * `SET key 1 EX ttl NX` for every key: one command per batch instead of a pipeline of one
 * command per scan (whose client-side cost, a command object and its encoding each, showed in
 * ingest's profile).
 */
const REMEMBER_SCRIPT = "for i = 1, #KEYS do redis.call('SET', KEYS[i], '1', 'EX', ARGV[1], 'NX') end return #KEYS";

/** Options of {@link createRedisScanDedupe}. */
export interface RedisScanDedupeOptions {
  /** A connected client; its `keyPrefix` (if any) namespaces the keys. */
  redis: Redis;
  /** How long a stored scan id is remembered, in seconds (INGEST_DEDUPE_TTL_DAYS × 86 400). */
  ttlSeconds: number;
  /** Called when Redis fails; the dedupe then fails open. */
  onError(op: string, err: unknown): void;
}

/**
 * The longer-lived scan dedupe set in Redis: one key `scan:<recorded event id>` per stored scan
 * (`SET … 1 NX EX ttl` after its PubAck, every key of a batch in one script call), looked up with
 * one `MGET` per batch before publishing.
 *
 * Fail-open by design: when Redis is unreachable or slow, `seen` reports nothing seen and
 * `remember` is skipped, so scans are still published and the scans stream's JetStream duplicate
 * window (SCAN_DUPLICATE_WINDOW_MINUTES, an hour by default; keyed by
 * the same id as `Nats-Msg-Id`) remains the dedupe of last resort. Ingest never refuses a scan
 * because Redis is down; a resend older than the stream's duplicate window may then be stored
 * twice, and consumers apply events idempotently by event id.
 */
export function createRedisScanDedupe(opts: RedisScanDedupeOptions): ScanDedupe {
  const key = (id: string) => `scan:${id}`;
  return {
    async seen(ids) {
      if (ids.length === 0) return new Set();
      try {
        const values = await opts.redis.mget(...ids.map(key));
        return new Set(ids.filter((_, i) => values[i] !== null && values[i] !== undefined));
      } catch (err) {
        opts.onError("dedupe_lookup", err);
        return new Set();
      }
    },
    async remember(ids) {
      if (ids.length === 0) return;
      try {
        await opts.redis.eval(REMEMBER_SCRIPT, ids.length, ...ids.map(key), opts.ttlSeconds);
      } catch (err) {
        opts.onError("dedupe_remember", err);
      }
    },
  };
}
