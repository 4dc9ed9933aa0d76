import { int, optional } from "../config/env-config.js";
import { DEFAULT_PG_CONNECT_TIMEOUT_MS, DEFAULT_PG_QUERY_TIMEOUT_MARGIN_MS, type PgTimeouts } from "../postgres/pool.js";

/** Default of `PG_STATEMENT_TIMEOUT_MS`. */
export const DEFAULT_PG_STATEMENT_TIMEOUT_MS = 15_000;

/** Default of `PG_IDLE_TIMEOUT_MS`. */
export const DEFAULT_PG_IDLE_TIMEOUT_MS = 60_000;

/**
 * The environment variables of every service with a PostgreSQL pool (routing, tracking,
 * notification): how long a checkout, a statement and the answer to a query may take, and how long an idle connection is kept. Spread
 * into the service's `defineConfig` spec next to its `DATABASE_URL`, add {@link checkPostgresConfig} to its checks, and hand the
 * parsed values to its pool with {@link pgTimeouts}.
 */
export function postgresConfigSpec() {
  return {
    PG_CONNECT_TIMEOUT_MS: int({
      description:
        "time to get a PostgreSQL connection (open one, or wait for a free one); then the RPC answers UNAVAILABLE and a consumer retries its batch later",
      min: 100,
      max: 300_000,
      default: DEFAULT_PG_CONNECT_TIMEOUT_MS,
    }),
    PG_STATEMENT_TIMEOUT_MS: int({
      description:
        "PostgreSQL statement_timeout of the service's connections: a statement running or waiting for a lock longer is cancelled (UNAVAILABLE, consumers retry); migrations and partition maintenance run without it",
      min: 100,
      max: 3_600_000,
      default: DEFAULT_PG_STATEMENT_TIMEOUT_MS,
    }),
    PG_QUERY_TIMEOUT_MS: optional(
      int({
        description:
          "time the service waits for PostgreSQL's answer to one query, on its side (0: no bound); a server that no longer answers (host gone, packets dropped) never sends the statement timeout's cancellation. Then the connection is closed, the RPC answers UNAVAILABLE and a consumer retries its batch; migrations and partition maintenance run without it. Unset: PG_STATEMENT_TIMEOUT_MS + 5000",
        min: 0,
        max: 3_900_000,
      }),
    ),
    PG_IDLE_TIMEOUT_MS: int({
      description:
        "how long an idle pooled PostgreSQL connection stays open (0: until shutdown); a new one costs a new backend, whose first queries load its catalog caches and touch the shared buffers for the first time (tens of ms on a large store's searches after a quiet spell)",
      min: 0,
      max: 86_400_000,
      default: DEFAULT_PG_IDLE_TIMEOUT_MS,
    }),
  };
}

type Spec = ReturnType<typeof postgresConfigSpec>;
/** The parsed variables of {@link postgresConfigSpec}. */
export type PostgresConfig = { readonly [K in keyof Spec]: Spec[K] extends { parse(raw: string): infer T } ? T : never };

/**
 * Cross-variable rules of {@link postgresConfigSpec}: a query timeout must leave the server time to
 * cancel a statement itself, or statements the server would finish are cut short on the client and
 * cost their connection.
 */
export function checkPostgresConfig(c: PostgresConfig): string[] {
  const q = c.PG_QUERY_TIMEOUT_MS;
  return q !== undefined && q !== 0 && q <= c.PG_STATEMENT_TIMEOUT_MS
    ? [`PG_QUERY_TIMEOUT_MS=${q} must exceed PG_STATEMENT_TIMEOUT_MS=${c.PG_STATEMENT_TIMEOUT_MS} (or be 0: no bound)`]
    : [];
}

/** The pool timeouts (`createPgPool`) a service's config asks for. */
export function pgTimeouts(c: PostgresConfig): Required<PgTimeouts> {
  return {
    connectTimeoutMs: c.PG_CONNECT_TIMEOUT_MS,
    statementTimeoutMs: c.PG_STATEMENT_TIMEOUT_MS,
    queryTimeoutMs: c.PG_QUERY_TIMEOUT_MS ?? c.PG_STATEMENT_TIMEOUT_MS + DEFAULT_PG_QUERY_TIMEOUT_MARGIN_MS,
    idleTimeoutMs: c.PG_IDLE_TIMEOUT_MS,
  };
}
