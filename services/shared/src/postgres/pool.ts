import pg from "pg";

/** Default of {@link PgTimeouts.connectTimeoutMs}. */
export const DEFAULT_PG_CONNECT_TIMEOUT_MS = 10_000;

/** What {@link PgTimeouts.queryTimeoutMs} adds to the statement timeout by default. */
export const DEFAULT_PG_QUERY_TIMEOUT_MARGIN_MS = 5_000;

/**
 * Idle time of a pooled connection's socket before the kernel's first TCP keepalive probe. An idle
 * connection whose server vanished without a FIN or RST (host gone, packets dropped) fails once
 * the probes go unanswered (Linux: this, then 9 probes 75 s apart by default) and the pool drops
 * it, instead of keeping it until the idle timeout or forever (`idleTimeoutMs` 0). Keepalive does
 * not bound a query: while a request is unacknowledged the kernel retransmits instead of probing
 * (about 15 min); {@link PgTimeouts.queryTimeoutMs} does.
 */
export const PG_KEEPALIVE_INITIAL_DELAY_MS = 10_000;

/** The message of pg's error when a query's answer did not arrive within `query_timeout`. */
export const QUERY_READ_TIMEOUT_MESSAGE = "Query read timeout";

/**
 * How long a pool waits for PostgreSQL. A server that accepts TCP and never answers (a network
 * black hole, a server stuck in recovery) or a lock held elsewhere would otherwise keep a
 * checkout or a statement waiting forever, and with it the RPC or the consumer batch behind it.
 */
export interface PgTimeouts {
  /**
   * Time a checkout may take: opening a connection (TCP, TLS, startup), or waiting for one while
   * all are in use. Then it fails (`databaseUnavailableReason` recognises the error). Default
   * {@link DEFAULT_PG_CONNECT_TIMEOUT_MS}.
   */
  connectTimeoutMs?: number;
  /**
   * PostgreSQL `statement_timeout` of every connection (sent as a startup parameter): a statement
   * running or waiting for a lock longer than this is cancelled by the server with SQLSTATE 57014.
   * Work that may legitimately take long opts out per transaction (`migrate`, `inTransaction`
   * with `untimed`). Default: none (the server's setting), so tools that bulk-load or build
   * indexes through a pool keep working; the services always set it (`PG_STATEMENT_TIMEOUT_MS`).
   */
  statementTimeoutMs?: number;
  /**
   * Time the client waits for the answer to one query (pg's `query_timeout`), ms; 0: no bound. The
   * statement timeout is the server's: a server that no longer answers (its host gone, the network
   * path dropping packets without a reset) never sends the cancellation, and the query would wait
   * for TCP to give up on retransmitting, about 15 minutes. Past this the query fails with
   * "Query read timeout" (`databaseUnavailableReason` recognises it) and its connection is closed,
   * never reused: the late answer, or the statement still running in the server, belongs to that
   * connection alone. Default: `statementTimeoutMs` + {@link DEFAULT_PG_QUERY_TIMEOUT_MARGIN_MS}
   * (the server cancels first when it can answer), none without a statement timeout. Untimed
   * transactions (`inTransaction` with `untimed`, so migrations and partition maintenance) run
   * without it, as without the statement timeout.
   */
  queryTimeoutMs?: number;
  /**
   * How long a connection may sit idle in the pool before it is closed, ms; 0 keeps it until the
   * pool ends. Default 10 000 (the driver's); the services set `PG_IDLE_TIMEOUT_MS`. A new
   * connection pays for a new backend: its catalog caches, and its first touch of every
   * shared-buffer page it reads (4 kB pages mapped one at a time without huge pages), tens of ms
   * on a large store's first searches.
   */
  idleTimeoutMs?: number;
}

/** Options for {@link createPgPool}. */
export interface PgPoolOptions extends PgTimeouts {
  /**
   * PostgreSQL connection string (its search_path, if any, decides the default schema). Default:
   * the driver's PG* environment variables.
   */
  connectionString?: string;
  /** Most connections at once. Default 10. */
  max?: number;
  /** Shown in pg_stat_activity, so an operator can tell the services' connections apart. */
  applicationName?: string;
  /**
   * Called when an idle pooled connection fails (server restart, network cut); the pool drops it
   * and the next query opens a new one. Default: ignored.
   */
  onIdleError?: (err: Error) => void;
}

/**
 * A `pg.Pool` with what every service needs to survive a database restart: listeners for errors
 * of idle connections (the pool's `error` event) and of checked-out ones. pg-pool removes its
 * idle listener while a client is checked out, so a connection that dies between two queries of
 * a transaction (`pg_ctl stop -m fast`, a failover) emitted an unhandled 'error' event and
 * crashed the process; a stopped PostgreSQL took down every replica of tracking, routing and
 * notification at once. Now the client's next query fails with its own error, the client is
 * dropped on release (it is no longer queryable), and the pool reconnects. Checkouts and
 * statements are bounded by {@link PgTimeouts}.
 */
export function createPgPool(o: PgPoolOptions): pg.Pool {
  const queryTimeoutMs = o.queryTimeoutMs ?? (o.statementTimeoutMs ? o.statementTimeoutMs + DEFAULT_PG_QUERY_TIMEOUT_MARGIN_MS : 0);
  const pool = new pg.Pool({
    Client: ReadTimeoutClient,
    ...(o.connectionString !== undefined ? { connectionString: o.connectionString } : {}),
    max: o.max ?? 10,
    ...(o.idleTimeoutMs !== undefined ? { idleTimeoutMillis: o.idleTimeoutMs } : {}),
    connectionTimeoutMillis: o.connectTimeoutMs ?? DEFAULT_PG_CONNECT_TIMEOUT_MS,
    ...(o.statementTimeoutMs !== undefined ? { statement_timeout: o.statementTimeoutMs } : {}),
    ...(queryTimeoutMs > 0 ? { query_timeout: queryTimeoutMs } : {}),
    keepAlive: true,
    keepAliveInitialDelayMillis: PG_KEEPALIVE_INITIAL_DELAY_MS,
    ...(o.applicationName ? { application_name: o.applicationName } : {}),
  });
  pool.on("error", o.onIdleError ?? (() => {}));
  // Reported by the failing query; while idle the pool's own listener reports it.
  pool.on("connect", (client) => client.on("error", () => {}));
  return pool;
}

/** Whether `err` is pg's error for a query whose answer did not come within `query_timeout`. */
export function isQueryReadTimeout(err: unknown): boolean {
  return err instanceof Error && err.message === QUERY_READ_TIMEOUT_MESSAGE;
}

/**
 * The pool's clients: a client whose query hit `query_timeout` closes its connection at once.
 *
 * pg (8.23) answers the caller with "Query read timeout" but leaves the connection open and the
 * query in flight as its active query: the next query on it queues behind an answer that may
 * never come, and pg-pool takes a client back from `release()` without an error as reusable.
 * `pool.query` releases with the error (the pool drops the client), but a transaction on a
 * checked-out client rolls back, which waits behind the lost query as long again, and releases
 * without one. Closing here (`end()`: the socket is destroyed, the client no longer queryable)
 * happens before the caller sees the error, so that ROLLBACK fails at once and every `release()`
 * drops the client, whoever checked it out.
 */
class ReadTimeoutClient extends pg.Client {
  // Every overload of pg's query passes through; only its failure is looked at.
  override query(...args: unknown[]): any {
    const last = args.length - 1;
    const callback = args[last];
    if (last > 0 && typeof callback === "function") {
      args[last] = (err: unknown, res: unknown) => {
        this.closeOnReadTimeout(err);
        (callback as (err: unknown, res: unknown) => void)(err, res);
      };
    }
    const out: unknown = (pg.Client.prototype.query as (...a: unknown[]) => unknown).apply(this, args);
    // Registered before the caller's own handlers, so this runs first.
    if (out instanceof Promise) out.catch((err: unknown) => this.closeOnReadTimeout(err));
    return out;
  }

  private closeOnReadTimeout(err: unknown): void {
    if (isQueryReadTimeout(err)) this.end().catch(() => {});
  }
}

/**
 * Lifts the pool's query timeout ({@link PgTimeouts.queryTimeoutMs}) from `client` until the
 * returned function is called (before the client is released): for work that runs without the
 * statement timeout, which the server then never cuts short either.
 */
export function suspendQueryTimeout(client: pg.ClientBase): () => void {
  // pg reads each query's timeout from here when the query names none.
  const params = (client as unknown as { connectionParameters?: { query_timeout?: number | false } }).connectionParameters;
  const saved = params?.query_timeout;
  if (!params || !saved) return () => {};
  params.query_timeout = false;
  return () => {
    params.query_timeout = saved;
  };
}
