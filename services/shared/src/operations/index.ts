/**
 * What operators need beyond the services' own metrics: the backlog of the mesh's JetStream
 * consumers and dead-letter stream as Prometheus gauges, and the dead-letter tooling behind
 * `npm run dlq` and the EventDeadLetterService admin RPCs.
 */
export {
  ConsumerLagMetrics,
  startConsumerLagSampler,
  UNSCANNED_REASON,
  type ConsumerLagSampler,
  type ConsumerLagSamplerOptions,
  type ConsumerRef,
} from "./consumer-lag.js";
export {
  createDeadLetterAdmin,
  subjectMatches,
  type DeadLetter,
  type DeadLetterAdmin,
  type DeadLetterAdminOptions,
  type DeadLetterAuditEntry,
  type DeadLetterFilter,
  type PurgeReport,
  type RedriveOptions,
  type RedriveReport,
} from "./dead-letter-admin.js";
export {
  DeadLetterReasonClasses,
  deadLetterReasonClass,
  isDeadLetterReasonClass,
  type DeadLetterReasonClass,
} from "./dead-letter-reason.js";
export { readStream, type ReadStreamOptions } from "./stream-reader.js";
