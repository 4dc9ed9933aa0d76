/**
 * SQLSTATEs that describe the server's state, not the statement: the same call may succeed later.
 * 57014 query_canceled (statement_timeout, or an operator's pg_cancel_backend), 55P03
 * lock_not_available (lock_timeout, NOWAIT), 57P01..57P03 admin/crash shutdown and
 * cannot_connect_now (starting up, in recovery), 53300 too_many_connections; class 08 is
 * connection exceptions.
 */
const UNAVAILABLE_SQLSTATES: ReadonlyMap<string, string> = new Map([
  ["57014", "the statement was cancelled"],
  ["55P03", "a lock was not available in time"],
  ["57P01", "the database server is shutting down"],
  ["57P02", "the database server is restarting"],
  ["57P03", "the database server is not accepting connections yet"],
  ["53300", "the database server has no connection free"],
]);

/** What pg and pg-pool throw, without a code, when a connection cannot be had or is lost. */
const DRIVER_MESSAGES: ReadonlyMap<string, string> = new Map([
  ["timeout exceeded when trying to connect", "no database connection within the connect timeout (all in use)"],
  ["Connection terminated due to connection timeout", "the database did not accept a connection within the connect timeout"],
  ["Connection terminated unexpectedly", "the database connection was lost"],
  ["Connection terminated", "the database connection was closed"],
  ["Client has encountered a connection error and is not queryable", "the database connection was lost"],
  // pg's query_timeout (createPgPool's queryTimeoutMs): the server sent no answer, not even the
  // statement timeout's cancellation (its host gone, or the network path dropping packets).
  ["Query read timeout", "the database did not answer within the query timeout"],
]);

/** Socket errors of an unreachable server. */
const NETWORK_CODES: ReadonlySet<string> = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EPIPE", "EAI_AGAIN"]);

/**
 * Why `err` (or an error in its `cause` chain) says PostgreSQL is unavailable right now — a
 * statement or lock wait cut short by the server's timeout, a query the server did not answer
 * within the client's query timeout, a checkout that timed out, a lost or refused connection, a
 * server shutting down or starting — or undefined when it says something else (a bug, bad data,
 * a conflict). Such a failure is transient: an RPC answers `Unavailable`
 * and a consumer retries the message later, never dead-lettering it as poison. The reason never
 * holds the server's address or the statement, so it may be shown to callers.
 */
export function databaseUnavailableReason(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Object && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, severity } = e as { code?: unknown; severity?: unknown };
    if (typeof code === "string" && typeof severity === "string") {
      const timedOut = code === "57014" && e instanceof Error && e.message.includes("statement timeout");
      const reason = timedOut
        ? "the statement did not finish within the statement timeout"
        : (UNAVAILABLE_SQLSTATES.get(code) ?? (code.startsWith("08") ? "the database connection failed" : undefined));
      return reason === undefined ? undefined : `${reason} (SQLSTATE ${code})`;
    }
    if (typeof code === "string" && NETWORK_CODES.has(code)) return `the database connection failed (${code})`;
    const driver = e instanceof Error ? DRIVER_MESSAGES.get(e.message) : undefined;
    if (driver !== undefined) return driver;
  }
  return undefined;
}
