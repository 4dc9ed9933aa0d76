import type { ConnectRouter } from "@connectrpc/connect";
import { NotificationService } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { EventDeadLetterService } from "@logistics/shared/gen/logistics/operations/v1/dead_letters_pb.js";
import { policiesForService, Scope, type MethodPolicy } from "@logistics/shared/auth";
import type { EventDeadLetterHandlers } from "./event-dead-letter-handlers.js";
import type { NotificationHandlers } from "./notification-handlers.js";

/**
 * Who may call each RPC. NotificationService: customer and carrier tokens are let in; whose
 * subscriptions, deliveries and dead letters they see and change is decided by
 * notification-access.ts. EventDeadLetterService (the mesh's JetStream dead letters, every
 * tenant's events): operators only.
 */
export const notificationPolicies: ReadonlyMap<string, MethodPolicy> = new Map([
  ...policiesForService(NotificationService, {
    subscribe: { scopes: [Scope.SubscriptionsWrite], carrierAllowed: true, customerAllowed: true },
    unsubscribe: { scopes: [Scope.SubscriptionsWrite], carrierAllowed: true, customerAllowed: true },
    listSubscriptions: { scopes: [Scope.SubscriptionsRead], carrierAllowed: true, customerAllowed: true },
    listDeliveries: { scopes: [Scope.SubscriptionsRead], carrierAllowed: true, customerAllowed: true },
    redriveDeadLetters: { scopes: [Scope.DeliveriesAdmin], carrierAllowed: true, customerAllowed: true },
  }),
  ...policiesForService(EventDeadLetterService, {
    listEventDeadLetters: { scopes: [Scope.Admin] },
    redriveEventDeadLetters: { scopes: [Scope.Admin] },
    purgeEventDeadLetters: { scopes: [Scope.Admin] },
  }),
]);

/** Registers the handlers on a Connect router. */
export function registerNotificationRoutes(
  router: ConnectRouter,
  handlers: NotificationHandlers,
  deadLetters: EventDeadLetterHandlers,
): void {
  router.service(NotificationService, handlers);
  router.service(EventDeadLetterService, deadLetters);
}
