/** Options of {@link createRenewingToken}. */
export interface RenewingTokenOptions {
  /** Mints a token that expires `lifetimeSeconds` from now. */
  mint(lifetimeSeconds: number): Promise<string>;
  /**
   * Lifetime of each token, in seconds: at most what the services accept
   * (JWT_MAX_LIFETIME_SECONDS), or every call fails.
   */
  readonly lifetimeSeconds: number;
  /** Current time in ms. Default `Date.now`. */
  readonly now?: () => number;
}

/**
 * The token of a client that runs for longer than one token may live (the carrier simulator of
 * `npm start` runs for days, the services accept a day at most): mints a token on first use and
 * a new one once half of its lifetime has passed, so no call or reopened stream carries a token
 * about to expire. Callers at the same time share one mint; after a failed mint the next caller
 * mints again.
 * @throws RangeError when `lifetimeSeconds` is not a positive number.
 */
export function createRenewingToken(o: RenewingTokenOptions): () => Promise<string> {
  if (!(o.lifetimeSeconds > 0) || !Number.isFinite(o.lifetimeSeconds)) {
    throw new RangeError(`token lifetime must be a positive number of seconds, not ${o.lifetimeSeconds}`);
  }
  const now = o.now ?? Date.now;
  const renewAfterMs = (o.lifetimeSeconds * 1000) / 2;
  let current: { readonly token: Promise<string>; readonly renewAt: number } | undefined;
  return () => {
    const at = now();
    if (current === undefined || at >= current.renewAt) {
      const entry = { token: o.mint(o.lifetimeSeconds), renewAt: at + renewAfterMs };
      current = entry;
      entry.token.catch(() => {
        if (current === entry) current = undefined;
      });
    }
    return current.token;
  };
}
