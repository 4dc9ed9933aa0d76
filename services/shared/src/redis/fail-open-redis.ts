import { Redis } from "ioredis";

/** What {@link createFailOpenRedis} logs through (a pino logger fits). */
export interface FailOpenRedisLog {
  warn(obj: Record<string, unknown>, msg: string): void;
}

/** Options for {@link createFailOpenRedis}. */
export interface FailOpenRedisOptions {
  /** `redis://host:port/db`. */
  url: string;
  /** Prefix of every key (isolates services and tests sharing one Redis). */
  keyPrefix: string;
  /** Longest a command may take before it fails (and the caller goes on without Redis). */
  commandTimeoutMs: number;
  log: FailOpenRedisLog;
  /** What the warning says the service does meanwhile, e.g. "serving from the store". */
  degradedBehaviour: string;
  /** Called for every failure, e.g. to count it in a metric. */
  onError?: (op: string, err: unknown) => void;
  /** Least time between two warnings about the same operation. Default 10 000 ms. */
  warnIntervalMs?: number;
  /**
   * Send the commands issued in one event-loop turn as one pipeline (one socket write), as a
   * service issuing several per batch wants. Default false.
   */
  autoPipelining?: boolean;
}

/** A Redis client for optional work, and the one way to report its failures. */
export interface FailOpenRedis {
  readonly redis: Redis;
  /**
   * Reports a failed operation (`op` names it: "connection", "dedupe", "cache put", …): counted
   * through `onError` every time, logged as a warning at most once per interval per operation.
   */
  reportError(op: string, err: unknown): void;
  /** Disconnects at once (no pending commands are waited for: there are none worth keeping). */
  close(): void;
}

/**
 * A Redis client for work a service can do without: caches, dedupe hints, rate limits. It fails
 * fast instead of queueing while Redis is unreachable (no offline queue, no per-request retries, a
 * command timeout), reconnects in the background with a capped backoff, and reports failures
 * through one rate-limited warning per operation, so callers treat every error as "go on without
 * Redis" and the service stays correct (only slower or less protected) while Redis is down.
 */
export function createFailOpenRedis(o: FailOpenRedisOptions): FailOpenRedis {
  const redis = new Redis(o.url, {
    keyPrefix: o.keyPrefix,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: o.commandTimeoutMs,
    connectTimeout: 2000,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    enableAutoPipelining: o.autoPipelining === true,
  });
  const interval = o.warnIntervalMs ?? 10_000;
  const lastWarned = new Map<string, number>();
  const reportError = (op: string, err: unknown): void => {
    o.onError?.(op, err);
    const now = Date.now();
    if (now - (lastWarned.get(op) ?? -Infinity) < interval) return;
    lastWarned.set(op, now);
    o.log.warn({ op, err }, `redis unavailable; ${o.degradedBehaviour} (fail-open)`);
  };
  redis.on("error", (err: unknown) => reportError("connection", err));
  return { redis, reportError, close: () => redis.disconnect() };
}
