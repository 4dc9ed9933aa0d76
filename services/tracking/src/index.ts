/** The tracking service's public entry: its definition and config for the runtime, and the read
 * path pieces the GetShipment benchmark assembles. The shipment store is `@logistics/tracking/store`. */
export { trackingConfig, type TrackingConfig } from "./config.js";
export { registerTrackingRoutes, trackingPolicies } from "./routes.js";
export { createRedisShipmentCache } from "./shipment-cache.js";
export { createShipmentReader } from "./shipment-reader.js";
export { shipmentMessage } from "./shipment-view.js";
export { createTrackingMetrics } from "./tracking-metrics.js";
export { createTrackingHandlers } from "./tracking-handlers.js";
export { trackingService } from "./tracking.js";
