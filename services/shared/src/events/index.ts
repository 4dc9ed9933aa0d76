/**
 * The event catalog and the batch pipeline every service publishes and consumes through: which
 * schema, stream, subject, key and id each event has, which durable consumers exist with which
 * settings, a publisher that encodes once and sets the id and trace headers, and a consumer that
 * hands whole batches to its handler. See catalog.ts and batch-consumer.ts.
 */
export {
  createEventCatalog,
  type AnyEventDef,
  type CatalogConsumers,
  type CatalogEvent,
  type CatalogEvents,
  type ConsumerDef,
  type ConsumerName,
  type ConsumerOverrides,
  type EventCatalog,
  type EventDef,
  type MessageOf,
  type ParsedSubject,
  type RegionTokens,
  type ScanTokens,
  type TokensOf,
} from "./catalog.js";
export {
  createCatalogPublisher,
  publication,
  type CatalogPublisher,
  type CatalogPublisherOptions,
  type CatalogPublishOptions,
  type Publication,
} from "./catalog-publisher.js";
export {
  DEFAULT_MAX_BATCH,
  DEFAULT_MAX_IN_FLIGHT_BATCHES,
  Outcomes,
  PULL_EXPIRY_MARGIN_MS,
  PULLS_ENDED_BY_CLIENT_METRIC,
  startBatchConsumer,
  type BatchConsumer,
  type BatchConsumerOptions,
  type BatchConsumerStats,
  type BatchHandler,
  type BatchItem,
  type BatchSummary,
  type Outcome,
} from "./batch-consumer.js";
export { ensureCatalogConsumer } from "./ensure-consumer.js";
export { applyEach, type ApplyEachOptions } from "./apply-each.js";
