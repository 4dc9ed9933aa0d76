export { AuthError, type AuthErrorKind } from "./auth-error.js";
export {
  createAuthInterceptor,
  DEFAULT_ANONYMOUS_SERVICES,
  principalKey,
  requirePrincipal,
  type AuthInterceptorOptions,
  type AuthLog,
} from "./auth-interceptor.js";
export {
  DEV_JWKS_FILE,
  DEV_PRIVATE_JWK_FILE,
  ensureDevKeys,
  mintToken,
  parseTtl,
  type DevKeyPaths,
  type MintTokenKey,
  type MintTokenOptions,
} from "./dev-keys.js";
export {
  createJwtVerifier,
  DEFAULT_ALGORITHMS,
  DEFAULT_MAX_TOKEN_LIFETIME_SEC,
  type JwtVerifier,
  type JwtVerifierOptions,
} from "./jwt-verifier.js";
export {
  authorize,
  methodPath,
  normalizePolicies,
  policiesForService,
  unprotectedMethods,
  type AccessDecision,
  type MethodPolicies,
  type MethodPolicy,
} from "./method-policy.js";
export { ANONYMOUS, derivePrincipal, hasAnyScope, isConfined, type Principal, type PrincipalRole } from "./principal.js";
export { ALL_SCOPES, parseScopes, Scope, type ScopeName } from "./scopes.js";
