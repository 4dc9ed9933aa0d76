/** Options of {@link createRoundTripCoalescer}. */
export interface RoundTripCoalescerOptions<T, R> {
  /**
   * Sends one request for `items` (the items of every call queued since the last round, in call
   * order) and resolves with one result per item, in the same order. A rejection rejects every
   * call of the round (unless `isolateFailures`); adapters that fail open catch errors themselves.
   */
  send(items: readonly T[]): Promise<readonly R[]>;
  /**
   * Most items one round carries. A call that would take the round past it sends the queued
   * calls at once and starts the next round; a single call larger than this is a round of its
   * own (calls are never split). With `serial`, the calls queued while a round runs go out in
   * rounds of at most this many, one after the other. Default 1 000.
   */
  maxItems?: number;
  /**
   * How long a round's first call may wait for others, in ms; default 0: the round goes out after
   * the current event-loop turn (see `schedule`), so a lone call waits for no timer.
   */
  lingerMs?: number;
  /**
   * One round in flight at a time: calls made while one is in flight join the next, sent when it
   * has settled (group commit). Default false: rounds overlap.
   */
  serial?: boolean;
  /**
   * When a round of several calls fails, send each call again alone, so one bad call fails alone
   * and the others keep their results. Default false.
   */
  isolateFailures?: boolean;
  /**
   * Errors that name the item they are about (a store's "event 3 of the batch is invalid"): when a
   * round of several calls fails with one, only the call holding that item fails, with
   * `forCall(err, position in that call)`, and the other calls go again first, without it. Other
   * errors are handled as without it (every call rejected, or `isolateFailures`).
   */
  blame?: {
    /** The position in the round's items of the item `err` is about, or undefined. */
    itemOf(err: unknown): number | undefined;
    /** The error the call holding the item gets (e.g. `err` with the position rewritten). */
    forCall(err: unknown, index: number): unknown;
  };
  /**
   * Queues the sending of a round without linger; default `setImmediate`, i.e. after the I/O
   * callbacks of the current event-loop turn and every promise continuation they started (tests
   * pass their own).
   */
  schedule?: (flush: () => void) => void;
}

/** Shares one request among calls made close together. */
export interface RoundTripCoalescer<T, R> {
  /** Resolves with one result per item of `items` (in order), from the round the call joined. */
  call(items: readonly T[]): Promise<R[]>;
  /** Sends what is queued without lingering, now and from now on (shutdown). */
  flushNow(): void;
}

interface Waiter<T, R> {
  readonly items: readonly T[];
  resolve(results: R[]): void;
  reject(err: unknown): void;
}

/**
 * Coalesces calls into rounds of one request each: many concurrent messages (one scan each, on
 * many streams) each wanting a Redis lookup cost one command and one reply instead of one each;
 * delivery attempts finishing close together are recorded by one statement. By default calls made
 * in the same event-loop turn share a round (every request message read from a socket chunk, every
 * reply of a pipelined round), sent once they have run; `lingerMs` lets a round wait longer for
 * company, `serial` keeps one round in flight at a time.
 *
 * Results are routed back by position: each call gets the slice of the round's results that
 * matches its items.
 */
export function createRoundTripCoalescer<T, R>(opts: RoundTripCoalescerOptions<T, R>): RoundTripCoalescer<T, R> {
  const maxItems = Math.max(1, opts.maxItems ?? 1000);
  const schedule = opts.schedule ?? ((flush: () => void) => void setImmediate(flush));
  let lingerMs = Math.max(0, opts.lingerMs ?? 0);
  let queued = 0;
  let waiters: Array<Waiter<T, R>> = [];
  /** When the oldest queued call was made (for the linger). */
  let since = 0;
  /** A flush is scheduled (it sends whatever is queued when it runs). */
  let scheduled = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let inFlight = false;

  const sendRound = async (mine: ReadonlyArray<Waiter<T, R>>): Promise<void> => {
    const items = mine.length === 1 ? (mine[0] as Waiter<T, R>).items : mine.flatMap((w) => w.items);
    let all: readonly R[];
    try {
      all = await opts.send(items);
      if (all.length !== items.length) throw new Error(`a coalesced round of ${items.length} items got ${all.length} results`);
    } catch (err) {
      const at = mine.length > 1 ? opts.blame?.itemOf(err) : undefined;
      if (at !== undefined && opts.blame) {
        const again: Array<Waiter<T, R>> = [];
        let offset = 0;
        for (const w of mine) {
          if (at >= offset && at < offset + w.items.length) w.reject(opts.blame.forCall(err, at - offset));
          else again.push(w);
          offset += w.items.length;
        }
        if (waiters.length === 0) since = Date.now();
        waiters = [...again, ...waiters];
        for (const w of again) queued += w.items.length;
        arm();
        return;
      }
      if (opts.isolateFailures && mine.length > 1) {
        for (const w of mine) await sendRound([w]);
      } else {
        for (const w of mine) w.reject(err);
      }
      return;
    }
    let offset = 0;
    for (const w of mine) {
      w.resolve(all.slice(offset, offset + w.items.length));
      offset += w.items.length;
    }
  };

  const flush = () => {
    scheduled = false;
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (waiters.length === 0 || (opts.serial && inFlight)) return;
    // At most `maxItems` (a call larger than that goes alone): calls queued behind a serial round
    // can add up to more, and the rest wait for the next round.
    let take = 0;
    let items = 0;
    while (take < waiters.length && (take === 0 || items + (waiters[take] as Waiter<T, R>).items.length <= maxItems)) {
      items += (waiters[take] as Waiter<T, R>).items.length;
      take++;
    }
    const mine = take === waiters.length ? waiters : waiters.slice(0, take);
    waiters = take === waiters.length ? [] : waiters.slice(take);
    queued -= items;
    inFlight = true;
    void sendRound(mine).finally(() => {
      inFlight = false;
      if (opts.serial) arm();
    });
    if (!opts.serial) arm();
  };

  /** Schedules the next flush for what is queued. */
  const arm = () => {
    if (scheduled || waiters.length === 0 || (opts.serial && inFlight)) return;
    scheduled = true;
    const wait = lingerMs - (Date.now() - since);
    if (wait > 0) timer = setTimeout(flush, wait);
    else schedule(flush);
  };

  return {
    call(items) {
      if (items.length === 0) return Promise.resolve([]);
      if (queued > 0 && queued + items.length > maxItems && !(opts.serial && inFlight)) flush();
      return new Promise<R[]>((resolve, reject) => {
        if (waiters.length === 0) since = Date.now();
        waiters.push({ items, resolve, reject });
        queued += items.length;
        if (queued >= maxItems && !(opts.serial && inFlight)) flush();
        else arm();
      });
    },
    flushNow() {
      lingerMs = 0;
      if (timer !== undefined) {
        clearTimeout(timer);
        timer = undefined;
        scheduled = false;
      }
      arm();
    },
  };
}
