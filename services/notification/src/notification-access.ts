import { Code, ConnectError } from "@connectrpc/connect";
import type { Principal } from "@logistics/shared/auth";
import type { SubscriptionOwner, SubscriptionScope } from "./notification-store.js";

/**
 * Notification's ownership policy: the one place that decides whose subscriptions, deliveries and
 * dead letters a caller sees and changes, and which scopes it may subscribe to. Pure.
 *
 * | caller | owns what it creates as | sees and changes | may subscribe to |
 * |---|---|---|---|
 * | customer token | its customer | its own subscriptions and their deliveries | its own customer id; tracking numbers (delivered only for its own shipments) |
 * | carrier token | its carrier | its own subscriptions and their deliveries | its own carrier code |
 * | internal service | nobody (internal) | everything its scopes cover | anything |
 * | operator (`admin`) | nobody (internal) | everything | anything |
 *
 * Another owner's subscription is answered as if it did not exist (NotFound, or absent from a
 * listing), so ids cannot be probed. Delivery creation applies the same ownership (see
 * `NotificationStore.insertDeliveries`): a customer's subscription receives events of that
 * customer's shipments only, whatever its scope says.
 */

/**
 * The owner recorded on a subscription `principal` creates, which is also whose subscriptions it
 * sees and changes; undefined for internal callers and operators (they see everybody's).
 */
export function ownerOf(principal: Principal): SubscriptionOwner | undefined {
  if (principal.role === "customer" && principal.customer !== undefined) return { customerId: principal.customer };
  if (principal.role === "carrier" && principal.carrier !== undefined) return { carrierCode: principal.carrier };
  return undefined;
}

/**
 * Checks the scope of a new subscription against the caller.
 * @throws ConnectError PermissionDenied for a scope outside the caller's own data.
 */
export function checkSubscriptionScope(principal: Principal, scope: SubscriptionScope): void {
  const deny = (what: string) => new ConnectError(what, Code.PermissionDenied);
  switch (principal.role) {
    case "customer":
      if (scope.case === "customerId" && scope.value !== principal.customer) {
        throw deny(`credentials of customer ${JSON.stringify(principal.customer)} may not subscribe to customer ${JSON.stringify(scope.value)}`);
      }
      if (scope.case === "carrierCode") throw deny("customer credentials may not subscribe to a carrier's shipments");
      return;
    case "carrier":
      if (scope.case !== "carrierCode") throw deny("carrier credentials may only subscribe to their own carrier's shipments (carrier_code)");
      if (scope.value !== principal.carrier) {
        throw deny(`credentials of carrier ${JSON.stringify(principal.carrier)} may not subscribe to carrier ${JSON.stringify(scope.value)}`);
      }
      return;
    case "internal":
    case "operator":
      return;
    case "anonymous":
      throw new ConnectError("missing bearer token", Code.Unauthenticated);
  }
}

/**
 * The idempotency scope of a caller's Subscribe keys: the token subject, qualified by the owner
 * for confined callers, so two tenants whose identity provider reuses a subject never share keys.
 */
export function idempotencyScope(principal: Principal): string {
  const owner = ownerOf(principal);
  if (owner?.customerId !== undefined) return `customer:${owner.customerId}/${principal.subject}`;
  if (owner?.carrierCode !== undefined) return `carrier:${owner.carrierCode}/${principal.subject}`;
  return principal.subject;
}
