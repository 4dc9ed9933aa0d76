import type { ServiceImpl } from "@connectrpc/connect";
import type { NotificationService } from "../../shared/src/gen/logistics/notification/v1/notification_pb.js";

/** The RPC handlers; methods not implemented yet answer Unimplemented. */
export type NotificationServiceHandlers = Partial<ServiceImpl<typeof NotificationService>>;

/** Dependencies of the notification handlers (narrow interfaces, built by main.ts). */
export interface NotificationServiceDeps {}

/** Creates the NotificationService handlers. */
export function createNotificationService(_deps: NotificationServiceDeps): NotificationServiceHandlers {
  return {};
}
