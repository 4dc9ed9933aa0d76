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

/**
 * IngestService's responses go uncompressed, whatever the caller accepts (its compressed requests
 * are still read). They are acks: ~80 bytes a scan, against ~200 for the scan, on links that
 * carry the scans anyway. Level-1 gzip of a 100-scan ack message cost ingest ~8% of its CPU per
 * scan, and the gateway as much again to inflate it (perf/README.md, "What limits it now", ninth
 * sitting): the mesh's CPU is what an operator pays for, the acks' bytes hardly count. Every
 * other service keeps the server's compression (shipment documents, searches).
 */
export const INGEST_RESPONSE_COMPRESS_MIN_BYTES = Number.MAX_SAFE_INTEGER;

/** Registers the handlers on a Connect router. */
export function registerIngestRoutes(router: ConnectRouter, handlers: IngestHandlers): void {
  router.service(IngestService, handlers, { compressMinBytes: INGEST_RESPONSE_COMPRESS_MIN_BYTES });
}
