import { defineConfig, type ConfigOf } from "../../shared/src/config/env-config.js";
import { baseConfigSpec, checkBaseConfig } from "../../shared/src/runtime/base-config.js";


/** Environment variables of the tracking service (see the README's configuration table). */
export const trackingConfig = defineConfig(
  {
    ...baseConfigSpec({ port: 8083, metricsPort: 9103 }),
  },
  checkBaseConfig,
);

export type TrackingConfig = ConfigOf<typeof trackingConfig.spec>;
