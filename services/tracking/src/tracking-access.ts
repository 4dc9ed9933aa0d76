import { Code, ConnectError } from "@connectrpc/connect";
import { hasAnyScope, Scope, type Principal } from "@logistics/shared/auth";

/**
 * Tracking's ownership policy: the one place that decides which view of a shipment a caller gets
 * and whose shipments it may search. Pure.
 *
 * | caller | GetShipment / ListShipmentEvents / WatchShipment | SearchShipments |
 * |---|---|---|
 * | anonymous | public view | Unauthenticated |
 * | carrier token | public view (carriers already hold what they scanned; the shipper's data stays internal) | PermissionDenied |
 * | customer token with `shipments:read` | full view of its own shipments, public view of others' | its own shipments only (another `customer_id` → PermissionDenied) |
 * | internal with `shipments:read` | full view | any |
 * | operator (`admin`) | full view | any |
 */

/** Which rendering of a shipment and its history a caller gets. */
export type ShipmentView = "full" | "public";

/**
 * The view `principal` gets of a shipment whose customer account is `shipmentCustomerId`
 * (undefined when not known yet, e.g. before the creation event was applied: public then).
 */
export function shipmentViewFor(principal: Principal, shipmentCustomerId: string | undefined): ShipmentView {
  switch (principal.role) {
    case "operator":
      return "full";
    case "internal":
      return hasAnyScope(principal, [Scope.ShipmentsRead]) ? "full" : "public";
    case "customer":
      return principal.scopes.has(Scope.ShipmentsRead) && shipmentCustomerId !== undefined && shipmentCustomerId === principal.customer
        ? "full"
        : "public";
    case "carrier":
    case "anonymous":
      return "public";
  }
}

/** True when {@link shipmentViewFor} depends on the shipment's customer (so it must be read first). */
export function viewDependsOnOwner(principal: Principal): boolean {
  return principal.role === "customer" && principal.scopes.has(Scope.ShipmentsRead);
}

/**
 * The customer filter a search by `principal` runs with: a customer token is pinned to its own
 * account (asking for another one is PermissionDenied, not an empty page, so a misconfigured
 * portal notices); internal callers and operators search as asked (`""`: any customer).
 * @throws ConnectError PermissionDenied for another customer's account or a carrier token.
 */
export function searchCustomerFor(principal: Principal, requested: string): string {
  switch (principal.role) {
    case "customer": {
      const own = principal.customer ?? "";
      if (requested !== "" && requested !== own) {
        throw new ConnectError(`credentials of customer ${JSON.stringify(own)} may not search customer ${JSON.stringify(requested)}`, Code.PermissionDenied);
      }
      return own;
    }
    case "internal":
    case "operator":
      return requested;
    case "carrier":
    case "anonymous":
      throw new ConnectError("carrier credentials may not search shipments", Code.PermissionDenied);
  }
}
