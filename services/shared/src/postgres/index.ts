export {
  createPgPool,
  DEFAULT_PG_CONNECT_TIMEOUT_MS,
  DEFAULT_PG_QUERY_TIMEOUT_MARGIN_MS,
  isQueryReadTimeout,
  suspendQueryTimeout,
  type PgPoolOptions,
  type PgTimeouts,
} from "./pool.js";
export { migrate, qualify, type MigrateOptions, type Migration } from "./migrations.js";
export { inTransaction, type TransactionOptions } from "./transaction.js";
export { databaseUnavailableReason } from "./unavailable.js";
export { named } from "./named.js";
