/**
 * Why a message was dead-lettered, as a bounded class for metric labels and filters. The
 * `Logistics-Dlq-Reason` header is free text (it carries the handler's error message); these are
 * the classes its prefix tells apart:
 *
 * | class | reason text starts with | meaning |
 * |---|---|---|
 * | `poison` | `poison:` | undecodable, wrongly typed, or a handler declared it can never succeed |
 * | `retries_exhausted` | `handler failed after` | the handler failed on every delivery up to max_deliver |
 * | `unsettled` | `max deliveries` | the last delivery was never settled (the replica holding it crashed or hung); dead-lettered from the server's advisory |
 * | `other` | anything else | a reason this version does not know |
 */
export const DeadLetterReasonClasses = Object.freeze(["poison", "retries_exhausted", "unsettled", "other"] as const);

/** One of {@link DeadLetterReasonClasses}. */
export type DeadLetterReasonClass = (typeof DeadLetterReasonClasses)[number];

/** The class of a `Logistics-Dlq-Reason` header value (see {@link DeadLetterReasonClasses}). */
export function deadLetterReasonClass(reason: string | undefined): DeadLetterReasonClass {
  const r = (reason ?? "").trimStart().toLowerCase();
  if (r.startsWith("poison")) return "poison";
  if (r.startsWith("handler failed after")) return "retries_exhausted";
  if (r.startsWith("max deliveries")) return "unsettled";
  return "other";
}

/** True when `value` names a class (for validating filters). */
export function isDeadLetterReasonClass(value: string): value is DeadLetterReasonClass {
  return (DeadLetterReasonClasses as readonly string[]).includes(value);
}
