import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { principalKey, type Principal } from "@logistics/shared/auth";
import { clientAddressKey, drainOf, resetCallKey } from "@logistics/shared/server";
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
import { countAcks, rejectAck, UNVERIFIED_CARRIER_LABEL, type IngestLog, type ScanIngestor } from "./scan-ingestor.js";
import type { ShipmentCreator } from "./shipment-creator.js";
import type { ShipmentHandover, ShipmentPartnerRemoval } from "./shipment-partners.js";

/** The RPC handlers of IngestService. */
export type IngestHandlers = Partial<ServiceImpl<typeof IngestService>>;

/** Dependencies of the ingest handlers (narrow interfaces, built by the service definition). */
export interface IngestHandlersDeps {
  ingestor: ScanIngestor;
  rateLimiter: RateLimiter;
  createShipment: ShipmentCreator;
  handOver: ShipmentHandover;
  removePartner: ShipmentPartnerRemoval;
  metrics: IngestMetrics;
  /**
   * Request messages of one StreamScans call processed at once (INGEST_STREAM_WINDOW). While
   * that many are unanswered the handler reads no further message, so HTTP/2 flow control
   * pushes back on the gateway. Default 16.
   */
  streamWindow?: number;
  /**
   * A StreamScans call that sent no request message for this long, while none of its messages
   * is being answered, is closed with Unavailable ({@link STREAM_IDLE_MESSAGE}); 0 = never
   * (INGEST_STREAM_IDLE_TIMEOUT_MS). Default 0. A half-open stream otherwise holds a slot of its
   * principal's and connection's caps, and the server's memory, for as long as the peer likes.
   */
  streamIdleMs?: number;
  /**
   * A StreamScans call whose gateway has read no response for this long (the HTTP/2 writer still
   * waits to hand the previous one to the connection, as the gateway's flow-control window is
   * full) is reset (INGEST_STREAM_STALL_TIMEOUT_MS; 0 = never; default 0): counted in
   * `logistics_ingest_stream_stalls_total`, logged at warn with the caller, and its transport reset
   * (`resetCallKey`: HTTP/2 RST_STREAM CANCEL), which gives its stream cap slots back.
   * No status could reach a gateway that does not read. Without it such a stream holds its slots,
   * and the acks waiting for the writer, for as long as the gateway likes: the idle timeout does
   * not apply while a message is being answered, and the handler reads no more messages.
   */
  streamStallMs?: number;
  /** Where a reset stalled stream is reported (pino satisfies it). */
  log: IngestLog;
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
 * The message of the Unavailable status that ends an idle StreamScans call (see
 * `streamIdleMs`). As on a drain, the gateway may have sent a message the server did not read:
 * it reconnects when it has scans to send, and resends every scan that was not acknowledged.
 */
export const STREAM_IDLE_MESSAGE = "stream idle: no message within the idle timeout; reconnect and resend every scan that was not acknowledged";

/**
 * The message of the Canceled status a StreamScans call ends with when its gateway read no
 * response for the stall timeout (see `streamStallMs`). Such a gateway cannot read it: the server
 * resets the call's HTTP/2 stream, and the gateway sees the reset. Only a transport that cannot be
 * reset (an in-process one) hands it to a reader that comes back.
 */
export const STREAM_STALLED_MESSAGE =
  "stream stalled: no response read within the stall timeout; reconnect and resend every scan that was not acknowledged";

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

    streamScans(requests, ctx) {
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
      return pipeline(requests, window, deps.drainSignal, answer, {
        idleMs: deps.streamIdleMs ?? 0,
        stallMs: deps.streamStallMs ?? 0,
        onStall: ({ stalledMs, unsent }) => {
          metrics.streamStalls.inc();
          deps.log.warn(
            {
              subject: principal.subject,
              carrier: principal.carrier,
              address: ctx.values.get(clientAddressKey),
              stalledMs: Math.round(stalledMs),
              messages: received,
              unsent,
            },
            "StreamScans stream reset: the gateway read no ack within the stall timeout",
          );
          ctx.values.get(resetCallKey)();
        },
      });
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

    async removeShipmentPartner(req, ctx) {
      return deps.removePartner(req, ctx.values.get(principalKey));
    },
  };
}

/** What the ingestor needs to know about the caller. */
function callerOf(p: Principal): { carrier?: string } {
  return p.carrier === undefined ? {} : { carrier: p.carrier };
}

/** Time limits of a {@link pipeline}; 0 (the default) turns one off. */
export interface PipelineTimeouts {
  /** See {@link pipeline}. */
  idleMs?: number;
  /** See {@link pipeline}. */
  stallMs?: number;
  /**
   * Called once when the stall timeout ended the stream (after it stopped reading and let go of
   * its answers): `stalledMs` since the consumer took the last response, `unsent` responses that
   * were ready for it. It is for cutting the transport, which the consumer is stuck writing to.
   */
  onStall?: (stall: { stalledMs: number; unsent: number }) => void;
}

/** A request message being answered, in request order. */
interface Answer<Res> {
  state: "pending" | "answered" | "failed";
  response?: Res;
  error?: unknown;
}

/**
 * Reads request messages in order and answers each with `handle`'s response, in request order,
 * with at most `window` messages being handled at once. No message is read while the window is
 * full, and no response is produced while the consumer of this iterator (the HTTP/2 writer) has
 * not taken the previous one, so a slow reader of responses stops the reading of requests.
 *
 * `handle` throwing synchronously (authorization) or a failing read stops reading; responses for
 * messages already started are still produced, then the error ends the stream. On drain it stops
 * reading, produces what is in progress, then ends the stream with Unavailable: messages the client
 * sent but the server did not read get no response, and the status says so. A client that had
 * half-closed before the drain had every message read and answered: its stream ends with OK.
 * With `idleMs` > 0, a stream that sent no message for that long while none of its messages is
 * being answered ends the same way, with {@link STREAM_IDLE_MESSAGE}.
 *
 * With `stallMs` > 0, a stream whose consumer has not come back for a response for that long,
 * since it took the last one, is stalled: a consumer that writes to HTTP/2 comes back as soon as
 * the previous response is in the stream's buffer, so it is stuck behind a peer that reads nothing.
 * The stream then stops reading, lets go of its answers and calls `onStall`; a consumer that still
 * comes back gets {@link STREAM_STALLED_MESSAGE} (Canceled). Both limits share one timer
 * per stream; per message the stream only stamps the time of a read, an answer and a take.
 * (Exported for its tests.)
 */
export function pipeline<Res>(
  requests: AsyncIterable<StreamScansRequest>,
  window: number,
  drainSignal: AbortSignal,
  handle: (req: StreamScansRequest) => Promise<Res>,
  timeouts: PipelineTimeouts = {},
): AsyncIterableIterator<Res> {
  return new Pipeline(requests, window, drainSignal, handle, timeouts.idleMs ?? 0, timeouts.stallMs ?? 0, timeouts.onStall);
}

/**
 * The state machine of {@link pipeline}. It advances only while the consumer waits for a response
 * (as a generator suspended at its `yield` would): a read that completes meanwhile is handled on
 * the consumer's next pull. A message costs its read's promise and one reaction on it, `handle`'s
 * promise and one reaction on it, and the promise the consumer waits on: no race, step object or
 * generator between them.
 */
class Pipeline<Res> implements AsyncIterableIterator<Res> {
  private it: AsyncIterator<StreamScansRequest> | undefined;
  private readonly answers: Array<Answer<Res>> = [];
  /** Consumers waiting for a response, oldest first (one, unless pulls overlap). */
  private readonly waiters: Array<{ resolve: (r: IteratorResult<Res>) => void; reject: (e: unknown) => void }> = [];
  /** A read is under way. */
  private reading = false;
  /** A read that completed and is not handled yet. */
  private read: { result: IteratorResult<StreamScansRequest> } | { error: unknown } | undefined;
  private readingDone = false;
  /** The drain (or the idle timeout) stopped the stream while the client could still send. */
  private drainedOpen: ConnectError | undefined;
  /** When the last read or answer completed, or the stream started (performance.now()). */
  private lastActivity = 0;
  /** When the consumer last took a response, or the stream started (performance.now()). */
  private lastTaken = 0;
  /** The idle and stall check: armed while the stream lives, re-armed for what is left when it fires early. */
  private timer: NodeJS.Timeout | undefined;
  /** The stall timeout ended the stream: what a consumer that comes back gets, once. */
  private stalled: ConnectError | undefined;
  private failure: { error: unknown } | undefined;
  private finished = false;
  private leaveDrain: () => void = () => {};

  // The drain signal outlives every stream: the listener goes when the stream ends, or each closed
  // stream would stay reachable from the signal. It abandons a read under way (the stream is
  // closed by the server); a read already completed is handled first, as it was read.
  private readonly onDrain = () => this.stopReading(new ConnectError(STREAM_DRAINED_MESSAGE, Code.Unavailable));
  private stopReading(why: ConnectError): void {
    if (!this.reading) return;
    this.reading = false;
    this.readingDone = true;
    this.drainedOpen = why;
    this.pump();
  }
  /**
   * Stalled: the consumer has not come back for a response for `stallMs` since it took the last
   * one. Idle: waiting for the client's next message, nothing in progress, for `idleMs` since the
   * last message was read or answered. One timer per stream, not one per message: reads, answers
   * and takes only stamp `lastActivity` and `lastTaken`, and the timer re-arms itself for the
   * time left when it fires early.
   */
  private readonly onCheck = () => {
    this.timer = undefined;
    if (this.finished) return;
    const now = performance.now();
    let wait = Infinity;
    if (this.stallMs > 0) {
      if (this.waiters.length === 0) {
        const away = now - this.lastTaken;
        if (away >= this.stallMs) {
          this.stall(away);
          return;
        }
        wait = this.stallMs - away;
      } else {
        wait = this.stallMs;
      }
    }
    if (this.idleMs > 0 && !this.readingDone) {
      const left = this.idleMs - (now - this.lastActivity);
      // Stopping may end the stream, or (its consumer away) leave only the stall check to run.
      if (left <= 0 && this.reading && this.answers.length === 0) this.stopReading(new ConnectError(STREAM_IDLE_MESSAGE, Code.Unavailable));
      else wait = Math.min(wait, left > 0 ? left : this.idleMs);
    }
    if (!this.finished && wait !== Infinity) this.arm(wait);
  };
  private arm(ms: number): void {
    this.timer = setTimeout(this.onCheck, Math.ceil(ms));
    this.timer.unref();
  }
  private stall(stalledMs: number): void {
    let unsent = 0;
    for (const a of this.answers) if (a.state === "answered") unsent++;
    this.stalled = new ConnectError(STREAM_STALLED_MESSAGE, Code.Canceled);
    this.finish(undefined, false);
    this.onStall?.({ stalledMs, unsent });
  }
  private readonly onRead = (result: IteratorResult<StreamScansRequest>) => this.completeRead({ result });
  private readonly onReadError = (error: unknown) => this.completeRead({ error });

  constructor(
    private readonly requests: AsyncIterable<StreamScansRequest>,
    private readonly window: number,
    private readonly drainSignal: AbortSignal,
    private readonly handle: (req: StreamScansRequest) => Promise<Res>,
    private readonly idleMs: number,
    private readonly stallMs: number,
    private readonly onStall: PipelineTimeouts["onStall"],
  ) {}

  [Symbol.asyncIterator](): AsyncIterableIterator<Res> {
    return this;
  }

  next(): Promise<IteratorResult<Res>> {
    if (this.finished) {
      const stalled = this.stalled;
      this.stalled = undefined;
      return stalled ? Promise.reject(stalled) : Promise.resolve({ done: true, value: undefined });
    }
    if (this.it === undefined) {
      this.it = this.requests[Symbol.asyncIterator]();
      // Through `drainOf`: a listener per open stream on the signal itself made opening and
      // closing a stream cost in proportion to the streams open.
      this.leaveDrain = drainOf(this.drainSignal).onDrain(this.onDrain);
      if (this.idleMs > 0 || this.stallMs > 0) {
        this.lastActivity = this.lastTaken = performance.now();
        this.arm(Math.min(this.idleMs || Infinity, this.stallMs || Infinity));
      }
    }
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.pump();
    });
  }

  async return(value?: unknown): Promise<IteratorResult<Res>> {
    this.finish(undefined, false);
    return { done: true, value: value as Res };
  }

  async throw(error?: unknown): Promise<IteratorResult<Res>> {
    this.finish(undefined, false);
    throw error;
  }

  private completeRead(read: { result: IteratorResult<StreamScansRequest> } | { error: unknown }): void {
    // A read abandoned on drain (or by the end of the stream) completes into nothing.
    if (!this.reading) return;
    this.reading = false;
    this.read = read;
    if (this.idleMs > 0) this.lastActivity = performance.now();
    this.pump();
  }

  /** Does everything that can be done now while a consumer waits. */
  private pump(): void {
    while (this.waiters.length > 0 && !this.finished) {
      if (!this.readingDone && !this.failure && !this.reading && this.read === undefined && this.answers.length < this.window) {
        if (this.drainSignal.aborted) {
          this.readingDone = true;
          this.drainedOpen = new ConnectError(STREAM_DRAINED_MESSAGE, Code.Unavailable);
        } else {
          this.reading = true;
          this.it!.next().then(this.onRead, this.onReadError);
        }
      }
      const head = this.answers[0];
      if (head !== undefined && head.state !== "pending") {
        this.answers.shift();
        if (head.state === "failed") this.finish({ error: head.error }, true);
        else {
          if (this.stallMs > 0) this.lastTaken = performance.now();
          this.waiters.shift()!.resolve({ done: false, value: head.response as Res });
        }
        continue;
      }
      const read = this.read;
      if (read !== undefined) {
        this.read = undefined;
        if ("error" in read) this.failure = { error: read.error };
        else if (read.result.done === true) this.readingDone = true;
        else this.start(read.result.value);
        continue;
      }
      if (head === undefined && !this.reading) {
        // Nothing in progress and nothing more to read.
        if (this.failure) this.finish(this.failure, true);
        else if (this.drainedOpen) this.finish({ error: this.drainedOpen }, true);
        else this.finish(undefined, true);
      }
      return;
    }
  }

  /** Starts answering a request message; `handle` throwing stops reading. */
  private start(req: StreamScansRequest): void {
    let answered: Promise<Res>;
    try {
      answered = this.handle(req);
    } catch (error) {
      this.failure = { error };
      return;
    }
    const answer: Answer<Res> = { state: "pending" };
    this.answers.push(answer);
    // Handled when it reaches the head of the queue, so a rejection never counts as unhandled.
    answered.then(
      (response) => {
        answer.state = "answered";
        answer.response = response;
        if (this.idleMs > 0) this.lastActivity = performance.now();
        if (this.answers[0] === answer) this.pump();
      },
      (error: unknown) => {
        if (this.idleMs > 0) this.lastActivity = performance.now();
        answer.state = "failed";
        answer.error = error;
        if (this.answers[0] === answer) this.pump();
      },
    );
  }

  /**
   * Ends the stream: the first waiting consumer gets `failure`'s error or the end (`settle`),
   * any other the end. Stops reading unless every message was read.
   */
  private finish(failure: { error: unknown } | undefined, settle: boolean): void {
    if (this.finished) return;
    this.finished = true;
    const stopReading = this.it !== undefined && (!this.readingDone || this.failure !== undefined);
    this.reading = false;
    this.read = undefined;
    this.answers.length = 0;
    this.leaveDrain();
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (stopReading) void this.it!.return?.().catch(() => {});
    const waiters = this.waiters.splice(0);
    for (const [i, w] of waiters.entries()) {
      if (i === 0 && settle && failure) w.reject(failure.error);
      else w.resolve({ done: true, value: undefined });
    }
  }
}
