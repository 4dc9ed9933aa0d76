import { randomBytes, randomUUID } from "node:crypto";
import { link, mkdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from "jose";

/** File name of the development signing key (a private JWK with `kid`). */
export const DEV_PRIVATE_JWK_FILE = "dev-private.jwk.json";
/** File name of the development JWKS (the matching public key), for `keyFile` of the verifier. */
export const DEV_JWKS_FILE = "dev-jwks.json";

/** Where {@link ensureDevKeys} keeps the development key pair. */
export interface DevKeyPaths {
  /** The private signing key, a JWK with `kid`, `alg: "ES256"` and `use: "sig"`. */
  readonly privateJwkPath: string;
  /** The public JWKS holding the matching key. */
  readonly jwksPath: string;
}

/**
 * For local development only: makes sure `dir` holds an ES256 key pair, creating the directory
 * (mode 0700) and the private key (mode 0600) if absent, and (re)writing the public JWKS from the
 * private key. Safe to call from several processes at once: exactly one key pair wins and every
 * caller gets it. The `kid` is the key's RFC 7638 thumbprint.
 */
export async function ensureDevKeys(dir: string): Promise<DevKeyPaths> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const privateJwkPath = join(dir, DEV_PRIVATE_JWK_FILE);
  const jwksPath = join(dir, DEV_JWKS_FILE);

  let privateJwk = await readJwkIfPresent(privateJwkPath);
  if (privateJwk === undefined) {
    await createExclusively(privateJwkPath, `${JSON.stringify(await generateDevJwk(), null, 2)}\n`);
    privateJwk = await readJwkIfPresent(privateJwkPath);
    if (privateJwk === undefined) throw new Error(`development key ${privateJwkPath} vanished while being created`);
  }
  const { kty, crv, x, y, kid, alg } = privateJwk;
  if (kty !== "EC" || privateJwk.d === undefined || kid === undefined) {
    throw new Error(`${privateJwkPath} is not a private EC JWK with a kid; delete it to generate a new one`);
  }
  const jwks = `${JSON.stringify({ keys: [{ kty, crv, x, y, kid, alg: alg ?? "ES256", use: "sig" }] }, null, 2)}\n`;
  const current = await readFile(jwksPath, "utf8").catch(() => undefined);
  if (current !== jwks) await replaceAtomically(jwksPath, jwks, 0o644);
  return { privateJwkPath, jwksPath };
}

async function generateDevJwk(): Promise<JWK> {
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y });
  return { ...jwk, kid, alg: "ES256", use: "sig" };
}

async function readJwkIfPresent(path: string): Promise<JWK | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new Error(`${path} does not hold a JWK`);
  }
  return parsed as JWK;
}

function tempName(path: string): string {
  return `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
}

/** Writes `path` only if it does not exist, never exposing a partly written file. */
async function createExclusively(path: string, content: string): Promise<void> {
  const tmp = tempName(path);
  await writeFile(tmp, content, { mode: 0o600, flag: "wx" });
  try {
    await link(tmp, path);
  } catch (err) {
    // Another process created it first: keep theirs.
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  } finally {
    await unlink(tmp);
  }
}

async function replaceAtomically(path: string, content: string, mode: number): Promise<void> {
  const tmp = tempName(path);
  await writeFile(tmp, content, { mode, flag: "wx" });
  await rename(tmp, path);
}

/** The key that signs a token: a private JWK file, or a key in hand. */
export type MintTokenKey =
  | { readonly privateJwkPath: string }
  | {
      /** A private JWK (its `kid` and `alg` are used) or a private CryptoKey. */
      readonly privateKey: JWK | CryptoKey;
      /** `kid` header; default the JWK's `kid`. */
      readonly kid?: string;
      /** Signing algorithm; default the JWK's `alg`, else ES256. */
      readonly alg?: string;
    };

/** Options of {@link mintToken}: the signing key and the claims to put in the token. */
export type MintTokenOptions = MintTokenKey & {
  /** `iss` claim. */
  readonly issuer: string;
  /** `aud` claim. */
  readonly audience: string;
  /** `sub` claim: the gateway, service or user the token stands for. */
  readonly subject: string;
  /** Granted scopes, written as the space-separated `scope` claim. */
  readonly scopes: readonly string[];
  /** `carrier` claim, for carrier-gateway tokens. */
  readonly carrier?: string;
  /** `customer` claim, for customer (tenant) tokens. */
  readonly customer?: string;
  /**
   * Lifetime: a span like "90s", "30m", "1h", "7d", or a number of seconds (negative numbers
   * mint an already expired token, for tests). Default "1h".
   */
  readonly expiresIn?: string | number;
  /** Issue time. Default now. */
  readonly now?: Date;
};

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400 };

/**
 * Parses a token lifetime: a positive integer followed by s, m, h or d ("90s", "1h", "7d").
 * @throws RangeError for anything else.
 */
export function parseTtl(text: string): number {
  const m = /^(\d+)([smhd])$/.exec(text.trim());
  const amount = m === null ? NaN : Number(m[1]);
  if (m === null || !(amount > 0) || !Number.isSafeInteger(amount)) {
    throw new RangeError(`invalid lifetime ${JSON.stringify(text)}: use a whole number with s, m, h or d, like 30m or 1h`);
  }
  return amount * (UNIT_SECONDS[m[2] as string] as number);
}

/**
 * Signs a JWT access token (compact JWS with a `kid` header) carrying `iss`, `aud`, `sub`,
 * `scope`, optional `carrier` or `customer`, `iat`, `exp` and a random `jti`. For development and tests;
 * production tokens come from the identity provider.
 */
export async function mintToken(opts: MintTokenOptions): Promise<string> {
  let key: CryptoKey | Uint8Array;
  let kid: string | undefined;
  let alg: string;
  if ("privateJwkPath" in opts) {
    const jwk = await readJwkIfPresent(opts.privateJwkPath);
    if (jwk === undefined) throw new Error(`signing key ${opts.privateJwkPath} does not exist`);
    alg = jwk.alg ?? "ES256";
    kid = jwk.kid;
    key = await importJWK(jwk, alg);
  } else if (isJwk(opts.privateKey)) {
    alg = opts.alg ?? opts.privateKey.alg ?? "ES256";
    kid = opts.kid ?? opts.privateKey.kid;
    key = await importJWK(opts.privateKey, alg);
  } else {
    alg = opts.alg ?? "ES256";
    kid = opts.kid;
    key = opts.privateKey;
  }
  const iat = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  const ttl = opts.expiresIn ?? "1h";
  const exp = iat + (typeof ttl === "number" ? ttl : parseTtl(ttl));

  const claims: Record<string, unknown> = { scope: opts.scopes.join(" ") };
  if (opts.carrier !== undefined) claims["carrier"] = opts.carrier;
  if (opts.customer !== undefined) claims["customer"] = opts.customer;
  return new SignJWT(claims)
    .setProtectedHeader(kid === undefined ? { alg, typ: "JWT" } : { alg, typ: "JWT", kid })
    .setIssuer(opts.issuer)
    .setAudience(opts.audience)
    .setSubject(opts.subject)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .setJti(randomUUID())
    .sign(key);
}

function isJwk(key: JWK | CryptoKey): key is JWK {
  return typeof (key as JWK).kty === "string";
}
