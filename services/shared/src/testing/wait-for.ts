import { setTimeout as delay } from "node:timers/promises";

/** Options for {@link waitFor}. */
export interface WaitForOptions {
  /** How long to keep polling before failing. Default 10 000 ms. */
  timeoutMs?: number;
  /** Pause between two probes. Default 50 ms. */
  intervalMs?: number;
  /** What was awaited, for the failure message. Default "condition". */
  message?: string;
  /** Stops waiting at once (rejecting with the signal's reason), e.g. when a child process exits. */
  signal?: AbortSignal;
}

/** Thrown by {@link waitFor} when the deadline passes; carries the last probe outcome. */
export class WaitForTimeoutError extends Error {
  override readonly name = "WaitForTimeoutError";
  /** The last error the probe threw, if its last run threw. */
  readonly lastError: unknown;
  /** The last (falsy) value the probe returned, if its last run returned. */
  readonly lastValue: unknown;

  constructor(message: string, lastError: unknown, lastValue: unknown) {
    super(message, lastError === undefined ? undefined : { cause: lastError });
    this.lastError = lastError;
    this.lastValue = lastValue;
  }
}

const pending = Symbol("pending");

/**
 * Polls `probe` until it returns a truthy value and resolves with that value. A probe that throws
 * or returns a falsy value is retried after `intervalMs`; assertion-style probes should end with
 * `return true`.
 *
 * This is how tests wait for something to happen: never with a bare sleep. The deadline is
 * honoured even when a probe hangs (the probe's promise is abandoned, not cancelled, so probes
 * doing I/O should carry their own short timeouts). After the deadline it rejects with a
 * {@link WaitForTimeoutError} whose message names what was awaited and the last error.
 */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  opts: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 50;
  const what = opts.message ?? "condition";
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  let lastValue: unknown;
  let attempts = 0;
  // The signal usually outlives this wait (a child process's exit): its listener goes when the
  // wait ends, or each wait would leave one behind, holding the wait's promises.
  const abort = opts.signal ? aborted(opts.signal) : undefined;
  abort?.promise.catch(() => {});
  try {
    for (;;) {
      opts.signal?.throwIfAborted();
      attempts++;
      const remaining = Math.max(deadline - Date.now(), 1);
      const timer = new AbortController();
      try {
        const outcome = await Promise.race([
          Promise.resolve().then(probe),
          delay(remaining, pending, { signal: timer.signal }),
          ...(abort ? [abort.promise] : []),
        ]);
        if (outcome === pending) {
          lastError = new Error(`probe did not settle within the remaining ${remaining} ms`);
        } else if (outcome) {
          return outcome as NonNullable<T>;
        } else {
          lastError = undefined;
          lastValue = outcome;
        }
      } catch (err) {
        if (opts.signal?.aborted) throw opts.signal.reason;
        lastError = err;
      } finally {
        timer.abort();
      }

      const left = deadline - Date.now();
      if (left <= 0) {
        const detail =
          lastError !== undefined ? `last error: ${describe(lastError)}` : `last value: ${String(lastValue)}`;
        throw new WaitForTimeoutError(
          `timed out after ${timeoutMs} ms (${attempts} attempts) waiting for ${what}; ${detail}`,
          lastError,
          lastValue,
        );
      }
      await delay(Math.min(intervalMs, left), undefined, opts.signal ? { signal: opts.signal } : {});
    }
  } finally {
    abort?.dispose();
  }
}

/** A promise rejected when `signal` aborts, and how to stop listening. */
function aborted(signal: AbortSignal): { promise: Promise<never>; dispose(): void } {
  let onAbort: (() => void) | undefined;
  const promise = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else {
      onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
    }
  });
  return { promise, dispose: () => onAbort && signal.removeEventListener("abort", onAbort) };
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
