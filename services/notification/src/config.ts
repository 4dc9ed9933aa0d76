import { defineConfig, type ConfigOf } from "../../shared/src/config/env-config.js";
import { baseConfigSpec, checkBaseConfig } from "../../shared/src/runtime/base-config.js";


/** Environment variables of the notification service (see the README's configuration table). */
export const notificationConfig = defineConfig(
  {
    ...baseConfigSpec({ port: 8084, metricsPort: 9104 }),
  },
  checkBaseConfig,
);

export type NotificationConfig = ConfigOf<typeof notificationConfig.spec>;
