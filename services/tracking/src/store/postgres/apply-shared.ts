import type { JsonValue } from "@bufbuild/protobuf";
import type pg from "pg";
import { ConflictError } from "../errors.js";
import { checkStoredEvent, eventKey, type EventKey } from "../events.js";
import type { ProjectedEvent } from "../ports.js";

/** What the apply paths need of the store's options. */
export interface ApplySettings {
  /** Attempts of one apply under version conflicts before ConflictError. */
  readonly maxAttempts: number;
  /** Size limit of one document or event (JSON bytes). */
  readonly maxBytes: number;
}

/** An event the store accepted ({@link checkStoredEvent}): its key and its stored JSON, computed once. */
export interface CheckedEvent {
  readonly event: ProjectedEvent;
  readonly key: EventKey;
  /** The history row's payload. */
  readonly json: string;
  /** The event as the history row holds it (what reading it back gives). */
  readonly stored: ProjectedEvent;
  /**
   * The proto JSON of `event`'s message (what `json` is the text of), when the history keeps the
   * event as it is; derive.ts `applyToDoc` takes the parts the document keeps from it instead
   * of converting them again. Absent when times were cleared for the history (`stored` is a copy).
   */
  readonly value?: JsonValue;
}

/** Checks an event and keeps what the write needs of it. */
export function checked(event: ProjectedEvent, maxBytes: number): CheckedEvent {
  const { json, stored, value } = checkStoredEvent(event, maxBytes);
  return { event, key: eventKey(event), json, stored, value: stored === event ? value : undefined };
}

/** Serialization failure, deadlock, a concurrent first insert: the transaction may be retried. */
const RETRYABLE = new Set(["40001", "40P01", "23505"]);

/** A compare-and-set on a document's version found another version: retry. */
export class CasMiss extends Error {}

/** How the batch write statement reports a compare-and-set miss (an integer cast of this text fails). */
export const CAS_MISSED = "batch compare-and-set missed";

export function pgCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string" ? err.code : undefined;
}

/** A conflict another attempt can resolve: a CAS miss (also the batch statement's) or a retryable SQLSTATE. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof CasMiss || RETRYABLE.has(pgCode(err) ?? "")) return true;
  return pgCode(err) === "22P02" && err instanceof Error && err.message.includes(CAS_MISSED);
}

/** The attempts of one apply ({@link withConflictRetries}). */
export interface ApplyAttempts<T> {
  /** A first try outside any transaction block (a failed statement rolls itself back), if the path has one. */
  readonly optimistic?: (client: pg.PoolClient) => Promise<T>;
  /** The locking transaction, rolled back and tried again after a retryable failure. */
  readonly locked: (client: pg.PoolClient) => Promise<T>;
  /** The shipments the apply touches, named by the ConflictError once the attempts run out. */
  readonly shipments: () => string;
}

/**
 * Runs one apply on one pooled connection: the optimistic try if any, then the locked transaction
 * until it succeeds, a failure is not retryable, or `maxAttempts` (counting the optimistic try)
 * have failed, which throws {@link ConflictError}. A connection that could not roll back is
 * released as broken and its error thrown.
 */
export async function withConflictRetries<T>(pool: pg.Pool, maxAttempts: number, attempts: ApplyAttempts<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    let first = 1;
    if (attempts.optimistic) {
      first = 2;
      try {
        return await attempts.optimistic(client);
      } catch (err) {
        if (!isRetryable(err)) throw err;
      }
    }
    for (let attempt = first; ; attempt++) {
      try {
        return await attempts.locked(client);
      } catch (err) {
        await client.query("ROLLBACK").catch(() => {
          broken = true;
        });
        if (!isRetryable(err) || broken) throw err;
        if (attempt >= maxAttempts) throw new ConflictError(attempts.shipments(), attempt);
      }
    }
  } finally {
    client.release(broken);
  }
}
