import type pg from "pg";

/**
 * Runs `fn` in one transaction on a pooled connection: COMMIT when it resolves, ROLLBACK when it
 * throws (the error is rethrown). With `lockName`, a transaction-scoped advisory lock
 * (`pg_advisory_xact_lock(hashtext(lockName))`) is taken first, so maintenance of the same tables
 * by several replicas runs one at a time.
 */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>, o: { lockName?: string } = {}): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    if (o.lockName !== undefined) await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [o.lockName]);
    const out = await fn(client);
    await client.query("COMMIT");
    return out;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
