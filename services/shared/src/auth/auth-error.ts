/**
 * Why authentication failed:
 * - `unauthenticated`: the caller's credentials are missing, malformed, expired, or not trusted;
 *   the caller must fix its token (maps to `Code.Unauthenticated`).
 * - `unavailable`: the token could not be checked because the signing keys could not be loaded
 *   (JWKS endpoint down or serving garbage); the caller may retry (maps to `Code.Unavailable`).
 */
export type AuthErrorKind = "unauthenticated" | "unavailable";

/**
 * A token verification failure. `message` is safe to return to the caller: it names what was
 * wrong with the token ("token expired", "token audience is not accepted") and never includes
 * expected values, key material or library internals. The underlying error, if any, is kept in
 * `cause` for server-side logs only.
 */
export class AuthError extends Error {
  override readonly name = "AuthError";
  readonly kind: AuthErrorKind;

  constructor(kind: AuthErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
  }
}
