import type { ConnectRouter } from "@connectrpc/connect";
import { NotificationService } from "../../shared/src/gen/logistics/notification/v1/notification_pb.js";
import { policiesForService, Scope } from "../../shared/src/auth/index.js";
import type { NotificationServiceHandlers } from "./notification-service.js";

/** Who may call each RPC of NotificationService. */
export const notificationPolicies = policiesForService(NotificationService, {
  subscribe: { scopes: [Scope.SubscriptionsWrite] },
  unsubscribe: { scopes: [Scope.SubscriptionsWrite] },
  listSubscriptions: { scopes: [Scope.SubscriptionsRead] },
  listDeliveries: { scopes: [Scope.SubscriptionsRead] },
  redriveDeadLetters: { scopes: [Scope.DeliveriesAdmin] },
});

/** Registers the handlers on a Connect router. */
export function registerNotificationRoutes(router: ConnectRouter, handlers: NotificationServiceHandlers): void {
  router.service(NotificationService, handlers);
}
