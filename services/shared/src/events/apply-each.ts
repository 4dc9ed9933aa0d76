import { errorText } from "../nats/dead-letters.js";
import { permanentFailureReason } from "../nats/permanent-failure.js";
import { databaseUnavailableReason } from "../postgres/unavailable.js";
import type { AnyEventDef } from "./catalog.js";
import { Outcomes, type BatchItem, type Outcome } from "./batch-consumer.js";

/** Options of {@link applyEach}. */
export interface ApplyEachOptions {
  /** Shipments (keys) worked on at once. Default 1. */
  concurrency?: number;
  /**
   * The reason a failure can never succeed (the item is dead-lettered at once), or undefined to
   * retry it. Checked before the shared rules ({@link permanentFailureReason}: data the store
   * rejects, values out of range, Protobuf codec errors).
   */
  poisonReason?: (err: unknown) => string | undefined;
}

/**
 * The outcomes of applying a batch item by item, for a batch handler whose items have no batched
 * path (or whose batched path failed without naming the item). Items of one key (shipment) are
 * applied one at a time in batch order; different keys run at once up to `concurrency`. A failure
 * that can never succeed makes its item poison (later items of the key proceed: the batch
 * consumer does not park a poisoned key); any other failure retries the item and every later item
 * of its key unapplied, so a shipment's events are never applied out of order. A failure that
 * says the database is unavailable ({@link databaseUnavailableReason}: a statement or connection
 * timeout, a lost connection) retries every item not yet applied, unapplied: each would wait out
 * the same timeout.
 */
export async function applyEach<E extends AnyEventDef>(
  items: ReadonlyArray<BatchItem<E>>,
  apply: (item: BatchItem<E>) => Promise<void>,
  opts: ApplyEachOptions = {},
): Promise<Outcome[]> {
  const outcomes: Outcome[] = items.map(() => Outcomes.ack);
  const byKey = new Map<string, number[]>();
  items.forEach((item, i) => {
    const list = byKey.get(item.key);
    if (list) list.push(i);
    else byKey.set(item.key, [i]);
  });
  const groups = [...byKey.values()];
  let next = 0;
  let unavailable: string | undefined;
  const worker = async () => {
    for (let g = next++; g < groups.length; g = next++) {
      let failed: string | undefined;
      for (const i of groups[g] as number[]) {
        const skip = failed !== undefined ? `an earlier event of the shipment is retried: ${failed}` : unavailable;
        if (skip !== undefined) {
          outcomes[i] = Outcomes.retry(skip);
          continue;
        }
        try {
          await apply(items[i] as BatchItem<E>);
        } catch (err) {
          const poison = opts.poisonReason?.(err) ?? permanentFailureReason(err);
          if (poison !== undefined) {
            outcomes[i] = Outcomes.poison(poison);
          } else {
            failed = errorText(err);
            outcomes[i] = Outcomes.retry(failed);
            if (databaseUnavailableReason(err) !== undefined) unavailable = `the database is unavailable: ${failed}`;
          }
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 1, groups.length)) }, worker));
  return outcomes;
}
