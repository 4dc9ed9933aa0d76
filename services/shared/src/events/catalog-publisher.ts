import { toBinary } from "@bufbuild/protobuf";
import type { JetStreamClient } from "@nats-io/jetstream";
import { context, SpanKind, SpanStatusCode, trace, type Span, type Tracer } from "@opentelemetry/api";
import { errorText } from "../nats/dead-letters.js";
import { MessagingAttributes, messagingSpanName, NATS_TRACER_NAME, publishSpanAttributes } from "../nats/messaging-attributes.js";
import { silentNatsLog, type NatsLog } from "../nats/nats-log.js";
import type { PipelinedPublisher } from "../nats/pipelined-publisher.js";
import { sendEvent, type PublishEventResult } from "../nats/publisher.js";
import type { AnyEventDef, MessageOf, TokensOf } from "./catalog.js";

/** One event to publish: its catalog type, the message and its subject tokens. */
export interface Publication<E extends AnyEventDef = AnyEventDef> {
  readonly event: E;
  readonly message: MessageOf<E>;
  readonly tokens: TokensOf<E>;
  /**
   * The message's bytes when the caller encoded it already (exactly `toBinary(event.schema,
   * message)`, e.g. a batch encoded at once); else the publisher encodes it.
   */
  readonly payload?: Uint8Array;
}

/**
 * Builds a {@link Publication}, checking that message and tokens fit the event. `payload`: the
 * message's bytes if already encoded (see {@link Publication.payload}).
 */
export function publication<E extends AnyEventDef>(event: E, message: MessageOf<E>, tokens: TokensOf<E>, payload?: Uint8Array): Publication {
  return (payload ? { event, message, tokens, payload } : { event, message, tokens }) as Publication;
}

/** Per-call options. */
export interface CatalogPublishOptions {
  /** How long to wait for each PubAck. Default: the publisher's `defaultTimeoutMs`. */
  timeoutMs?: number;
}

/** Publishes catalog events to JetStream. */
export interface CatalogPublisher {
  /**
   * Encodes `message` once, publishes it on the event's subject for `tokens` with `Nats-Msg-Id` =
   * the event's id and the trace context in the headers, and resolves once the stream stored it
   * (or reports it a duplicate). Rejects when no stream captures it or the PubAck times out.
   */
  publish<E extends AnyEventDef>(event: E, message: MessageOf<E>, tokens: TokensOf<E>, opts?: CatalogPublishOptions): Promise<PublishEventResult>;
  /**
   * Publishes many events at once: every publish is issued before any PubAck is awaited, then all
   * are awaited. One PRODUCER span per event type in the call (its context goes into those
   * messages' headers). Resolves with one settled result per item, in input order: one failure
   * does not hide the others' outcomes.
   */
  publishAll(items: readonly Publication[], opts?: CatalogPublishOptions): Promise<Array<PromiseSettledResult<PublishEventResult>>>;
}

/** Options of {@link createCatalogPublisher}. */
export interface CatalogPublisherOptions {
  js: JetStreamClient;
  logger?: NatsLog;
  /** Tracer for PRODUCER spans. Default: `trace.getTracer("logistics.nats")`. */
  tracer?: Tracer;
  /** PubAck timeout when a call sets none. Default 5 000 ms. */
  defaultTimeoutMs?: number;
  /**
   * Sends `publishAll`'s messages through this pipelined publisher (one reply subscription for
   * every PubAck) instead of one `js.publish` request each; `publish` is unchanged. Its owner
   * closes it. Default: none.
   */
  pipeline?: Pick<PipelinedPublisher, "publishAll">;
}

/** Creates the publisher for catalog events (see {@link CatalogPublisher}). */
export function createCatalogPublisher(opts: CatalogPublisherOptions): CatalogPublisher {
  const { js } = opts;
  const log = opts.logger ?? silentNatsLog;
  const defaultTimeoutMs = opts.defaultTimeoutMs ?? 5000;
  const tracer = () => opts.tracer ?? trace.getTracer(NATS_TRACER_NAME);

  const encode = (p: Publication) => {
    const msgId = p.event.id(p.message);
    if (!msgId) throw new TypeError(`${p.event.name}: the message has no event id (the Nats-Msg-Id)`);
    return { subject: p.event.subject(p.tokens), typeName: p.event.schema.typeName, payload: p.payload ?? toBinary(p.event.schema, p.message), msgId };
  };

  /** A batch of one is a single-message publish: name the message, as publish() does. */
  const describeOne = (span: Span, e: { msgId: string; payload: Uint8Array }) =>
    span.setAttributes({ [MessagingAttributes.MESSAGE_ID]: e.msgId, [MessagingAttributes.BODY_SIZE]: e.payload.byteLength });

  /** Runs `fn` in a PRODUCER span for `count` messages of one event type. */
  const inSpan = <T>(event: AnyEventDef, destination: string, count: number, extra: Record<string, string | number>, fn: (span: Span) => Promise<T>) =>
    tracer().startActiveSpan(
      messagingSpanName("publish", event.allSubjects.slice(0, -2)),
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          ...publishSpanAttributes(destination),
          [MessagingAttributes.BATCH_MESSAGE_COUNT]: count,
          ...extra,
        },
      },
      async (span) => {
        try {
          return await fn(span);
        } catch (err) {
          span.recordException(err instanceof Error ? err : String(err));
          span.setStatus({ code: SpanStatusCode.ERROR, message: errorText(err) });
          throw err;
        } finally {
          span.end();
        }
      },
    );

  return {
    async publish(event, message, tokens, o = {}) {
      const e = encode({ event, message, tokens } as Publication);
      return inSpan(event, e.subject, 1, { [MessagingAttributes.MESSAGE_ID]: e.msgId, [MessagingAttributes.BODY_SIZE]: e.payload.byteLength }, async (span) => {
        try {
          const ack = await sendEvent(js, { ...e, timeoutMs: o.timeoutMs ?? defaultTimeoutMs });
          span.setAttributes({ [MessagingAttributes.NATS_STREAM]: ack.stream, [MessagingAttributes.NATS_DUPLICATE]: ack.duplicate });
          return ack;
        } catch (err) {
          log.warn({ subject: e.subject, msgId: e.msgId, err }, "event publish failed");
          throw err;
        }
      });
    },

    async publishAll(items, o = {}) {
      /** Encodes and sends `indexes` through `pipeline`, each item's outcome settled as a promise's would be. */
      const viaPipeline = async (pipeline: Pick<PipelinedPublisher, "publishAll">, indexes: number[], span: Span, timeoutMs: number) => {
        const out = new Array<PromiseSettledResult<PublishEventResult>>(indexes.length);
        const encoded: Array<ReturnType<typeof encode>> = [];
        const sent: number[] = [];
        indexes.forEach((i, k) => {
          try {
            encoded.push(encode(items[i] as Publication));
            sent.push(k);
          } catch (reason) {
            out[k] = { status: "rejected", reason };
          }
        });
        if (indexes.length === 1 && encoded[0]) describeOne(span, encoded[0]);
        const acks = await pipeline.publishAll(encoded, { timeoutMs });
        sent.forEach((k, j) => {
          const r = acks[j] as PublishEventResult | Error;
          out[k] = r instanceof Error ? { status: "rejected", reason: r } : { status: "fulfilled", value: r };
        });
        return out;
      };
      const results = new Array<PromiseSettledResult<PublishEventResult>>(items.length);
      const groups = new Map<AnyEventDef, number[]>();
      items.forEach((p, i) => {
        const list = groups.get(p.event);
        if (list) list.push(i);
        else groups.set(p.event, [i]);
      });
      const timeoutMs = o.timeoutMs ?? defaultTimeoutMs;
      const parent = context.active();
      await Promise.all(
        [...groups].map(([event, indexes]) =>
          context.with(parent, () =>
            inSpan(event, event.allSubjects, indexes.length, {}, async (span) => {
              // Every publish is sent before the first PubAck is awaited.
              const settled = opts.pipeline ? await viaPipeline(opts.pipeline, indexes, span, timeoutMs) : await Promise.allSettled(indexes.map((i) => {
                try {
                  const e = encode(items[i] as Publication);
                  if (indexes.length === 1) describeOne(span, e);
                  return sendEvent(js, { ...e, timeoutMs });
                } catch (err) {
                  return Promise.reject(err);
                }
              }));
              let failed = 0;
              settled.forEach((r, k) => {
                results[indexes[k] as number] = r;
                if (r.status === "rejected") {
                  failed++;
                  log.warn({ event: event.name, err: r.reason }, "event publish failed");
                }
              });
              if (failed > 0) span.setStatus({ code: SpanStatusCode.ERROR, message: `${failed} of ${indexes.length} publishes failed` });
            }),
          ),
        ),
      );
      return results;
    },
  };
}
