import { createRegistry, fromBinary, toJson, type JsonValue } from "@bufbuild/protobuf";
import { file_logistics_events_v1_ingest_events } from "../gen/logistics/events/v1/ingest_events_pb.js";
import { file_logistics_events_v1_routing_events } from "../gen/logistics/events/v1/routing_events_pb.js";
import { file_logistics_events_v1_tracking_events } from "../gen/logistics/events/v1/tracking_events_pb.js";

/** Every event type the mesh publishes (the registry the dead-letter tooling decodes with). */
const events = createRegistry(
  file_logistics_events_v1_ingest_events,
  file_logistics_events_v1_routing_events,
  file_logistics_events_v1_tracking_events,
);

/**
 * An event payload as Protobuf JSON, for operators reading a dead letter: decoded as the type
 * its `Logistics-Type` header names. Undefined when the type is unknown or the bytes do not
 * decode (often why the message was dead-lettered); show the raw bytes then.
 */
export function eventPayloadJson(typeName: string | undefined, payload: Uint8Array): JsonValue | undefined {
  const schema = typeName ? events.getMessage(typeName) : undefined;
  if (!schema) return undefined;
  try {
    return toJson(schema, fromBinary(schema, payload), { registry: events });
  } catch {
    return undefined;
  }
}
