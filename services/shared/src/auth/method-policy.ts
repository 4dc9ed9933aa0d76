import type { DescService } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { hasAnyScope, type Principal } from "./principal.js";

/**
 * Who may call one RPC.
 *
 * Decision order (see {@link authorize}): `anonymous` lets anyone in, with or without a valid
 * token; otherwise a verified token is required; a carrier token (one with a `carrier` claim)
 * is refused unless `carrierAllowed`, a customer token (a `customer` claim) unless
 * `customerAllowed`; then any one of `scopes` grants access (an operator, `admin` without a
 * carrier/customer claim, always passes this step). Ownership of the objects a call touches is
 * the service's ownership policy's business, after this.
 */
export interface MethodPolicy {
  /**
   * Any one of these scopes grants access; an operator (`admin`, unconfined) always passes. An
   * empty list admits every authenticated principal that the confinement flags let in.
   */
  readonly scopes: readonly string[];
  /** Allow calls without a token (the handler sees the ANONYMOUS principal). Default false. */
  readonly anonymous?: boolean;
  /**
   * Allow carrier-gateway tokens (those with a `carrier` claim) to call this method. Default
   * false: a carrier token is confined to the methods that opt in (scan submission), even if it
   * somehow holds another scope. Handlers of such methods must still check each item's carrier
   * with `assertCarrier`.
   */
  readonly carrierAllowed?: boolean;
  /**
   * Allow customer (tenant) tokens (those with a `customer` claim) to call this method. Default
   * false. Handlers of such methods confine the call to the token's customer through the
   * service's ownership policy.
   */
  readonly customerAllowed?: boolean;
}

/**
 * Policies keyed by RPC path, `/<package.Service>/<Method>` (for example
 * `/logistics.ingest.v1.IngestService/SubmitScans`), as a Map or a plain record.
 */
export type MethodPolicies = ReadonlyMap<string, MethodPolicy> | Readonly<Record<string, MethodPolicy>>;

/** The outcome of {@link authorize}; a denial carries the Connect code and a caller-safe reason. */
export type AccessDecision =
  | { readonly allow: true }
  | { readonly allow: false; readonly code: Code.Unauthenticated | Code.PermissionDenied; readonly reason: string };

const PATH = /^\/[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\/[A-Za-z_][A-Za-z0-9_]*$/;

/** The RPC path of a method: `/<service type name>/<method name>`. */
export function methodPath(serviceTypeName: string, methodName: string): string {
  return `/${serviceTypeName}/${methodName}`;
}

/**
 * Copies `policies` into a Map, checking every key is an RPC path.
 * @throws Error naming the first malformed key (a typo would otherwise deny a method silently).
 */
export function normalizePolicies(policies: MethodPolicies): ReadonlyMap<string, MethodPolicy> {
  const entries: Iterable<readonly [string, MethodPolicy]> =
    policies instanceof Map ? policies.entries() : Object.entries(policies as Readonly<Record<string, MethodPolicy>>);
  const map = new Map<string, MethodPolicy>();
  for (const [path, policy] of entries) {
    if (!PATH.test(path)) {
      throw new Error(`access policy key ${JSON.stringify(path)} is not an RPC path like "/package.Service/Method"`);
    }
    map.set(path, Object.freeze({ ...policy, scopes: Object.freeze([...policy.scopes]) }));
  }
  return map;
}

/**
 * Policies for every method of one generated service, keyed by the method's local (camelCase)
 * name. The type demands an entry for each method, so adding an RPC without deciding who may
 * call it fails to compile.
 */
export function policiesForService<S extends DescService>(
  service: S,
  byMethod: { readonly [K in keyof S["method"]]: MethodPolicy },
): Map<string, MethodPolicy> {
  const map = new Map<string, MethodPolicy>();
  for (const method of service.methods) {
    const policy = (byMethod as Readonly<Record<string, MethodPolicy | undefined>>)[method.localName];
    if (policy === undefined) throw new Error(`no access policy for ${methodPath(service.typeName, method.name)}`);
    map.set(methodPath(service.typeName, method.name), policy);
  }
  return map;
}

/**
 * The RPC paths of `services` that have no policy: calls to them would be denied. Meant for a
 * startup check; services listed in `exempt` (health, reflection) are skipped.
 */
export function unprotectedMethods(
  services: readonly DescService[],
  policies: MethodPolicies,
  exempt: readonly string[] = [],
): string[] {
  const map = normalizePolicies(policies);
  return services
    .filter((s) => !exempt.includes(s.typeName))
    .flatMap((s) => s.methods.map((m) => methodPath(s.typeName, m.name)))
    .filter((p) => !map.has(p));
}

/**
 * Decides whether `principal` may call the RPC at `path` under `policy` (undefined: no policy,
 * always denied). Pure; the interceptor turns denials into ConnectErrors.
 */
export function authorize(policy: MethodPolicy | undefined, principal: Principal, path: string): AccessDecision {
  if (policy === undefined) {
    return { allow: false, code: Code.PermissionDenied, reason: `${path} has no access policy` };
  }
  if (policy.anonymous === true) return { allow: true };
  if (principal.anonymous) {
    return { allow: false, code: Code.Unauthenticated, reason: "missing bearer token" };
  }
  // Confinement first: `admin` never lifts it (such tokens are refused at authentication anyway).
  if (principal.role === "carrier" && policy.carrierAllowed !== true) {
    return { allow: false, code: Code.PermissionDenied, reason: `carrier credentials may not call ${path}` };
  }
  if (principal.role === "customer" && policy.customerAllowed !== true) {
    return { allow: false, code: Code.PermissionDenied, reason: `customer credentials may not call ${path}` };
  }
  if (policy.scopes.length === 0 || hasAnyScope(principal, policy.scopes)) return { allow: true };
  const needed = policy.scopes.length === 1 ? `scope ${policy.scopes[0]}` : `one of the scopes ${policy.scopes.join(", ")}`;
  return { allow: false, code: Code.PermissionDenied, reason: `${path} requires ${needed}` };
}
