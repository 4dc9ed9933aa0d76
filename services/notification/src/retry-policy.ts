/**
 * When a failed webhook attempt is retried, and which failures are not retried at all. Pure.
 *
 * Delay ceiling after the n-th failed attempt: `min(maxMs, baseMs * 2^(n-1))`. With full jitter
 * (the default) the wait is uniform in [0, ceiling]; with equal jitter it is uniform in
 * [ceiling/2, ceiling], which still spreads retries but guarantees that waits never shrink while
 * the ceiling is still doubling.
 */

/** How a response or transport failure is handled. */
export type AttemptOutcome =
  /** 2xx: delivered. */
  | "delivered"
  /** Network error, timeout, 408, 429 or 5xx: retried with backoff. */
  | "retry"
  /** Any other status (3xx, 4xx): the receiver refused this request; dead-lettered at once. */
  | "reject";

/**
 * Classifies an HTTP status (0 = no response). Redirects are not followed and count as a
 * refusal, like 4xx other than 408 (timeout) and 429 (rate limited): sending the same request
 * again would get the same answer, and retrying for a day would hold back the shipment's later
 * events. Such deliveries are dead-lettered at once and can be redriven after the receiver is
 * fixed.
 */
export function classifyStatus(status: number): AttemptOutcome {
  if (status >= 200 && status < 300) return "delivered";
  if (status === 0 || status === 408 || status === 429 || status >= 500) return "retry";
  return "reject";
}

/** Retry schedule settings. */
export interface RetryPolicyOptions {
  /** Ceiling of the first delay. */
  baseMs: number;
  /** Largest delay (ceiling cap; also caps Retry-After). */
  maxMs: number;
  /** Attempts per delivery (per redrive) before it is dead-lettered. */
  maxAttempts: number;
  /** "full" (default): uniform in [0, ceiling]; "equal": uniform in [ceiling/2, ceiling]. */
  jitter?: "full" | "equal";
  /** Random source in [0, 1). Default Math.random. */
  random?: () => number;
}

/** The delay ceiling after `failedAttempts` failures (1-based). */
export function delayCeilingMs(failedAttempts: number, baseMs: number, maxMs: number): number {
  const exp = Math.min(Math.max(failedAttempts - 1, 0), 52);
  return Math.min(maxMs, baseMs * 2 ** exp);
}

/**
 * The wait before the next attempt after `failedAttempts` failures. A `retryAfterMs` from the
 * receiver replaces the jittered backoff (capped at `maxMs`, never below 0).
 */
export function nextRetryDelayMs(failedAttempts: number, opts: RetryPolicyOptions, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(Math.max(0, retryAfterMs), opts.maxMs);
  const ceiling = delayCeilingMs(failedAttempts, opts.baseMs, opts.maxMs);
  const r = (opts.random ?? Math.random)();
  return Math.round(opts.jitter === "equal" ? ceiling / 2 + (r * ceiling) / 2 : r * ceiling);
}

/** Sum of the delay ceilings over a whole schedule (the longest possible span), in ms. */
export function scheduleCeilingMs(opts: Pick<RetryPolicyOptions, "baseMs" | "maxMs" | "maxAttempts">): number {
  let total = 0;
  for (let n = 1; n < opts.maxAttempts; n++) total += delayCeilingMs(n, opts.baseMs, opts.maxMs);
  return total;
}

/**
 * Parses a `Retry-After` header: delay-seconds or an HTTP date. Returns milliseconds from `nowMs`
 * (0 for a date in the past), or undefined when absent or malformed.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  if (!/[a-z]/i.test(v)) return undefined;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}
