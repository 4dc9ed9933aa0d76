import { createHash } from "node:crypto";
import type pg from "pg";

const names = new Map<string, string>();

/**
 * A named (server-side prepared) statement, `client.query(named(text), values)`: PostgreSQL parses and plans it once per connection
 * instead of at every call. node-postgres sends parameterized queries as unnamed statements, which
 * the server plans afresh each time; for the hot statements of the event pipeline (multi-row CTEs
 * over `jsonb_to_recordset`, the delivery claim) planning cost more than execution (measured with
 * pg_stat_statements in the end-to-end perf run). The name is derived from the text, so the same
 * text always maps to the same name and two texts never share one on a connection.
 *
 * Use it only for statements whose text is fixed (a bounded set per process): every distinct text
 * stays prepared on each pooled connection. Statements whose best plan depends on the values
 * (searches over skewed columns) are better left unnamed. Behind a pooler, it needs one that keeps
 * protocol-level prepared statements (PgBouncer 1.21+ with `max_prepared_statements`, or session
 * pooling).
 */
export function named(text: string): pg.QueryConfig {
  let name = names.get(text);
  if (name === undefined) {
    name = `p_${createHash("sha1").update(text).digest("base64url").slice(0, 20)}`;
    names.set(text, name);
  }
  return { name, text };
}
