export {
  connectNats,
  jetstreamFor,
  natsConnectionOptions,
  type ConnectNatsOptions,
  type JetStreamHandles,
  type NatsCredentials,
} from "./connect.js";
export {
  exponentialRetryDelay,
  PoisonMessageError,
  startConsumer,
  type ConsumerHandle,
  type ConsumerStats,
  type MessageMeta,
  type StartConsumerOptions,
} from "./consumer.js";
export {
  ensureKeyValue,
  ensurePeerCopy,
  openKeyValue,
  readPeerEntry,
  type EnsureKeyValueOptions,
  type EnsureKeyValueResult,
  type EnsurePeerCopyOptions,
} from "./key-value.js";
export { jetStreamApiPrefix, leafnodeDenyList, regionSources, topologyProblems, type RegionTopology } from "./regions.js";
export { EventHeaders, PROTOBUF_CONTENT_TYPE } from "./event-headers.js";
export { permanentFailureReason } from "./permanent-failure.js";
export { MESSAGING_SYSTEM_NATS, MessagingAttributes, NATS_TRACER_NAME } from "./messaging-attributes.js";
export { silentNatsLog, type NatsLog } from "./nats-log.js";
export {
  createPipelinedPublisher,
  PubAckTimeoutError,
  PublisherClosedError,
  type PipelinedEvent,
  type PipelinedPublisher,
  type PipelinedPublisherOptions,
} from "./pipelined-publisher.js";
export {
  createEventPublisher,
  type EventPublisher,
  type EventPublisherOptions,
  type PublishEventOptions,
  type PublishEventResult,
} from "./publisher.js";
export {
  ensureConsumer,
  ensureStreams,
  ImmutableConfigError,
  type EnsureAction,
  type EnsureConsumerOptions,
  type EnsureConsumerResult,
  type EnsureStreamResult,
  type EnsureStreamsOptions,
} from "./streams.js";
export {
  createSubjects,
  DEFAULT_SUBJECT_PREFIX,
  subjectFamily,
  subjectToken,
  SubjectTokenError,
  type BucketSpec,
  type BucketSpecs,
  type StreamSpec,
  type StreamSpecs,
  type Subjects,
} from "./subjects.js";
export { extractTraceContext, injectTraceContext, natsHeaderGetter, natsHeaderSetter } from "./trace-headers.js";
