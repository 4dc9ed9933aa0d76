/** Options of {@link createBatchWriter}. */
export interface BatchWriterOptions<T, R> {
  /** Writes items in one operation; resolves with one result per item, in order. */
  write(items: readonly T[]): Promise<R[]>;
  /**
   * How long the first item of a batch may wait for others. 0: written on the next turn of the
   * event loop (items added in the same turn share a write). A batch never waits longer than this
   * plus the write in flight before it.
   */
  lingerMs: number;
}

/** Items written together, each settled with its own result. */
export interface BatchWriter<T, R> {
  /** Queues `item`; resolves with its result once its batch is written. */
  add(item: T): Promise<R>;
  /** Writes what is queued without lingering, now and from now on (shutdown). */
  flushNow(): void;
}

interface Queued<T, R> {
  readonly item: T;
  readonly since: number;
  resolve(r: R): void;
  reject(err: unknown): void;
}

/**
 * Group commit: items added while a write is lingering or in flight share the next write, so N
 * items finished close together cost one round trip instead of N. One write at a time. When a
 * batch of several fails, its items are written one by one, so one bad item fails alone and the
 * others keep their results.
 */
export function createBatchWriter<T, R>(opts: BatchWriterOptions<T, R>): BatchWriter<T, R> {
  const queue: Array<Queued<T, R>> = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let writing = false;
  let linger = Math.max(0, opts.lingerMs);

  const schedule = () => {
    if (timer !== undefined || writing || queue.length === 0) return;
    const waited = Date.now() - (queue[0] as Queued<T, R>).since;
    timer = setTimeout(() => void run(), Math.max(0, linger - waited));
  };

  const settle = async (batch: ReadonlyArray<Queued<T, R>>) => {
    try {
      const results = await opts.write(batch.map((q) => q.item));
      batch.forEach((q, i) => q.resolve(results[i] as R));
    } catch (err) {
      if (batch.length === 1) {
        (batch[0] as Queued<T, R>).reject(err);
        return;
      }
      for (const q of batch) await settle([q]);
    }
  };

  const run = async () => {
    timer = undefined;
    writing = true;
    try {
      await settle(queue.splice(0));
    } finally {
      writing = false;
      schedule();
    }
  };

  return {
    add(item) {
      return new Promise<R>((resolve, reject) => {
        queue.push({ item, since: Date.now(), resolve, reject });
        schedule();
      });
    },
    flushNow() {
      linger = 0;
      if (timer !== undefined) {
        clearTimeout(timer);
        timer = undefined;
      }
      schedule();
    },
  };
}
