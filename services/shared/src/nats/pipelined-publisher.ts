import { JetStreamApiError, type ApiError } from "@nats-io/jetstream";
import {
  createInbox,
  headers as createHeaders,
  NoRespondersError,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";
import { context, propagation } from "@opentelemetry/api";
import { EventHeaders, PROTOBUF_CONTENT_TYPE } from "./event-headers.js";
import type { EncodedEvent, PublishEventResult } from "./publisher.js";

/** Options of {@link createPipelinedPublisher}. */
export interface PipelinedPublisherOptions {
  /** An open connection; the publisher subscribes to one reply subject on it. */
  nc: NatsConnection;
  /**
   * Prefix of the reply subject (the connection's `inboxPrefix`, where a restricted user may
   * subscribe). Default `_INBOX`.
   */
  inboxPrefix?: string;
  /**
   * Most publishes awaiting a PubAck at once. A publish beyond it waits for a slot (its time in
   * that queue counts against its timeout), so a slow or stalled stream bounds the memory and the
   * outbound buffer a burst can take. Default 4 096.
   */
  maxInFlight?: number;
  /** PubAck timeout when a call sets none. Default 5 000 ms. */
  defaultTimeoutMs?: number;
}

/** One event as {@link PipelinedPublisher.publishAll} sends it (no extra headers, no per-event timeout). */
export type PipelinedEvent = Omit<EncodedEvent, "timeoutMs" | "headers">;

/** A JetStream publisher that keeps many publishes in flight over one reply subscription. */
export interface PipelinedPublisher {
  /**
   * Sends every event (in order, waiting for an in-flight slot when the window is full) and
   * resolves, once each has its outcome, with one entry per event in input order: its PubAck, or
   * the error that ended it — {@link PubAckTimeoutError} when no PubAck came within `timeoutMs`
   * of this call, `NoRespondersError` when no stream listens on the subject (JetStream down or
   * restarting), `JetStreamApiError` when the stream refused it, or the connection's error. An
   * error never means "not stored": a PubAck may have been lost, so a caller that retries must
   * reuse the `msgId` (the stream then answers with `duplicate`). Never rejects.
   */
  publishAll(events: readonly PipelinedEvent[], opts?: { timeoutMs?: number }): Promise<Array<PublishEventResult | Error>>;
  /** Publishes awaiting a PubAck. */
  readonly inFlight: number;
  /** Fails every publish still waiting, and unsubscribes. Idempotent. */
  close(): void;
}

/** No PubAck arrived within the publish's timeout. Whether the stream stored the message is unknown. */
export class PubAckTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`no PubAck within ${timeoutMs} ms`);
    this.name = "PubAckTimeoutError";
  }
}

/** The publisher was closed (or its connection ended) before the PubAck arrived. */
export class PublisherClosedError extends Error {
  constructor(reason: string) {
    super(`publisher closed: ${reason}`);
    this.name = "PublisherClosedError";
  }
}

/** A publishAll call: its results and how many are still open. */
interface Call {
  readonly results: Array<PublishEventResult | Error | undefined>;
  open: number;
  readonly done: () => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

interface Waiting {
  readonly call: Call;
  readonly index: number;
  /** The published subject, for error messages. */
  readonly subject: string;
}

const decoder = new TextDecoder();
const INVALID_VALUE = /[\r\n]/;

/**
 * The trace context of the active span as headers (`traceparent`...), checked by `MsgHdrs.set`:
 * every message of a call carries the same one, so the propagator runs once per call.
 */
function traceHeaders(): Record<string, string[]> {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  const h = createHeaders();
  for (const k in carrier) h.set(k, carrier[k] as string);
  const out: Record<string, string[]> = {};
  for (const k of h.keys()) out[k] = h.values(k);
  return out;
}

/**
 * The text of an event's header block up to its `Nats-Msg-Id` value, as `MsgHdrs.encode` writes
 * `{ ...trace, Content-Type, Logistics-Type, Nats-Msg-Id }` (the version line, then one
 * `\r\nName: value` per value, in insertion order): a message's block is this, its id and
 * `\r\n\r\n`. Built once per call and type, not as a headers object per message.
 */
export function headerTextBeforeMsgId(trace: Readonly<Record<string, readonly string[]>>, typeName: string): string {
  let text = "NATS/1.0";
  for (const k in trace) for (const v of trace[k] as readonly string[]) text += `\r\n${k}: ${v}`;
  return `${text}\r\n${EventHeaders.ContentType}: ${PROTOBUF_CONTENT_TYPE}\r\n${EventHeaders.MessageType}: ${typeName}\r\n${EventHeaders.MsgId}: `;
}

const encoder = new TextEncoder();

/**
 * Headers whose wire form was written beforehand, as `nc.publish` takes them: it only calls
 * `encode()` on the headers of a message it sends (nats.js 3), so a message's headers are this
 * one-method object rather than a `MsgHdrs` (a Map and its per-key arrays) per message. Nothing
 * else sees them: they go straight to the connection's outbound buffer.
 */
function encodedHeaders(bytes: Uint8Array): MsgHdrs {
  return { encode: () => bytes } as unknown as MsgHdrs;
}

/**
 * Writes the header blocks of one call's messages side by side into shared chunks: per message a
 * copy of the encoded prefix ({@link headerTextBeforeMsgId}, encoded once per type), its id and
 * the blank line, without a text encoder call and a buffer per message.
 */
export class HeaderBlocks {
  private chunk: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private typeName: string | undefined;
  private prefix: Uint8Array = new Uint8Array(0);

  /** `messages`: how many blocks the call will ask for (sizes the chunks: a call of one message takes no 16 KiB). */
  constructor(
    private readonly trace: Readonly<Record<string, readonly string[]>>,
    private remaining = 1,
  ) {}

  /** The header block of a message of `typeName` with id `msgId` (no CR or LF in it). */
  block(typeName: string, msgId: string): Uint8Array {
    if (typeName !== this.typeName) {
      this.typeName = typeName;
      this.prefix = encoder.encode(headerTextBeforeMsgId(this.trace, typeName));
    }
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    const most = this.prefix.length + msgId.length * 3 + 4;
    if (this.pos + most > this.chunk.length) {
      // Blocks already handed out keep the old chunk alive until the connection has copied them.
      this.chunk = new Uint8Array(Math.max(most, Math.min(16_384, most * Math.max(1, this.remaining))));
      this.pos = 0;
    }
    this.remaining--;
    const buf = this.chunk;
    const start = this.pos;
    buf.set(this.prefix, start);
    let p = start + this.prefix.length;
    for (let i = 0; i < msgId.length; i++) {
      const c = msgId.charCodeAt(i);
      if (c > 0x7f) {
        p = start + this.prefix.length + encoder.encodeInto(msgId, buf.subarray(start + this.prefix.length)).written;
        break;
      }
      buf[p++] = c;
    }
    buf[p++] = 13;
    buf[p++] = 10;
    buf[p++] = 13;
    buf[p++] = 10;
    this.pos = p;
    return buf.subarray(start, p);
  }
}

/**
 * Creates a pipelined JetStream publisher: each message is a plain NATS publish whose reply
 * subject is `<inbox>.<n>`, `n` a per-publisher counter, and one wildcard subscription
 * `<inbox>.*` receives every PubAck, matched to its publish by `n` (so PubAcks may arrive in any
 * order). Compared with `js.publish` per message (nats.js 3: a request object, a timer, and an
 * Error allocated with a captured stack when each request settles), a message costs one headers
 * object, one map entry and one `JSON.parse`; a call costs one timer.
 *
 * Headers are those of {@link sendEvent}: `Nats-Msg-Id`, content type, type name and the active
 * trace context (injected once per call: every message of a call carries the same one). The
 * per-message headers are written as bytes from a prefix built once per call
 * ({@link headerTextBeforeMsgId}, {@link HeaderBlocks}), without `MsgHdrs.set`'s per-header checks: the names are
 * ours, the trace headers were checked once, and a `msgId` with CR or LF fails that publish.
 *
 * On reconnect the client re-subscribes and sends what it buffered; a PubAck lost with the old
 * connection makes its publish time out, and the stream recognises the retry by `Nats-Msg-Id`.
 * When the connection closes, every waiting publish fails at once.
 */
export function createPipelinedPublisher(opts: PipelinedPublisherOptions): PipelinedPublisher {
  const { nc } = opts;
  const maxInFlight = Math.max(1, opts.maxInFlight ?? 4096);
  const defaultTimeoutMs = opts.defaultTimeoutMs ?? 5000;
  const prefix = opts.inboxPrefix ?? "_INBOX";
  const pending = new Map<number, Waiting>();
  /** Senders waiting for an in-flight slot. */
  const slotWaiters: Array<() => void> = [];
  let next = 0;
  let closed: PublisherClosedError | undefined;
  let base = "";
  let sub: Subscription | undefined;

  const settle = (token: number, result: PublishEventResult | Error) => {
    const w = pending.get(token);
    if (!w) return; // late (after its timeout) or unknown: nothing waits for it
    pending.delete(token);
    finish(w.call, w.index, result);
    slotWaiters.shift()?.();
  };

  const finish = (call: Call, index: number, result: PublishEventResult | Error) => {
    if (call.results[index] !== undefined) return;
    call.results[index] = result;
    if (--call.open === 0) {
      if (call.timer) clearTimeout(call.timer);
      call.done();
    }
  };

  const onReply = (err: Error | null, msg: Msg) => {
    if (err) {
      failAll(err);
      return;
    }
    const token = Number(msg.subject.slice(base.length));
    const w = pending.get(token);
    if (w) settle(token, pubAck(msg, w.subject));
  };

  const failAll = (err: Error) => {
    for (const token of [...pending.keys()]) settle(token, err);
  };

  const subscribe = () => {
    base = `${createInbox(prefix)}.`;
    const s = nc.subscribe(`${base}*`, { callback: onReply });
    sub = s;
    void s.closed.then(() => {
      // Closed under us (connection closed, permissions): nothing more will arrive on it.
      if (sub === s) {
        sub = undefined;
        failAll(new PublisherClosedError("the reply subscription closed"));
      }
    });
  };

  void nc.closed().then((err) => {
    closed ??= new PublisherClosedError(err ? `connection closed: ${err.message}` : "connection closed");
    failAll(closed);
    for (const wake of slotWaiters.splice(0)) wake();
  });

  const waitForSlot = () => new Promise<void>((resolve) => slotWaiters.push(resolve));

  return {
    get inFlight() {
      return pending.size;
    },

    async publishAll(events, o = {}) {
      if (events.length === 0) return [];
      const timeoutMs = o.timeoutMs ?? defaultTimeoutMs;
      let done!: () => void;
      const finished = new Promise<void>((resolve) => (done = resolve));
      const call: Call = { results: new Array(events.length), open: events.length, done, timer: undefined };
      call.timer = setTimeout(() => {
        call.timer = undefined;
        const err = new PubAckTimeoutError(timeoutMs);
        // A walk over everything in flight, but only when a call times out (not a set per call).
        for (const [token, w] of pending) if (w.call === call) settle(token, err);
        for (let i = 0; i < events.length; i++) finish(call, i, err);
      }, timeoutMs);
      const trace = traceHeaders();
      const blocks = new HeaderBlocks(trace, events.length);
      for (let i = 0; i < events.length; i++) {
        while (pending.size >= maxInFlight && !closed && call.timer) await waitForSlot();
        if (closed) {
          finish(call, i, closed);
          continue;
        }
        if (!call.timer) {
          // Timed out while waiting for a slot (the timer failed the rest): pass the slot on.
          slotWaiters.shift()?.();
          break;
        }
        const e = events[i] as PipelinedEvent;
        const token = next;
        try {
          if (!sub) subscribe();
          if (INVALID_VALUE.test(e.msgId)) throw new TypeError(`msgId ${JSON.stringify(e.msgId)} contains CR or LF`);
          nc.publish(e.subject, e.payload, { reply: `${base}${token}`, headers: encodedHeaders(blocks.block(e.typeName, e.msgId.trim())) });
        } catch (err) {
          finish(call, i, err instanceof Error ? err : new Error(String(err)));
          continue;
        }
        next++;
        pending.set(token, { call, index: i, subject: e.subject });
      }
      await finished;
      return call.results as Array<PublishEventResult | Error>;
    },

    close() {
      closed ??= new PublisherClosedError("closed by its owner");
      failAll(closed);
      for (const wake of slotWaiters.splice(0)) wake();
      const s = sub;
      sub = undefined;
      if (s && !s.isClosed()) s.unsubscribe();
    },
  };
}

/** The outcome a PubAck message carries. */
function pubAck(msg: Msg, subject: string): PublishEventResult | Error {
  if (msg.data.length === 0 && msg.headers?.code === 503) return new NoRespondersError(subject);
  let v: { stream?: string; seq?: number; duplicate?: boolean; error?: ApiError };
  try {
    v = JSON.parse(decoder.decode(msg.data)) as typeof v;
  } catch {
    return new Error(`invalid PubAck: ${decoder.decode(msg.data).slice(0, 200)}`);
  }
  if (v.error) return new JetStreamApiError(v.error);
  if (!v.stream || typeof v.seq !== "number") return new Error("invalid PubAck: no stream or sequence");
  return { seq: v.seq, duplicate: v.duplicate === true, stream: v.stream };
}
