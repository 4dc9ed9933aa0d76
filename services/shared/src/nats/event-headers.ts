/**
 * Header names used on event messages, in one place. `Nats-Msg-Id` is JetStream's own dedupe
 * header; the `Logistics-*` headers are ours.
 */
export const EventHeaders = Object.freeze({
  /** JetStream publish dedupe key (set from the event id). */
  MsgId: "Nats-Msg-Id",
  /** Always `application/x-protobuf` for events. */
  ContentType: "Content-Type",
  /** Fully qualified Protobuf type name of the payload, e.g. `logistics.events.v1.ScanRecorded`. */
  MessageType: "Logistics-Type",
  /** Why a message was dead-lettered (decode failure, or the handler's last error). */
  DlqReason: "Logistics-Dlq-Reason",
  /** Stream the dead-lettered message came from. */
  DlqStream: "Logistics-Dlq-Stream",
  /** Its sequence in that stream. */
  DlqSeq: "Logistics-Dlq-Seq",
  /** How many times it had been delivered. */
  DlqDeliveries: "Logistics-Dlq-Deliveries",
  /** Its original subject. */
  DlqSubject: "Logistics-Dlq-Subject",
  /** The durable consumer that gave up on it. */
  DlqConsumer: "Logistics-Dlq-Consumer",
  /** Its original `Nats-Msg-Id`, if any. */
  DlqMsgId: "Logistics-Dlq-Msg-Id",
});

/** The content type of Protobuf-encoded event payloads. */
export const PROTOBUF_CONTENT_TYPE = "application/x-protobuf";
