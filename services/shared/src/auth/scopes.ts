import type { JWTPayload } from "jose";

/**
 * The OAuth scopes the mesh's services check. A token grants a scope by listing it in its
 * `scope` claim (space-separated, RFC 8693/9068 style) or its `scp` claim (array).
 *
 * A carrier gateway's token carries {@link Scope.ScansWrite} plus a `carrier: "<carrier code>"`
 * claim, which confines it to that carrier's scans. Internal systems get scopes without a
 * carrier claim.
 */
export const Scope = Object.freeze({
  /** Submit scans (ingest `StreamScans`, `SubmitScans`): carrier gateways and internal systems. */
  ScansWrite: "scans:write",
  /** Create shipments (ingest `CreateShipment`): internal order systems. */
  ShipmentsWrite: "shipments:write",
  /** Full-detail shipment reads and search (tracking), beyond the public tracking fields. */
  ShipmentsRead: "shipments:read",
  /** Read route plans, ETAs and the hub network (routing). */
  RoutesRead: "routes:read",
  /** Plan routes and report or clear disruptions (routing). */
  RoutesWrite: "routes:write",
  /** Create and remove notification subscriptions. */
  SubscriptionsWrite: "subscriptions:write",
  /** List subscriptions and their delivery history. */
  SubscriptionsRead: "subscriptions:read",
  /** Operate webhook delivery: redrive dead-lettered deliveries. */
  DeliveriesAdmin: "deliveries:admin",
  /** Everything: satisfies every scope requirement. For operators and break-glass tooling only. */
  Admin: "admin",
} as const);

/** One of the scope names in {@link Scope}. */
export type ScopeName = (typeof Scope)[keyof typeof Scope];

/** Every scope name the mesh knows, in declaration order. */
export const ALL_SCOPES: readonly ScopeName[] = Object.freeze(Object.values(Scope));

/**
 * The scopes a claims set grants: the union of the `scope` claim (a space-separated string, the
 * standard form; an array is tolerated) and the `scp` claim (an array, as some issuers emit; a
 * space-separated string is tolerated). Entries that are not non-empty strings are ignored, so a
 * malformed claim grants nothing rather than failing open.
 */
export function parseScopes(claims: JWTPayload): Set<string> {
  const scopes = new Set<string>();
  addScopes(scopes, claims["scope"]);
  addScopes(scopes, claims["scp"]);
  return scopes;
}

function addScopes(into: Set<string>, claim: unknown): void {
  if (typeof claim === "string") {
    for (const s of claim.split(/\s+/)) if (s !== "") into.add(s);
  } else if (Array.isArray(claim)) {
    for (const s of claim as unknown[]) {
      if (typeof s === "string" && s.trim() !== "" && !/\s/.test(s)) into.add(s);
    }
  }
}
