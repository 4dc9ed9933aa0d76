import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";

/** Options of {@link readStream}. */
export interface ReadStreamOptions {
  /** Only messages on this subject (wildcards allowed; one filter: nats-server 2.9). Default: all. */
  filterSubject?: string;
  /** First stream sequence to read. Default 1 (the oldest message kept). */
  startSeq?: number;
  /** Only messages stored at or after this time (wins over `startSeq`). */
  startTime?: Date;
  /** Deliver headers without payloads (`Nats-Msg-Size` tells the payload's size). Default false. */
  headersOnly?: boolean;
  /** Most messages to read. Default: all. */
  limit?: number;
  /** Messages per pull request. Default 256. */
  batch?: number;
}

/**
 * Reads a stream from a start point to its current end, in stream order, without acknowledging
 * or changing anything: an ephemeral, unacknowledged pull consumer (memory storage, one replica,
 * removed at the end, and by the server after 30 s of inactivity if this process dies first).
 * Reading stops at the last message that matched when reading began plus whatever arrived while
 * reading (the consumer's pending count reaches zero), or after `limit` messages.
 *
 * Used for operator tooling and sampling (dead-letter listings, counts by reason), never on a
 * hot path: each call creates a consumer on the server.
 */
export async function* readStream(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  opts: ReadStreamOptions = {},
): AsyncGenerator<JsMsg> {
  const limit = opts.limit ?? Infinity;
  if (limit <= 0) return;
  const first = await jsm.streams.getMessage(stream, {
    seq: Math.max(1, opts.startSeq ?? 1),
    next_by_subj: opts.filterSubject ?? ">",
  } as { seq: number });
  // Nothing to read: spare the consumer and a fetch that would wait for its expiry.
  if (!first) return;
  if (opts.startTime && first.time < opts.startTime) {
    const { state } = await jsm.streams.info(stream);
    if (!state.last_ts || new Date(state.last_ts) < opts.startTime) return;
  }
  const info = await jsm.consumers.add(stream, {
    ack_policy: AckPolicy.None,
    ...(opts.startTime
      ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: opts.startTime.toISOString() }
      : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: first.seq }),
    ...(opts.filterSubject ? { filter_subject: opts.filterSubject } : {}),
    headers_only: opts.headersOnly ?? false,
    mem_storage: true,
    num_replicas: 1,
    inactive_threshold: nanos(30_000),
  });
  const consumer = await js.consumers.get(stream, info.name);
  let read = 0;
  try {
    for (;;) {
      const want = Math.min(opts.batch ?? 256, limit - read);
      const batch = await consumer.fetch({ max_messages: want, expires: 2000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        read++;
        yield m;
        // Leaving the loop ends the pull at once instead of waiting for its expiry.
        if (m.info.pending === 0 || read >= limit) return;
      }
      if (got === 0) return;
    }
  } finally {
    await jsm.consumers.delete(stream, info.name).catch(() => false);
  }
}
