/** Machine-readable reason of a {@link StoreError}. */
export type StoreErrorCode = "INVALID_EVENT" | "DOCUMENT_TOO_LARGE" | "INVALID_QUERY" | "CONFLICT";

/**
 * Base of the store's typed errors. A service maps them to Connect codes in one place
 * (INVALID_EVENT / INVALID_QUERY → InvalidArgument, DOCUMENT_TOO_LARGE → ResourceExhausted,
 * CONFLICT → Aborted). When one is thrown by a write, nothing was written.
 */
export class StoreError extends Error {
  override readonly name: string = "StoreError";
  /**
   * Set when the error comes from `applyEvents`: the position in the batch of the event that
   * caused it (see {@link ShipmentStore.applyEvents}). Undefined for single-event calls.
   */
  batchIndex: number | undefined = undefined;
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Marks `err` as caused by the event at `index` of an `applyEvents` batch (sets `batchIndex` and
 * prefixes the message) and returns it; other errors are returned unchanged.
 */
export function atBatchIndex<E>(err: E, index: number): E {
  if (err instanceof StoreError && err.batchIndex === undefined) {
    err.batchIndex = index;
    err.message = `batch event ${index}: ${err.message}`;
  }
  return err;
}

/** The event is malformed: `field` names the offending field (dotted path). */
export class InvalidEventError extends StoreError {
  override readonly name = "InvalidEventError";
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super("INVALID_EVENT", `invalid event: ${field}: ${reason}`);
  }
}

/**
 * The event, or the document even trimmed (trim-document.ts: what a trim cannot drop, a route
 * plan, places, handovers, fills the limit), would exceed the store's size limit.
 */
export class DocumentTooLargeError extends StoreError {
  override readonly name = "DocumentTooLargeError";
  constructor(
    readonly what: "document" | "event",
    readonly bytes: number,
    readonly limit: number,
  ) {
    super("DOCUMENT_TOO_LARGE", `${what} of ${bytes} bytes exceeds the limit of ${limit} bytes`);
  }
}

/** A query parameter is malformed (bad cursor, page size, radius...). */
export class InvalidQueryError extends StoreError {
  override readonly name = "InvalidQueryError";
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super("INVALID_QUERY", `invalid query: ${field}: ${reason}`);
  }
}

/** Compare-and-set kept failing under contention after the configured number of retries. */
export class ConflictError extends StoreError {
  override readonly name = "ConflictError";
  constructor(trackingNumber: string, attempts: number) {
    super("CONFLICT", `shipment ${trackingNumber}: version conflict persisted after ${attempts} attempts`);
  }
}
