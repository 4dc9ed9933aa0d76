import type { Redis } from "ioredis";

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
  /** Called when Redis fails; the request is then allowed (fail-open). */
  onError(op: string, err: unknown): void;
}

// KEYS[1] bucket; ARGV rate/s, burst, cost. Uses the Redis server's clock (TIME), so replicas with
// skewed clocks share one consistent bucket. Scripts replicate by effects (Redis >= 5), so TIME is
// allowed. Returns {allowed (0/1), retry after ms}.
const TOKEN_BUCKET = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
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
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, retry}
`;

/**
 * A token bucket per caller in Redis (one Lua script call per request, atomic across replicas):
 * `ratePerSec` tokens per second up to `burst`, one token per scan.
 *
 * Fail-open by design: when Redis is unreachable the request is allowed and the failure is
 * reported through `onError` (logged and counted). Rate limiting protects the mesh from a
 * misbehaving gateway; refusing all carriers' scans because the limiter's store is down would
 * turn a cache outage into an ingest outage. In-flight bounds (INGEST_MAX_INFLIGHT) still cap
 * the load a process takes on.
 */
export function createRedisRateLimiter(opts: RedisRateLimiterOptions): RateLimiter {
  return {
    async take(bucket, cost) {
      const n = Math.min(Math.max(1, cost), opts.burst);
      try {
        const reply = (await opts.redis.eval(TOKEN_BUCKET, 1, `rate:${bucket}`, opts.ratePerSec, opts.burst, n)) as unknown;
        if (!Array.isArray(reply)) throw new Error(`unexpected rate limit reply ${JSON.stringify(reply)}`);
        return { allowed: Number(reply[0]) === 1, retryAfterMs: Number(reply[1]) || 0 };
      } catch (err) {
        opts.onError("rate_limit", err);
        return { allowed: true, retryAfterMs: 0 };
      }
    },
  };
}
