import type { ConnectRouter } from "@connectrpc/connect";
import { NotificationService } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { policiesForService, Scope } from "@logistics/shared/auth";
import type { NotificationServiceHandlers } from "./notification-service.js";

/**
 * Who may call each RPC of NotificationService. Customer and carrier tokens are let in; whose
 * subscriptions, deliveries and dead letters they see and change is decided by
 * notification-access.ts.
 */
export const notificationPolicies = policiesForService(NotificationService, {
  subscribe: { scopes: [Scope.SubscriptionsWrite], carrierAllowed: true, customerAllowed: true },
  unsubscribe: { scopes: [Scope.SubscriptionsWrite], carrierAllowed: true, customerAllowed: true },
  listSubscriptions: { scopes: [Scope.SubscriptionsRead], carrierAllowed: true, customerAllowed: true },
  listDeliveries: { scopes: [Scope.SubscriptionsRead], carrierAllowed: true, customerAllowed: true },
  redriveDeadLetters: { scopes: [Scope.DeliveriesAdmin], carrierAllowed: true, customerAllowed: true },
});

/** Registers the handlers on a Connect router. */
export function registerNotificationRoutes(router: ConnectRouter, handlers: NotificationServiceHandlers): void {
  router.service(NotificationService, handlers);
}
