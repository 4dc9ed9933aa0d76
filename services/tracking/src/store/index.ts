export type * from "./ports.js";
export * from "./errors.js";
export {
  applyToDoc,
  compareKeys,
  deriveStatus,
  isTerminal,
  resolveScanStatus,
  roundCoordinate,
  statusForKind,
  type DeriveResult,
} from "./derive.js";
export { checkEvent, eventFromJson, eventJson, eventKey, eventTimestamp, EVENT_TYPES, type EventKey } from "./events.js";
export { assertSize, MAX_DOCUMENT_BYTES } from "./size.js";
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
