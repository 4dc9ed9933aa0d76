import { createPublicKey, type KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  importSPKI,
  importX509,
  jwtVerify,
  type CryptoKey,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWSHeaderParameters,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from "jose";
import { AuthError } from "./auth-error.js";
import { derivePrincipal, type Principal } from "./principal.js";

/** Signature algorithms accepted unless {@link JwtVerifierOptions.algorithms} says otherwise. */
export const DEFAULT_ALGORITHMS: readonly string[] = Object.freeze(["ES256", "RS256", "EdDSA"]);

/**
 * Longest token lifetime (`exp` − `iat`) accepted unless {@link JwtVerifierOptions.maxLifetimeSec}
 * says otherwise: one day, the longest a carrier gateway's or a service's token usually lives.
 */
export const DEFAULT_MAX_TOKEN_LIFETIME_SEC = 86_400;

/** Options of {@link createJwtVerifier}: one key source, plus what a valid token must say. */
export interface JwtVerifierOptions {
  /**
   * URL of the issuer's JWKS (`https://issuer/.well-known/jwks.json`). Keys are fetched on first
   * use, cached, and refetched when a token names an unknown `kid` (key rotation). Exactly one of
   * `jwksUrl` and `keyFile` must be set.
   */
  jwksUrl?: string;
  /**
   * Path to a file holding the verification key(s): a JWKS JSON document (`{"keys": [...]}`), a
   * single public JWK, a PEM public key (`BEGIN PUBLIC KEY`, SPKI) or a PEM certificate. Read once,
   * when the verifier is created; private key material is refused.
   */
  keyFile?: string;
  /** Required `iss` claim value. */
  issuer: string;
  /** Required `aud` claim value (the token's `aud` may be an array containing it). */
  audience: string;
  /** Allowed clock skew for `exp`/`nbf`/`iat`, in seconds. Default 30. */
  clockToleranceSec?: number;
  /**
   * Longest lifetime a token may have, `exp` − `iat`, in seconds. Both claims are required, and a
   * token issued in the future (`iat` later than now plus the clock tolerance) is refused, so no
   * accepted token stays usable for longer than this plus the tolerance: a leaked token dies by
   * then, without rotating the signing key. Default {@link DEFAULT_MAX_TOKEN_LIFETIME_SEC} (one day).
   */
  maxLifetimeSec?: number;
  /** Accepted `alg` header values. Default {@link DEFAULT_ALGORITHMS}: ES256, RS256, EdDSA. */
  algorithms?: readonly string[];
  /** How long a JWKS fetch may take, in milliseconds. Default 5000. Only with `jwksUrl`. */
  jwksTimeoutMs?: number;
  /**
   * How long after a JWKS fetch a token naming an unknown `kid` may trigger another fetch, in
   * milliseconds. Default 30 000 (jose's). Only with `jwksUrl`.
   */
  jwksCooldownMs?: number;
  /**
   * Verified tokens remembered, by the token string (least recently used out first), so a
   * client that opens many calls with one token is verified once. An entry is served only
   * before the token's `exp` (never with the clock tolerance) and only while the key source
   * still gives the key that verified it for the token's header (a key rotated out of the JWKS
   * and refetched, or any JWKS refetch, means a full verification). 0: no cache. Default 10 000.
   */
  cacheSize?: number;
  /** Current time, for `exp`/`nbf` checks. Default: the system clock. */
  clock?: () => Date;
}

/** Checks bearer tokens and turns them into principals. */
export interface JwtVerifier {
  /**
   * Verifies `token` (a compact JWS): signature, `alg` in the allowed list, `iss`, `aud`, `exp`
   * and `iat` (both required; `iat` not in the future, `exp` − `iat` within the maximum lifetime),
   * `nbf`, and a non-empty string `sub` (required). Resolves to a non-anonymous
   * principal; rejects with an {@link AuthError} whose message is safe to show the caller.
   */
  verify(token: string): Promise<Principal>;
}

/**
 * Creates a verifier for tokens from one issuer and for one audience, with keys from a JWKS URL
 * or a local key file.
 *
 * Async because a key file is read, parsed and checked here, so that a bad file fails at startup
 * rather than on the first request. A JWKS URL is not contacted here: a service starts even while
 * its identity provider is briefly unreachable, and calls fail with `unavailable` until it is back.
 *
 * @throws Error when neither or both key sources are given, the key file is unreadable, not a
 * public key, or holds no key usable with the allowed algorithms, or the maximum lifetime is not
 * a positive number of seconds.
 */
export async function createJwtVerifier(opts: JwtVerifierOptions): Promise<JwtVerifier> {
  if ((opts.jwksUrl === undefined) === (opts.keyFile === undefined)) {
    throw new Error("JWT verifier needs exactly one key source: jwksUrl or keyFile");
  }
  if (opts.issuer === "" || opts.audience === "") {
    throw new Error("JWT verifier needs a non-empty issuer and audience");
  }
  const algorithms = [...(opts.algorithms ?? DEFAULT_ALGORITHMS)];
  if (algorithms.length === 0) throw new Error("JWT verifier needs at least one allowed algorithm");
  const maxLifetimeSec = opts.maxLifetimeSec ?? DEFAULT_MAX_TOKEN_LIFETIME_SEC;
  if (!(maxLifetimeSec > 0) || !Number.isFinite(maxLifetimeSec)) {
    throw new Error("JWT verifier needs a maximum token lifetime of a positive number of seconds");
  }
  const clockToleranceSec = opts.clockToleranceSec ?? 30;
  const clock = opts.clock;

  const { jwksUrl, keyFile } = opts;
  const getKey = guardKeySource(
    jwksUrl !== undefined ? remoteKeys(jwksUrl, opts.jwksTimeoutMs, opts.jwksCooldownMs) : await fileKeys(keyFile ?? "", algorithms),
  );
  const cacheSize = Math.max(0, opts.cacheSize ?? DEFAULT_VERIFIED_CACHE_SIZE);
  const verified = new Map<string, Verified>();

  /** The cached principal of `token`, if it is still valid now with the same key; drops a stale entry. */
  const cached = async (token: string, nowMs: number): Promise<Principal | undefined> => {
    const entry = verified.get(token);
    if (entry === undefined) return undefined;
    if (nowMs < entry.expMs) {
      try {
        if ((await getKey(entry.header, entry.jws)) === entry.key) {
          verified.delete(token);
          verified.set(token, entry);
          return entry.principal;
        }
      } catch {
        // The key source no longer gives that key (or cannot be reached): verify in full.
      }
    }
    verified.delete(token);
    return undefined;
  };

  const baseOptions: JWTVerifyOptions = {
    issuer: opts.issuer,
    audience: opts.audience,
    algorithms,
    clockTolerance: clockToleranceSec,
    requiredClaims: ["exp", "iat", "sub"],
  };

  return {
    async verify(token: string): Promise<Principal> {
      const now = clock === undefined ? undefined : clock();
      const nowMs = now === undefined ? Date.now() : now.getTime();
      if (cacheSize > 0) {
        const hit = await cached(token, nowMs);
        if (hit !== undefined) return hit;
      }
      const options: JWTVerifyOptions = now === undefined ? baseOptions : { ...baseOptions, currentDate: now };
      let result: Awaited<ReturnType<typeof verifyToken>>;
      try {
        result = await verifyToken(token, getKey, options);
      } catch (err) {
        throw toAuthError(err);
      }
      checkLifetime(result.payload, Math.floor(nowMs / 1000), maxLifetimeSec, clockToleranceSec);
      const principal = derivePrincipal(result.payload);
      const expMs = (result.payload.exp ?? 0) * 1000;
      if (cacheSize > 0 && nowMs < expMs) {
        const [protectedPart = "", payloadPart = "", signature = ""] = token.split(".");
        verified.set(token, { principal, expMs, header: result.header, jws: { protected: protectedPart, payload: payloadPart, signature }, key: result.key });
        if (verified.size > cacheSize) verified.delete(verified.keys().next().value as string);
      }
      return principal;
    },
  };
}

/**
 * The lifetime rule, on claims whose signature, `exp` and `nbf` jose has checked: `iat` no later
 * than now plus the tolerance (else a token could claim a short life that starts years from now),
 * and `exp` − `iat` at most the maximum. Both are seconds since the epoch, like jose's `now`.
 */
function checkLifetime(payload: JWTPayload, nowSec: number, maxLifetimeSec: number, toleranceSec: number): void {
  const { iat, exp } = payload;
  // jose has required both as numbers (requiredClaims); this only narrows the types.
  if (typeof iat !== "number" || typeof exp !== "number") throw new AuthError("unauthenticated", "malformed token");
  if (iat > nowSec + toleranceSec) throw new AuthError("unauthenticated", 'token "iat" claim is in the future');
  if (exp - iat > maxLifetimeSec) throw new AuthError("unauthenticated", "token lifetime (exp - iat) exceeds the maximum accepted");
}

/** Tokens a verifier remembers by default ({@link JwtVerifierOptions.cacheSize}). */
export const DEFAULT_VERIFIED_CACHE_SIZE = 10_000;

/** The header and key types of a key source. */
type KeyHeader = Parameters<JWTVerifyGetKey>[0];
type VerificationKey = Awaited<ReturnType<JWTVerifyGetKey>>;

/** A verified token: its principal, until when, and the key (for its header) that verified it. */
interface Verified {
  readonly principal: Principal;
  readonly expMs: number;
  readonly header: KeyHeader;
  readonly jws: FlattenedJWSInput;
  readonly key: VerificationKey;
}

/**
 * jwtVerify, plus the retry jose leaves to its caller: when a token has no `kid` and several
 * keys of its type are in the set (during a key rotation), try each candidate in turn. Also
 * says which key verified the token.
 */
async function verifyToken(
  token: string,
  getKey: JWTVerifyGetKey,
  options: JWTVerifyOptions,
): Promise<{ payload: JWTPayload; header: KeyHeader; key: VerificationKey }> {
  let used: VerificationKey | undefined;
  const capture: JWTVerifyGetKey = async (header, jws) => (used = await getKey(header, jws));
  try {
    const { payload, protectedHeader } = await jwtVerify(token, capture, options);
    return { payload, header: protectedHeader, key: used! };
  } catch (err) {
    if (!(err instanceof errors.JWKSMultipleMatchingKeys) || !isAsyncIterable<CryptoKey>(err)) throw err;
    for await (const key of err) {
      try {
        const { payload, protectedHeader } = await jwtVerify(token, key, options);
        // No single key answers this header: a cached entry would never match, so none is kept.
        return { payload, header: protectedHeader, key: NO_SINGLE_KEY };
      } catch (inner) {
        if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}

/** Stands for "several candidate keys": never equal to a key the key source gives. */
const NO_SINGLE_KEY = new Uint8Array(0);

function isAsyncIterable<T>(x: object): x is AsyncIterable<T> {
  return typeof (x as Partial<AsyncIterable<T>>)[Symbol.asyncIterator] === "function";
}

/** A key source failed for reasons that are not the token's fault (JWKS fetch failed, bad JWKS). */
class KeySourceError extends Error {
  override readonly name = "KeySourceError";
}

/**
 * Wraps a key resolver so that failures of the key source itself are told apart from
 * verdicts on the token (no key with that kid, unsupported alg, several candidates).
 */
function guardKeySource(getKey: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await getKey(header, token);
    } catch (err) {
      if (
        err instanceof AuthError ||
        err instanceof errors.JWKSNoMatchingKey ||
        err instanceof errors.JWKSMultipleMatchingKeys ||
        err instanceof errors.JOSENotSupported
      ) {
        throw err;
      }
      throw new KeySourceError("signing keys could not be loaded", { cause: err });
    }
  };
}

function remoteKeys(jwksUrl: string, timeoutMs: number | undefined, cooldownMs: number | undefined): JWTVerifyGetKey {
  let url: URL;
  try {
    url = new URL(jwksUrl);
  } catch {
    throw new Error(`JWKS URL is not a valid URL: ${JSON.stringify(jwksUrl)}`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new Error(`JWKS URL must use http or https: ${JSON.stringify(jwksUrl)}`);
  }
  return createRemoteJWKSet(url, {
    ...(timeoutMs === undefined ? {} : { timeoutDuration: timeoutMs }),
    ...(cooldownMs === undefined ? {} : { cooldownDuration: cooldownMs }),
  });
}

async function fileKeys(path: string, algorithms: readonly string[]): Promise<JWTVerifyGetKey> {
  let text: string;
  try {
    text = (await readFile(path, "utf8")).trim();
  } catch (err) {
    throw new Error(`cannot read key file ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (text.startsWith("{")) return jwksFileKeys(path, text);
  if (text.includes("PRIVATE KEY")) {
    throw new Error(`key file ${path} holds a private key; give the verifier the public key`);
  }
  if (text.startsWith("-----BEGIN PUBLIC KEY-----") || text.startsWith("-----BEGIN CERTIFICATE-----")) {
    return pemFileKeys(path, text, algorithms);
  }
  throw new Error(`key file ${path} is neither a JWKS/JWK JSON document nor a PEM public key or certificate`);
}

function jwksFileKeys(path: string, text: string): JWTVerifyGetKey {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`key file ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof doc !== "object" || doc === null) throw new Error(`key file ${path} is not a JWKS`);
  // A bare JWK is accepted as a one-key set.
  const set = ("keys" in doc ? doc : { keys: [doc] }) as JSONWebKeySet;
  if (!Array.isArray(set.keys) || set.keys.length === 0) {
    throw new Error(`key file ${path} holds no keys`);
  }
  for (const jwk of set.keys) {
    if (typeof jwk !== "object" || jwk === null || typeof jwk.kty !== "string") {
      throw new Error(`key file ${path} holds a key without "kty"`);
    }
    if ("d" in jwk || jwk.kty === "oct") {
      throw new Error(`key file ${path} holds private or symmetric key material; give the verifier the public JWKS`);
    }
  }
  try {
    return createLocalJWKSet(set);
  } catch (err) {
    throw new Error(`key file ${path} is not a valid JWKS: ${(err as Error).message}`, { cause: err });
  }
}

/** The JWS algorithms a public key of this type and curve can verify. */
function algorithmsForKey(key: KeyObject): readonly string[] {
  switch (key.asymmetricKeyType) {
    case "ec": {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === "prime256v1") return ["ES256"];
      if (curve === "secp384r1") return ["ES384"];
      if (curve === "secp521r1") return ["ES512"];
      return [];
    }
    case "rsa":
      return ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];
    case "rsa-pss":
      return ["PS256", "PS384", "PS512"];
    case "ed25519":
      return ["EdDSA", "Ed25519"];
    default:
      return [];
  }
}

async function pemFileKeys(path: string, pem: string, algorithms: readonly string[]): Promise<JWTVerifyGetKey> {
  const isCertificate = pem.startsWith("-----BEGIN CERTIFICATE-----");
  let keyObject: KeyObject;
  try {
    keyObject = createPublicKey(pem);
  } catch (err) {
    throw new Error(`key file ${path} is not a valid PEM ${isCertificate ? "certificate" : "public key"}`, { cause: err });
  }
  const usable = algorithmsForKey(keyObject).filter((a) => algorithms.includes(a));
  const first = usable[0];
  if (first === undefined) {
    throw new Error(
      `key file ${path} holds a ${keyObject.asymmetricKeyType ?? "unknown"} key that none of the allowed algorithms (${algorithms.join(", ")}) can use`,
    );
  }
  const importFor = (alg: string) => (isCertificate ? importX509(pem, alg) : importSPKI(pem, alg));
  // A PEM key is bound to one algorithm on import; import per algorithm the token asks for.
  const imported = new Map<string, Promise<CryptoKey>>([[first, importFor(first)]]);
  await imported.get(first);
  return async (header: JWSHeaderParameters) => {
    const alg = header.alg;
    if (alg === undefined || !usable.includes(alg)) {
      throw new AuthError("unauthenticated", "token algorithm does not match the verification key");
    }
    let key = imported.get(alg);
    if (key === undefined) {
      key = importFor(alg);
      imported.set(alg, key);
    }
    return key;
  };
}

/** Maps any verification failure to an AuthError with a caller-safe message. */
function toAuthError(err: unknown): AuthError {
  if (err instanceof AuthError) return err;
  const fail = (message: string) => new AuthError("unauthenticated", message, { cause: err });
  if (err instanceof KeySourceError) {
    return new AuthError("unavailable", "token signing keys are unavailable", { cause: err });
  }
  if (err instanceof errors.JWTExpired) return fail("token expired");
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case "iss":
        return fail(err.reason === "missing" ? 'token has no "iss" claim' : "token issuer is not accepted");
      case "aud":
        return fail(err.reason === "missing" ? 'token has no "aud" claim' : "token audience is not accepted");
      case "nbf":
        return fail("token is not valid yet");
      default:
        return fail(err.reason === "missing" ? `token has no "${err.claim}" claim` : `token "${err.claim}" claim is invalid`);
    }
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return fail("token signature is invalid");
  if (err instanceof errors.JWKSNoMatchingKey) return fail("token is signed by an unknown key");
  if (err instanceof errors.JOSEAlgNotAllowed) return fail("token algorithm is not accepted");
  if (err instanceof errors.JOSENotSupported) return fail("token uses an unsupported algorithm or header");
  return fail("malformed token");
}
