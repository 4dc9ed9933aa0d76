import type { JWTPayload } from "jose";
import { AuthError } from "./auth-error.js";
import { parseScopes, Scope } from "./scopes.js";

/**
 * The kind of caller, derived once from the verified claims (see {@link derivePrincipal}):
 *
 * | role | token | may act on |
 * |---|---|---|
 * | `anonymous` | none | public tracking reads only |
 * | `carrier` | `carrier: "<code>"` claim (a carrier gateway) | its own carrier's parcels |
 * | `customer` | `customer: "<id>"` claim (a tenant, its users or systems) | its own shipments and subscriptions |
 * | `internal` | scopes, no carrier/customer claim, no `admin` | anything its scopes cover |
 * | `operator` | the `admin` scope, no carrier/customer claim | everything |
 *
 * A carrier or customer claim confines a token whatever scopes it holds; a token that combines
 * such a claim with `admin`, or both claims, is refused at authentication.
 */
export type PrincipalRole = "anonymous" | "carrier" | "customer" | "internal" | "operator";

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
  /** What kind of caller this is; decides how ownership is checked. */
  readonly role: PrincipalRole;
  /**
   * The carrier a carrier-gateway token acts for (the `carrier` claim); set exactly when `role`
   * is `carrier`. Such a principal may touch only that carrier's parcels.
   */
  readonly carrier?: string;
  /**
   * The customer account a tenant token acts for (the `customer` claim); set exactly when `role`
   * is `customer`. Such a principal sees and changes only that customer's data.
   */
  readonly customer?: string;
  /** True only for {@link ANONYMOUS}: the call carried no token. */
  readonly anonymous: boolean;
  /** The full verified claims set, for handlers that need more than the fields above. */
  readonly claims: JWTPayload;
}

/** The principal of a call without a bearer token. It holds no scopes and no claims. */
export const ANONYMOUS: Principal = Object.freeze({
  subject: "anonymous",
  scopes: Object.freeze(new Set<string>()) as ReadonlySet<string>,
  role: "anonymous",
  anonymous: true,
  claims: Object.freeze({}),
});

/** Carrier codes, as in the contracts (`Scan.carrier_code`). */
const CARRIER_CODE = /^[a-z][a-z0-9-]{1,31}$/;
/** Customer account ids, as in the contracts (`CreateShipmentRequest.customer_id`). */
const CUSTOMER_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * Builds the principal of verified claims: `sub` (required), scopes, and the confining `carrier`
 * or `customer` claim. The one place a role is decided.
 * @throws AuthError (`unauthenticated`) for claims of the wrong shape, a token with both a
 * carrier and a customer claim, or a confined token that also carries `admin`.
 */
export function derivePrincipal(claims: JWTPayload): Principal {
  const subject = claims.sub;
  if (typeof subject !== "string" || subject === "") {
    throw new AuthError("unauthenticated", 'token "sub" claim must be a non-empty string');
  }
  const carrier = optionalClaim(claims, "carrier", CARRIER_CODE, "a carrier code like \"dhl-express\"");
  const customer = optionalClaim(claims, "customer", CUSTOMER_ID, "a customer id (1-64 of A-Z a-z 0-9 . _ : -)");
  if (carrier !== undefined && customer !== undefined) {
    throw new AuthError("unauthenticated", 'token may not carry both a "carrier" and a "customer" claim');
  }
  const scopes = parseScopes(claims);
  if ((carrier !== undefined || customer !== undefined) && scopes.has(Scope.Admin)) {
    throw new AuthError("unauthenticated", `a token bound to a ${carrier !== undefined ? "carrier" : "customer"} may not carry the admin scope`);
  }
  const role: PrincipalRole =
    carrier !== undefined ? "carrier" : customer !== undefined ? "customer" : scopes.has(Scope.Admin) ? "operator" : "internal";
  return Object.freeze({
    subject,
    scopes,
    role,
    anonymous: false,
    claims,
    ...(carrier === undefined ? {} : { carrier }),
    ...(customer === undefined ? {} : { customer }),
  });
}

function optionalClaim(claims: JWTPayload, name: string, pattern: RegExp, what: string): string | undefined {
  const value: unknown = claims[name];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !pattern.test(value)) {
    throw new AuthError("unauthenticated", `token "${name}" claim must be ${what}`);
  }
  return value;
}

/** True for principals bound to one carrier or one customer (whatever their scopes). */
export function isConfined(principal: Principal): boolean {
  return principal.role === "carrier" || principal.role === "customer";
}

/**
 * True when `principal` holds at least one of `scopes`, or is an operator (the {@link Scope.Admin}
 * scope without a carrier/customer claim), who is granted everything. An empty `scopes` list is
 * never satisfied by scope (only by an operator). `admin` never widens a confined principal.
 */
export function hasAnyScope(principal: Principal, scopes: Iterable<string>): boolean {
  if (principal.role === "operator") return true;
  for (const s of scopes) {
    if (s === Scope.Admin && isConfined(principal)) continue;
    if (principal.scopes.has(s)) return true;
  }
  return false;
}
