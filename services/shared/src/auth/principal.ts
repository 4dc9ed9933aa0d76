import type { JWTPayload } from "jose";
import { Scope } from "./scopes.js";

/**
 * Who is calling: the verified identity behind a bearer token, or {@link ANONYMOUS}.
 *
 * Handlers read it from the request context (`ctx.values.get(principalKey)`); only the auth
 * interceptor creates non-anonymous principals, after checking the token's signature and claims.
 */
export interface Principal {
  /** The token's `sub` claim (a gateway, service or user id); `"anonymous"` for {@link ANONYMOUS}. */
  readonly subject: string;
  /** Granted scopes, from the `scope` (space-separated) and `scp` claims. */
  readonly scopes: ReadonlySet<string>;
  /**
   * The carrier a carrier-gateway token acts for (the `carrier` claim). Such a principal may touch
   * only that carrier's data; internal principals have no carrier.
   */
  readonly carrier?: string;
  /** True only for {@link ANONYMOUS}: the call carried no token. */
  readonly anonymous: boolean;
  /** The full verified claims set, for handlers that need more than the fields above. */
  readonly claims: JWTPayload;
}

/** The principal of a call without a bearer token. It holds no scopes and no claims. */
export const ANONYMOUS: Principal = Object.freeze({
  subject: "anonymous",
  scopes: Object.freeze(new Set<string>()) as ReadonlySet<string>,
  anonymous: true,
  claims: Object.freeze({}),
});

/**
 * True when `principal` holds at least one of `scopes`, or the {@link Scope.Admin} scope, which
 * grants everything. An empty `scopes` list is never satisfied by scope (only by admin).
 */
export function hasAnyScope(principal: Principal, scopes: Iterable<string>): boolean {
  if (principal.scopes.has(Scope.Admin)) return true;
  for (const s of scopes) {
    if (principal.scopes.has(s)) return true;
  }
  return false;
}
