import { Code, ConnectError, type Client } from "@connectrpc/connect";
import {
  WatchUpdateKind,
  type TrackingService,
  type WatchShipmentResponse,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";

/** Where a watch stands; drives the banner on the page. */
export type WatchState =
  | { readonly kind: "connecting" }
  | { readonly kind: "live" }
  | { readonly kind: "retrying"; readonly attempt: number; readonly retryAt: number; readonly reason: string }
  | { readonly kind: "not-found" }
  | { readonly kind: "error"; readonly message: string }
  | { readonly kind: "stopped" };

/** Options for {@link watchShipment}. */
export interface WatchShipmentOptions {
  readonly client: Client<typeof TrackingService>;
  readonly trackingNumber: string;
  /** Each SNAPSHOT or CHANGE, in sequence order, never repeated. */
  onUpdate(update: WatchShipmentResponse): void;
  onState(state: WatchState): void;
  /** Stops the watch. */
  readonly signal: AbortSignal;
  /** First retry delay; doubles per failed attempt up to maxBackoffMs, with ±20% jitter. Default 500. */
  readonly initialBackoffMs?: number;
  /** Default 15 000. */
  readonly maxBackoffMs?: number;
  /**
   * A stream silent for this long (no update, no heartbeat) is treated as dead and resumed.
   * The server sends heartbeats every ~15 s. Default 45 000.
   */
  readonly idleTimeoutMs?: number;
}

/**
 * Follows one shipment over TrackingService.WatchShipment until `signal` aborts: a snapshot
 * first, then each change. After a drop (network, server restart, idle stream, end of the
 * server's stream lifetime) it reconnects with `after_sequence` set to the last sequence
 * received, so no change is missed or repeated; failed attempts back off exponentially.
 * NotFound is reported and then checked again slowly (a new shipment becomes visible shortly
 * after creation); InvalidArgument ends the watch; OutOfRange (the server lost history beyond our
 * sequence) restarts from a fresh snapshot.
 */
export async function watchShipment(o: WatchShipmentOptions): Promise<void> {
  const initial = o.initialBackoffMs ?? 500;
  const max = o.maxBackoffMs ?? 15_000;
  const idle = o.idleTimeoutMs ?? 45_000;
  let lastSequence = 0n;
  let failures = 0;
  o.onState({ kind: "connecting" });
  while (!o.signal.aborted) {
    const attempt = new AbortController();
    const stopAttempt = () => attempt.abort();
    o.signal.addEventListener("abort", stopAttempt, { once: true });
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    const armIdle = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => attempt.abort(new Error("stream idle")), idle);
    };
    try {
      armIdle();
      const stream = o.client.watchShipment(
        { trackingNumber: o.trackingNumber, afterSequence: lastSequence },
        { signal: attempt.signal },
      );
      let announced = false;
      for await (const res of stream) {
        armIdle();
        if (!announced) {
          announced = true;
          failures = 0;
          o.onState({ kind: "live" });
        }
        if (res.kind === WatchUpdateKind.HEARTBEAT) continue;
        if (res.kind !== WatchUpdateKind.SNAPSHOT && res.sequence <= lastSequence) continue;
        lastSequence = res.sequence;
        o.onUpdate(res);
      }
      // The server ended the stream normally (its lifetime limit): resume at once.
      if (o.signal.aborted) break;
      o.onState({ kind: "connecting" });
    } catch (e) {
      if (o.signal.aborted) break;
      const err = ConnectError.from(e);
      if (err.code === Code.NotFound) {
        // A shipment just created may not be visible yet: keep looking, quietly and slowly.
        o.onState({ kind: "not-found" });
        lastSequence = 0n;
        failures++;
        await sleep(Math.min(max, Math.max(2000, initial * 2 ** (failures - 1))), o.signal);
        continue;
      }
      if (err.code === Code.InvalidArgument) {
        o.onState({ kind: "error", message: err.rawMessage || "invalid tracking number" });
        return;
      }
      if (err.code === Code.OutOfRange) lastSequence = 0n;
      failures++;
      const base = Math.min(max, initial * 2 ** (failures - 1));
      const delay = Math.round(base * (0.8 + Math.random() * 0.4));
      const reason = attempt.signal.aborted && !o.signal.aborted ? "no data from the server" : describe(err);
      o.onState({ kind: "retrying", attempt: failures, retryAt: Date.now() + delay, reason });
      await sleep(delay, o.signal);
    } finally {
      clearTimeout(idleTimer);
      o.signal.removeEventListener("abort", stopAttempt);
    }
  }
  o.onState({ kind: "stopped" });
}

function describe(err: ConnectError): string {
  if (err.code === Code.Unavailable || err.code === Code.Unknown) return "connection lost";
  if (err.code === Code.DeadlineExceeded || err.code === Code.Canceled) return "connection timed out";
  return err.rawMessage || Code[err.code];
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
