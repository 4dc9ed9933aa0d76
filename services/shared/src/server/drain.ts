/**
 * The server's drain signal as seen by many long-lived streams at once.
 *
 * Node's EventTarget keeps an AbortSignal's listeners in a list that `addEventListener` and
 * `removeEventListener` walk end to end (to find a duplicate, or the one to remove), so with every
 * open stream listening on the one drain signal, opening or closing a stream cost time in
 * proportion to the streams already open: with ~1,300 open WatchShipment streams the two calls
 * were 3.5% of the tracking service's CPU. Here the signal has one listener, and the streams are
 * callbacks in a set: joining and leaving cost the same at any count.
 */
export interface Drain {
  /** Whether draining has started. */
  readonly aborted: boolean;
  /**
   * Calls `fn` once when draining starts (at once if it has). Returns the function that takes
   * `fn` back, which a stream calls when it ends so that nothing of it stays reachable.
   */
  onDrain(fn: () => void): () => void;
}

const drains = new WeakMap<AbortSignal, Drain>();

/** The {@link Drain} of `signal` (one per signal, however often it is asked for). */
export function drainOf(signal: AbortSignal): Drain {
  let drain = drains.get(signal);
  if (!drain) {
    drain = createDrain(signal);
    drains.set(signal, drain);
  }
  return drain;
}

function createDrain(signal: AbortSignal): Drain {
  const waiting = new Set<() => void>();
  signal.addEventListener(
    "abort",
    () => {
      const fns = [...waiting];
      waiting.clear();
      for (const fn of fns) fn();
    },
    { once: true },
  );
  return {
    get aborted() {
      return signal.aborted;
    },
    onDrain(fn) {
      if (signal.aborted) {
        fn();
        return () => {};
      }
      // An entry per call: each take-back removes only its own, even when one function joins twice.
      const entry = () => fn();
      waiting.add(entry);
      return () => {
        waiting.delete(entry);
      };
    },
  };
}
