import type { JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import { headers as createHeaders, millis, type MsgHdrs } from "@nats-io/transport-node";
import { EventHeaders } from "../nats/event-headers.js";
import type { Subjects } from "../nats/subjects.js";
import { deadLetterReasonClass, type DeadLetterReasonClass } from "./dead-letter-reason.js";
import { readStream } from "./stream-reader.js";

/** Which dead letters an action applies to. Every condition set must hold. */
export interface DeadLetterFilter {
  /** The durable consumer that gave up on them (selects the subject `<prefix>.dlq.<consumer>`). */
  readonly consumer?: string;
  /** Reason class (see dead-letter-reason.ts). */
  readonly reason?: DeadLetterReasonClass;
  /** Their original subject, a NATS subject pattern (`*` one token, `>` the rest): `logistics.scan.recorded.eu-west.*`. */
  readonly subject?: string;
  /** Dead-lettered at or after. */
  readonly since?: Date;
  /** Dead-lettered before. */
  readonly until?: Date;
  /** Only these sequences of the dead-letter stream. */
  readonly sequences?: readonly number[];
  /** Stop after this many matches. Default: no limit. */
  readonly limit?: number;
  /** Only dead letters after this sequence of the dead-letter stream (a listing cursor). */
  readonly afterSequence?: number;
}

/** One message a consumer gave up on, as the dead-letter stream holds it. */
export interface DeadLetter {
  /** Sequence in the dead-letter stream (what `show`, `--seq` and the RPCs name). */
  readonly sequence: number;
  readonly deadLetteredAt: Date;
  /** The durable consumer that gave up (`Logistics-Dlq-Consumer`). */
  readonly consumer: string;
  /** The reason text (`Logistics-Dlq-Reason`): the decode error or the handler's last error. */
  readonly reason: string;
  readonly reasonClass: DeadLetterReasonClass;
  /** Where the message came from: its stream, sequence there, subject and `Nats-Msg-Id` (the event id). */
  readonly original: {
    readonly stream: string;
    readonly sequence: number;
    readonly subject: string;
    readonly msgId: string | undefined;
    readonly deliveries: number;
  };
  /** Fully qualified Protobuf type of the payload (`Logistics-Type`), when set. */
  readonly payloadType: string | undefined;
  /** The original headers, without the `Logistics-Dlq-*` ones; names as published. */
  readonly headers: Readonly<Record<string, readonly string[]>>;
  /** The original payload (empty when listed without payloads). */
  readonly payload: Uint8Array;
  /** The payload's size in bytes. */
  readonly payloadSize: number;
}

/** Who did what: one line per action, for the audit log. */
export interface DeadLetterAuditEntry {
  readonly action: "list" | "show" | "redrive" | "purge";
  /** Who asked: the operator's login (CLI) or the token's subject (RPC). */
  readonly actor: string;
  readonly filter: Readonly<Record<string, unknown>>;
  readonly dryRun: boolean;
  /** Dead letters matched by the filter. */
  readonly matched: number;
  /** Dead letters changed: republished (redrive) or deleted (purge); 0 for reads and dry runs. */
  readonly affected: number;
  /** Redrive only: left in place because their event id is still inside the duplicate window. */
  readonly deferred?: number;
  /** The dead-letter sequences changed (at most the first 100). */
  readonly sequences: readonly number[];
}

/** Options of a redrive. */
export interface RedriveOptions {
  /** Who asks (audit). */
  readonly actor: string;
  /** Report what would be republished; change nothing. */
  readonly dryRun?: boolean;
  /**
   * Republish messages still inside their stream's duplicate window with a new `Nats-Msg-Id`
   * (`<event id>.redrive.<dead-letter sequence>`) instead of deferring them. Safe only because
   * every consumer applies events idempotently by the event id in the payload. Default false.
   */
  readonly newMessageId?: boolean;
}

/** The outcome of a redrive (or, with `dryRun`, what it would do). */
export interface RedriveReport {
  readonly matched: number;
  /** Republished to their original subject and removed from the dead-letter stream. */
  readonly redriven: number;
  /** Left in place: their event id may still be in the stream's duplicate window (see `eligibleAt`). */
  readonly deferred: number;
  /** When the last deferred one becomes eligible. */
  readonly eligibleAt: Date | undefined;
  /** Sequences republished (or that would be). */
  readonly sequences: readonly number[];
}

/** The outcome of a purge. */
export interface PurgeReport {
  readonly matched: number;
  readonly purged: number;
  readonly sequences: readonly number[];
}

/** Operator actions on the mesh's JetStream dead-letter stream. */
export interface DeadLetterAdmin {
  /** Dead letters matching `filter`, oldest first; payloads only with `withPayload`. */
  list(filter: DeadLetterFilter, opts: { actor: string; withPayload?: boolean }): Promise<DeadLetter[]>;
  /** One dead letter with its payload, or undefined. */
  show(sequence: number, opts: { actor: string }): Promise<DeadLetter | undefined>;
  /**
   * Republishes each matching dead letter, oldest first, to its original subject with its
   * original payload and headers (so `Nats-Msg-Id` is the event id again and the ordering key,
   * trace context and type travel with it), then removes it from the dead-letter stream once the
   * PubAck says it was stored. The republished message reaches every consumer of that subject
   * again, not only the one that gave up: each applies it idempotently by event id.
   *
   * JetStream's duplicate window: a publish whose `Nats-Msg-Id` the stream saw within its
   * duplicate window is dropped as a duplicate. A dead letter whose original might still be in
   * that window is therefore deferred (left in place, reported with the time it becomes
   * eligible) unless `newMessageId` is set; a PubAck that still says duplicate leaves the dead
   * letter in place too. Nothing is ever removed without having been stored again.
   */
  redrive(filter: DeadLetterFilter, opts: RedriveOptions): Promise<RedriveReport>;
  /** Deletes matching dead letters (`dryRun`: counts them). */
  purge(filter: DeadLetterFilter, opts: { actor: string; dryRun?: boolean }): Promise<PurgeReport>;
}

/** Options of {@link createDeadLetterAdmin}. */
export interface DeadLetterAdminOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** The mesh's subjects (dead-letter stream and subjects). */
  subjects: Subjects;
  /** Receives one entry per action. */
  audit: (entry: DeadLetterAuditEntry) => void;
  /** Clock in ms. Default Date.now. */
  now?: () => number;
}

const DLQ_HEADER_PREFIX = "logistics-dlq-";

/** Creates the dead-letter tooling used by `npm run dlq` and the admin RPC. */
export function createDeadLetterAdmin(opts: DeadLetterAdminOptions): DeadLetterAdmin {
  const { js, jsm, subjects } = opts;
  const now = opts.now ?? Date.now;
  const stream = subjects.streams.deadLetters.name;

  const matching = async function* (filter: DeadLetterFilter, withPayload: boolean): AsyncGenerator<DeadLetter> {
    const limit = filter.limit ?? Infinity;
    if (limit <= 0) return;
    let found = 0;
    const wanted = filter.sequences ? new Set(filter.sequences) : undefined;
    const accept = (d: DeadLetter) => matches(d, filter);
    if (wanted) {
      for (const seq of [...wanted].sort((a, b) => a - b)) {
        if (filter.afterSequence !== undefined && seq <= filter.afterSequence) continue;
        const stored = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
        if (!stored || !stored.subject.startsWith(`${subjects.prefix}.dlq.`)) continue;
        const d = toDeadLetter(stored.seq, stored.time, stored.header, withPayload ? stored.data : undefined, stored.data.length);
        if (!accept(d)) continue;
        yield d;
        if (++found >= limit) return;
      }
      return;
    }
    const reader = readStream(js, jsm, stream, {
      filterSubject: filter.consumer ? subjects.deadLetter(filter.consumer) : subjects.allDeadLetters,
      headersOnly: !withPayload,
      ...(filter.afterSequence !== undefined ? { startSeq: filter.afterSequence + 1 } : {}),
      ...(filter.since && filter.afterSequence === undefined ? { startTime: filter.since } : {}),
    });
    for await (const m of reader) {
      if (filter.until && m.time >= filter.until) return;
      const d = fromJsMsg(m, withPayload);
      if (!accept(d)) continue;
      yield d;
      if (++found >= limit) return;
    }
  };

  const collect = async (filter: DeadLetterFilter, withPayload: boolean) => {
    const out: DeadLetter[] = [];
    for await (const d of matching(filter, withPayload)) out.push(d);
    return out;
  };

  const duplicateWindowMs = new Map<string, number>();
  const windowOf = async (name: string): Promise<number> => {
    let ms = duplicateWindowMs.get(name);
    if (ms === undefined) {
      const si = await jsm.streams.info(name);
      ms = millis(si.config.duplicate_window ?? 0);
      duplicateWindowMs.set(name, ms);
    }
    return ms;
  };
  /**
   * When the original's msg id has left its stream's duplicate window: its store time (the
   * dead-lettering time when the original is gone, which is later) plus the window plus a margin
   * for the server's purge timer and clock skew between this process and the server.
   */
  const eligibleAt = async (d: DeadLetter): Promise<number> => {
    const window = await windowOf(d.original.stream);
    const margin = Math.max(1000, window / 10);
    const stored = await jsm.streams.getMessage(d.original.stream, { seq: d.original.sequence }).catch(() => null);
    const sameEvent = stored !== null && stored.header?.get(EventHeaders.MsgId) === d.original.msgId;
    const publishedAt = sameEvent ? stored.time.getTime() : d.deadLetteredAt.getTime();
    return publishedAt + window + margin;
  };

  return {
    async list(filter, o) {
      const found = await collect(filter, o.withPayload ?? false);
      opts.audit({ action: "list", actor: o.actor, filter: describe(filter), dryRun: false, matched: found.length, affected: 0, sequences: [] });
      return found;
    },

    async show(sequence, o) {
      const [found] = await collect({ sequences: [sequence] }, true);
      opts.audit({ action: "show", actor: o.actor, filter: { sequence }, dryRun: false, matched: found ? 1 : 0, affected: 0, sequences: [] });
      return found;
    },

    async redrive(filter, o) {
      const found = await collect(filter, true);
      const redriven: number[] = [];
      let deferred = 0;
      let latest: number | undefined;
      for (const d of found) {
        const headers = originalHeaders(d);
        let msgId = d.original.msgId;
        if (msgId) {
          const at = await eligibleAt(d);
          if (at > now()) {
            if (o.newMessageId) {
              msgId = `${msgId}.redrive.${d.sequence}`;
            } else {
              deferred++;
              latest = Math.max(latest ?? 0, at);
              continue;
            }
          }
        }
        if (o.dryRun) {
          redriven.push(d.sequence);
          continue;
        }
        const ack = await js.publish(d.original.subject, d.payload, {
          headers,
          ...(msgId ? { msgID: msgId } : {}),
          timeout: 5000,
        });
        if (ack.duplicate) {
          // The stream still remembers the id: keep the dead letter so nothing is lost.
          deferred++;
          latest = Math.max(latest ?? 0, now() + (await windowOf(d.original.stream)));
          continue;
        }
        await jsm.streams.deleteMessage(stream, d.sequence, false);
        redriven.push(d.sequence);
      }
      const report: RedriveReport = {
        matched: found.length,
        redriven: redriven.length,
        deferred,
        eligibleAt: latest === undefined ? undefined : new Date(latest),
        sequences: redriven,
      };
      opts.audit({
        action: "redrive",
        actor: o.actor,
        filter: { ...describe(filter), ...(o.newMessageId ? { newMessageId: true } : {}) },
        dryRun: o.dryRun ?? false,
        matched: found.length,
        affected: o.dryRun ? 0 : redriven.length,
        deferred,
        sequences: redriven.slice(0, 100),
      });
      return report;
    },

    async purge(filter, o) {
      const found = await collect(filter, false);
      const purged: number[] = [];
      if (!o.dryRun) {
        for (const d of found) {
          if (await jsm.streams.deleteMessage(stream, d.sequence, false).catch(() => false)) purged.push(d.sequence);
        }
      }
      opts.audit({
        action: "purge",
        actor: o.actor,
        filter: describe(filter),
        dryRun: o.dryRun ?? false,
        matched: found.length,
        affected: purged.length,
        sequences: purged.slice(0, 100),
      });
      return { matched: found.length, purged: o.dryRun ? 0 : purged.length, sequences: o.dryRun ? found.map((d) => d.sequence) : purged };
    },
  };
}

function fromJsMsg(m: JsMsg, withPayload: boolean): DeadLetter {
  const size = withPayload ? m.data.length : Number(m.headers?.get("Nats-Msg-Size") || 0);
  return toDeadLetter(m.seq, m.time, m.headers, withPayload ? m.data : undefined, size);
}

function toDeadLetter(seq: number, time: Date, h: MsgHdrs | undefined, data: Uint8Array | undefined, size: number): DeadLetter {
  const get = (name: string) => h?.get(name) || undefined;
  const reason = get(EventHeaders.DlqReason) ?? "";
  const headers: Record<string, string[]> = {};
  for (const [k, values] of h ?? []) {
    const lower = k.toLowerCase();
    if (lower.startsWith(DLQ_HEADER_PREFIX) || lower === "nats-msg-size") continue;
    headers[k] = [...values];
  }
  return {
    sequence: seq,
    deadLetteredAt: time,
    consumer: get(EventHeaders.DlqConsumer) ?? "",
    reason,
    reasonClass: deadLetterReasonClass(reason),
    original: {
      stream: get(EventHeaders.DlqStream) ?? "",
      sequence: Number(get(EventHeaders.DlqSeq) ?? 0),
      subject: get(EventHeaders.DlqSubject) ?? "",
      msgId: get(EventHeaders.DlqMsgId),
      deliveries: Number(get(EventHeaders.DlqDeliveries) ?? 0),
    },
    payloadType: get(EventHeaders.MessageType),
    headers,
    payload: data ?? new Uint8Array(0),
    payloadSize: size,
  };
}

function originalHeaders(d: DeadLetter): MsgHdrs {
  const h = createHeaders();
  for (const [k, values] of Object.entries(d.headers)) for (const v of values) h.append(k, v);
  return h;
}

function matches(d: DeadLetter, f: DeadLetterFilter): boolean {
  if (f.consumer && d.consumer !== f.consumer) return false;
  if (f.reason && d.reasonClass !== f.reason) return false;
  if (f.subject && !subjectMatches(f.subject, d.original.subject)) return false;
  if (f.since && d.deadLetteredAt < f.since) return false;
  if (f.until && d.deadLetteredAt >= f.until) return false;
  if (f.afterSequence !== undefined && d.sequence <= f.afterSequence) return false;
  return true;
}

/** NATS subject matching: `*` matches one token, a final `>` one or more. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    const t = p[i];
    if (t === ">") return i === p.length - 1 && s.length > i;
    if (i >= s.length) return false;
    if (t !== "*" && t !== s[i]) return false;
  }
  return p.length === s.length;
}

function describe(f: DeadLetterFilter): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (f.consumer) out.consumer = f.consumer;
  if (f.reason) out.reason = f.reason;
  if (f.subject) out.subject = f.subject;
  if (f.since) out.since = f.since.toISOString();
  if (f.until) out.until = f.until.toISOString();
  if (f.sequences) out.sequences = f.sequences.length > 20 ? `${f.sequences.length} sequences` : [...f.sequences];
  if (f.limit !== undefined) out.limit = f.limit;
  if (f.afterSequence !== undefined) out.afterSequence = f.afterSequence;
  return out;
}
