export type * from "./ports.js";
export * from "./errors.js";
export {
  applyToDoc,
  assertSize,
  compareKeys,
  deriveStatus,
  isTerminal,
  MAX_DOCUMENT_BYTES,
  MAX_ROUTE_LEGS,
  statusForKind,
  validateEvent,
  validatePoint,
  type DeriveResult,
} from "./derive.js";
export { decodeCursor, encodeCursor, MAX_PAGE_SIZE } from "./cursor.js";
export { normalizeQuery, type NormalizedQuery } from "./query.js";
export { MIGRATIONS, migrate, STORE_LOCK_NAME, type Migration } from "./postgres/migrations.js";
export { archiveName, detachPartitionsOlderThan, ensurePartitions, listPartitions, partitionName, type EnsurePartitionsOptions } from "./postgres/partitions.js";
export {
  buildSearchSql,
  createPostgresShipmentStore,
  type PostgresShipmentStore,
  type PostgresShipmentStoreOptions,
} from "./postgres/postgres-shipment-store.js";
export { createMongoShipmentStore, type MongoShipmentStoreOptions } from "./mongo/mongo-shipment-store.js";
