import pg from "pg";

/** Default of {@link PgTimeouts.connectTimeoutMs}. */
export const DEFAULT_PG_CONNECT_TIMEOUT_MS = 10_000;

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
  const pool = new pg.Pool({
    ...(o.connectionString !== undefined ? { connectionString: o.connectionString } : {}),
    max: o.max ?? 10,
    ...(o.idleTimeoutMs !== undefined ? { idleTimeoutMillis: o.idleTimeoutMs } : {}),
    connectionTimeoutMillis: o.connectTimeoutMs ?? DEFAULT_PG_CONNECT_TIMEOUT_MS,
    ...(o.statementTimeoutMs !== undefined ? { statement_timeout: o.statementTimeoutMs } : {}),
    ...(o.applicationName ? { application_name: o.applicationName } : {}),
  });
  pool.on("error", o.onIdleError ?? (() => {}));
  // Reported by the failing query; while idle the pool's own listener reports it.
  pool.on("connect", (client) => client.on("error", () => {}));
  return pool;
}
