import { setTimeout as sleep } from "node:timers/promises";
import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { Consumer, ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
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
import { createDeadLetterer, errorText, watchMaxDeliveries, type DeadLetterer } from "./dead-letters.js";
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
  const { js, stream, durable } = opts;
  const log = opts.logger ?? silentNatsLog;
  const concurrency = Math.max(1, opts.concurrency ?? 16);
  const consumer = await js.consumers.get(stream, durable);
  const { config } = await consumer.info(true);
  const ackWaitMs = config.ack_wait ? millis(config.ack_wait) : 30_000;
  const stats: ConsumerStats = { received: 0, acked: 0, retried: 0, deadLettered: 0, poison: 0, dropped: 0, inFlight: 0 };
  const run: ConsumerRun<Desc> = {
    opts,
    log,
    tracer: opts.tracer ?? trace.getTracer(NATS_TRACER_NAME),
    batch: Math.max(1, opts.batch ?? concurrency),
    // Long enough, with the consumers' max_deliver, to ride out a database restart or failover
    // (minutes) before a message that is not itself bad is dead-lettered.
    retryDelayMs: opts.retryDelayMs ?? exponentialRetryDelay(500, 60_000),
    maxDeliver: config.max_deliver !== undefined && config.max_deliver > 0 ? config.max_deliver : Infinity,
    progressEveryMs: Math.max(100, Math.floor(ackWaitMs / 3)),
    stats,
    slots: new Slots(concurrency),
    keyTails: new Map(),
    inFlight: new Set(),
    stop: new AbortController(),
    messages: undefined,
    deadLetter: createDeadLetterer({
      js,
      stream,
      durable,
      subject: opts.deadLetter?.subject,
      log,
      onDeadLettered: () => stats.deadLettered++,
      onDropped: () => stats.dropped++,
      ...(opts.tracer ? { tracer: opts.tracer } : {}),
    }),
  };
  const advisories =
    opts.nc && opts.deadLetter ? watchMaxDeliveries({ nc: opts.nc, js, stream, durable, deadLetter: run.deadLetter, log }) : undefined;
  const loop = pullLoop(run, consumer);
  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= (async () => {
        run.stop.abort();
        run.slots.close();
        const advisoriesClosed = advisories?.close();
        await run.messages?.close();
        await loop;
        while (run.inFlight.size > 0) await Promise.allSettled([...run.inFlight]);
        await advisoriesClosed;
      })();
      return closing;
    },
    stats: () => ({ ...stats }),
  };
}

/** One running consumer: its settings and state, shared by the functions below. */
interface ConsumerRun<Desc extends DescMessage> {
  readonly opts: StartConsumerOptions<Desc>;
  readonly log: NatsLog;
  readonly tracer: Tracer;
  /** Messages requested per pull. */
  readonly batch: number;
  readonly retryDelayMs: (deliveryCount: number) => number;
  /** The consumer's max_deliver (Infinity when unlimited). */
  readonly maxDeliver: number;
  /** In-progress ack period while a handler runs (a third of ack_wait). */
  readonly progressEveryMs: number;
  readonly stats: ConsumerStats;
  /** Bounds the handlers running at once. */
  readonly slots: Slots;
  /** Per `keyOf` key, the promise the next handler of that key waits for. */
  readonly keyTails: Map<string, Promise<void>>;
  /** Messages being handled, settled or not. */
  readonly inFlight: Set<Promise<void>>;
  readonly stop: AbortController;
  readonly deadLetter: DeadLetterer;
  /** The current pull, closed on stop. */
  messages: ConsumerMessages | undefined;
}

/** Pulls until stopped, restarting a failed pull after a pause; each message goes to {@link dispatch}. */
async function pullLoop<Desc extends DescMessage>(run: ConsumerRun<Desc>, consumer: Consumer): Promise<void> {
  const { stream, durable } = run.opts;
  const signal = run.stop.signal;
  while (!signal.aborted) {
    try {
      const iter = await consumer.consume({ max_messages: run.batch });
      run.messages = iter;
      if (signal.aborted) {
        await iter.close();
        break;
      }
      void watchStatus(run, iter);
      for await (const m of iter) {
        if (signal.aborted || !(await run.slots.acquire())) {
          m.nak();
          continue;
        }
        dispatch(run, m);
      }
    } catch (err) {
      if (err instanceof ClosedConnectionError) {
        run.log.error({ stream, durable }, "NATS connection closed: consumer stopped pulling");
        break;
      }
      if (!signal.aborted) run.log.error({ stream, durable, err }, "consumer pull loop failed; restarting");
    }
    if (!signal.aborted) await pause(1000, signal);
  }
}

/** Logs the pull's noteworthy status events (missed heartbeats, a deleted consumer...). */
async function watchStatus<Desc extends DescMessage>(run: ConsumerRun<Desc>, iter: ConsumerMessages): Promise<void> {
  for await (const s of iter.status()) {
    switch (s.type) {
      case "heartbeats_missed":
      case "consumer_not_found":
      case "stream_not_found":
      case "consumer_deleted":
      case "exceeded_limits":
      case "no_responders":
        run.log.warn({ stream: run.opts.stream, durable: run.opts.durable, status: s }, "consumer status");
        break;
      default:
        break;
    }
  }
}

/** Handles `m` in the background, holding its slot until it is settled. */
function dispatch<Desc extends DescMessage>(run: ConsumerRun<Desc>, m: JsMsg): void {
  run.stats.inFlight++;
  const p = handleMessage(run, m).finally(() => {
    run.stats.inFlight--;
    run.slots.release();
    run.inFlight.delete(p);
  });
  run.inFlight.add(p);
}

/** Settles `m` inside its CONSUMER span, sending in-progress acks meanwhile. */
async function handleMessage<Desc extends DescMessage>(run: ConsumerRun<Desc>, m: JsMsg): Promise<void> {
  const { stream, durable } = run.opts;
  run.stats.received++;
  const meta = metaOf(m);
  const parent = extractTraceContext(m.headers, ROOT_CONTEXT);
  const producer = trace.getSpanContext(parent);
  const links: Link[] = producer ? [{ context: producer }] : [];
  const span = run.tracer.startSpan(
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
  const progress = setInterval(() => m.working(), run.progressEveryMs);
  // Everything about this message, its log lines included, happens inside its span.
  const ctx = trace.setSpan(parent, span);
  await context.with(ctx, () => settle(run, m, meta, span)).finally(() => {
    clearInterval(progress);
    span.end();
  });
}

/** Decodes, runs the handler and acks, naks or dead-letters `m`; runs inside the message's span. */
async function settle<Desc extends DescMessage>(run: ConsumerRun<Desc>, m: JsMsg, meta: MessageMeta, span: Span): Promise<void> {
  try {
    let message: MessageShape<Desc>;
    try {
      message = decode(run.opts.schema, m);
    } catch (err) {
      run.stats.poison++;
      fail(span, err);
      span.setAttribute("logistics.outcome", "dead_letter");
      await deadLetterOrRetry(run, m, meta, `poison: ${errorText(err)}`);
      return;
    }
    try {
      await runHandler(run, message, meta);
      m.ack();
      run.stats.acked++;
      span.setAttribute("logistics.outcome", "ack");
    } catch (err) {
      await onHandlerFailure(run, m, meta, span, err);
    }
  } catch (err) {
    // Only reachable if acking itself threw (connection closed): the server will redeliver.
    run.log.error({ stream: run.opts.stream, durable: run.opts.durable, seq: meta.seq, err }, "could not settle message");
  }
}

/** Runs the handler, after the handler of the previous message with the same key (when `keyOf` is set). */
async function runHandler<Desc extends DescMessage>(run: ConsumerRun<Desc>, message: MessageShape<Desc>, meta: MessageMeta): Promise<void> {
  const { handler, keyOf } = run.opts;
  const key = keyOf?.(message, meta);
  if (key === undefined) return handler(message, meta);
  const previous = run.keyTails.get(key) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((resolve) => (release = resolve));
  const tail = previous.then(() => mine);
  run.keyTails.set(key, tail);
  await previous;
  try {
    await handler(message, meta);
  } finally {
    release();
    if (run.keyTails.get(key) === tail) run.keyTails.delete(key);
  }
}

/**
 * A failed handler: poison (or the last delivery) is dead-lettered, anything else naked for a
 * retry after `retryDelayMs`.
 */
async function onHandlerFailure<Desc extends DescMessage>(
  run: ConsumerRun<Desc>,
  m: JsMsg,
  meta: MessageMeta,
  span: Span,
  err: unknown,
): Promise<void> {
  const { stream, durable } = run.opts;
  fail(span, err);
  // A message that can never succeed (bad data) is dead-lettered now instead of being
  // retried for minutes: the handler says so with PoisonMessageError, or the error itself
  // shows it (a data exception from the database, a value that cannot be encoded).
  const poison = err instanceof PoisonMessageError ? errorText(err) : permanentFailureReason(err);
  const last = meta.deliveryCount >= run.maxDeliver || poison !== undefined;
  const { seq, subject, msgId, deliveryCount } = meta;
  run.log.warn(
    { stream, durable, seq, subject, msgId, deliveryCount, err },
    poison !== undefined ? "message can never be applied" : last ? "handler failed on the last delivery" : "handler failed; will retry",
  );
  try {
    run.opts.onError?.(err, meta);
  } catch (hookErr) {
    run.log.error({ stream, durable, err: hookErr }, "onError hook threw");
  }
  if (!last) {
    span.setAttribute("logistics.outcome", "retry");
    m.nak(run.retryDelayMs(meta.deliveryCount));
    run.stats.retried++;
    return;
  }
  span.setAttribute("logistics.outcome", "dead_letter");
  const reason = poison !== undefined ? `poison: ${poison}` : `handler failed after ${meta.deliveryCount} deliveries: ${errorText(err)}`;
  if (poison !== undefined) run.stats.poison++;
  await deadLetterOrRetry(run, m, meta, reason);
}

/** Dead-letters `m` and terminates it; when the dead letter was not stored, naks it for another try. */
async function deadLetterOrRetry<Desc extends DescMessage>(run: ConsumerRun<Desc>, m: JsMsg, meta: MessageMeta, reason: string): Promise<void> {
  if (await run.deadLetter(settleable(m, meta), reason, () => m.working())) m.term();
  else m.nak(run.retryDelayMs(meta.deliveryCount));
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

