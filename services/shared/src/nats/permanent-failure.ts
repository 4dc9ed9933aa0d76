/**
 * Which handler failures mean "this message can never be applied, however often it is retried".
 *
 * A consumer that retries such a failure only delays the dead letter by its whole redelivery
 * schedule (minutes) and meanwhile holds an ack-pending slot; {@link startConsumer} dead-letters
 * them at once instead. Everything not recognised here is treated as transient and retried:
 * connection loss, timeouts, serialization failures and deadlocks, a database that is restarting
 * or out of connections.
 */

/**
 * PostgreSQL SQLSTATE classes and codes caused by the values in a statement, not by the state of
 * the server: class 22 (data exception: 22P05 untranslatable character such as `\u0000` in jsonb,
 * 22021 invalid byte sequence, 22007/22008 datetime format/overflow, 22003 numeric value out of
 * range, 22P02 invalid text representation, 22001 string too long...) and 54000 (program limit
 * exceeded, e.g. an index row or jsonb value too large).
 */
const PERMANENT_SQLSTATE_CLASSES: ReadonlySet<string> = new Set(["22"]);
const PERMANENT_SQLSTATES: ReadonlySet<string> = new Set(["54000"]);

/**
 * Errors of the Protobuf runtime that depend only on the message: a value that cannot be
 * encoded to JSON or binary (`cannot encode google.protobuf.Timestamp to JSON: must be from
 * 0001-01-01...`) or decoded.
 */
const PROTOBUF_CODEC_ERROR = /^cannot (en|de)code /;

/** A PostgreSQL error reported by the server (pg's DatabaseError): a 5-character SQLSTATE and a severity. */
function sqlState(err: object): string | undefined {
  const { code, severity } = err as { code?: unknown; severity?: unknown };
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && typeof severity === "string" ? code : undefined;
}

/**
 * The reason `err` (or an error in its `cause` chain) is permanent, or undefined when retrying
 * may succeed. Permanent: PostgreSQL data exceptions (SQLSTATE class 22) and program limits
 * (54000), Protobuf encode/decode errors, and `RangeError`s (invalid dates such as
 * `new Date(NaN).toISOString()`, `BigInt(NaN)`, lengths out of range), which JavaScript raises
 * only for values it cannot represent.
 */
export function permanentFailureReason(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Object && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const message = e instanceof Error ? e.message : "";
    const state = sqlState(e);
    if (state !== undefined) {
      if (PERMANENT_SQLSTATE_CLASSES.has(state.slice(0, 2)) || PERMANENT_SQLSTATES.has(state)) {
        return `data cannot be stored (SQLSTATE ${state}): ${message}`;
      }
      return undefined;
    }
    if (e instanceof RangeError) return `value out of range: ${message}`;
    if (e instanceof Error && PROTOBUF_CODEC_ERROR.test(message)) return message;
  }
  return undefined;
}
