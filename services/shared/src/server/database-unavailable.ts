import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { databaseUnavailableReason } from "../postgres/unavailable.js";
import { mapStreamErrors } from "../telemetry/observe-stream.js";

/** The narrow logger the interceptor warns on (pino satisfies it). */
export interface UnavailableLog {
  warn(obj: object, msg?: string): void;
}

/** Options of {@link createDatabaseUnavailableInterceptor}. */
export interface DatabaseUnavailableOptions {
  log: UnavailableLog;
  /** At most one warning per this many ms (an outage fails every call); the rest are counted in the next. Default 10 000. */
  warnIntervalMs?: number;
}

/**
 * Answers an RPC whose handler failed because PostgreSQL is unavailable ({@link
 * databaseUnavailableReason}: a statement or checkout timeout, a lost or refused connection, a
 * server shutting down) with `Unavailable` and the reason, instead of `Internal`: the caller may
 * retry, and the failure is an outage of a dependency rather than a bug. When the call's own
 * deadline has passed meanwhile, it answers `DeadlineExceeded`. Errors the handler already mapped
 * (`ConnectError`) and any other error pass unchanged; streams are mapped when they fail. Logs a
 * warning with the cause at most once per `warnIntervalMs`. Runs inside the error log interceptor,
 * which then does not report these calls as internal errors.
 */
export function createDatabaseUnavailableInterceptor(o: DatabaseUnavailableOptions): Interceptor {
  const warnIntervalMs = o.warnIntervalMs ?? 10_000;
  let lastWarnAt = -Infinity;
  let suppressed = 0;
  const map = (err: unknown, rpc: string, signal: AbortSignal): unknown => {
    if (err instanceof ConnectError) return err;
    const reason = databaseUnavailableReason(err);
    if (reason === undefined) return err;
    const now = performance.now();
    if (now - lastWarnAt >= warnIntervalMs) {
      o.log.warn({ rpc, reason, err, suppressed }, "RPC answered UNAVAILABLE: the database is unavailable");
      lastWarnAt = now;
      suppressed = 0;
    } else suppressed++;
    const deadline = signal.aborted && signal.reason instanceof ConnectError && signal.reason.code === Code.DeadlineExceeded;
    return deadline
      ? new ConnectError(`the deadline passed while waiting for the database: ${reason}`, Code.DeadlineExceeded, undefined, undefined, err)
      : new ConnectError(`database unavailable: ${reason}; retry later`, Code.Unavailable, undefined, undefined, err);
  };
  return (next) => async (req) => {
    const rpc = `/${req.service.typeName}/${req.method.name}`;
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      throw map(err, rpc, req.signal);
    }
    if (!res.stream) return res;
    return { ...res, message: mapStreamErrors(res.message, (err) => map(err, rpc, req.signal)) };
  };
}
