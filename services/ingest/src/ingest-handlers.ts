import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { principalKey, type Principal } from "@logistics/shared/auth";
import type { Span } from "@opentelemetry/api";
import { inMessageTrace } from "@logistics/shared/telemetry";
import {
  RejectReason,
  StreamScansResponseSchema,
  type IngestService,
  type StreamScansRequest,
  type StreamScansResponse,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import type { IngestMetrics } from "./ingest-metrics.js";
import type { RateLimiter } from "./redis-rate-limiter.js";
import { countAcks, rejectAck, UNVERIFIED_CARRIER_LABEL, type ScanIngestor } from "./scan-ingestor.js";
import type { ShipmentCreator } from "./shipment-creator.js";
import type { ShipmentHandover } from "./shipment-handover.js";

/** The RPC handlers of IngestService. */
export type IngestHandlers = Partial<ServiceImpl<typeof IngestService>>;

/** Dependencies of the ingest handlers (narrow interfaces, built by the service definition). */
export interface IngestHandlersDeps {
  ingestor: ScanIngestor;
  rateLimiter: RateLimiter;
  createShipment: ShipmentCreator;
  handOver: ShipmentHandover;
  metrics: IngestMetrics;
  /**
   * Request messages of one StreamScans call processed at once (INGEST_STREAM_WINDOW). While
   * that many are unanswered the handler reads no further message, so HTTP/2 flow control
   * pushes back on the gateway. Default 16.
   */
  streamWindow?: number;
  /**
   * Aborts when the server drains: open streams stop reading, answer every message they read, then
   * end with Unavailable (the gateway may have sent scans the server never read; see
   * {@link STREAM_DRAINED_MESSAGE}), unless the gateway had already half-closed.
   */
  drainSignal: AbortSignal;
}

/**
 * The message of the Unavailable status that ends a StreamScans call when the server drains. A
 * server cannot know what the gateway sent after the last message it read (those bytes sit in
 * socket and HTTP/2 buffers), so a drained stream never ends with OK: OK would tell a gateway
 * that trusts a clean end that every sent scan was answered.
 */
export const STREAM_DRAINED_MESSAGE = "server is shutting down; reconnect and resend every scan that was not acknowledged";

/**
 * The span each StreamScans request message is handled in: the root of its own trace (or a child
 * of the message's `traceparent`), linked to the call's span. The ingestor records the message's
 * batch on it (`logistics.scan.count`, `logistics.scan.accepted`) instead of in a child span.
 */
export const STREAM_MESSAGE_SPAN = "logistics.ingest.v1.IngestService/StreamScans message";

/** The header (and, for gRPC errors, trailer) carrying the rate-limit retry hint in whole seconds. */
export const RETRY_AFTER_HEADER = "retry-after";

/**
 * Creates the IngestService handlers.
 *
 * Ownership is per scan (scan-ownership.ts, applied by the ingestor): a scan whose carrier_code is
 * not the carrier token's own, or not a carrier of the shipment, is answered REJECTED/WRONG_CARRIER;
 * a scan for an unknown tracking number REJECTED/UNKNOWN_SHIPMENT. The call itself fails only for
 * request-level problems (credentials, scopes, rate limits, message size).
 *
 * Rate limits are per caller (the carrier claim, else the token subject), one token per scan:
 * SubmitScans fails with ResourceExhausted and a `retry-after` hint (seconds) in the error
 * metadata; on StreamScans the message's scans are answered REJECTED/RATE_LIMITED with the hint
 * in `detail`, and the stream stays open.
 */
export function createIngestHandlers(deps: IngestHandlersDeps): IngestHandlers {
  const window = Math.max(1, deps.streamWindow ?? 16);
  const { ingestor, metrics } = deps;

  const bucketOf = (p: Principal) => (p.carrier !== undefined ? `carrier:${p.carrier}` : `sub:${p.subject}`);

  return {
    async submitScans(req, ctx) {
      const principal = ctx.values.get(principalKey);
      const decision = await deps.rateLimiter.take(bucketOf(principal), req.scans.length);
      if (!decision.allowed) {
        metrics.rateLimited.inc({ route: "submit" });
        const seconds = Math.max(1, Math.ceil(decision.retryAfterMs / 1000));
        throw new ConnectError(
          `scan rate limit exhausted for ${bucketOf(principal)}; retry after ${seconds} s`,
          Code.ResourceExhausted,
          { [RETRY_AFTER_HEADER]: String(seconds) },
        );
      }
      return { acks: await ingestor.ingest(req.scans, callerOf(principal), ctx.signal) };
    },

    async *streamScans(requests, ctx) {
      const principal = ctx.values.get(principalKey);
      const bucket = bucketOf(principal);
      let received = 0;
      // A carrier's stream lives for hours: each message gets a trace of its own, linked to the
      // stream's span (or continuing the message's own traceparent), so no trace grows unbounded.
      const answer = (req: StreamScansRequest): Promise<StreamScansResponse> =>
        inMessageTrace(
          STREAM_MESSAGE_SPAN,
          {
            carrier: { traceparent: req.traceparent, tracestate: req.tracestate },
            attributes: { "logistics.stream.message": ++received, "logistics.scan.count": req.scans.length },
          },
          (span) => answerMessage(req, span),
        );
      const answerMessage = async (req: StreamScansRequest, span: Span): Promise<StreamScansResponse> => {
        const decision = await deps.rateLimiter.take(bucket, req.scans.length);
        if (!decision.allowed) {
          metrics.rateLimited.inc({ route: "stream" });
          const acks = req.scans.map((s) =>
            rejectAck(s, RejectReason.RATE_LIMITED, `scan rate limit exhausted; retry after ${decision.retryAfterMs} ms`, []),
          );
          countAcks(metrics, acks, () => caller.carrier ?? UNVERIFIED_CARRIER_LABEL);
          return create(StreamScansResponseSchema, { acks });
        }
        return create(StreamScansResponseSchema, { acks: await ingestor.ingest(req.scans, caller, ctx.signal, span) });
      };
      const caller = callerOf(principal);
      yield* pipeline(requests, window, deps.drainSignal, answer);
    },

    async createShipment(req, ctx) {
      const principal = ctx.values.get(principalKey);
      const res = await deps.createShipment(req, principal.subject);
      metrics.shipments.inc({ result: res.replayed ? "replayed" : "created" });
      return res;
    },

    async handOverShipment(req, ctx) {
      return deps.handOver(req, ctx.values.get(principalKey));
    },
  };
}

/** What the ingestor needs to know about the caller. */
function callerOf(p: Principal): { carrier?: string } {
  return p.carrier === undefined ? {} : { carrier: p.carrier };
}

type Step<Res> =
  | { tag: "request"; result: IteratorResult<StreamScansRequest> }
  | { tag: "readError"; error: unknown }
  | { tag: "answered"; response: Res }
  | { tag: "drain" };

/**
 * Reads request messages in order and answers each with `handle`'s response, in request order,
 * with at most `window` messages being handled at once. No message is read while the window is
 * full, and no response is produced while the consumer of this generator (the HTTP/2 writer) has
 * not taken the previous one, so a slow reader of responses stops the reading of requests.
 *
 * `handle` throwing synchronously (authorization) or a failing read stops reading; responses for
 * messages already started are still yielded, then the error ends the stream. On drain it stops
 * reading, yields what is in progress, then ends the stream with Unavailable: messages the client
 * sent but the server did not read get no response, and the status says so. A client that had
 * half-closed before the drain had every message read and answered: its stream ends with OK.
 */
async function* pipeline<Res>(
  requests: AsyncIterable<StreamScansRequest>,
  window: number,
  drainSignal: AbortSignal,
  handle: (req: StreamScansRequest) => Promise<Res>,
): AsyncGenerator<Res> {
  const it = requests[Symbol.asyncIterator]();
  const inProgress: Array<Promise<Step<Res>>> = [];
  let reading: Promise<Step<Res>> | undefined;
  let readingDone = false;
  let failure: { error: unknown } | undefined;
  let drainedOpen = false;
  // The drain signal outlives every stream, so it wakes the pending read (through `wake`, that
  // read's resolver) rather than being raced as a promise: Promise.race adds a reaction to each
  // promise it is given, and one pending for the server's life keeps them all, each holding a
  // step with the request message it read (a long-lived stream retained every message). All
  // that is raced here settles within a window of steps. The listener goes when the stream
  // ends, or each closed stream would stay reachable from the signal.
  let wake: ((step: Step<Res>) => void) | undefined;
  const onDrain = () => wake?.({ tag: "drain" });
  drainSignal.addEventListener("abort", onDrain, { once: true });
  try {
    for (;;) {
      if (!readingDone && !failure && !reading && inProgress.length < window) {
        if (drainSignal.aborted) {
          readingDone = true;
          drainedOpen = true;
        } else {
          reading = new Promise<Step<Res>>((resolve) => {
            wake = resolve;
            it.next().then(
              (result) => resolve({ tag: "request", result }),
              (error: unknown) => resolve({ tag: "readError", error }),
            );
          });
        }
      }
      const racers: Array<Promise<Step<Res>>> = inProgress.slice(0, 1);
      if (reading) racers.push(reading);
      if (racers.length === 0) break;
      const step = await Promise.race(racers);
      switch (step.tag) {
        case "answered":
          inProgress.shift();
          yield step.response;
          break;
        case "request":
          reading = undefined;
          wake = undefined;
          if (step.result.done) {
            readingDone = true;
            break;
          }
          try {
            const answered = handle(step.result.value).then((response): Step<Res> => ({ tag: "answered", response }));
            // Handled when it reaches the head of the queue; until then keep a rejection from counting as unhandled.
            answered.catch(() => {});
            inProgress.push(answered);
          } catch (error) {
            failure = { error };
          }
          break;
        case "readError":
          reading = undefined;
          wake = undefined;
          failure = { error: step.error };
          break;
        case "drain":
          // Stop reading; the pending read is abandoned (the stream is closed by the server).
          reading = undefined;
          readingDone = true;
          drainedOpen = true;
          break;
      }
    }
    if (failure) throw failure.error;
    if (drainedOpen) throw new ConnectError(STREAM_DRAINED_MESSAGE, Code.Unavailable);
  } finally {
    drainSignal.removeEventListener("abort", onDrain);
    if (!readingDone || failure) void it.return?.().catch(() => {});
  }
}
