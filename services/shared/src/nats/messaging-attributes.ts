/**
 * OpenTelemetry messaging semantic-convention attribute keys used by the publisher and consumer.
 * They are still "incubating" upstream, so (as the OpenTelemetry docs recommend) they are copied
 * here instead of importing the unstable entry point.
 */
export const MessagingAttributes = Object.freeze({
  SYSTEM: "messaging.system",
  OPERATION_TYPE: "messaging.operation.type",
  OPERATION_NAME: "messaging.operation.name",
  DESTINATION_NAME: "messaging.destination.name",
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

/** `messaging.system` value for NATS. */
export const MESSAGING_SYSTEM_NATS = "nats";

/** The tracer name every NATS span is created with. */
export const NATS_TRACER_NAME = "logistics.nats";

/** The attributes every CONSUMER span of a durable consumer carries. */
export function processSpanAttributes(destination: string, durable: string, stream: string): Record<string, string> {
  return {
    [MessagingAttributes.SYSTEM]: MESSAGING_SYSTEM_NATS,
    [MessagingAttributes.OPERATION_TYPE]: "process",
    [MessagingAttributes.OPERATION_NAME]: "process",
    [MessagingAttributes.DESTINATION_NAME]: destination,
    [MessagingAttributes.SUBSCRIPTION_NAME]: durable,
    [MessagingAttributes.CONSUMER_GROUP_NAME]: durable,
    [MessagingAttributes.NATS_STREAM]: stream,
  };
}
