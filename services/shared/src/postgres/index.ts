export { createPgPool, type PgPoolOptions } from "./pool.js";
export { migrate, qualify, type MigrateOptions, type Migration } from "./migrations.js";
export { inTransaction } from "./transaction.js";
export { named } from "./named.js";
