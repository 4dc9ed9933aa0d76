import { NotificationService } from "../../shared/src/gen/logistics/notification/v1/notification_pb.js";
import type { ServiceDefinition } from "../../shared/src/runtime/start-service.js";
import type { NotificationConfig } from "./config.js";
import { createNotificationService } from "./notification-service.js";
import { notificationPolicies, registerNotificationRoutes } from "./routes.js";

/** The notification service as the runtime starts it (from main.ts, the dev runner and tests). */
export const notificationService: ServiceDefinition<NotificationConfig> = {
  name: "notification",
  services: [NotificationService],
  policies: notificationPolicies,
  async start() {
    const handlers = createNotificationService({});
    return { routes: (router) => registerNotificationRoutes(router, handlers) };
  },
};
