import { TrackingService } from "../../shared/src/gen/logistics/tracking/v1/tracking_pb.js";
import type { ServiceDefinition } from "../../shared/src/runtime/start-service.js";
import type { TrackingConfig } from "./config.js";
import { createTrackingService } from "./tracking-service.js";
import { trackingPolicies, registerTrackingRoutes } from "./routes.js";

/** The tracking service as the runtime starts it (from main.ts, the dev runner and tests). */
export const trackingService: ServiceDefinition<TrackingConfig> = {
  name: "tracking",
  services: [TrackingService],
  policies: trackingPolicies,
  async start() {
    const handlers = createTrackingService({});
    return { routes: (router) => registerTrackingRoutes(router, handlers) };
  },
};
