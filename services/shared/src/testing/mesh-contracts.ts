import type { DescFile, DescMessage } from "@bufbuild/protobuf";
import { file_logistics_common_v1_route } from "../gen/logistics/common/v1/route_pb.js";
import { file_logistics_events_v1_ingest_events } from "../gen/logistics/events/v1/ingest_events_pb.js";
import { file_logistics_events_v1_routing_events } from "../gen/logistics/events/v1/routing_events_pb.js";
import { file_logistics_events_v1_tracking_events } from "../gen/logistics/events/v1/tracking_events_pb.js";
import { file_logistics_ingest_v1_ingest } from "../gen/logistics/ingest/v1/ingest_pb.js";
import { file_logistics_notification_v1_notification } from "../gen/logistics/notification/v1/notification_pb.js";
import { file_logistics_operations_v1_dead_letters } from "../gen/logistics/operations/v1/dead_letters_pb.js";
import { file_logistics_routing_v1_routing } from "../gen/logistics/routing/v1/routing_pb.js";
import { file_logistics_tracking_v1_tracking } from "../gen/logistics/tracking/v1/tracking_pb.js";

/** The files of the mesh's contracts that import all the others (see {@link withDependencies}). */
export const MESH_FILES: readonly DescFile[] = [
  file_logistics_common_v1_route,
  file_logistics_events_v1_ingest_events,
  file_logistics_events_v1_routing_events,
  file_logistics_events_v1_tracking_events,
  file_logistics_ingest_v1_ingest,
  file_logistics_notification_v1_notification,
  file_logistics_operations_v1_dead_letters,
  file_logistics_routing_v1_routing,
  file_logistics_tracking_v1_tracking,
];

/** `files` and every file they import, directly or not, each once, imports before importers. */
export function withDependencies(files: readonly DescFile[]): DescFile[] {
  const out = new Map<string, DescFile>();
  const add = (f: DescFile): void => {
    if (out.has(f.name)) return;
    f.dependencies.forEach(add);
    out.set(f.name, f);
  };
  files.forEach(add);
  return [...out.values()];
}

/** `messages` and every message nested in them. */
export function allMessages(messages: readonly DescMessage[]): DescMessage[] {
  return messages.flatMap((m) => [m, ...allMessages(m.nestedMessages)]);
}
