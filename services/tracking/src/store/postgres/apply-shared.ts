import { checkEvent, eventKey, type EventKey } from "../events.js";
import type { ProjectedEvent } from "../ports.js";

/** What the apply paths need of the store's options. */
export interface ApplySettings {
  /** Attempts of one apply under version conflicts before ConflictError. */
  readonly maxAttempts: number;
  /** Size limit of one document or event (JSON bytes). */
  readonly maxBytes: number;
}

/** An event the store accepted ({@link checkEvent}): its key and its stored JSON, computed once. */
export interface CheckedEvent {
  readonly event: ProjectedEvent;
  readonly key: EventKey;
  /** The history row's payload. */
  readonly json: string;
}

/** Checks an event and keeps what the write needs of it. */
export function checked(event: ProjectedEvent, maxBytes: number): CheckedEvent {
  const json = checkEvent(event, maxBytes);
  return { event, key: eventKey(event), json };
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
