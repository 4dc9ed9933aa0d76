/** A counting semaphore whose permits are acquired in amounts (e.g. one per scan). */
export interface Semaphore {
  /** Permits currently handed out. */
  readonly inUse: number;
  /** The capacity. */
  readonly capacity: number;
  /**
   * Waits until `n` permits are free (first come, first served), takes them and resolves with a
   * function that gives them back (calling it twice is harmless). `n` above the capacity is
   * clamped to the capacity, so an oversized request waits for an idle semaphore rather than
   * forever. Rejects with the signal's reason if `signal` aborts while waiting.
   */
  acquire(n: number, signal?: AbortSignal): Promise<() => void>;
}

interface Waiter {
  n: number;
  grant: () => void;
}

/** Creates a {@link Semaphore} with `capacity` permits (at least 1). */
export function createSemaphore(capacity: number): Semaphore {
  const cap = Math.max(1, Math.floor(capacity));
  let inUse = 0;
  const queue: Waiter[] = [];

  const pump = () => {
    while (queue.length > 0 && inUse + (queue[0] as Waiter).n <= cap) {
      const w = queue.shift() as Waiter;
      inUse += w.n;
      w.grant();
    }
  };
  const releaser = (n: number) => {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      inUse -= n;
      pump();
    };
  };

  return {
    get inUse() {
      return inUse;
    },
    capacity: cap,
    acquire(requested, signal) {
      const n = Math.min(Math.max(1, Math.floor(requested)), cap);
      signal?.throwIfAborted();
      if (queue.length === 0 && inUse + n <= cap) {
        inUse += n;
        return Promise.resolve(releaser(n));
      }
      return new Promise((resolve, reject) => {
        const onAbort = () => {
          const i = queue.indexOf(waiter);
          if (i >= 0) queue.splice(i, 1);
          pump();
          reject(signal?.reason);
        };
        const waiter: Waiter = {
          n,
          grant: () => {
            signal?.removeEventListener("abort", onAbort);
            resolve(releaser(n));
          },
        };
        queue.push(waiter);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    },
  };
}
