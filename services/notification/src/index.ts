/** The notification service's public entry: its definition and config for the runtime. */
export { notificationConfig, type NotificationConfig } from "./config.js";
export { notificationService } from "./notification.js";
