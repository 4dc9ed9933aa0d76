import type pg from "pg";
import { suspendQueryTimeout } from "./pool.js";

/** Options of {@link inTransaction}. */
export interface TransactionOptions {
  /**
   * Takes the transaction-scoped advisory lock `pg_advisory_xact_lock(hashtext(lockName))` first,
   * so maintenance of the same tables by several replicas runs one at a time.
   */
  lockName?: string;
  /**
   * Runs without the pool's statement timeout (`SET LOCAL statement_timeout = 0`, before the
   * advisory lock, whose wait it would also cut short) and without its query timeout (the
   * client-side bound that backs the statement timeout up): schema changes and maintenance that
   * may legitimately take long, e.g. migrations, or partitions moving rows. Default false.
   */
  untimed?: boolean;
}

/**
 * Runs `fn` in one transaction on a pooled connection: COMMIT when it resolves, ROLLBACK when it
 * throws (the error is rethrown). See {@link TransactionOptions} for the advisory lock and the
 * statement timeout.
 */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>, o: TransactionOptions = {}): Promise<T> {
  const client = await pool.connect();
  let restoreQueryTimeout = (): void => {};
  try {
    await client.query("BEGIN");
    if (o.untimed) {
      await client.query("SET LOCAL statement_timeout = 0");
      restoreQueryTimeout = suspendQueryTimeout(client);
    }
    if (o.lockName !== undefined) await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [o.lockName]);
    const out = await fn(client);
    await client.query("COMMIT");
    return out;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    restoreQueryTimeout();
    // A client whose query timed out on this side was closed; the pool drops it on release.
    client.release();
  }
}
