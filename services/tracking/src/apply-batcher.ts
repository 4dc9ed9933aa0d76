import type { ApplyResult, ShipmentEventInput } from "./store/ports.js";

/** What the batcher needs from the store. */
export interface BatchApplyStore {
  applyEvents(events: readonly ShipmentEventInput[]): Promise<ApplyResult[]>;
}

export interface ApplyBatcherOptions {
  /** Largest batch committed in one transaction. Default 200. */
  maxBatch?: number;
  /** Batches in flight at once (each holds one database connection). Default 4. */
  maxConcurrentBatches?: number;
}

/** Applies events one call at a time, committing them in shared transactions. */
export interface ApplyBatcher {
  apply(event: ShipmentEventInput): Promise<ApplyResult>;
}

/**
 * Group commit for the projector: every `apply` joins the next transaction. While all batch slots
 * are busy, calls queue; when a slot frees, up to `maxBatch` queued calls commit together. At low
 * load a batch holds one event (no added latency); under load a durable commit's cost is shared
 * by many events. If a batch fails, its events are retried one by one so a single bad event
 * fails only its own call (and is redelivered or dead-lettered on its own).
 *
 * Callers must not pass two events of the same shipment concurrently if their order matters —
 * the projector serializes per tracking number, so a batch never holds two of them.
 */
export function createApplyBatcher(store: BatchApplyStore, o: ApplyBatcherOptions = {}): ApplyBatcher {
  const maxBatch = Math.max(1, o.maxBatch ?? 200);
  const slots = Math.max(1, o.maxConcurrentBatches ?? 4);
  type Waiter = { event: ShipmentEventInput; resolve(r: ApplyResult): void; reject(e: unknown): void };
  const queue: Waiter[] = [];
  let running = 0;

  const run = async (batch: Waiter[]) => {
    try {
      const results = await store.applyEvents(batch.map((w) => w.event));
      batch.forEach((w, i) => w.resolve(results[i]!));
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      for (const w of batch) {
        await store.applyEvents([w.event]).then(
          (r) => w.resolve(r[0]!),
          (e: unknown) => w.reject(e),
        );
      }
    }
  };

  const pump = () => {
    while (running < slots && queue.length > 0) {
      const batch = queue.splice(0, maxBatch);
      running++;
      void run(batch).finally(() => {
        running--;
        pump();
      });
    }
  };

  return {
    apply: (event) =>
      new Promise<ApplyResult>((resolve, reject) => {
        queue.push({ event, resolve, reject });
        pump();
      }),
  };
}
