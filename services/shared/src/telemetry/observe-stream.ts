import { Code, ConnectError } from "@connectrpc/connect";
import { context, type Context } from "@opentelemetry/api";

/** Options of {@link observeStream}. */
export interface ObserveStreamOptions {
  /**
   * Made active around every pull from the source, so code producing the messages (a streaming
   * handler's body runs as the stream is read) sees it as the active context. Default: none.
   */
  context?: Context;
  /**
   * The call's signal. If it aborts before the stream ends (the peer went away, the deadline
   * passed), the stream counts as ended then, with the abort reason (a `ConnectError`) or
   * `Canceled`.
   */
  signal?: AbortSignal;
  /**
   * Called exactly once: with `undefined` after the last message, with the error when the source
   * fails, with a `Canceled` ConnectError when the reader stops early.
   */
  onEnd(error: unknown): void;
}

/**
 * Wraps a response stream so its end (not the moment the handler returned the iterable) can be
 * observed: the span of a streaming RPC ends, and its duration is measured, when the last message
 * was produced, the stream failed or it was abandoned.
 *
 * The result is read once (one iterator). Observing a stream this module returned, before it is
 * read, adds to that stream instead of wrapping it again (see {@link ObservedStream}).
 */
export function observeStream<T>(source: AsyncIterable<T>, opts: ObserveStreamOptions): AsyncIterable<T> {
  const stream = ObservedStream.over(source, opts.signal, opts.context);
  stream.observe(opts);
  return stream;
}

/**
 * Wraps a response stream so that its failure is answered with `map(error)`: what the reader of
 * the result sees and what observers added later (outside) see. Observers added to `source`
 * before (inside) see the source's own error. The result is read once, like
 * {@link observeStream}'s, and joins a stream this module returned in the same way.
 */
export function mapStreamErrors<T>(source: AsyncIterable<T>, map: (error: unknown) => unknown): AsyncIterable<T> {
  const stream = ObservedStream.over(source, undefined, undefined);
  stream.stages.push({ map });
  return stream;
}

interface Observer {
  readonly onEnd: (error: unknown) => void;
  /** Ends when the stream's signal aborts. */
  readonly aborts: boolean;
  ended: boolean;
}

/** What a stream does when it ends: observers see the error so far, mappers replace it. */
type Stage = Observer | { readonly map: (error: unknown) => unknown };

/**
 * One wrapper doing the work of every observer and error mapper of a stream, innermost first:
 * the interceptors around a streaming call each observe its response stream, and one wrapper
 * per interceptor cost a promise chain per message and layer, a context switch per message with
 * a context, and an abort listener per call and layer. Here each message costs one `then` on the
 * source's promise and at most one context switch, and the observers of a call share one abort
 * listener and one `Canceled` error.
 *
 * Equivalent to nesting one wrapper per stage: on the last message every observer sees
 * `undefined`; on a failure the stages run in order (observers see the error as mapped by the
 * stages inside them) and the reader gets the outermost mapping; on an abort of the signal,
 * observers that take it end with the reason at once; when the reader stops early every observer
 * still open sees `Canceled`. The context (only one, see {@link over}) is active around every
 * pull, and the observers run inside it when the stream ends on a pull.
 */
class ObservedStream<T> implements AsyncIterable<T>, AsyncIterator<T> {
  readonly stages: Stage[] = [];
  private it: AsyncIterator<T> | undefined;
  private open = 0;
  private listening = false;
  private readonly onResult = (result: IteratorResult<T>): IteratorResult<T> => {
    if (result.done === true) this.end(undefined);
    return result;
  };
  private readonly onError = (error: unknown): never => {
    throw this.fail(error);
  };
  private readonly onAbort = () => {
    this.listening = false;
    this.endAborted(this.signal!.reason);
  };

  private constructor(
    private readonly source: AsyncIterable<T>,
    private signal: AbortSignal | undefined,
    private ctx: Context | undefined,
  ) {}

  /**
   * `source` itself when it is a stream of this module not read yet, whose signal and context
   * agree with these (either side may have none); else a new stream over `source`.
   */
  static over<T>(source: AsyncIterable<T>, signal: AbortSignal | undefined, ctx: Context | undefined): ObservedStream<T> {
    if (
      source instanceof ObservedStream &&
      source.it === undefined &&
      (signal === undefined || source.signal === undefined || source.signal === signal) &&
      (ctx === undefined || source.ctx === undefined || source.ctx === ctx)
    ) {
      const joined = source as ObservedStream<T>;
      joined.signal ??= signal;
      joined.ctx ??= ctx;
      return joined;
    }
    return new ObservedStream(source, signal, ctx);
  }

  observe(opts: ObserveStreamOptions): void {
    const aborts = opts.signal !== undefined;
    const observer: Observer = { onEnd: opts.onEnd, aborts, ended: false };
    this.stages.push(observer);
    if (aborts && this.signal!.aborted) {
      observer.ended = true;
      opts.onEnd(abortError(this.signal!.reason));
      return;
    }
    this.open++;
    if (aborts && !this.listening) {
      this.listening = true;
      this.signal!.addEventListener("abort", this.onAbort, { once: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this;
  }

  next(): Promise<IteratorResult<T>> {
    return this.ctx === undefined ? pull(this) : context.with(this.ctx, pull<T>, undefined, this);
  }

  /** The source's iterator, made (inside the context) on first use. */
  iterator(): AsyncIterator<T> {
    return (this.it ??= this.source[Symbol.asyncIterator]());
  }

  /** Settles a pull: one reaction on the source's promise. */
  settle(result: Promise<IteratorResult<T>>): Promise<IteratorResult<T>> {
    return result.then(this.onResult, this.onError);
  }

  async return(value?: unknown): Promise<IteratorResult<T>> {
    if (this.open > 0) this.endAll(new ConnectError("the stream was abandoned before its end", Code.Canceled));
    const it = this.it;
    if (it?.return === undefined) return { done: true, value: value as T };
    try {
      return await (this.ctx === undefined ? it.return(value) : context.with(this.ctx, () => it.return!(value)));
    } catch (err) {
      throw this.mapped(err);
    }
  }

  async throw(error?: unknown): Promise<IteratorResult<T>> {
    if (this.open > 0) this.endAll(error);
    const it = this.it;
    if (it?.throw === undefined) throw this.mapped(error);
    try {
      return await (this.ctx === undefined ? it.throw(error) : context.with(this.ctx, () => it.throw!(error)));
    } catch (err) {
      throw this.mapped(err);
    }
  }

  /** Runs the stages on the source's error: observers see it, mappers replace it. The result is what the reader gets. */
  fail(error: unknown): unknown {
    let err = error;
    for (const stage of this.stages) {
      if ("map" in stage) err = stage.map(err);
      else if (!stage.ended) this.endOne(stage, err);
    }
    return err;
  }

  /** The error as the mappers answer it, without ending observers. */
  private mapped(error: unknown): unknown {
    let err = error;
    for (const stage of this.stages) if ("map" in stage) err = stage.map(err);
    return err;
  }

  private end(error: unknown): void {
    if (this.open > 0) this.endAll(error);
  }

  private endAll(error: unknown): void {
    for (const stage of this.stages) if (!("map" in stage) && !stage.ended) this.endOne(stage, error);
  }

  private endAborted(reason: unknown): void {
    let err: ConnectError | undefined;
    for (const stage of this.stages) {
      if (!("map" in stage) && stage.aborts && !stage.ended) this.endOne(stage, (err ??= abortError(reason)));
    }
  }

  private endOne(observer: Observer, error: unknown): void {
    observer.ended = true;
    if (--this.open === 0 && this.listening) {
      this.listening = false;
      this.signal!.removeEventListener("abort", this.onAbort);
    }
    observer.onEnd(error);
  }
}

/** One pull from a stream's source (a function of its own, so a context switch needs no closure). */
function pull<T>(stream: ObservedStream<T>): Promise<IteratorResult<T>> {
  let result: Promise<IteratorResult<T>>;
  try {
    result = Promise.resolve(stream.iterator().next());
  } catch (err) {
    return Promise.reject(stream.fail(err));
  }
  return stream.settle(result);
}

function abortError(reason: unknown): ConnectError {
  if (reason instanceof ConnectError) return reason;
  return new ConnectError("the call was canceled", Code.Canceled, undefined, undefined, reason);
}

/**
 * The Connect code of an RPC failure: the `ConnectError`'s code, else `fallback` (servers answer
 * any other error with `Internal`; clients see `Unknown`).
 */
export function codeOf(err: unknown, fallback: Code): Code {
  return err instanceof ConnectError ? err.code : fallback;
}

/** A code's lower snake-case name as Connect writes it (`not_found`); `ok` for 0 (success). */
export function codeName(code: Code | 0): string {
  if (code === 0) return "ok";
  const name: unknown = Code[code];
  if (typeof name !== "string") return String(code);
  return name[0]!.toLowerCase() + name.slice(1).replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
