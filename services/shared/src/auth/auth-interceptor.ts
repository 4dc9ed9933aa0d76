import { Code, ConnectError, createContextKey, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { AuthError } from "./auth-error.js";
import type { JwtVerifier } from "./jwt-verifier.js";
import { authorize, methodPath, normalizePolicies, type MethodPolicies } from "./method-policy.js";
import { ANONYMOUS, type Principal } from "./principal.js";

/**
 * Where the auth interceptor puts the caller's principal. Handlers read it with
 * `ctx.values.get(principalKey)`; it is {@link ANONYMOUS} unless a token was verified.
 */
export const principalKey = createContextKey<Principal>(ANONYMOUS, { description: "authenticated principal" });

/**
 * Services reachable without any token by default: gRPC health checking (Kubernetes probes) and
 * server reflection (grpcurl).
 */
export const DEFAULT_ANONYMOUS_SERVICES: readonly string[] = Object.freeze([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

/** The narrow logging interface the interceptor needs (pino loggers satisfy it). */
export interface AuthLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

/** Options of {@link createAuthInterceptor}. */
export interface AuthInterceptorOptions {
  /** Checks bearer tokens. */
  verifier: Pick<JwtVerifier, "verify">;
  /** Who may call which RPC, keyed by `/<package.Service>/<Method>`. Unlisted methods are denied. */
  policies: MethodPolicies;
  /**
   * Service type names that skip authentication and authorization entirely (their handlers see
   * ANONYMOUS). Default {@link DEFAULT_ANONYMOUS_SERVICES}; a given list replaces the default.
   */
  anonymousServices?: readonly string[];
  /** Where denials are logged: missing policies and key-source failures at warn, others at info. */
  logger?: AuthLog;
}

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/**
 * A Connect server interceptor that authenticates the bearer token in the `authorization`
 * header and authorizes the call against the method's policy, before the handler runs (for
 * streaming RPCs, before the first message is read).
 *
 * - service in `anonymousServices` → passes through;
 * - no policy for the method → `PermissionDenied` (deny by default);
 * - no `authorization` header → ANONYMOUS, which only `anonymous` policies admit
 *   (else `Unauthenticated` "missing bearer token");
 * - header not `Bearer <token>`, or token fails verification → `Unauthenticated` with the reason
 *   (`Unavailable` when the signing keys cannot be loaded); a bad token is refused even on
 *   anonymous methods, so a client learns its credentials are wrong;
 * - a token with malformed `carrier`/`customer` claims, both claims, or `admin` together with
 *   either claim → `Unauthenticated` (see `derivePrincipal`);
 * - verified but without a required scope (operators pass), or a carrier/customer token on a
 *   method that does not allow it → `PermissionDenied` naming what is needed.
 *
 * On success the principal (derived once, here) is stored under {@link principalKey} in the
 * call's context values; the service's ownership policy reads it from there.
 */
export function createAuthInterceptor(opts: AuthInterceptorOptions): Interceptor {
  const policies = normalizePolicies(opts.policies);
  const bypass = new Set(opts.anonymousServices ?? DEFAULT_ANONYMOUS_SERVICES);
  const { verifier, logger } = opts;

  async function authenticate(header: string | null, rpc: string): Promise<Principal> {
    if (header === null) return ANONYMOUS;
    const token = BEARER.exec(header)?.[1];
    if (token === undefined) {
      logger?.info({ rpc }, "rejected call: malformed authorization header");
      throw new ConnectError('authorization header must be "Bearer <token>"', Code.Unauthenticated);
    }
    try {
      return await verifier.verify(token);
    } catch (err) {
      if (err instanceof AuthError && err.kind === "unavailable") {
        logger?.warn({ rpc, err: err.cause ?? err }, "cannot verify token: signing keys unavailable");
        throw new ConnectError(err.message, Code.Unavailable);
      }
      if (err instanceof AuthError) {
        logger?.info({ rpc, reason: err.message }, "rejected call: invalid token");
        throw new ConnectError(err.message, Code.Unauthenticated);
      }
      logger?.warn({ rpc, err }, "rejected call: token verification failed unexpectedly");
      throw new ConnectError("token could not be verified", Code.Unauthenticated);
    }
  }

  return (next) => async (req) => {
    if (bypass.has(req.service.typeName)) {
      req.contextValues.set(principalKey, ANONYMOUS);
      return next(req);
    }
    const rpc = methodPath(req.service.typeName, req.method.name);
    const policy = policies.get(rpc);
    if (policy === undefined) {
      logger?.warn({ rpc }, "denied call to a method without an access policy");
    }
    const principal = policy === undefined ? ANONYMOUS : await authenticate(req.header.get("authorization"), rpc);
    const decision = authorize(policy, principal, rpc);
    if (!decision.allow) {
      if (policy !== undefined) {
        logger?.info(
          { rpc, sub: principal.subject, role: principal.role, carrier: principal.carrier, customer: principal.customer, reason: decision.reason },
          "rejected call: not authorized",
        );
      }
      throw new ConnectError(decision.reason, decision.code);
    }
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
}

/**
 * The caller's principal, for handlers of methods that allow anonymous calls but need an
 * identity on some path.
 * @throws ConnectError `Unauthenticated` when the call carried no token.
 */
export function requirePrincipal(ctx: { readonly values: ContextValues }): Principal {
  const principal = ctx.values.get(principalKey);
  if (principal.anonymous) throw new ConnectError("missing bearer token", Code.Unauthenticated);
  return principal;
}
