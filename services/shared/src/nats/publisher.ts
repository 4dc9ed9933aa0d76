import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { JetStreamClient } from "@nats-io/jetstream";
import { headers as createHeaders } from "@nats-io/transport-node";
import { SpanKind, SpanStatusCode, trace, type Tracer } from "@opentelemetry/api";
import { EventHeaders, PROTOBUF_CONTENT_TYPE } from "./event-headers.js";
import { MessagingAttributes, messagingSpanName, NATS_TRACER_NAME, publishSpanAttributes } from "./messaging-attributes.js";
import { silentNatsLog, type NatsLog } from "./nats-log.js";
import { subjectFamily } from "./subjects.js";
import { injectTraceContext } from "./trace-headers.js";

/** Dependencies of {@link createEventPublisher}. */
export interface EventPublisherOptions {
  /** JetStream client of an open connection. */
  js: JetStreamClient;
  logger?: NatsLog;
  /** Tracer for PRODUCER spans. Default: `trace.getTracer("logistics.nats")` at each publish. */
  tracer?: Tracer;
  /** PubAck timeout when a publish does not set one. Default 5 000 ms. */
  defaultTimeoutMs?: number;
}

/** Per-publish options. */
export interface PublishEventOptions {
  /**
   * JetStream dedupe key (`Nats-Msg-Id`), normally the event id: a second publish with the same
   * id inside the stream's duplicate window is acknowledged as a duplicate and not stored again,
   * which makes retrying a publish after an unclear failure safe.
   */
  msgId: string;
  /** How long to wait for the PubAck. Default: the publisher's `defaultTimeoutMs`. */
  timeoutMs?: number;
  /** Extra headers. They cannot override the content type, type name or trace headers. */
  headers?: Readonly<Record<string, string>>;
}

/** The stream's acknowledgement of a publish. */
export interface PublishEventResult {
  /** Sequence of the message in the stream (of the original message for a duplicate). */
  seq: number;
  /** True when the stream already had a message with this `msgId`. */
  duplicate: boolean;
  /** The stream that stored it. */
  stream: string;
}

/** Publishes Protobuf events to JetStream. */
export interface EventPublisher {
  /**
   * Serializes `message` with `schema`, publishes it on `subject` and resolves only once the
   * stream has acknowledged it (so an accepted event is durable before the caller acks upstream).
   * Rejects when no stream captures the subject or the PubAck times out.
   */
  publish<Desc extends DescMessage>(
    subject: string,
    schema: Desc,
    message: MessageShape<Desc>,
    opts: PublishEventOptions,
  ): Promise<PublishEventResult>;
}

/**
 * Creates the event publisher every service uses. Each publish:
 * - encodes the message as binary Protobuf (`Content-Type: application/x-protobuf`) and names
 *   its type in `Logistics-Type`, so consumers can reject a payload of the wrong type;
 * - sets `Nats-Msg-Id` for JetStream dedupe;
 * - runs in a PRODUCER span `publish <subject family>` with messaging attributes, whose context
 *   is injected into the headers (W3C trace context via the global propagator), so the
 *   consumer's span joins the same trace.
 */
export function createEventPublisher(opts: EventPublisherOptions): EventPublisher {
  const { js } = opts;
  const log = opts.logger ?? silentNatsLog;
  const defaultTimeoutMs = opts.defaultTimeoutMs ?? 5000;

  return {
    async publish(subject, schema, message, publishOpts) {
      if (!publishOpts.msgId) throw new TypeError("publish requires a non-empty msgId");
      const payload = toBinary(schema, message);
      const tracer = opts.tracer ?? trace.getTracer(NATS_TRACER_NAME);
      return tracer.startActiveSpan(
        messagingSpanName("publish", subjectFamily(subject)),
        {
          kind: SpanKind.PRODUCER,
          attributes: {
            ...publishSpanAttributes(subject),
            [MessagingAttributes.MESSAGE_ID]: publishOpts.msgId,
            [MessagingAttributes.BODY_SIZE]: payload.byteLength,
          },
        },
        async (span) => {
          try {
            const ack = await sendEvent(js, {
              subject,
              typeName: schema.typeName,
              payload,
              msgId: publishOpts.msgId,
              ...(publishOpts.headers ? { headers: publishOpts.headers } : {}),
              timeoutMs: publishOpts.timeoutMs ?? defaultTimeoutMs,
            });
            span.setAttributes({
              [MessagingAttributes.NATS_STREAM]: ack.stream,
              [MessagingAttributes.NATS_STREAM_SEQUENCE]: ack.seq,
              [MessagingAttributes.NATS_DUPLICATE]: ack.duplicate,
            });
            if (ack.duplicate) {
              log.debug({ subject, msgId: publishOpts.msgId, seq: ack.seq }, "duplicate publish ignored by stream");
            }
            return ack;
          } catch (err) {
            span.recordException(err instanceof Error ? err : String(err));
            span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
            log.warn({ subject, msgId: publishOpts.msgId, err }, "event publish failed");
            throw err;
          } finally {
            span.end();
          }
        },
      );
    },
  };
}

/** One encoded event, as {@link sendEvent} publishes it. */
export interface EncodedEvent {
  subject: string;
  /** Fully qualified Protobuf type name (`Logistics-Type`). */
  typeName: string;
  payload: Uint8Array;
  /** `Nats-Msg-Id`. */
  msgId: string;
  /** Extra headers; they cannot override the content type, type name or trace headers. */
  headers?: Readonly<Record<string, string>>;
  timeoutMs: number;
}

/**
 * Publishes an already encoded event with the mesh's headers (content type, type name, the
 * active trace context) and resolves with its PubAck. The one place event headers are written.
 */
export async function sendEvent(js: JetStreamClient, e: EncodedEvent): Promise<PublishEventResult> {
  const h = createHeaders();
  for (const [k, v] of Object.entries(e.headers ?? {})) h.set(k, v);
  h.set(EventHeaders.ContentType, PROTOBUF_CONTENT_TYPE);
  h.set(EventHeaders.MessageType, e.typeName);
  injectTraceContext(h);
  const ack = await js.publish(e.subject, e.payload, { msgID: e.msgId, headers: h, timeout: e.timeoutMs });
  return { seq: ack.seq, duplicate: ack.duplicate === true, stream: ack.stream };
}
