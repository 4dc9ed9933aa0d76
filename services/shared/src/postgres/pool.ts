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
 * A `pg.Pool` with the one setting every service needs: a listener for errors of idle
 * connections. Without it, an idle connection's error (a database restart) is an unhandled
 * 'error' event that crashes the process; with it, queries report their own errors and the pool
 * reconnects.
 */
export function createPgPool(o: PgPoolOptions): pg.Pool {
  const pool = new pg.Pool({
    ...(o.connectionString !== undefined ? { connectionString: o.connectionString } : {}),
    max: o.max ?? 10,
    ...(o.applicationName ? { application_name: o.applicationName } : {}),
  });
  pool.on("error", o.onIdleError ?? (() => {}));
  return pool;
}
