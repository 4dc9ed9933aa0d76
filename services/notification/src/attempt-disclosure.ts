import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import type { DeliveryAttempt } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";

/**
 * What a subscriber is shown of how long a webhook attempt took. Pure.
 *
 * ListDeliveries returns every attempt to the owner of the subscription, who chose its URL: any
 * public host on the allowed ports. The exact time of an attempt that got no HTTP response tells
 * a refused connection (a reset within one round trip) from a filtered one (silence until the
 * time limit), and the time of a failed handshake is a round trip from the mesh to that host:
 * shown as measured, durations would make the mesh a network probe its tenants can aim. So an
 * attempt without a response shows no duration (its error class says what went wrong), and an
 * answered one shows its duration rounded up to a multiple of {@link DISCLOSED_DURATION_STEP_MS}.
 * The exact value stays with the operator: the attempt's span, the service's logs and the
 * attempts table.
 */

/**
 * Resolution of the duration of an answered attempt as shown to subscribers, in ms. It shows what
 * a subscriber debugging its receiver needs (tenths of a second against a time limit of seconds)
 * but no longer resolves network round trips, which are a few ms to about 300 ms anywhere on the
 * planet: most receivers show 100 or 200 ms whatever their distance.
 */
export const DISCLOSED_DURATION_STEP_MS = 100;

/**
 * The duration a subscriber is shown of an attempt that took `elapsedMs` and got `httpStatus`
 * (0: no response): undefined without a response, otherwise `elapsedMs` rounded up to a multiple
 * of {@link DISCLOSED_DURATION_STEP_MS}, at least one step (an answer is never shown as instant).
 */
export function disclosedDurationMs(httpStatus: number, elapsedMs: number): number | undefined {
  if (httpStatus === 0) return undefined;
  return Math.max(1, Math.ceil(elapsedMs / DISCLOSED_DURATION_STEP_MS)) * DISCLOSED_DURATION_STEP_MS;
}

/** `attempt` as its subscriber is shown it: its duration per {@link disclosedDurationMs}, the rest unchanged. */
export function disclosedAttempt(attempt: DeliveryAttempt): DeliveryAttempt {
  const ms = disclosedDurationMs(attempt.httpStatus, attempt.duration ? durationMs(attempt.duration) : 0);
  return { ...attempt, duration: ms === undefined ? undefined : durationFromMs(ms) };
}
