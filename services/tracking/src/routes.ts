import type { ConnectRouter } from "@connectrpc/connect";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { policiesForService, Scope } from "@logistics/shared/auth";
import type { TrackingHandlers } from "./tracking-handlers.js";

/**
 * Who may call each RPC of TrackingService. Which view a caller gets, and whose shipments it may
 * search, is decided by tracking-access.ts.
 */
export const trackingPolicies = policiesForService(TrackingService, {
  // Public tracking by tracking number: anyone; the view depends on who asks and whose shipment it is.
  getShipment: { scopes: [Scope.ShipmentsRead], anonymous: true },
  listShipmentEvents: { scopes: [Scope.ShipmentsRead], anonymous: true },
  watchShipment: { scopes: [Scope.ShipmentsRead], anonymous: true },
  // Customers search their own shipments only; carrier tokens may not search.
  searchShipments: { scopes: [Scope.ShipmentsRead], customerAllowed: true },
});

/** Registers the handlers on a Connect router. */
export function registerTrackingRoutes(router: ConnectRouter, handlers: TrackingHandlers): void {
  router.service(TrackingService, handlers);
}
