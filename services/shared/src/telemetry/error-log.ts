import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { observeStream } from "./observe-stream.js";

/** The narrow logger the interceptor writes to (pino satisfies it). */
export interface ErrorLog {
  error(obj: object, msg?: string): void;
}

/**
 * Logs every RPC that fails with Internal or Unknown (anything a handler threw that is not a
 * ConnectError becomes Internal on the wire, with the cause hidden from the caller) at error
 * level, with the method and the error. Such a failure is a bug or an outage to look at: bad input
 * is answered with InvalidArgument, and an Internal answer without a log line leaves nothing to
 * look at. Streams are watched to their end. A call whose caller went away (its signal aborted:
 * a browser closing WatchShipment, a deadline) ends however the handler unwinds; that is not a
 * failure of the service and is not logged.
 */
export function createErrorLogInterceptor(log: ErrorLog): Interceptor {
  return (next) => async (req) => {
    const rpc = `/${req.service.typeName}/${req.method.name}`;
    const report = (err: unknown) => {
      if (req.signal.aborted) return;
      const code = err instanceof ConnectError ? err.code : Code.Internal;
      if (code !== Code.Internal && code !== Code.Unknown) return;
      const cause = err instanceof ConnectError && err.cause !== undefined ? err.cause : err;
      log.error({ rpc, code: Code[code], err: cause }, "RPC failed with an internal error");
    };
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      report(err);
      throw err;
    }
    if (!res.stream) return res;
    return { ...res, message: observeStream(res.message, { onEnd: (err) => err !== undefined && report(err) }) };
  };
}
