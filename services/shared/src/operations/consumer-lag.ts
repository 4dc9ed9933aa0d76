import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { Counter, Gauge, type Registry } from "prom-client";
import { EventHeaders } from "../nats/event-headers.js";
import { silentNatsLog, type NatsLog } from "../nats/nats-log.js";
import { DeadLetterReasonClasses, deadLetterReasonClass } from "./dead-letter-reason.js";
import { readStream } from "./stream-reader.js";

/** A durable consumer whose backlog a service reports: the ones it owns. */
export interface ConsumerRef {
  /** Durable name (the `consumer` label). */
  readonly durable: string;
  /** The stream it consumes. */
  readonly stream: string;
  /** Where it dead-letters (`<prefix>.dlq.<durable>`); without it no dead-letter depth is reported. */
  readonly deadLetterSubject?: string;
}

/** Options of {@link startConsumerLagSampler}. */
export interface ConsumerLagSamplerOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Where the gauges are registered (the service's registry). */
  registry: Registry;
  /** The consumers to sample: the service's own (a bounded list, so a bounded label set). */
  consumers: readonly ConsumerRef[];
  /** The dead-letter stream (`createSubjects().streams.deadLetters.name`); without it no dead-letter depth. */
  deadLetterStream?: string;
  /** Sampling period. Default 15 000 ms. 0: no timer (call `sample()` yourself). */
  intervalMs?: number;
  /**
   * Most dead letters read per consumer to count them by reason (headers only, and only when the
   * consumer's dead letters changed since the last sample). Beyond it the rest are counted as
   * `reason="unscanned"`. Default 10 000.
   */
  maxDeadLettersScanned?: number;
  /** Clock in ms. Default Date.now. */
  now?: () => number;
  log?: NatsLog;
}

/** A running sampler. */
export interface ConsumerLagSampler {
  /** Samples every consumer now (what the timer does); resolves when the gauges are updated. */
  sample(): Promise<void>;
  /** Stops the timer and waits for a sample in progress. Idempotent. */
  close(): Promise<void>;
}

/** Metric names the sampler exports (for rules, dashboards and tests). */
export const ConsumerLagMetrics = Object.freeze({
  pending: "logistics_jetstream_consumer_pending_messages",
  ackPending: "logistics_jetstream_consumer_ack_pending_messages",
  redelivered: "logistics_jetstream_consumer_redelivered_messages",
  oldestAge: "logistics_jetstream_consumer_oldest_unprocessed_age_seconds",
  sampleErrors: "logistics_jetstream_consumer_sample_errors_total",
  deadLetters: "logistics_dead_letters",
});

/** `reason` label of dead letters beyond {@link ConsumerLagSamplerOptions.maxDeadLettersScanned}. */
export const UNSCANNED_REASON = "unscanned";

type ConsumerLabel = "consumer" | "stream";

interface Instruments {
  pending: Gauge<ConsumerLabel>;
  ackPending: Gauge<ConsumerLabel>;
  redelivered: Gauge<ConsumerLabel>;
  oldestAge: Gauge<ConsumerLabel>;
  sampleErrors: Counter<"consumer">;
  deadLetters: Gauge<"consumer" | "reason">;
}

/** Registers the gauges once per registry (a second sampler on the same registry shares them). */
function instruments(registry: Registry): Instruments {
  const existing = <T>(name: string) => registry.getSingleMetric(name) as T | undefined;
  const labelNames: ConsumerLabel[] = ["consumer", "stream"];
  const registers = [registry];
  return {
    pending:
      existing<Gauge<ConsumerLabel>>(ConsumerLagMetrics.pending) ??
      new Gauge({
        name: ConsumerLagMetrics.pending,
        help: "Messages of the stream the durable consumer has not delivered yet (JetStream num_pending)",
        labelNames,
        registers,
      }),
    ackPending:
      existing<Gauge<ConsumerLabel>>(ConsumerLagMetrics.ackPending) ??
      new Gauge({
        name: ConsumerLagMetrics.ackPending,
        help: "Messages delivered to the durable consumer and not acknowledged yet (JetStream num_ack_pending)",
        labelNames,
        registers,
      }),
    redelivered:
      existing<Gauge<ConsumerLabel>>(ConsumerLagMetrics.redelivered) ??
      new Gauge({
        name: ConsumerLagMetrics.redelivered,
        help: "Unacknowledged messages that have been delivered more than once (JetStream num_redelivered)",
        labelNames,
        registers,
      }),
    oldestAge:
      existing<Gauge<ConsumerLabel>>(ConsumerLagMetrics.oldestAge) ??
      new Gauge({
        name: ConsumerLagMetrics.oldestAge,
        help: "Age of the oldest message the durable consumer has not processed (first after its ack floor); 0 when caught up",
        labelNames,
        registers,
      }),
    sampleErrors:
      existing<Counter<"consumer">>(ConsumerLagMetrics.sampleErrors) ??
      new Counter({
        name: ConsumerLagMetrics.sampleErrors,
        help: "Failed samples of a consumer's backlog (consumer missing, JetStream unreachable); its gauges are dropped meanwhile",
        labelNames: ["consumer"],
        registers,
      }),
    deadLetters:
      existing<Gauge<"consumer" | "reason">>(ConsumerLagMetrics.deadLetters) ??
      new Gauge({
        name: ConsumerLagMetrics.deadLetters,
        help: "Messages in the dead-letter stream by the consumer that gave up on them and reason class (poison, retries_exhausted, unsettled, other, unscanned)",
        labelNames: ["consumer", "reason"],
        registers,
      }),
  };
}

interface DeadLetterIndex {
  total: number;
  lastSeq: number;
  counts: Map<string, number>;
}

/**
 * Samples, every `intervalMs`, the backlog of each consumer in `consumers` from JetStream's
 * consumer info, and exports it as gauges labelled `consumer` (durable name) and `stream`:
 *
 * - `logistics_jetstream_consumer_pending_messages`: not yet delivered (`num_pending`, the
 *   stream's messages after the consumer's delivered sequence that match its filter);
 * - `logistics_jetstream_consumer_ack_pending_messages`: delivered, not yet acknowledged;
 * - `logistics_jetstream_consumer_redelivered_messages`: of those, delivered more than once;
 * - `logistics_jetstream_consumer_oldest_unprocessed_age_seconds`: now minus the store time of
 *   the first message after the ack floor that matches the filter (a direct get by sequence with
 *   `next_by_subj`, which also skips deleted and expired sequences); 0 when nothing is pending.
 *   Unlike a latency histogram this keeps growing while the consumer is stalled;
 * - `logistics_dead_letters{consumer, reason}`: messages in the dead-letter stream on the
 *   consumer's dead-letter subject, by reason class (see dead-letter-reason.ts). The depth per
 *   subject comes from the stream's subject counts (exact); the reasons from reading the
 *   messages' headers, only when the subject's count or the stream's last sequence changed.
 *
 * A consumer that cannot be sampled (missing, JetStream down) counts in
 * `logistics_jetstream_consumer_sample_errors_total{consumer}` and its backlog gauges are removed
 * until a sample succeeds, so a stale "all caught up" never shows. Each replica of a service
 * samples the same durables: aggregate with `max by (consumer)`.
 */
export function startConsumerLagSampler(opts: ConsumerLagSamplerOptions): ConsumerLagSampler {
  const { js, jsm } = opts;
  const log = opts.log ?? silentNatsLog;
  const now = opts.now ?? Date.now;
  const maxScan = Math.max(0, opts.maxDeadLettersScanned ?? 10_000);
  const m = instruments(opts.registry);
  const failing = new Set<string>();
  const dlqIndex = new Map<string, DeadLetterIndex>();

  const sampleConsumer = async (c: ConsumerRef): Promise<void> => {
    const labels = { consumer: c.durable, stream: c.stream };
    try {
      const info = await jsm.consumers.info(c.stream, c.durable);
      let age = 0;
      if (info.num_pending + info.num_ack_pending > 0) {
        const oldest = await jsm.streams.getMessage(c.stream, {
          seq: info.ack_floor.stream_seq + 1,
          next_by_subj: info.config.filter_subject || ">",
        } as { seq: number });
        if (oldest) age = Math.max(0, (now() - oldest.time.getTime()) / 1000);
      }
      m.pending.set(labels, info.num_pending);
      m.ackPending.set(labels, info.num_ack_pending);
      m.redelivered.set(labels, info.num_redelivered);
      m.oldestAge.set(labels, age);
      if (failing.delete(c.durable)) log.info({ consumer: c.durable, stream: c.stream }, "consumer backlog sampled again");
    } catch (err) {
      m.sampleErrors.inc({ consumer: c.durable });
      for (const g of [m.pending, m.ackPending, m.redelivered, m.oldestAge]) g.remove(labels);
      if (!failing.has(c.durable)) log.warn({ consumer: c.durable, stream: c.stream, err }, "cannot sample consumer backlog");
      failing.add(c.durable);
    }
  };

  const sampleDeadLetters = async (stream: string): Promise<void> => {
    const withDlq = opts.consumers.filter((c) => c.deadLetterSubject);
    if (withDlq.length === 0) return;
    let subjects: Record<string, number>;
    let lastSeq: number;
    try {
      const si = await jsm.streams.info(stream, { subjects_filter: ">" });
      subjects = si.state.subjects ?? {};
      lastSeq = si.state.last_seq;
    } catch (err) {
      for (const c of withDlq) m.sampleErrors.inc({ consumer: c.durable });
      log.warn({ stream, err }, "cannot read the dead-letter stream");
      return;
    }
    for (const c of withDlq) {
      const subject = c.deadLetterSubject as string;
      const total = subjects[subject] ?? 0;
      const known = dlqIndex.get(c.durable);
      let index: DeadLetterIndex;
      if (known && known.total === total && (total === 0 || known.lastSeq === lastSeq)) {
        index = known;
      } else {
        const counts = new Map<string, number>();
        let scanned = 0;
        if (total > 0 && maxScan > 0) {
          try {
            for await (const msg of readStream(js, jsm, stream, { filterSubject: subject, headersOnly: true, limit: maxScan })) {
              const cls = deadLetterReasonClass(msg.headers?.get(EventHeaders.DlqReason));
              counts.set(cls, (counts.get(cls) ?? 0) + 1);
              scanned++;
            }
          } catch (err) {
            m.sampleErrors.inc({ consumer: c.durable });
            log.warn({ stream, consumer: c.durable, err }, "cannot read dead letters");
            continue;
          }
        }
        // Dead letters added while reading are counted by reason too; the next sample recounts.
        counts.set(UNSCANNED_REASON, Math.max(0, total - scanned));
        index = { total, lastSeq, counts };
        dlqIndex.set(c.durable, index);
      }
      for (const reason of [...DeadLetterReasonClasses, UNSCANNED_REASON]) {
        m.deadLetters.set({ consumer: c.durable, reason }, index.counts.get(reason) ?? 0);
      }
    }
  };

  let running: Promise<void> | undefined;
  const sample = (): Promise<void> => {
    running ??= (async () => {
      for (const c of opts.consumers) await sampleConsumer(c);
      if (opts.deadLetterStream) await sampleDeadLetters(opts.deadLetterStream);
    })().finally(() => {
      running = undefined;
    });
    return running;
  };

  const intervalMs = opts.intervalMs ?? 15_000;
  const timer =
    intervalMs > 0
      ? setInterval(() => {
          if (!running) void sample();
        }, intervalMs)
      : undefined;
  timer?.unref();
  if (timer) void sample();

  let closed: Promise<void> | undefined;
  return {
    sample,
    close() {
      closed ??= (async () => {
        if (timer) clearInterval(timer);
        await running;
      })();
      return closed;
    },
  };
}
