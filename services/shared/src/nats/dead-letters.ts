import type { JetStreamClient } from "@nats-io/jetstream";
import { headers as createHeaders, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Link, type Tracer } from "@opentelemetry/api";
import { EventHeaders } from "./event-headers.js";
import { MessagingAttributes, messagingSpanName, NATS_TRACER_NAME, publishSpanAttributes } from "./messaging-attributes.js";
import type { NatsLog } from "./nats-log.js";
import { subjectFamily } from "./subjects.js";
import { extractTraceContext } from "./trace-headers.js";

/** A message a consumer gives up on, as the dead-letter publish needs it. */
export interface DeadLetterSource {
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
  readonly subject: string;
  /** Sequence in the consumer's stream. */
  readonly seq: number;
  /** Deliveries so far. */
  readonly deliveryCount: number;
}

/** Options of {@link createDeadLetterer}. */
export interface DeadLettererOptions {
  js: JetStreamClient;
  stream: string;
  durable: string;
  /** The consumer's dead-letter subject; without it messages are dropped (and logged as errors). */
  subject: string | undefined;
  log: NatsLog;
  /** Called once per message stored in the dead-letter stream (not for a duplicate publish). */
  onDeadLettered?: () => void;
  /** Called once per message dropped for want of a dead-letter subject. */
  onDropped?: () => void;
  /** Tracer for the dead-letter PRODUCER spans. Default: `trace.getTracer("logistics.nats")`. */
  tracer?: Tracer;
}

/**
 * Publishes a message to the dead-letter subject; resolves true once it is stored (or
 * deliberately dropped), false when three attempts failed (the caller naks and tries again
 * later). The payload and headers are kept, plus `Logistics-Dlq-*` headers (reason, stream, seq,
 * deliveries, subject, consumer, original msg id); the publish's `Nats-Msg-Id` is derived from
 * stream, consumer and sequence, so dead-lettering the same message twice (two replicas, a
 * retry) stores it once. `keepAlive` is called between attempts (an in-progress ack).
 *
 * Tracing: the publish runs in a PRODUCER span `publish <dead-letter subject family>`, child of
 * the active span (the consumer's process span) or, when none is active (a dead letter from the
 * max-deliveries advisory), of the original message's producer; it links to that producer. The
 * "message dead-lettered" and "dead-letter publish failed" lines are written inside it, so they
 * carry its `trace_id`/`span_id`.
 */
export type DeadLetterer = (original: DeadLetterSource, reason: string, keepAlive?: () => void) => Promise<boolean>;

/** Creates the dead-letter publish of one consumer (see {@link DeadLetterer}). */
export function createDeadLetterer(o: DeadLettererOptions): DeadLetterer {
  const { stream } = o;
  const tracer = o.tracer ?? trace.getTracer(NATS_TRACER_NAME);
  const publish = deadLetterPublish(o);
  return (original, reason, keepAlive = () => {}) => {
    const producer = extractTraceContext(original.headers, ROOT_CONTEXT);
    const producerSpan = trace.getSpanContext(producer);
    const active = trace.getSpanContext(context.active()) !== undefined;
    const parent = active ? context.active() : producer;
    const links: Link[] = producerSpan && active ? [{ context: producerSpan }] : [];
    const span = tracer.startSpan(
      messagingSpanName("publish", subjectFamily(o.subject ?? `${stream}.dlq`)),
      {
        kind: SpanKind.PRODUCER,
        links,
        attributes: {
          ...publishSpanAttributes(o.subject ?? ""),
          [MessagingAttributes.BODY_SIZE]: original.data.byteLength,
          [MessagingAttributes.NATS_STREAM_SEQUENCE]: original.seq,
          [MessagingAttributes.NATS_DELIVERY_COUNT]: original.deliveryCount,
          "logistics.dead_letter.reason": reason.slice(0, 256),
        },
      },
      parent,
    );
    return context
      .with(trace.setSpan(parent, span), () => publish(original, reason, keepAlive))
      .then(
        (stored) => {
          if (!stored) span.setStatus({ code: SpanStatusCode.ERROR, message: "dead-letter publish failed" });
          span.end();
          return stored;
        },
        (err: unknown) => {
          span.setStatus({ code: SpanStatusCode.ERROR, message: errorText(err) });
          span.end();
          throw err;
        },
      );
  };
}

function deadLetterPublish(o: DeadLettererOptions): DeadLetterer {
  const { js, stream, durable, log } = o;
  return async (original, reason, keepAlive = () => {}) => {
    const msgId = original.headers?.get(EventHeaders.MsgId) || undefined;
    const details = { stream, durable, seq: original.seq, subject: original.subject, msgId, reason };
    if (!o.subject) {
      o.onDropped?.();
      log.error(details, "message dropped: no dead-letter subject configured");
      return true;
    }
    const h = createHeaders();
    for (const [k, values] of original.headers ?? []) {
      const lower = k.toLowerCase();
      if (lower === EventHeaders.MsgId.toLowerCase() || lower.startsWith("nats-expected")) continue;
      for (const v of values) h.append(k, v);
    }
    h.set(EventHeaders.DlqReason, headerSafe(reason));
    h.set(EventHeaders.DlqStream, stream);
    h.set(EventHeaders.DlqSeq, String(original.seq));
    h.set(EventHeaders.DlqDeliveries, String(original.deliveryCount));
    h.set(EventHeaders.DlqSubject, original.subject);
    h.set(EventHeaders.DlqConsumer, durable);
    if (msgId) h.set(EventHeaders.DlqMsgId, msgId);
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        const ack = await js.publish(o.subject, original.data, { headers: h, msgID: `${stream}.${durable}.${original.seq}`, timeout: 5000 });
        if (!ack.duplicate) o.onDeadLettered?.();
        log.warn(details, "message dead-lettered");
        return true;
      } catch (err) {
        log.error({ ...details, err, attempt }, "dead-letter publish failed");
        keepAlive();
      }
    }
    return false;
  };
}

/** A running max-deliveries advisory listener. */
export interface MaxDeliveriesWatch {
  /** Stops listening and waits for dead-letter publishes already started. */
  close(): Promise<void>;
}

/**
 * Listens for the server's max-deliveries advisory of one consumer and dead-letters each message
 * whose last delivery was never settled (the replica holding it crashed or hung past the ack
 * wait), fetching it from the stream by sequence. The subscription is a queue group named after
 * the durable, so one replica handles each advisory.
 */
export function watchMaxDeliveries(o: {
  nc: NatsConnection;
  js: JetStreamClient;
  stream: string;
  durable: string;
  deadLetter: DeadLetterer;
  log: NatsLog;
}): MaxDeliveriesWatch {
  const { js, stream, durable, log } = o;
  const tasks = new Set<Promise<void>>();
  const sub: Subscription = o.nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${durable}`, {
    queue: durable,
    callback: (err, msg) => {
      if (err) {
        log.error({ stream, durable, err }, "max-deliveries advisory subscription failed");
        return;
      }
      const task = (async () => {
        const advisory = parseMaxDeliveries(msg.data);
        if (!advisory) return;
        const stored = await (await js.streams.get(stream)).getMessage({ seq: advisory.seq }).catch(() => null);
        if (!stored) {
          log.error({ stream, durable, seq: advisory.seq }, "max deliveries exceeded; message no longer in stream");
          return;
        }
        const { data, header: headers, subject, seq } = stored;
        await o.deadLetter(
          { data, headers, subject, seq, deliveryCount: advisory.deliveries },
          `max deliveries (${advisory.deliveries}) exceeded without the message being settled`,
        );
      })()
        .catch((e: unknown) => log.error({ stream, durable, err: e }, "dead-lettering from advisory failed"))
        .finally(() => tasks.delete(task));
      tasks.add(task);
    },
  });
  return {
    async close() {
      sub.unsubscribe();
      while (tasks.size > 0) await Promise.allSettled([...tasks]);
    },
  };
}

/** Reads `stream_seq` and `deliveries` from a `io.nats.jetstream.advisory.v1.max_deliver` advisory. */
function parseMaxDeliveries(data: Uint8Array): { seq: number; deliveries: number } | undefined {
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(data));
    if (typeof parsed !== "object" || parsed === null) return undefined;
    const { stream_seq: seq, deliveries } = parsed as Record<string, unknown>;
    return typeof seq === "number" && typeof deliveries === "number" ? { seq, deliveries } : undefined;
  } catch {
    return undefined;
  }
}

/** Header values cannot carry CR/LF; keep them short too. */
function headerSafe(text: string): string {
  return text.replace(/[\r\n]+/g, " ").slice(0, 1000);
}

/** The message of an error, or its string form. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
