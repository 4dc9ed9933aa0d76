import { setTimeout as sleep } from "node:timers/promises";
import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import {
  ClosedConnectionError,
  millis,
  type NatsConnection,
} from "@nats-io/transport-node";
import {
  context,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Link,
  type Span,
  type Tracer,
} from "@opentelemetry/api";
import { createDeadLetterer, errorText, watchMaxDeliveries } from "./dead-letters.js";
import { EventHeaders } from "./event-headers.js";
import { MessagingAttributes, messagingSpanName, NATS_TRACER_NAME, processSpanAttributes } from "./messaging-attributes.js";
import { silentNatsLog, type NatsLog } from "./nats-log.js";
import { permanentFailureReason } from "./permanent-failure.js";
import { subjectFamily } from "./subjects.js";
import { extractTraceContext } from "./trace-headers.js";

/** Waits `ms`, or less when `signal` aborts (then resolves instead of rejecting). */
const pause = (ms: number, signal: AbortSignal): Promise<void> =>
  sleep(ms, undefined, { signal }).catch(() => undefined);

/** What a handler learns about the message besides its decoded payload. */
export interface MessageMeta {
  readonly subject: string;
  readonly stream: string;
  /** Sequence in the stream: stable across redeliveries. */
  readonly seq: number;
  /** 1 on first delivery, counting every redelivery (naks and ack timeouts). */
  readonly deliveryCount: number;
  readonly redelivered: boolean;
  /** Message headers, first value per name, names as published. */
  readonly headers: Readonly<Record<string, string>>;
  /** The publisher's `Nats-Msg-Id` (the event id), when set. */
  readonly msgId: string | undefined;
  /** When the stream stored the message. */
  readonly timestamp: Date;
}

/** Counters of a running consumer, for metrics and tests. */
export interface ConsumerStats {
  /** Messages taken from the stream (including redeliveries). */
  received: number;
  /** Handled and acknowledged. */
  acked: number;
  /** Handler failures answered with a delayed nak. */
  retried: number;
  /** Published to the dead-letter subject and terminated (poison messages included). */
  deadLettered: number;
  /**
   * Messages given up at once as poison: undecodable or wrongly typed, or data a handler can never
   * apply (a subset of `deadLettered` when a DLQ is set).
   */
  poison: number;
  /** Terminated without a dead-letter subject configured (logged as errors). */
  dropped: number;
  /** Handlers running now. */
  inFlight: number;
}

/** Options for {@link startConsumer}. */
export interface StartConsumerOptions<Desc extends DescMessage> {
  js: JetStreamClient;
  /** Stream name (from `createSubjects().streams`). */
  stream: string;
  /** An existing durable pull consumer on the stream (see `ensureConsumer`). */
  durable: string;
  /** The Protobuf message type every message on this consumer carries. */
  schema: Desc;
  /**
   * Processes one message. Resolve to acknowledge; throw to have it redelivered after a backoff
   * (or dead-lettered on the consumer's last delivery). Throw {@link PoisonMessageError} for a
   * message that can never be applied; errors that {@link permanentFailureReason} recognises
   * (PostgreSQL data exceptions, Protobuf encode errors, RangeErrors) count as poison too. Runs
   * inside the message's CONSUMER span,
   * so spans it starts join the publisher's trace. Must be idempotent: JetStream delivers at
   * least once.
   */
  handler: (message: MessageShape<Desc>, meta: MessageMeta) => Promise<void>;
  /** Handlers allowed to run at once. Default 16. */
  concurrency?: number;
  /** Messages requested per pull (the client-side buffer). Default: `concurrency`. */
  batch?: number;
  /**
   * Serializes handlers for messages with the same key (e.g. the shipment id) while messages with
   * different keys run in parallel. Without it, `concurrency > 1` does not keep per-key order.
   */
  keyOf?: (message: MessageShape<Desc>, meta: MessageMeta) => string | undefined;
  /** Where messages the consumer gives up on are published (`createSubjects().deadLetter(durable)`). */
  deadLetter?: { subject: string };
  /**
   * The connection `js` belongs to. With it (and `deadLetter`), the consumer also listens for the
   * server's max-deliveries advisory and dead-letters messages whose last delivery was never
   * settled (the replica holding it crashed or hung past the ack wait), fetching them from the
   * stream by sequence. The advisory subscription is a queue group named after the durable, so
   * one replica handles each advisory.
   */
  nc?: NatsConnection;
  /** Nak delay after a failed delivery. Default: {@link exponentialRetryDelay}(500, 60 000) (500 ms doubling, max 60 s). */
  retryDelayMs?: (deliveryCount: number) => number;
  logger?: NatsLog;
  /** Called for every handler failure (after it is logged), e.g. to count errors. */
  onError?: (err: unknown, meta: MessageMeta) => void;
  /** Tracer for CONSUMER spans. Default: `trace.getTracer("logistics.nats")`. */
  tracer?: Tracer;
}

/** A running consumer. */
export interface ConsumerHandle {
  /**
   * Stops pulling, hands buffered-but-unstarted messages back to the server (nak) and resolves
   * once every running handler has finished and been acked/naked. Drain or close the NATS
   * connection only after this. Idempotent.
   */
  close(): Promise<void>;
  /** A snapshot of the counters. */
  stats(): ConsumerStats;
}

/**
 * `(n) => min(maxMs, initialMs * 2^(n-1))`: the nak delay after the n-th failed delivery.
 * Defaults: 100 ms initial, 30 s cap.
 */
export function exponentialRetryDelay(initialMs = 100, maxMs = 30_000): (deliveryCount: number) => number {
  return (n) => Math.min(maxMs, initialMs * 2 ** Math.max(0, Math.min(n - 1, 30)));
}

/**
 * Raised for a message that can never be processed (wrong type header, undecodable payload, or
 * data a handler knows it can never apply): it is dead-lettered at once, with this message as
 * the reason, instead of being retried.
 */
export class PoisonMessageError extends Error {
  override readonly name = "PoisonMessageError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * Runs a durable JetStream pull consumer that decodes Protobuf messages and hands them to
 * `handler` with bounded concurrency.
 *
 * Per message:
 * - a payload that does not decode as `schema` (or whose `Logistics-Type` header names another
 *   type) is poison: it goes to the dead-letter subject at once and is terminated;
 * - handler resolves → ack;
 * - handler throws {@link PoisonMessageError}, or an error {@link permanentFailureReason} calls
 *   permanent (the message's data can never be stored or encoded) → dead-lettered at once with
 *   reason `poison: ...`;
 * - handler throws anything else → nak with `retryDelayMs(deliveryCount)`, unless this was the
 *   consumer's last delivery (`max_deliver`), in which case the original payload and headers are published to
 *   the dead-letter subject with `Logistics-Dlq-*` headers (reason, stream, seq, deliveries,
 *   subject, consumer) and the message is terminated. A dead letter is only terminated after its
 *   PubAck; it is published with a `Nats-Msg-Id` derived from stream, consumer and sequence, so
 *   publishing it twice stores it once;
 * - with `nc`, a message whose last delivery was never settled (its holder crashed) is
 *   dead-lettered from the server's max-deliveries advisory (reason "max deliveries (n) exceeded
 *   ..."); without `nc` such a message stays unacknowledged in the consumer and is only logged
 *   by the server;
 * - while the handler runs, an in-progress ack is sent every `ack_wait / 3`, so slow handlers are
 *   not redelivered while still working;
 * - the handler runs in a CONSUMER span `process <subject family>` whose parent is the trace
 *   context from the headers (one trace from publisher to consumer) and which links to the
 *   producer span.
 *
 * Ordering: with `concurrency > 1` messages are handled in parallel and per-shipment order is
 * not kept, unless `keyOf` is given (same key → one at a time, in delivery order). Even then a
 * failed message is retried after later ones with the same key: consumers that care about order
 * must apply events by event time (as the tracking projection does), or use `concurrency: 1`.
 */
export async function startConsumer<Desc extends DescMessage>(
  opts: StartConsumerOptions<Desc>,
): Promise<ConsumerHandle> {
  const { js, stream, durable, schema, handler } = opts;
  const log = opts.logger ?? silentNatsLog;
  const concurrency = Math.max(1, opts.concurrency ?? 16);
  const batch = Math.max(1, opts.batch ?? concurrency);
  // Long enough, with the consumers' max_deliver, to ride out a database restart or failover
  // (minutes) before a message that is not itself bad is dead-lettered.
  const retryDelayMs = opts.retryDelayMs ?? exponentialRetryDelay(500, 60_000);
  const tracer = opts.tracer ?? trace.getTracer(NATS_TRACER_NAME);

  const consumer = await js.consumers.get(stream, durable);
  const { config } = await consumer.info(true);
  const maxDeliver = config.max_deliver !== undefined && config.max_deliver > 0 ? config.max_deliver : Infinity;
  const ackWaitMs = config.ack_wait ? millis(config.ack_wait) : 30_000;
  const progressEveryMs = Math.max(100, Math.floor(ackWaitMs / 3));

  const stats: ConsumerStats = {
    received: 0,
    acked: 0,
    retried: 0,
    deadLettered: 0,
    poison: 0,
    dropped: 0,
    inFlight: 0,
  };
  const slots = new Slots(concurrency);
  const keyTails = new Map<string, Promise<void>>();
  const inFlight = new Set<Promise<void>>();
  const stopController = new AbortController();
  let messages: ConsumerMessages | undefined;

  const deadLetter = createDeadLetterer({
    js,
    stream,
    durable,
    subject: opts.deadLetter?.subject,
    log,
    onDeadLettered: () => stats.deadLettered++,
    onDropped: () => stats.dropped++,
    ...(opts.tracer ? { tracer: opts.tracer } : {}),
  });

  const runHandler = async (message: MessageShape<Desc>, meta: MessageMeta): Promise<void> => {
    const key = opts.keyOf?.(message, meta);
    if (key === undefined) return handler(message, meta);
    const previous = keyTails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    keyTails.set(key, tail);
    await previous;
    try {
      await handler(message, meta);
    } finally {
      release();
      if (keyTails.get(key) === tail) keyTails.delete(key);
    }
  };

  const handleMessage = async (m: JsMsg): Promise<void> => {
    stats.received++;
    const meta = metaOf(m);
    const parent = extractTraceContext(m.headers, ROOT_CONTEXT);
    const producer = trace.getSpanContext(parent);
    const links: Link[] = producer ? [{ context: producer }] : [];
    const span = tracer.startSpan(
      messagingSpanName("process", subjectFamily(m.subject)),
      {
        kind: SpanKind.CONSUMER,
        links,
        attributes: {
          ...processSpanAttributes(m.subject, durable, stream),
          [MessagingAttributes.BODY_SIZE]: m.data.byteLength,
          [MessagingAttributes.NATS_STREAM_SEQUENCE]: meta.seq,
          [MessagingAttributes.NATS_DELIVERY_COUNT]: meta.deliveryCount,
          ...(meta.msgId ? { [MessagingAttributes.MESSAGE_ID]: meta.msgId } : {}),
        },
      },
      parent,
    );
    const progress = setInterval(() => m.working(), progressEveryMs);
    // Everything about this message, its log lines included, happens inside its span.
    const ctx = trace.setSpan(parent, span);
    await context.with(ctx, () => settle(m, meta, span)).finally(() => {
      clearInterval(progress);
      span.end();
    });
  };

  /** Decodes, runs the handler and acks, naks or dead-letters `m`; runs inside the message's span. */
  const settle = async (m: JsMsg, meta: MessageMeta, span: Span): Promise<void> => {
    try {
      let message: MessageShape<Desc>;
      try {
        message = decode(schema, m);
      } catch (err) {
        stats.poison++;
        fail(span, err);
        span.setAttribute("logistics.outcome", "dead_letter");
        if (await deadLetter(settleable(m, meta), `poison: ${errorText(err)}`, () => m.working())) m.term();
        else m.nak(retryDelayMs(meta.deliveryCount));
        return;
      }
      try {
        await runHandler(message, meta);
        m.ack();
        stats.acked++;
        span.setAttribute("logistics.outcome", "ack");
      } catch (err) {
        fail(span, err);
        // A message that can never succeed (bad data) is dead-lettered now instead of being
        // retried for minutes: the handler says so with PoisonMessageError, or the error itself
        // shows it (a data exception from the database, a value that cannot be encoded).
        const poison = err instanceof PoisonMessageError ? errorText(err) : permanentFailureReason(err);
        const last = meta.deliveryCount >= maxDeliver || poison !== undefined;
        const { seq, subject, msgId, deliveryCount } = meta;
        log.warn(
          { stream, durable, seq, subject, msgId, deliveryCount, err },
          poison !== undefined ? "message can never be applied" : last ? "handler failed on the last delivery" : "handler failed; will retry",
        );
        try {
          opts.onError?.(err, meta);
        } catch (hookErr) {
          log.error({ stream, durable, err: hookErr }, "onError hook threw");
        }
        if (last) {
          span.setAttribute("logistics.outcome", "dead_letter");
          const reason =
            poison !== undefined
              ? `poison: ${poison}`
              : `handler failed after ${meta.deliveryCount} deliveries: ${errorText(err)}`;
          if (poison !== undefined) stats.poison++;
          if (await deadLetter(settleable(m, meta), reason, () => m.working())) m.term();
          else m.nak(retryDelayMs(meta.deliveryCount));
        } else {
          span.setAttribute("logistics.outcome", "retry");
          m.nak(retryDelayMs(meta.deliveryCount));
          stats.retried++;
        }
      }
    } catch (err) {
      // Only reachable if acking itself threw (connection closed): the server will redeliver.
      log.error({ stream, durable, seq: meta.seq, err }, "could not settle message");
    }
  };

  const dispatch = (m: JsMsg) => {
    stats.inFlight++;
    const p = handleMessage(m).finally(() => {
      stats.inFlight--;
      slots.release();
      inFlight.delete(p);
    });
    inFlight.add(p);
  };

  const pullLoop = async () => {
    while (!stopController.signal.aborted) {
      try {
        const iter = await consumer.consume({ max_messages: batch });
        messages = iter;
        if (stopController.signal.aborted) {
          await iter.close();
          break;
        }
        void watchStatus(iter);
        for await (const m of iter) {
          if (stopController.signal.aborted || !(await slots.acquire())) {
            m.nak();
            continue;
          }
          dispatch(m);
        }
      } catch (err) {
        if (err instanceof ClosedConnectionError) {
          log.error({ stream, durable }, "NATS connection closed: consumer stopped pulling");
          break;
        }
        if (!stopController.signal.aborted) {
          log.error({ stream, durable, err }, "consumer pull loop failed; restarting");
        }
      }
      if (!stopController.signal.aborted) await pause(1000, stopController.signal);
    }
  };

  const watchStatus = async (iter: ConsumerMessages) => {
    for await (const s of iter.status()) {
      switch (s.type) {
        case "heartbeats_missed":
        case "consumer_not_found":
        case "stream_not_found":
        case "consumer_deleted":
        case "exceeded_limits":
        case "no_responders":
          log.warn({ stream, durable, status: s }, "consumer status");
          break;
        default:
          break;
      }
    }
  };

  const advisories =
    opts.nc && opts.deadLetter ? watchMaxDeliveries({ nc: opts.nc, js, stream, durable, deadLetter, log }) : undefined;

  const loop = pullLoop();
  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= (async () => {
        stopController.abort();
        slots.close();
        const advisoriesClosed = advisories?.close();
        await messages?.close();
        await loop;
        while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
        await advisoriesClosed;
      })();
      return closing;
    },
    stats: () => ({ ...stats }),
  };
}

function decode<Desc extends DescMessage>(schema: Desc, m: JsMsg): MessageShape<Desc> {
  const type = m.headers?.get(EventHeaders.MessageType);
  if (type && type !== schema.typeName) {
    throw new PoisonMessageError(`payload type ${type} is not the consumer's ${schema.typeName}`);
  }
  try {
    return fromBinary(schema, m.data);
  } catch (err) {
    throw new PoisonMessageError(`cannot decode ${schema.typeName}: ${errorText(err)}`, { cause: err });
  }
}

function settleable(m: JsMsg, meta: MessageMeta) {
  return { data: m.data, headers: m.headers, subject: m.subject, seq: meta.seq, deliveryCount: meta.deliveryCount };
}

function metaOf(m: JsMsg): MessageMeta {
  const headers: Record<string, string> = {};
  for (const [k, values] of m.headers ?? []) if (values[0] !== undefined) headers[k] = values[0];
  const msgId = m.headers?.get(EventHeaders.MsgId) || undefined;
  return {
    subject: m.subject,
    stream: m.info.stream,
    seq: m.seq,
    deliveryCount: m.info.deliveryCount,
    redelivered: m.redelivered,
    headers,
    msgId,
    timestamp: m.time,
  };
}

function fail(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: errorText(err) });
}


/** A counting semaphore whose waiters are released with `false` once closed. */
class Slots {
  private free: number;
  private readonly waiters: Array<(ok: boolean) => void> = [];
  private closed = false;

  constructor(size: number) {
    this.free = size;
  }

  acquire(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.free > 0) {
      this.free--;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next(true);
    else this.free++;
  }

  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w(false);
  }
}

