import type { ConnectRouter } from "@connectrpc/connect";
import { RoutingService } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { policiesForService, Scope } from "@logistics/shared/auth";
import type { RoutingHandlers } from "./routing-handlers.js";

/** Who may call each RPC of RoutingService. */
export const routingPolicies = policiesForService(RoutingService, {
  planRoute: { scopes: [Scope.RoutesWrite] },
  getRoute: { scopes: [Scope.RoutesRead, Scope.ShipmentsRead] },
  nearestHubs: { scopes: [Scope.RoutesRead] },
  reportDisruption: { scopes: [Scope.RoutesWrite] },
  clearDisruption: { scopes: [Scope.RoutesWrite] },
});

/** Registers the handlers on a Connect router. */
export function registerRoutingRoutes(router: ConnectRouter, handlers: RoutingHandlers): void {
  router.service(RoutingService, handlers);
}
