import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type ConsumerInfo,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
  type StreamSource,
} from "@nats-io/jetstream";
import { millis, nanos } from "@nats-io/transport-node";
import { regionSources } from "./regions.js";
import type { StreamSpec } from "./subjects.js";

/** What an ensure call did to one stream or consumer. */
export type EnsureAction = "created" | "updated" | "unchanged";

/** Options for {@link ensureStreams}; they apply to every stream in the call. */
export interface EnsureStreamsOptions {
  /** Replicas per stream (3 in production for durability). Default 1. */
  replicas?: number;
  /** Window for `Nats-Msg-Id` publish dedupe. Default 120 000 ms (2 minutes). */
  duplicateWindowMs?: number;
  /**
   * Per-stream duplicate windows by stream name, overriding `duplicateWindowMs` (e.g. the scans
   * stream keeps ids for an hour so a resend is DUPLICATE without Redis). The server holds every
   * id inside the window in memory on every replica: about 200 B per message
   * (perf/src/ingest/dedupe-window-bench.ts).
   */
  duplicateWindowMsByStream?: Readonly<Record<string, number>>;
  /** Maximum message age; 0 keeps messages until other limits apply. Default 0. */
  maxAgeMs?: number;
  /**
   * Bytes each stream may hold; 0 means no byte limit. Default 0. Streams discard new messages
   * when full: a publish is refused (ingest answers its caller, who retries) instead of the
   * oldest, possibly unconsumed, events being dropped. The server reserves this space on every
   * replica, so the sum over all streams must fit in each server's `max_file_store`.
   */
  maxBytes?: number;
  /** Storage backend. Default "file". It cannot be changed on an existing stream. */
  storage?: "file" | "memory";
  /**
   * Peer regions (JetStream domains) whose own events each stream with a `regionFilter` sources
   * (see nats/regions.ts). Default none: no sources, today's single region. Removing a peer
   * removes its source.
   */
  peers?: readonly string[];
}

/** The outcome of ensuring one stream. */
export interface EnsureStreamResult {
  readonly name: string;
  readonly action: EnsureAction;
  readonly info: StreamInfo;
}

/** Raised when an existing stream or consumer differs in a setting the server cannot update. */
export class ImmutableConfigError extends Error {
  override readonly name = "ImmutableConfigError";
  constructor(message: string) {
    super(message);
  }
}

const STREAM_NAME_IN_USE = 10058;

/**
 * Creates each stream, or brings an existing one in line with the spec and options: a stream
 * whose subjects, description, replicas, duplicate window, max age, max bytes, discard policy or
 * sources (from `peers`) differ is updated; one that already matches is left untouched (no API write), so every replica
 * of every service can call this at start-up. Streams use limits retention and discard-new (see
 * {@link EnsureStreamsOptions.maxBytes}).
 *
 * Throws {@link ImmutableConfigError} when an existing stream uses a different storage type
 * (the server cannot convert it in place).
 */
export async function ensureStreams(
  jsm: JetStreamManager,
  specs: readonly StreamSpec[],
  opts: EnsureStreamsOptions = {},
): Promise<EnsureStreamResult[]> {
  const results: EnsureStreamResult[] = [];
  for (const spec of specs) results.push(await ensureStream(jsm, spec, opts));
  return results;
}

async function ensureStream(
  jsm: JetStreamManager,
  spec: StreamSpec,
  opts: EnsureStreamsOptions,
): Promise<EnsureStreamResult> {
  const storage = opts.storage === "memory" ? StorageType.Memory : StorageType.File;
  const wanted = {
    subjects: [...spec.subjects],
    description: spec.description,
    num_replicas: opts.replicas ?? 1,
    duplicate_window: nanos(opts.duplicateWindowMsByStream?.[spec.name] ?? opts.duplicateWindowMs ?? 120_000),
    max_age: nanos(opts.maxAgeMs ?? 0),
    max_bytes: opts.maxBytes ? opts.maxBytes : -1,
    discard: DiscardPolicy.New,
    sources: regionSources(spec, opts.peers ?? []),
  } satisfies Partial<StreamConfig>;

  let existing = await streamInfo(jsm, spec.name);
  if (!existing) {
    try {
      const info = await jsm.streams.add({
        ...wanted,
        name: spec.name,
        storage,
        retention: RetentionPolicy.Limits,
      });
      return { name: spec.name, action: "created", info };
    } catch (err) {
      // Another replica created it between our info and add: fall through to the update path.
      if (!(err instanceof JetStreamApiError && err.code === STREAM_NAME_IN_USE)) throw err;
      existing = await streamInfo(jsm, spec.name);
      if (!existing) throw err;
    }
  }

  const cfg = existing.config;
  if (cfg.storage !== storage) {
    throw new ImmutableConfigError(
      `stream ${spec.name} uses ${cfg.storage} storage, wanted ${storage}: migrate it explicitly`,
    );
  }
  const same =
    sameSet(cfg.subjects ?? [], wanted.subjects) &&
    (cfg.description ?? "") === wanted.description &&
    cfg.num_replicas === wanted.num_replicas &&
    millis(cfg.duplicate_window) === millis(wanted.duplicate_window) &&
    millis(cfg.max_age) === millis(wanted.max_age) &&
    cfg.max_bytes === wanted.max_bytes &&
    cfg.discard === wanted.discard &&
    sameSet((cfg.sources ?? []).map(sourceKey), wanted.sources.map(sourceKey));
  if (same) return { name: spec.name, action: "unchanged", info: existing };
  const info = await jsm.streams.update(spec.name, { ...cfg, ...wanted });
  return { name: spec.name, action: "updated", info };
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return undefined;
    throw err;
  }
}

/** Options for {@link ensureConsumer}. */
export interface EnsureConsumerOptions {
  /** Durable name; also names the consumer's dead-letter subject. */
  durable: string;
  /** Only deliver messages on this subject (one filter: nats-server 2.9). Default: whole stream. */
  filterSubject?: string;
  /** Redelivery timeout for an unacknowledged message. Default 30 000 ms. */
  ackWaitMs?: number;
  /** Deliveries before the server stops redelivering (the consumer dead-letters first). Default 5. */
  maxDeliver?: number;
  /**
   * Redelivery delays for ack timeouts, one per delivery attempt (the last repeats). Must be
   * shorter than `maxDeliver`. When set, the server uses `backoffMs[0]` as the ack wait.
   */
  backoffMs?: readonly number[];
  /** Unacknowledged messages in flight across all clients of the consumer. Default 1000. */
  maxAckPending?: number;
  /** Human-readable purpose. */
  description?: string;
  /**
   * Stream sequence a NEW consumer starts at (instead of the start of the stream). Ignored for an
   * existing consumer.
   */
  startSequence?: number;
}

/** The outcome of {@link ensureConsumer}. */
export interface EnsureConsumerResult {
  readonly action: EnsureAction;
  readonly info: ConsumerInfo;
}

/**
 * Creates a durable pull consumer with explicit acks (delivering from the start of the stream, or
 * from `startSequence`),
 * or updates an existing one whose ack wait, max deliver, backoff, max ack pending or
 * description differ; an identical one is left untouched.
 *
 * nats-server 2.9 cannot change a consumer's filter subject, ack policy or deliver policy in
 * place: such a difference throws {@link ImmutableConfigError} (delete and recreate the consumer
 * deliberately, accepting redelivery from the new start point). A backoff list must be shorter
 * than `maxDeliver` (a server rule), which is checked before any request.
 */
export async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  opts: EnsureConsumerOptions,
): Promise<EnsureConsumerResult> {
  const maxDeliver = opts.maxDeliver ?? 5;
  const backoff = opts.backoffMs ? [...opts.backoffMs] : [];
  if (backoff.length > 0 && maxDeliver !== -1 && maxDeliver <= backoff.length) {
    throw new RangeError(
      `consumer ${opts.durable}: maxDeliver (${maxDeliver}) must exceed the number of backoff steps ` +
        `(${backoff.length})`,
    );
  }
  const ackWaitMs = backoff.length > 0 ? (backoff[0] as number) : (opts.ackWaitMs ?? 30_000);
  const updatable = {
    description: opts.description ?? "",
    ack_wait: nanos(ackWaitMs),
    max_deliver: maxDeliver,
    max_ack_pending: opts.maxAckPending ?? 1000,
    ...(backoff.length > 0 ? { backoff: backoff.map((ms) => nanos(ms)) } : {}),
  } satisfies Partial<ConsumerConfig>;

  const existing = await consumerInfo(jsm, stream, opts.durable);
  if (!existing) {
    const info = await jsm.consumers.add(stream, {
      ...updatable,
      durable_name: opts.durable,
      ack_policy: AckPolicy.Explicit,
      ...(opts.startSequence !== undefined && opts.startSequence > 1
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: opts.startSequence }
        : { deliver_policy: DeliverPolicy.All }),
      replay_policy: ReplayPolicy.Instant,
      ...(opts.filterSubject ? { filter_subject: opts.filterSubject } : {}),
    });
    return { action: "created", info };
  }

  const cfg = existing.config;
  if ((cfg.filter_subject ?? "") !== (opts.filterSubject ?? "")) {
    throw new ImmutableConfigError(
      `consumer ${stream}/${opts.durable} filters ${JSON.stringify(cfg.filter_subject ?? "")}, ` +
        `wanted ${JSON.stringify(opts.filterSubject ?? "")}: nats-server 2.9 cannot change it in place`,
    );
  }
  if (cfg.ack_policy !== AckPolicy.Explicit) {
    throw new ImmutableConfigError(`consumer ${stream}/${opts.durable} has ack policy ${cfg.ack_policy}`);
  }
  const same =
    (cfg.description ?? "") === updatable.description &&
    millis(cfg.ack_wait ?? 0) === ackWaitMs &&
    cfg.max_deliver === updatable.max_deliver &&
    cfg.max_ack_pending === updatable.max_ack_pending &&
    sameList((cfg.backoff ?? []).map((n) => millis(n)), backoff);
  if (same) return { action: "unchanged", info: existing };
  // An empty list clears a previously configured backoff.
  const info = await jsm.consumers.update(stream, opts.durable, { ...updatable, backoff: updatable.backoff ?? [] });
  return { action: "updated", info };
}

async function consumerInfo(jsm: JetStreamManager, stream: string, durable: string): Promise<ConsumerInfo | undefined> {
  try {
    return await jsm.consumers.info(stream, durable);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound) return undefined;
    throw err;
  }
}

function sourceKey(s: StreamSource): string {
  return `${s.name}|${s.filter_subject ?? ""}|${s.external?.api ?? ""}`;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");
}

function sameList(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
