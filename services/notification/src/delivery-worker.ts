import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Tracer } from "@opentelemetry/api";
import { createRoundTripCoalescer } from "@logistics/shared/batching";
import { redactedUrl, SemConv, serverAttributes } from "@logistics/shared/telemetry";
import { DeliveryAttemptSchema, DeliveryState } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { createCircuitBreakers, type CircuitBreakerOptions, type CircuitBreakers } from "./circuit-breaker.js";
import type { AttemptRecord, ClaimedDelivery, DeliveryTransition, NotificationStore, RecordedAttempt } from "./notification-store.js";
import { classifyStatus, nextRetryDelayMs, parseRetryAfter, type RetryPolicyOptions } from "./retry-policy.js";
import { signatureHeader, SIGNATURE_HEADER } from "./signature.js";
import type { WebhookRequest, WebhookResult, WebhookSender } from "./webhook-sender.js";
import { resolveWebhookTarget, WebhookUrlError, type WebhookTargetPolicy } from "./webhook-target.js";

/** Header naming the event (receivers deduplicate by it). */
export const EVENT_ID_HEADER = "Logistics-Event-Id";
/** Header naming the delivery (stable across its attempts). */
export const DELIVERY_ID_HEADER = "Logistics-Delivery-Id";
/** Header with the 1-based attempt number of the delivery. */
export const ATTEMPT_HEADER = "Logistics-Delivery-Attempt";

/** Log methods the worker uses (pino's shape). */
export interface WorkerLog {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/** The outcome of one attempt, for metrics. */
export interface AttemptReport {
  readonly deliveryId: string;
  readonly origin: string;
  readonly httpStatus: number;
  readonly durationMs: number;
  readonly next: DeliveryState;
  /** 1-based number of this attempt in the delivery's current budget. */
  readonly attempt?: number;
  /** From the delivery's creation to the end of this attempt; unset for redriven deliveries. */
  readonly sinceCreatedMs?: number;
}

/** Options of {@link startDeliveryWorker}. */
export interface DeliveryWorkerOptions {
  store: Pick<NotificationStore, "claimDue" | "recordAttempts">;
  /** Where requests may go (re-checked before every attempt: DNS rebinding). */
  targetPolicy: WebhookTargetPolicy;
  retry: RetryPolicyOptions;
  /** Per-attempt time limit. */
  timeoutMs: number;
  /** Lease on claimed deliveries; must exceed `timeoutMs`. */
  leaseMs: number;
  /** Requests in flight in this worker. */
  concurrency: number;
  /** Requests in flight per endpoint (origin) in this worker. */
  endpointConcurrency: number;
  /** Idle polling period. */
  pollIntervalMs: number;
  /**
   * Coalescing period. Attempts finishing within it are recorded in one statement (the first waits
   * at most this long), and {@link DeliveryWorker.wakeAfter} wakes land on its multiples, so
   * deliveries created within one period are claimed together. Default 50 ms; 0 coalesces only
   * what happens in the same turn of the event loop.
   */
  tickMs?: number;
  breaker: CircuitBreakerOptions;
  log: WorkerLog;
  /** Called after every recorded attempt, with its exact duration. */
  onAttempt?: (report: AttemptReport) => void;
  /** HTTP client: {@link WebhookSender.send} of the service's sender, or a fake (must never reject). */
  send: (req: WebhookRequest) => Promise<WebhookResult>;
  /** Tracer for the CLIENT span of each attempt. Default `trace.getTracer("logistics.notification")`. */
  tracer?: Tracer;
}

/** A running delivery worker. */
export interface DeliveryWorker {
  /** Looks for due deliveries now (call after making some due, e.g. a redrive). */
  wake(): void;
  /**
   * Looks for due deliveries once `delayMs` has passed (call after creating deliveries that become
   * due then), at the next multiple of the tick: calls within one tick share one claim.
   */
  wakeAfter(delayMs: number): void;
  /** Stops claiming and waits for in-flight attempts to be recorded. Idempotent. */
  close(): Promise<void>;
  /** Attempts in flight, per origin (for tests and metrics). */
  inFlight(): ReadonlyMap<string, number>;
  /** The endpoint circuit breakers. */
  readonly breakers: CircuitBreakers;
}

/**
 * Starts the loop that sends due deliveries. Several replicas may run it against one database:
 * deliveries are leased with `FOR UPDATE SKIP LOCKED` and a lease timeout (a crashed replica's
 * deliveries are taken over once their lease expires). Requests run concurrently, bounded by
 * `concurrency` overall and `endpointConcurrency` per origin, so a slow endpoint can occupy at
 * most its own quota and never holds up deliveries to other endpoints. An endpoint whose circuit
 * breaker is open is not contacted: the attempt is recorded as failed ("circuit open") and
 * rescheduled with the normal backoff, so the retry schedule keeps its wall-clock length.
 *
 * Round trips are per tick, not per delivery: attempts finishing within a tick are recorded in one
 * statement; a claim runs when deliveries created in a tick become due ({@link DeliveryWorker.wakeAfter}),
 * when a finished attempt frees a slot that may have kept due work back (the worker or the origin
 * was full) or releases a due successor, and otherwise every `pollIntervalMs` (retries that came
 * due, expired leases of other replicas). Wakes during a claim lead to one more claim, never none.
 *
 * A request that got no HTTP response (refused, reset, failed handshake...) takes its full time
 * limit as seen from outside: its endpoint slot, its circuit-breaker outcome and its record (and
 * so its retry time) wait until `timeoutMs` after it was sent, as they would for a filtered port.
 * Otherwise the time a subscriber sees its attempt appear in ListDeliveries, or its retry
 * scheduled, would tell a closed port from a filtered one and time round trips to hosts of its
 * choosing (attempt-disclosure.ts hides the duration itself). The cost is that of a filtered
 * port, bounded by the endpoint's slots and its breaker. The span, logs and `onAttempt` get the
 * exact duration; {@link DeliveryWorker.close} stops waiting.
 */
export function startDeliveryWorker(opts: DeliveryWorkerOptions): DeliveryWorker {
  const { send } = opts;
  const tracer = opts.tracer ?? trace.getTracer("logistics.notification");
  const breakers = createCircuitBreakers(opts.breaker);
  const workerId = randomBytes(6).toString("base64url");
  let claims = 0;
  const perOrigin = new Map<string, number>();
  const running = new Set<Promise<void>>();
  const tickMs = Math.max(0, opts.tickMs ?? 50);
  let stopped = false;
  let wakeUp: (() => void) | undefined;
  // Set by every wake, cleared just before a claim starts: a wake during a claim (whose snapshot
  // may predate the new work) leads to one more claim, never to none.
  let wakePending = false;
  /** Scheduled wakes by due time (a multiple of the tick). */
  const wakeTimers = new Map<number, ReturnType<typeof setTimeout>>();
  /** Releases of the attempts waiting out their time limit (close() releases them at once). */
  const holds = new Set<() => void>();

  const wake = () => {
    wakePending = true;
    wakeUp?.();
  };
  const wakeAfter = (delayMs: number) => {
    if (stopped) return;
    const at = Date.now() + Math.max(0, delayMs);
    const slot = tickMs > 0 ? Math.ceil(at / tickMs) * tickMs : at;
    if (wakeTimers.has(slot)) return;
    const timer = setTimeout(() => {
      wakeTimers.delete(slot);
      wake();
    }, slot - Date.now());
    timer.unref();
    wakeTimers.set(slot, timer);
  };
  /** Resolves at `at` (a Date.now() value), or at once when stopped. */
  const holdUntil = (at: number) =>
    new Promise<void>((resolve) => {
      const ms = at - Date.now();
      if (ms <= 0 || stopped) {
        resolve();
        return;
      }
      const release = () => {
        clearTimeout(timer);
        holds.delete(release);
        resolve();
      };
      const timer = setTimeout(release, ms);
      holds.add(release);
    });
  const idle = (ms: number) =>
    new Promise<void>((resolve) => {
      if (wakePending || stopped) {
        resolve();
        return;
      }
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeUp = undefined;
        // On the next turn: further wakes of this turn (attempts recorded together) share the claim.
        setImmediate(resolve);
      }
      wakeUp = done;
    });

  // Group commit of attempt records: those finished within a tick share one statement, one
  // statement at a time, and a failed one is retried record by record so a bad row fails alone.
  const records = createRoundTripCoalescer<AttemptRecord, RecordedAttempt>({
    send: (batch) => opts.store.recordAttempts(batch),
    lingerMs: tickMs,
    serial: true,
    isolateFailures: true,
  });

  /**
   * Makes one attempt and records it; resolves with what the record did. `sent` is called once no
   * request to the endpoint is in flight any more (before the record is written).
   */
  const attempt = async (d: ClaimedDelivery, sent: () => void): Promise<RecordedAttempt> => {
    const attemptedAt = timestampNow();
    const n = d.attemptsInBudget + 1;
    let result: WebhookResult;
    // The delivery's log lines are written in the context of its HTTP span (or, when no request
    // was sent, of the event's trace), so they carry a trace id that leads to the attempt.
    let logContext = propagation.extract(ROOT_CONTEXT, d.traceContext);
    const permit = breakers.acquire(d.origin);
    if (permit === "open") {
      result = notSent("circuit open: the endpoint failed repeatedly; request not sent");
    } else {
      const sent = await sendTraced(d, n);
      result = sent.result;
      logContext = sent.context;
      // No response: everything others can observe waits out the time limit (see above).
      if (result.status === 0 && sent.requestedAt !== undefined) await holdUntil(sent.requestedAt + opts.timeoutMs);
      breakers.record(d.origin, classifyStatus(result.status) !== "retry");
    }
    sent();
    const outcome = result.status === 0 ? "retry" : classifyStatus(result.status);
    let next: DeliveryTransition;
    if (outcome === "delivered") next = { state: DeliveryState.DELIVERED };
    else if (outcome === "reject" || n >= opts.retry.maxAttempts) next = { state: DeliveryState.DEAD_LETTERED };
    else {
      const retryAfter = parseRetryAfter(result.retryAfter, Date.now());
      next = { state: DeliveryState.RETRYING, delayMs: nextRetryDelayMs(n, opts.retry, retryAfter) };
    }
    const error = outcome === "delivered" ? "" : result.error || `HTTP ${result.status}`;
    const finishedAt = Date.now();
    const [recorded] = await records.call([{
      delivery: d,
      attempt: create(DeliveryAttemptSchema, {
        attemptedAt,
        httpStatus: result.status,
        error,
        duration: durationFromMs(result.durationMs),
        responseExcerpt: result.excerpt,
      }),
      next,
    }]);
    // Log lines and the attempt's metrics (exemplars) in the attempt's trace context.
    context.with(logContext, () => {
      if (!recorded.written) {
        opts.log.warn({ deliveryId: d.id }, "delivery lease lost or delivery cancelled; attempt not recorded");
      } else if (outcome !== "delivered") {
        // The exact duration and the system's error text are the operator's (the subscriber sees a class).
        const fields = {
          deliveryId: d.id,
          origin: d.origin,
          attempts: n,
          error,
          ...(result.errorDetail ? { errorDetail: result.errorDetail } : {}),
          durationMs: result.durationMs,
        };
        if (next.state === DeliveryState.DEAD_LETTERED) opts.log.warn(fields, "webhook delivery dead-lettered");
        else opts.log.debug(fields, "webhook attempt failed");
      }
      opts.onAttempt?.({
        deliveryId: d.id,
        origin: d.origin,
        httpStatus: result.status,
        durationMs: result.durationMs,
        next: next.state,
        attempt: n,
        ...(d.createdAt ? { sinceCreatedMs: Math.max(0, finishedAt - d.createdAt.getTime()) } : {}),
      });
    });
    return recorded;
  };

  /**
   * POSTs one attempt in a CLIENT span named after the HTTP method (`POST`, as the HTTP client
   * conventions name spans without a route template), child of the event's trace, with
   * `http.request.method`, `url.full` (credentials and query values redacted), `server.address`,
   * `server.port`, `http.response.status_code` and, on failure, `error.type` (the status code, or
   * the transport error's code) with the full transport error as the status message (spans are
   * the operator's; the subscriber sees its class) and `logistics.attempt_duration_ms`, the exact
   * duration (the subscriber sees it coarsened). Resolves with the result, the span's context and,
   * when a request was made, when (Date.now()).
   */
  const sendTraced = async (
    d: ClaimedDelivery,
    n: number,
  ): Promise<{ result: WebhookResult; context: Context; requestedAt?: number }> => {
    const parent = propagation.extract(ROOT_CONTEXT, d.traceContext);
    const fullUrl = redactedUrl(d.webhookUrl);
    const span = tracer.startSpan(
      "POST",
      {
        kind: SpanKind.CLIENT,
        attributes: {
          [SemConv.HTTP_REQUEST_METHOD]: "POST",
          ...(fullUrl !== undefined ? { [SemConv.URL_FULL]: fullUrl } : {}),
          ...serverAttributes(d.webhookUrl),
          "logistics.delivery_id": d.id,
          "logistics.event_id": d.eventId,
          "logistics.delivery_attempt": n,
        },
      },
      parent,
    );
    const spanContext = trace.setSpan(parent, span);
    try {
      let target;
      try {
        target = await resolveWebhookTarget(d.webhookUrl, opts.targetPolicy);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof WebhookUrlError ? err.detail : message });
        span.setAttribute(SemConv.ERROR_TYPE, "refused");
        return { result: notSent(`refused: ${message}`), context: spanContext };
      }
      const t = Math.floor(Date.now() / 1000);
      const headers: Record<string, string> = {
        "Content-Type": "application/json",
        "User-Agent": "logistics-webhooks/2026-11-01",
        [EVENT_ID_HEADER]: d.eventId,
        [DELIVERY_ID_HEADER]: d.id,
        [ATTEMPT_HEADER]: String(n),
        [SIGNATURE_HEADER]: signatureHeader(d.secret, t, d.body),
      };
      propagation.inject(spanContext, headers);
      const requestedAt = Date.now();
      const result = await send({ target, body: d.body, headers, timeoutMs: opts.timeoutMs });
      span.setAttribute("logistics.attempt_duration_ms", result.durationMs);
      if (result.status) span.setAttribute(SemConv.HTTP_RESPONSE_STATUS_CODE, result.status);
      if (classifyStatus(result.status) !== "delivered") {
        const detail = result.errorDetail ?? result.error;
        span.setStatus({ code: SpanStatusCode.ERROR, message: detail || `HTTP ${result.status}` });
        span.setAttribute(SemConv.ERROR_TYPE, result.status ? String(result.status) : transportErrorType(detail));
      }
      return { result, context: spanContext, requestedAt };
    } finally {
      span.end();
    }
  };

  const start = (d: ClaimedDelivery) => {
    perOrigin.set(d.origin, (perOrigin.get(d.origin) ?? 0) + 1);
    // The endpoint's slot counts requests in flight to it: it is given back when the response
    // is in, not when the attempt is recorded (up to a tick later, with other attempts), or one
    // endpoint's deliveries would be capped at endpointConcurrency per tick.
    let holdsOriginSlot = true;
    const releaseOriginSlot = () => {
      if (!holdsOriginSlot) return;
      holdsOriginSlot = false;
      const inOrigin = perOrigin.get(d.origin) ?? 1;
      if (inOrigin > 1) perOrigin.set(d.origin, inOrigin - 1);
      else perOrigin.delete(d.origin);
      // The origin was full: due deliveries to it may have been kept back by this slot.
      if (inOrigin >= opts.endpointConcurrency) wake();
    };
    const p: Promise<void> = attempt(d, releaseOriginSlot)
      .then(
        (r) => r.successorDue,
        (err: unknown) => {
          opts.log.error({ deliveryId: d.id, err }, "delivery attempt failed to record; lease will expire");
          return false;
        },
      )
      .then((successorDue) => {
        releaseOriginSlot();
        // A claim is only worth it when this slot may have kept due work back (every slot was
        // taken) or when this delivery held back a successor that is due now. New deliveries wake
        // the loop themselves (wakeAfter), everything else waits for the poll.
        const worthClaiming = successorDue || running.size >= opts.concurrency;
        running.delete(p);
        if (worthClaiming) wake();
      });
    running.add(p);
  };

  const loop = async () => {
    while (!stopped) {
      wakePending = false;
      const free = opts.concurrency - running.size;
      let claimed: ClaimedDelivery[] = [];
      if (free > 0) {
        try {
          claimed = await opts.store.claimDue({
            leaseToken: `${workerId}.${++claims}`,
            leaseMs: opts.leaseMs,
            limit: free,
            perOriginLimit: opts.endpointConcurrency,
            inFlightByOrigin: perOrigin,
          });
        } catch (err) {
          opts.log.error({ err }, "claiming due deliveries failed");
        }
        if (stopped) {
          // Leases of claimed-but-unstarted deliveries simply expire; nothing was sent.
          break;
        }
        for (const d of claimed) start(d);
      }
      if (free > 0 && claimed.length === free) continue;
      await idle(opts.pollIntervalMs);
    }
  };

  const looping = loop();
  let closing: Promise<void> | undefined;
  return {
    wake,
    wakeAfter,
    inFlight: () => new Map(perOrigin),
    breakers,
    close() {
      closing ??= (async () => {
        stopped = true;
        for (const release of [...holds]) release();
        for (const timer of wakeTimers.values()) clearTimeout(timer);
        wakeTimers.clear();
        records.flushNow();
        wakeUp?.();
        await looping;
        while (running.size) await Promise.allSettled([...running]);
      })();
      return closing;
    },
  };
}

function notSent(error: string): WebhookResult {
  return { status: 0, error, durationMs: 0, excerpt: "", retryAfter: undefined };
}

/** `error.type` of a request that got no response: the error code (`ECONNREFUSED`), `timeout`, or `_OTHER`. */
function transportErrorType(error: string): string {
  if (error.startsWith("timed out")) return "timeout";
  const code = /^([A-Z][A-Z0-9_]+):/.exec(error)?.[1];
  return code ?? "_OTHER";
}
