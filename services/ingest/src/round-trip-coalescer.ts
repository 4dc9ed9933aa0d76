/** Options of {@link createRoundTripCoalescer}. */
export interface RoundTripCoalescerOptions<T, R> {
  /**
   * Sends one request for `items` (the items of every call queued since the last round, in call
   * order) and resolves with one result per item, in the same order. A rejection rejects every
   * call of the round; adapters that fail open catch errors themselves.
   */
  send(items: readonly T[]): Promise<readonly R[]>;
  /**
   * Most items one round carries. A call that would take the round past it sends the queued
   * calls at once and starts the next round; a single call larger than this is a round of its
   * own (calls are never split). Default 1 000.
   */
  maxItems?: number;
  /**
   * Queues the sending of a round; default `setImmediate`, i.e. after the I/O callbacks of the
   * current event-loop turn and every promise continuation they started (tests pass their own).
   */
  schedule?: (flush: () => void) => void;
}

/** Shares one request among the calls of one event-loop turn. */
export interface RoundTripCoalescer<T, R> {
  /** Resolves with one result per item of `items` (in order), from the round the call joined. */
  call(items: readonly T[]): Promise<R[]>;
}

interface Waiter<R> {
  readonly count: number;
  resolve(results: R[]): void;
  reject(err: unknown): void;
}

/**
 * Coalesces calls made in the same event-loop turn into one request: many concurrent messages
 * (one scan each, on many streams) each wanting a Redis lookup cost one command and one reply
 * instead of one each. Calls made while the I/O of one turn is handled (every request message
 * read from a socket chunk, every reply of a pipelined round) land in the same round; the round is
 * sent once they have run, so a lone call waits for no timer, only for the end of its turn.
 *
 * Results are routed back by position: each call gets the slice of the round's results that
 * matches its items.
 */
export function createRoundTripCoalescer<T, R>(opts: RoundTripCoalescerOptions<T, R>): RoundTripCoalescer<T, R> {
  const maxItems = Math.max(1, opts.maxItems ?? 1000);
  const schedule = opts.schedule ?? ((flush: () => void) => void setImmediate(flush));
  let items: T[] = [];
  let waiters: Array<Waiter<R>> = [];
  /** A scheduled flush is pending (it sends whatever is queued when it runs). */
  let scheduled = false;

  const flush = () => {
    if (waiters.length === 0) return;
    const sent = items;
    const mine = waiters;
    items = [];
    waiters = [];
    let results: Promise<readonly R[]>;
    try {
      results = opts.send(sent);
    } catch (err) {
      results = Promise.reject(err);
    }
    results.then(
      (all) => {
        if (all.length !== sent.length) {
          const err = new Error(`a coalesced round of ${sent.length} items got ${all.length} results`);
          for (const w of mine) w.reject(err);
          return;
        }
        let offset = 0;
        for (const w of mine) {
          w.resolve(all.slice(offset, offset + w.count));
          offset += w.count;
        }
      },
      (err: unknown) => {
        for (const w of mine) w.reject(err);
      },
    );
  };

  return {
    call(batch) {
      if (batch.length === 0) return Promise.resolve([]);
      if (items.length > 0 && items.length + batch.length > maxItems) flush();
      return new Promise<R[]>((resolve, reject) => {
        for (const item of batch) items.push(item);
        waiters.push({ count: batch.length, resolve, reject });
        if (items.length >= maxItems) {
          flush();
        } else if (!scheduled) {
          scheduled = true;
          schedule(() => {
            scheduled = false;
            flush();
          });
        }
      });
    },
  };
}
