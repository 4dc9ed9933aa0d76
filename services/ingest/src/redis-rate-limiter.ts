import type { Redis } from "ioredis";
import { createRoundTripCoalescer } from "@logistics/shared/batching";
import { defineScript } from "@logistics/shared/redis";

/** The answer of a {@link RateLimiter}. */
export interface RateDecision {
  readonly allowed: boolean;
  /** When refused: how long until enough tokens have accumulated, in ms. 0 when allowed. */
  readonly retryAfterMs: number;
}

/** Takes tokens from a named bucket. */
export interface RateLimiter {
  /** Takes `cost` tokens (one per scan) from `bucket` if it holds that many. */
  take(bucket: string, cost: number): Promise<RateDecision>;
}

/** Options of {@link createRedisRateLimiter}. */
export interface RedisRateLimiterOptions {
  redis: Redis;
  /** Tokens added per second (INGEST_RATE_PER_SEC). */
  ratePerSec: number;
  /** Bucket size (INGEST_RATE_BURST); a request never costs more than this. */
  burst: number;
  /** Called when Redis fails (once per failed round); the requests are then allowed (fail-open). */
  onError(op: string, err: unknown): void;
  /** Most requests one script call takes. Default 1 000. */
  maxRequestsPerCall?: number;
}

// KEYS: one bucket per request (a bucket may repeat); ARGV rate/s, burst, then one cost per key.
// Requests are taken in order, each as if it were a script call of its own, at one reading of the
// Redis server's clock (TIME), so replicas with skewed clocks share one consistent bucket. Scripts
// replicate by effects (Redis >= 5), so TIME is allowed. Returns {allowed (0/1), retry after ms}
// per key, flattened.
const TOKEN_BUCKETS = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = math.ceil(burst * 1000 / rate) + 1000
local out = {}
for i = 1, #KEYS do
  local cost = tonumber(ARGV[2 + i])
  local b = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tokens = tonumber(b[1])
  local ts = tonumber(b[2])
  if tokens == nil or ts == nil then tokens = burst; ts = now end
  if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end
  local allowed = 0
  local retry = 0
  if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
  else
    retry = math.ceil((cost - tokens) * 1000 / rate)
  end
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], ttl)
  out[2 * i - 1] = allowed
  out[2 * i] = retry
end
return out
`;

/**
 * A token bucket per caller in Redis (a Lua script, atomic across replicas):
 * `ratePerSec` tokens per second up to `burst`, one token per scan. The requests of one
 * event-loop turn (`@logistics/shared/batching`), from any stream or caller, share one script call and
 * are taken in call order, exactly as separate calls would be.
 *
 * Fail-open by design: when Redis is unreachable the request is allowed and the failure is
 * reported through `onError` (logged and counted). Rate limiting protects the mesh from a
 * misbehaving gateway; refusing all carriers' scans because the limiter's store is down would
 * turn a cache outage into an ingest outage. In-flight bounds (INGEST_MAX_INFLIGHT) still cap
 * the load a process takes on.
 */
export function createRedisRateLimiter(opts: RedisRateLimiterOptions): RateLimiter {
  const tokenBuckets = defineScript(opts.redis, TOKEN_BUCKETS);
  const allowAll = (n: number) => new Array<RateDecision>(n).fill({ allowed: true, retryAfterMs: 0 });
  const rounds = createRoundTripCoalescer<{ bucket: string; cost: number }, RateDecision>({
    maxItems: opts.maxRequestsPerCall ?? 1000,
    async send(requests) {
      try {
        const keys = requests.map((r) => `rate:${r.bucket}`);
        const costs = requests.map((r) => r.cost);
        const reply = await tokenBuckets(keys, [opts.ratePerSec, opts.burst, ...costs]);
        if (!Array.isArray(reply) || reply.length !== 2 * requests.length) throw new Error(`unexpected rate limit reply ${JSON.stringify(reply)}`);
        return requests.map((_, i) => ({ allowed: Number(reply[2 * i]) === 1, retryAfterMs: Number(reply[2 * i + 1]) || 0 }));
      } catch (err) {
        opts.onError("rate_limit", err);
        return allowAll(requests.length);
      }
    },
  });
  return {
    async take(bucket, cost) {
      const [decision] = await rounds.call([{ bucket, cost: Math.min(Math.max(1, cost), opts.burst) }]);
      return decision as RateDecision;
    },
  };
}
