import { emitsLegacy, LegacySemConv, SemConv } from "../telemetry/semconv.js";

/**
 * OpenTelemetry messaging semantic-convention attribute keys used by the publishers and
 * consumers, as the registry of semantic-conventions 1.45 names them. Messaging is still
 * "incubating" there, so (as the OpenTelemetry docs recommend) the keys are copied here instead of
 * importing the unstable entry point.
 */
export const MessagingAttributes = Object.freeze({
  /** `messaging.system.name` (it replaced `messaging.system`; see {@link messagingSystemAttributes}). */
  SYSTEM_NAME: SemConv.MESSAGING_SYSTEM_NAME,
  OPERATION_TYPE: "messaging.operation.type",
  OPERATION_NAME: "messaging.operation.name",
  DESTINATION_NAME: "messaging.destination.name",
  /** The low-cardinality form of the destination (`logistics.scan.recorded.*.*`). */
  DESTINATION_TEMPLATE: "messaging.destination.template",
  SUBSCRIPTION_NAME: "messaging.destination.subscription.name",
  CONSUMER_GROUP_NAME: "messaging.consumer.group.name",
  MESSAGE_ID: "messaging.message.id",
  BODY_SIZE: "messaging.message.body.size",
  /** Messages in a batch (a batch publish or a batch a consumer processed). */
  BATCH_MESSAGE_COUNT: "messaging.batch.message_count",
  // NATS-specific details (no convention exists for them).
  NATS_STREAM: "messaging.nats.stream",
  NATS_STREAM_SEQUENCE: "messaging.nats.stream.sequence",
  NATS_DELIVERY_COUNT: "messaging.nats.delivery_count",
  NATS_DUPLICATE: "messaging.nats.duplicate",
});

/** `messaging.system.name` value for NATS. */
export const MESSAGING_SYSTEM_NATS = "nats";

/** The tracer name every NATS span is created with. */
export const NATS_TRACER_NAME = "logistics.nats";

/**
 * `messaging.system.name: nats`, plus the old `messaging.system` when
 * `OTEL_SEMCONV_STABILITY_OPT_IN` contains `messaging/dup`.
 */
export function messagingSystemAttributes(): Record<string, string> {
  return emitsLegacy("messaging")
    ? { [MessagingAttributes.SYSTEM_NAME]: MESSAGING_SYSTEM_NATS, [LegacySemConv.MESSAGING_SYSTEM]: MESSAGING_SYSTEM_NATS }
    : { [MessagingAttributes.SYSTEM_NAME]: MESSAGING_SYSTEM_NATS };
}

/**
 * The span name of a messaging operation, as the conventions want it: `<operation>
 * <destination>`, with a low-cardinality destination (the subject family, e.g. `publish
 * logistics.scan.recorded`, never the full subject with its region and carrier tokens).
 */
export function messagingSpanName(operation: "publish" | "process", family: string): string {
  return `${operation} ${family}`;
}

/** The attributes every PRODUCER span carries. */
export function publishSpanAttributes(destination: string): Record<string, string> {
  return {
    ...messagingSystemAttributes(),
    [MessagingAttributes.OPERATION_TYPE]: "send",
    [MessagingAttributes.OPERATION_NAME]: "publish",
    [MessagingAttributes.DESTINATION_NAME]: destination,
  };
}

/** The attributes every CONSUMER span of a durable consumer carries. */
export function processSpanAttributes(destination: string, durable: string, stream: string): Record<string, string> {
  return {
    ...messagingSystemAttributes(),
    [MessagingAttributes.OPERATION_TYPE]: "process",
    [MessagingAttributes.OPERATION_NAME]: "process",
    [MessagingAttributes.DESTINATION_NAME]: destination,
    [MessagingAttributes.SUBSCRIPTION_NAME]: durable,
    [MessagingAttributes.CONSUMER_GROUP_NAME]: durable,
    [MessagingAttributes.NATS_STREAM]: stream,
  };
}
