import type { ConnectRouter } from "@connectrpc/connect";
import { TrackingService } from "../../shared/src/gen/logistics/tracking/v1/tracking_pb.js";
import { policiesForService, Scope } from "../../shared/src/auth/index.js";
import type { TrackingServiceHandlers } from "./tracking-service.js";

/** Who may call each RPC of TrackingService. */
export const trackingPolicies = policiesForService(TrackingService, {
  // Public tracking by tracking number: anonymous callers get the public fields only.
  getShipment: { scopes: [Scope.ShipmentsRead], anonymous: true },
  listShipmentEvents: { scopes: [Scope.ShipmentsRead], anonymous: true },
  watchShipment: { scopes: [Scope.ShipmentsRead], anonymous: true },
  searchShipments: { scopes: [Scope.ShipmentsRead] },
});

/** Registers the handlers on a Connect router. */
export function registerTrackingRoutes(router: ConnectRouter, handlers: TrackingServiceHandlers): void {
  router.service(TrackingService, handlers);
}
