import type { Redis } from "ioredis";
import { createRoundTripCoalescer } from "@logistics/shared/batching";
import type { ScanDedupe } from "./scan-ingestor.js";

/**
 * `SET key 1 EX ttl NX` for every key: one command per round instead of a pipeline of one
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
  /** Called when Redis fails (once per failed round); the dedupe then fails open. */
  onError(op: string, err: unknown): void;
  /** Most ids one `MGET` or one remember script carries. Default 1 000. */
  maxKeysPerCall?: number;
}

/**
 * The longer-lived scan dedupe set in Redis: one key `scan:<recorded event id>` per stored scan
 * (`SET … 1 NX EX ttl` after its PubAck, in one script call), looked up with `MGET` before
 * publishing.
 *
 * Calls are coalesced (`@logistics/shared/batching`): every `seen` of one event-loop turn, from any
 * batch or stream, shares one `MGET`, and every `remember` one script call, up to
 * `maxKeysPerCall` ids each. Carriers that stream one scan per message on many streams would
 * otherwise cost two Redis commands per scan.
 *
 * Fail-open by design: when Redis is unreachable or slow, `seen` reports nothing seen and
 * `remember` is skipped (for every call of the round), so scans are still published and the scans
 * stream's JetStream duplicate window (SCAN_DUPLICATE_WINDOW_MINUTES, an hour by default; keyed by
 * the same id as `Nats-Msg-Id`) remains the dedupe of last resort. Ingest never refuses a scan
 * because Redis is down; a resend older than the stream's duplicate window may then be stored
 * twice, and consumers apply events idempotently by event id.
 */
export function createRedisScanDedupe(opts: RedisScanDedupeOptions): ScanDedupe {
  const key = (id: string) => `scan:${id}`;
  const maxItems = opts.maxKeysPerCall ?? 1000;
  const lookups = createRoundTripCoalescer<string, boolean>({
    maxItems,
    async send(ids) {
      try {
        const values = await opts.redis.mget(ids.map(key));
        return values.map((v) => v !== null && v !== undefined);
      } catch (err) {
        opts.onError("dedupe_lookup", err);
        return new Array<boolean>(ids.length).fill(false);
      }
    },
  });
  const records = createRoundTripCoalescer<string, void>({
    maxItems,
    async send(ids) {
      try {
        await opts.redis.eval(REMEMBER_SCRIPT, ids.length, ...ids.map(key), opts.ttlSeconds);
      } catch (err) {
        opts.onError("dedupe_remember", err);
      }
      return new Array<void>(ids.length);
    },
  });
  return {
    async seen(ids) {
      const found = await lookups.call(ids);
      const seen = new Set<string>();
      for (let i = 0; i < ids.length; i++) if (found[i]) seen.add(ids[i] as string);
      return seen;
    },
    async remember(ids) {
      await records.call(ids);
    },
  };
}
