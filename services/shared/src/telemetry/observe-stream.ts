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
 */
export function observeStream<T>(source: AsyncIterable<T>, opts: ObserveStreamOptions): AsyncIterable<T> {
  const { signal } = opts;
  let ended = false;
  const onAbort = () => end(abortError(signal?.reason));
  function end(error: unknown): void {
    if (ended) return;
    ended = true;
    signal?.removeEventListener("abort", onAbort);
    opts.onEnd(error);
  }
  const run = <R>(fn: () => R): R => (opts.context !== undefined ? context.with(opts.context, fn) : fn());

  if (signal?.aborted) end(abortError(signal.reason));
  else signal?.addEventListener("abort", onAbort, { once: true });

  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const it = run(() => source[Symbol.asyncIterator]());
      return {
        async next() {
          try {
            const result = await run(() => it.next());
            if (result.done === true) end(undefined);
            return result;
          } catch (err) {
            end(err);
            throw err;
          }
        },
        async return(value?: unknown) {
          end(new ConnectError("the stream was abandoned before its end", Code.Canceled));
          if (it.return === undefined) return { done: true, value };
          return run(() => it.return!(value));
        },
        async throw(err?: unknown) {
          end(err);
          if (it.throw === undefined) throw err;
          return run(() => it.throw!(err));
        },
      };
    },
  };
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
