import { fromBinary } from "@bufbuild/protobuf";
import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Link, type Span, type Tracer } from "@opentelemetry/api";
import { Counter, type Registry } from "prom-client";
import { exponentialRetryDelay } from "../nats/consumer.js";
import { createDeadLetterer, errorText, watchMaxDeliveries, type MaxDeliveriesWatch } from "../nats/dead-letters.js";
import { EventHeaders } from "../nats/event-headers.js";
import { MessagingAttributes, messagingSpanName, NATS_TRACER_NAME, processSpanAttributes } from "../nats/messaging-attributes.js";
import { subjectFamily } from "../nats/subjects.js";
import { silentNatsLog, type NatsLog } from "../nats/nats-log.js";
import { extractTraceContext } from "../nats/trace-headers.js";
import type { AnyEventDef, ConsumerDef, EventCatalog, MessageOf } from "./catalog.js";

/** One decoded message of a batch. For a consumer of several events, `type` narrows `message`. */
export type BatchItem<E extends AnyEventDef = AnyEventDef> = E extends AnyEventDef
  ? {
      /** The catalog name of the event (`route.planned`). */
      readonly type: E["name"];
      readonly event: E;
      readonly message: MessageOf<E>;
      /** The ordering key (tracking number). */
      readonly key: string;
      /** The event id. */
      readonly id: string;
      readonly subject: string;
      /** The region token of the subject. */
      readonly region: string;
      /** The carrier token (scans only). */
      readonly carrier: string | undefined;
      /** Sequence in the stream: the order of messages, stable across redeliveries. */
      readonly seq: number;
      /** 1 on first delivery. */
      readonly deliveryCount: number;
      readonly redelivered: boolean;
      /** When the stream stored the message. */
      readonly timestamp: Date;
    }
  : never;

/**
 * What the handler decided for one item:
 * - `ack`: done (committed); the message is acknowledged;
 * - `retry`: redeliver after `delayMs` (default: the consumer's backoff for its delivery count);
 *   on the consumer's last delivery it is dead-lettered instead;
 * - `poison`: it can never succeed (bad data): dead-lettered at once with the reason.
 */
export type Outcome =
  | { readonly kind: "ack" }
  | { readonly kind: "retry"; readonly reason: string; readonly delayMs?: number }
  | { readonly kind: "poison"; readonly reason: string };

/** Outcome constructors. */
export const Outcomes = Object.freeze({
  ack: Object.freeze({ kind: "ack" }) as Outcome,
  retry: (reason: string, delayMs?: number): Outcome => (delayMs === undefined ? { kind: "retry", reason } : { kind: "retry", reason, delayMs }),
  poison: (reason: string): Outcome => ({ kind: "poison", reason }),
});

/**
 * Processes a batch and returns one outcome per item, in item order, after its commit. Throwing
 * retries the whole batch (each item with its own backoff). Items arrive in stream order; see
 * {@link startBatchConsumer} for the ordering rule the handler can rely on.
 */
export type BatchHandler<E extends AnyEventDef> = (items: ReadonlyArray<BatchItem<E>>) => Promise<readonly Outcome[]>;

/** Counters of a running batch consumer. */
export interface BatchConsumerStats {
  /** Messages taken from the stream (including redeliveries). */
  received: number;
  /** Batches handed to the handler. */
  batches: number;
  acked: number;
  /** Negatively acknowledged for a later redelivery. */
  retried: number;
  /** Stored in the dead-letter stream (poison and last deliveries). */
  deadLettered: number;
  /** Undecodable, wrongly typed or handler-declared poison (a subset of `deadLettered`). */
  poison: number;
  /** Messages held by this consumer now (waiting or in a batch). */
  held: number;
  /** Keys waiting for a retried message's redelivery. */
  parkedKeys: number;
  /** Batches with the handler for longer than `stalledAfterMs` now. */
  stalled: number;
  /**
   * Pulls the server had not ended `PULL_EXPIRY_MARGIN_MS` after their expiry, ended by this
   * client (see the pull loop: nats-server before 2.9.16 can drop an expired pull silently).
   */
  pullsEndedByClient: number;
}

/** A finished batch, for metrics. */
export interface BatchSummary {
  readonly size: number;
  readonly acked: number;
  readonly retried: number;
  readonly deadLettered: number;
  readonly durationMs: number;
  /** The handler threw (every item was retried or dead-lettered). */
  readonly failed: boolean;
}

/** Options of {@link startBatchConsumer}. */
export interface BatchConsumerOptions<E extends AnyEventDef> {
  js: JetStreamClient;
  /**
   * The connection of `js`. With it, the consumer also listens for the server's max-deliveries
   * advisory and dead-letters messages whose last delivery was never settled (a crashed holder).
   */
  nc?: NatsConnection;
  /** Parses subjects (`catalog.parse`). */
  catalog: Pick<EventCatalog, "parse">;
  /** The consumer (from `catalog.consumer(...)`); create it first with `ensureCatalogConsumer`. */
  consumer: ConsumerDef<E>;
  handler: BatchHandler<E>;
  /** Most items per batch. Default 256. */
  maxBatch?: number;
  /** Batches handed to the handler at once. Default 2 (one commits while the next one's side effects run). */
  maxInFlightBatches?: number;
  /**
   * How long a batch may wait to fill up. Default 0: a batch closes as soon as no more messages
   * are immediately available (a lone message is not delayed); under load batches fill up while
   * earlier ones are in flight.
   */
  lingerMs?: number;
  /** Redelivery delay after the n-th failed delivery. Default: 500 ms doubling to 60 s. */
  retryDelayMs?: (deliveryCount: number) => number;
  /**
   * How long the handler may hold a batch before it is reported: an error log naming the durable
   * (and a warning when the batch settles after all), and `stats().stalled`. Default: the
   * consumer's ack wait. The in-progress timer keeps held messages from being redelivered whatever
   * the handler does, and nothing more is pulled once `maxBatch × maxInFlightBatches` messages are
   * held, so a handler that never settles would otherwise stop the consumer for good without a word.
   */
  stalledAfterMs?: number;
  /** Expiry of one pull request. Default 5 000 ms. */
  pullExpiresMs?: number;
  logger?: NatsLog;
  /** Tracer for the batch spans. Default: `trace.getTracer("logistics.nats")`. */
  tracer?: Tracer;
  /** Called after every batch is settled (e.g. to feed metrics). */
  onBatch?: (summary: BatchSummary) => void;
  /**
   * The service's metrics registry: counts the pulls this consumer ended itself in
   * {@link PULLS_ENDED_BY_CLIENT_METRIC}`{consumer}` (the series exists from the start, at 0).
   */
  registry?: Registry;
}

/**
 * Pulls a consumer ended itself `PULL_EXPIRY_MARGIN_MS` after their expiry because the server had
 * not (nats-server before 2.9.16 drops such a pull silently; else a late server). Each one held
 * the consumer's messages back for the margin: a rate above zero says to upgrade the server.
 */
export const PULLS_ENDED_BY_CLIENT_METRIC = "logistics_consumer_pulls_ended_by_client_total";

/** The counter of {@link PULLS_ENDED_BY_CLIENT_METRIC} on `registry`, registered once per registry. */
function pullsEndedByClientCounter(registry: Registry): Counter<"consumer"> {
  return (
    (registry.getSingleMetric(PULLS_ENDED_BY_CLIENT_METRIC) as Counter<"consumer"> | undefined) ??
    new Counter({
      name: PULLS_ENDED_BY_CLIENT_METRIC,
      help: "Pulls the consumer ended itself after their expiry because the server had not (nats-server < 2.9.16 drops such pulls silently)",
      labelNames: ["consumer"],
      registers: [registry],
    })
  );
}

/** A running batch consumer. */
export interface BatchConsumer {
  /**
   * Stops pulling, returns messages not yet in a batch to the server (nak, for immediate
   * redelivery) and resolves once every in-flight batch is settled. Idempotent.
   */
  close(): Promise<void>;
  stats(): BatchConsumerStats;
}

/** Most messages in one batch when `maxBatch` is unset. */
export const DEFAULT_MAX_BATCH = 256;
/** Batches in flight at once when `maxInFlightBatches` is unset. */
export const DEFAULT_MAX_IN_FLIGHT_BATCHES = 2;

/** Most producer links on one batch span. */
const MAX_LINKS = 128;

interface Held {
  readonly m: JsMsg;
  readonly item: BatchItem;
}

/**
 * Runs a durable JetStream pull consumer that hands the handler whole batches.
 *
 * Pulling: fetch requests for as many messages as there is room for (`maxBatch ×
 * maxInFlightBatches` held at most), so the client never buffers more than it can work on; a pull
 * the server has not ended by its expiry is ended by the client `PULL_EXPIRY_MARGIN_MS` later. Every
 * message is decoded once, by its subject (a whole-stream consumer decodes each event type with
 * its own schema): a subject that is not one of the consumer's events, a `Logistics-Type` header
 * naming another type or an undecodable payload is poison and dead-lettered at once.
 *
 * Ordering rule (per key = the event's ordering key, the tracking number):
 * 1. a batch holds a key's messages in stream-sequence order;
 * 2. a message is not put in a batch while its key is in an in-flight batch: it waits, and
 *    joins a later batch after that batch settled;
 * 3. when the handler retries an item, its key is parked: later messages of the key wait (they
 *    are not handed to the handler) until every retried message of the key is back in this
 *    replica, where it goes first (rule 1); a park also ends after the retry delay plus the ack
 *    wait, for a redelivery that went to another replica or was dead-lettered;
 * 4. a poison item does not park its key (it is gone for good; later messages proceed).
 * The rule holds within one replica. Replicas sharing the durable split the stream between them
 * without key affinity (nats-server 2.9 has no partitioned consumers), so across replicas only
 * the handler's own order-independence (tracking derives state from event time) keeps the result
 * correct; the handler must also not commit a key's later item in a batch when it retries an
 * earlier one of the same key.
 *
 * Settling: the handler's outcomes are applied after it returns (i.e. after its commit): acks,
 * naks with delay, dead letters (poison at once; retries on the consumer's last delivery) with
 * the reason in `Logistics-Dlq-*` headers and a `Nats-Msg-Id` derived from stream, consumer and
 * sequence. One in-progress ack timer per consumer (every ack_wait/3) keeps every held message
 * alive, whether waiting or in a batch; there are no per-message timers.
 *
 * Tracing: one CONSUMER span `process <subject family>` (`process <stream>` for a whole-stream
 * consumer) per batch, child of the first message's producer context (a batch of one keeps a
 * single trace) and linked to the producers of up to 128 messages; the handler, the settling and
 * the log lines about the batch (handler failures, dead letters) run inside it, so they carry its
 * `trace_id`. A poison message gets a span of its own, child of its producer.
 */
export async function startBatchConsumer<E extends AnyEventDef>(opts: BatchConsumerOptions<E>): Promise<BatchConsumer> {
  const { js, consumer: def, handler } = opts;
  const { durable } = def;
  const stream = def.stream.name;
  const log = opts.logger ?? silentNatsLog;
  const maxBatch = Math.max(1, opts.maxBatch ?? DEFAULT_MAX_BATCH);
  const maxInFlight = Math.max(1, opts.maxInFlightBatches ?? DEFAULT_MAX_IN_FLIGHT_BATCHES);
  const capacity = maxBatch * maxInFlight;
  const lingerMs = Math.max(0, opts.lingerMs ?? 0);
  const retryDelayMs = opts.retryDelayMs ?? exponentialRetryDelay(500, 60_000);
  const tracer = opts.tracer ?? trace.getTracer(NATS_TRACER_NAME);
  const events = new Map<string, E>(def.events.map((e) => [e.name, e]));
  const destination = def.filterSubject ?? def.stream.subjects.join(",");
  const spanName = messagingSpanName("process", def.filterSubject ? subjectFamily(def.filterSubject) : stream);

  const consumer = await js.consumers.get(stream, durable);
  const { config } = await consumer.info(true);
  const maxDeliver = config.max_deliver !== undefined && config.max_deliver > 0 ? config.max_deliver : Infinity;
  const ackWaitMs = config.ack_wait ? Math.round(config.ack_wait / 1e6) : def.ackWaitMs;
  const stalledAfterMs = opts.stalledAfterMs ?? ackWaitMs;

  const endedByClient = opts.registry ? pullsEndedByClientCounter(opts.registry).labels({ consumer: durable }) : undefined;
  endedByClient?.inc(0);
  const stats: BatchConsumerStats = { received: 0, batches: 0, acked: 0, retried: 0, deadLettered: 0, poison: 0, held: 0, parkedKeys: 0, stalled: 0, pullsEndedByClient: 0 };
  const deadLetter = createDeadLetterer({
    js,
    stream,
    durable,
    subject: def.deadLetterSubject,
    log,
    onDeadLettered: () => stats.deadLettered++,
    ...(opts.tracer ? { tracer: opts.tracer } : {}),
  });

  /** Messages waiting for a batch, in stream-sequence order. */
  const waiting: Held[] = [];
  /** Messages in batches the handler has. */
  const inBatches = new Set<Held>();
  /** Keys of in-flight batches, with how many of their items each holds. */
  const busy = new Map<string, number>();
  /** Parked keys → the retried sequences still to come back, and the latest end of the park (epoch ms). */
  const parked = new Map<string, { seqs: Set<number>; until: number }>();
  const running = new Set<Promise<void>>();
  const sideTasks = new Set<Promise<unknown>>();
  let stopped = false;
  /** Pulls still open: the current one, and one past its expiry that the server has not ended yet. */
  const openPulls = new Set<ConsumerMessages>();
  /** The reading of pulls past their expiry, which the loop no longer awaits (close does). */
  const endingPulls = new Set<Promise<void>>();
  let flushTimer: ReturnType<typeof setTimeout> | ReturnType<typeof setImmediate> | undefined;
  let parkTimer: ReturnType<typeof setTimeout> | undefined;
  let roomWaiter: (() => void) | undefined;

  const track = <T>(p: Promise<T>): Promise<T> => {
    sideTasks.add(p);
    void p.finally(() => sideTasks.delete(p)).catch(() => {});
    return p;
  };
  const source = (h: Held) => ({ data: h.m.data, headers: h.m.headers, subject: h.m.subject, seq: h.item.seq, deliveryCount: h.item.deliveryCount });

  /** Dead-letters one message and terminates it; naks it when the dead-letter publish failed. */
  const bury = async (h: Held, reason: string): Promise<boolean> => {
    if (await deadLetter(source(h), reason, () => h.m.working())) {
      h.m.term();
      return true;
    }
    h.m.nak(retryDelayMs(h.item.deliveryCount));
    return false;
  };

  const decode = (m: JsMsg): BatchItem | string => {
    const parsed = opts.catalog.parse(m.subject);
    const event = parsed ? events.get(parsed.event.name) : undefined;
    if (!parsed || !event) return `subject ${m.subject} is not an event of consumer ${durable}`;
    const type = m.headers?.get(EventHeaders.MessageType);
    if (type && type !== event.schema.typeName) return `payload type ${type} is not ${event.schema.typeName}`;
    let message: MessageOf<E>;
    try {
      message = fromBinary(event.schema, m.data) as MessageOf<E>;
    } catch (err) {
      return `cannot decode ${event.schema.typeName}: ${errorText(err)}`;
    }
    const info = m.info;
    return {
      type: event.name,
      event,
      message,
      key: event.key(message),
      id: event.id(message),
      subject: m.subject,
      region: parsed.region,
      carrier: parsed.carrier,
      seq: m.seq,
      deliveryCount: info.deliveryCount,
      redelivered: info.deliveryCount > 1,
      timestamp: new Date(Math.floor(info.timestampNanos / 1e6)),
    } as BatchItem;
  };

  const accept = (m: JsMsg) => {
    stats.received++;
    if (stopped) {
      m.nak();
      return;
    }
    const item = decode(m);
    if (typeof item === "string") {
      stats.poison++;
      const seq = m.seq;
      const deliveryCount = m.info.deliveryCount;
      const h = { m, item: { seq, deliveryCount } as BatchItem };
      // A poison message never reaches a batch: it gets a span of its own (child of its
      // producer), inside which it is dead-lettered and logged.
      const parent = extractTraceContext(m.headers, ROOT_CONTEXT);
      const producer = trace.getSpanContext(parent);
      const span = tracer.startSpan(
        spanName,
        {
          kind: SpanKind.CONSUMER,
          links: producer ? [{ context: producer }] : [],
          attributes: {
            ...processSpanAttributes(m.subject, durable, stream),
            [MessagingAttributes.BODY_SIZE]: m.data.byteLength,
            [MessagingAttributes.NATS_STREAM_SEQUENCE]: seq,
            [MessagingAttributes.NATS_DELIVERY_COUNT]: deliveryCount,
            "logistics.outcome": "dead_letter",
          },
        },
        parent,
      );
      span.setStatus({ code: SpanStatusCode.ERROR, message: item });
      track(
        context.with(trace.setSpan(parent, span), () =>
          bury(h, `poison: ${item}`).catch((err: unknown) => log.error({ stream, durable, seq, err }, "could not dead-letter poison")),
        ),
      ).finally(() => span.end());
      return;
    }
    const park = parked.get(item.key);
    if (park?.seqs.delete(item.seq) && park.seqs.size === 0) parked.delete(item.key);
    // Sorted insert from the end: new messages are almost always the highest sequence.
    let i = waiting.length;
    while (i > 0 && (waiting[i - 1] as Held).item.seq > item.seq) i--;
    waiting.splice(i, 0, { m, item });
    scheduleFlush();
  };

  const scheduleFlush = () => {
    if (waiting.length >= maxBatch) pump();
    if (flushTimer !== undefined) return;
    const run = () => {
      flushTimer = undefined;
      pump();
    };
    flushTimer = lingerMs > 0 ? setTimeout(run, lingerMs) : setImmediate(run);
  };

  /** Takes the next batch from `waiting` under the ordering rule. */
  const takeBatch = (): Held[] => {
    const now = Date.now();
    const blocked = new Set<string>();
    const batch: Held[] = [];
    const rest: Held[] = [];
    for (const h of waiting) {
      const key = h.item.key;
      const park = parked.get(key);
      if (park !== undefined && park.until <= now) parked.delete(key);
      if (batch.length >= maxBatch || blocked.has(key) || busy.has(key) || parked.has(key)) {
        blocked.add(key);
        rest.push(h);
      } else batch.push(h);
    }
    waiting.length = 0;
    waiting.push(...rest);
    return batch;
  };

  const pump = () => {
    while (!stopped && running.size < maxInFlight && waiting.length > 0) {
      const batch = takeBatch();
      if (batch.length === 0) break;
      for (const h of batch) {
        inBatches.add(h);
        busy.set(h.item.key, (busy.get(h.item.key) ?? 0) + 1);
      }
      const p = runBatch(batch).finally(() => {
        for (const h of batch) {
          inBatches.delete(h);
          const n = (busy.get(h.item.key) ?? 1) - 1;
          if (n > 0) busy.set(h.item.key, n);
          else busy.delete(h.item.key);
        }
        running.delete(p);
        roomWaiter?.();
        pump();
      });
      running.add(p);
    }
    armParkTimer();
  };

  /** One timer for the earliest park end, so parked keys' messages move on without a new arrival. */
  const armParkTimer = () => {
    if (parkTimer !== undefined || parked.size === 0 || stopped) return;
    let next = Infinity;
    for (const p of parked.values()) next = Math.min(next, p.until);
    parkTimer = setTimeout(() => {
      parkTimer = undefined;
      pump();
    }, Math.max(1, next - Date.now()));
  };

  const runBatch = async (batch: Held[]): Promise<void> => {
    stats.batches++;
    const started = performance.now();
    const links: Link[] = [];
    let parent = ROOT_CONTEXT;
    for (let i = 0; i < batch.length && i < MAX_LINKS; i++) {
      const ctx = extractTraceContext((batch[i] as Held).m.headers, ROOT_CONTEXT);
      const sc = trace.getSpanContext(ctx);
      if (i === 0) parent = ctx;
      if (sc) links.push({ context: sc });
    }
    const span = tracer.startSpan(
      spanName,
      {
        kind: SpanKind.CONSUMER,
        links,
        attributes: {
          ...processSpanAttributes(destination, durable, stream),
          [MessagingAttributes.BATCH_MESSAGE_COUNT]: batch.length,
        },
      },
      parent,
    );
    // The handler, the settling and every log line about the batch's items run inside its span.
    await context.with(trace.setSpan(parent, span), () => handleBatch(batch, span, started));
  };

  /** Reports a batch still with the handler after `stalledAfterMs`; returns what to call once it settled. */
  const watchStall = (size: number, started: number): (() => void) => {
    let reported = false;
    const timer = setTimeout(() => {
      reported = true;
      stats.stalled++;
      log.error({ stream, durable, size, waitedMs: stalledAfterMs }, "batch handler has not settled; its messages stay held and the consumer pulls no more once full");
    }, stalledAfterMs);
    timer.unref();
    return () => {
      clearTimeout(timer);
      if (!reported) return;
      stats.stalled--;
      log.warn({ stream, durable, size, durationMs: Math.round(performance.now() - started) }, "stalled batch settled");
    };
  };

  const handleBatch = async (batch: Held[], span: Span, started: number): Promise<void> => {
    let outcomes: readonly Outcome[];
    let failed = false;
    const settledStall = watchStall(batch.length, started);
    try {
      const items = batch.map((h) => h.item) as unknown as ReadonlyArray<BatchItem<E>>;
      outcomes = await handler(items);
      if (outcomes.length !== batch.length) throw new Error(`handler returned ${outcomes.length} outcomes for ${batch.length} items`);
    } catch (err) {
      failed = true;
      span.recordException(err instanceof Error ? err : String(err));
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorText(err) });
      log.warn({ stream, durable, size: batch.length, err }, "batch handler failed; retrying its items");
      outcomes = batch.map(() => Outcomes.retry(`batch failed: ${errorText(err)}`));
    } finally {
      settledStall();
    }
    let acked = 0;
    let retried = 0;
    let buried = 0;
    const burials: Promise<boolean>[] = [];
    batch.forEach((h, i) => {
      const o = outcomes[i] as Outcome;
      try {
        if (o.kind === "ack") {
          h.m.ack();
          acked++;
        } else if (o.kind === "poison") {
          stats.poison++;
          buried++;
          burials.push(bury(h, `poison: ${o.reason}`));
        } else if (h.item.deliveryCount >= maxDeliver) {
          buried++;
          burials.push(bury(h, `handler failed after ${h.item.deliveryCount} deliveries: ${o.reason}`));
        } else {
          const delay = o.delayMs ?? retryDelayMs(h.item.deliveryCount);
          h.m.nak(delay);
          retried++;
          const park = parked.get(h.item.key) ?? { seqs: new Set<number>(), until: 0 };
          park.seqs.add(h.item.seq);
          park.until = Math.max(park.until, Date.now() + delay + ackWaitMs);
          parked.set(h.item.key, park);
        }
      } catch (err) {
        // Only when the connection is gone: the server redelivers after the ack wait.
        log.error({ stream, durable, seq: h.item.seq, err }, "could not settle message");
      }
    });
    await Promise.allSettled(burials);
    stats.acked += acked;
    stats.retried += retried;
    span.setAttributes({ "logistics.acked": acked, "logistics.retried": retried, "logistics.dead_lettered": buried });
    span.end();
    try {
      opts.onBatch?.({ size: batch.length, acked, retried, deadLettered: buried, durationMs: performance.now() - started, failed });
    } catch (err) {
      log.error({ stream, durable, err }, "onBatch hook threw");
    }
  };
  const progress = setInterval(
    () => {
      for (const h of waiting) h.m.working();
      for (const h of inBatches) h.m.working();
    },
    Math.max(100, Math.floor(ackWaitMs / 3)),
  );
  progress.unref();

  const advisories: MaxDeliveriesWatch | undefined = opts.nc ? watchMaxDeliveries({ nc: opts.nc, js, stream, durable, deadLetter, log }) : undefined;

  /**
   * Reads one pull until it ends. Resolves at the pull's end; rejects with the fetch's error when
   * it fails, unless `detached` says the loop has moved on (then the error is logged here).
   */
  const readPull = async (iter: ConsumerMessages, expiresMs: number, detached: () => boolean): Promise<void> => {
    // The pull ends at its expiry on the client too. nats-server before 2.9.16 drops an expired
    // pull request without its 408 when a new message reaches the consumer after the expiry and
    // before the server's own expiry timer runs (fixed upstream in 2.9.16, "Fix Pull Consumer not
    // sending request timeout"): a busy stream hits that race. nats.js then waits for two missed
    // heartbeats (expires / 2 each). The margin stays above how late a loaded server may take the
    // request (a message it sent after the client stopped would wait for the ack wait), and the
    // stop waits for the I/O phase (setImmediate), so a message already in the socket is taken.
    let endedHere = false;
    const stop = setTimeout(
      () =>
        setImmediate(() => {
          endedHere = true;
          iter.stop();
        }),
      expiresMs + PULL_EXPIRY_MARGIN_MS,
    );
    try {
      for await (const m of iter) accept(m);
      if (endedHere && !stopped) {
        stats.pullsEndedByClient++;
        endedByClient?.inc();
        log.warn(
          { stream, durable, expiresMs, marginMs: PULL_EXPIRY_MARGIN_MS },
          "the server did not end a pull at its expiry: ended by the client (nats-server before 2.9.16 drops such pulls silently: upgrade it; else the server is late)",
        );
      }
    } catch (err) {
      if (!detached()) throw err;
      if (!stopped) log.warn({ stream, durable, err }, "a pull past its expiry failed; its successor is open");
    } finally {
      clearTimeout(stop);
      openPulls.delete(iter);
    }
  };

  const pullLoop = async () => {
    while (!stopped) {
      const room = capacity - waiting.length - inBatches.size;
      if (room <= 0) {
        await new Promise<void>((resolve) => (roomWaiter = resolve));
        roomWaiter = undefined;
        continue;
      }
      let expiry: ReturnType<typeof setTimeout> | undefined;
      try {
        const expiresMs = opts.pullExpiresMs ?? 5000;
        const iter = await consumer.fetch({ max_messages: room, expires: expiresMs });
        openPulls.add(iter);
        if (stopped) {
          iter.stop();
          break;
        }
        // A pull still open at its expiry is overlapped by the next one instead of awaited: the
        // server ends it with a 408 shortly after (nothing more comes on it), or, on a server that
        // dropped it silently (see readPull), the client ends it a margin later. Awaiting it left
        // the consumer without a pull for that margin, a second in which its stream's new messages
        // waited (a thousand scans behind at 900 scans/s).
        let detached = false;
        const expired = new Promise<"expired">((resolve) => (expiry = setTimeout(() => resolve("expired"), expiresMs)));
        const read = readPull(iter, expiresMs, () => detached);
        if ((await Promise.race([read, expired])) === "expired") {
          detached = true;
          const ending = read.catch(() => {});
          endingPulls.add(ending);
          void ending.finally(() => endingPulls.delete(ending));
        }
      } catch (err) {
        if (stopped) break;
        const delayMs = pullRetryDelayMs(err);
        if (delayMs === 0) {
          log.warn({ stream, durable, err }, "pull ended early; pulling again");
          await new Promise((r) => setImmediate(r));
        } else {
          log.error({ stream, durable, err }, "pull failed; retrying");
          await new Promise((r) => setTimeout(r, delayMs));
        }
      } finally {
        clearTimeout(expiry);
      }
    }
  };
  const loop = pullLoop();

  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= (async () => {
        stopped = true;
        for (const iter of openPulls) iter.stop();
        roomWaiter?.();
        if (flushTimer !== undefined) {
          clearTimeout(flushTimer as ReturnType<typeof setTimeout>);
          clearImmediate(flushTimer as ReturnType<typeof setImmediate>);
        }
        if (parkTimer !== undefined) clearTimeout(parkTimer);
        await loop;
        await Promise.allSettled([...endingPulls]);
        for (const h of waiting.splice(0)) h.m.nak();
        while (running.size > 0) await Promise.allSettled([...running]);
        while (sideTasks.size > 0) await Promise.allSettled([...sideTasks]);
        clearInterval(progress);
        await advisories?.close();
      })();
      return closing;
    },
    stats: () => ({ ...stats, held: waiting.length + inBatches.size, parkedKeys: parked.size }),
  };
}

/**
 * How long after a pull's expiry the client ends it when the server has not (nats-server < 2.9.16
 * can drop an expired request silently, see readPull): a fifth of the ~5 s nats.js waited. The
 * consumer does not wait for it: the next pull goes out at the expiry (see the pull loop), so the
 * margin only bounds how long a dropped pull's inbox stays subscribed. Ending a pull the server
 * still holds is safe for what comes later: the stop unsubscribes the pull's inbox, and once the
 * unsubscribe reaches it the server drops a waiting request nobody listens to. But a message the
 * server sends before then waits for the ack wait, so the margin stays well above how late a
 * starved server's own end can come: the 408 of an expired pull came at most 118 ms after the
 * client's expiry in a 600 scans/s run.
 */
export const PULL_EXPIRY_MARGIN_MS = 1_000;

/**
 * How long the pull loop waits before pulling again after `fetch` failed. A fetch that ends with
 * "heartbeats missed" says only that this process did not read the server's idle heartbeats in
 * time — under overload its event loop is busy applying the previous batch — so waiting would add
 * a second of lag exactly when the consumer is behind: pull again at once. Anything else (the
 * consumer deleted, the connection closing, the server refusing the pull) waits a second, so a
 * persistent failure does not spin.
 */
export function pullRetryDelayMs(err: unknown): number {
  return err instanceof Error && err.message === "heartbeats missed" ? 0 : 1000;
}
