import type { ConnectRouter } from "@connectrpc/connect";
import { IngestService } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { policiesForService, Scope } from "@logistics/shared/auth";
import type { IngestHandlers } from "./ingest-handlers.js";

/** Who may call each RPC of IngestService. */
export const ingestPolicies = policiesForService(IngestService, {
  streamScans: { scopes: [Scope.ScansWrite], carrierAllowed: true },
  submitScans: { scopes: [Scope.ScansWrite], carrierAllowed: true },
  createShipment: { scopes: [Scope.ShipmentsWrite] },
  // Carrier tokens only for shipments their carrier carries (checked by the handler).
  handOverShipment: { scopes: [Scope.ScansWrite, Scope.ShipmentsWrite], carrierAllowed: true },
  // The same callers as a handover: carrier tokens only for their own carrier's shipments.
  removeShipmentPartner: { scopes: [Scope.ScansWrite, Scope.ShipmentsWrite], carrierAllowed: true },
});

/** Registers the handlers on a Connect router. */
export function registerIngestRoutes(router: ConnectRouter, handlers: IngestHandlers): void {
  router.service(IngestService, handlers);
}
