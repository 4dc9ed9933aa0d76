import pg from "pg";

/** Options for {@link createPgPool}. */
export interface PgPoolOptions {
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
 * dropped on release (it is no longer queryable), and the pool reconnects.
 */
export function createPgPool(o: PgPoolOptions): pg.Pool {
  const pool = new pg.Pool({
    ...(o.connectionString !== undefined ? { connectionString: o.connectionString } : {}),
    max: o.max ?? 10,
    ...(o.applicationName ? { application_name: o.applicationName } : {}),
  });
  pool.on("error", o.onIdleError ?? (() => {}));
  // Reported by the failing query; while idle the pool's own listener reports it.
  pool.on("connect", (client) => client.on("error", () => {}));
  return pool;
}
