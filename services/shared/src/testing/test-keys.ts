import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDevKeys, mintToken, type MintTokenOptions } from "../auth/dev-keys.js";

/** The claims of a test token: everything but the key, issuer and audience. */
export type TestTokenClaims = Omit<MintTokenOptions, "issuer" | "audience" | "privateJwkPath" | "privateKey" | "kid" | "alg">;

/** A test's own signing key, in a temporary directory. */
export interface TestKeys {
  /** The key's JWKS: a service's JWT_PUBLIC_KEY_FILE (see `serviceTestEnv`). */
  readonly jwksPath: string;
  /** The private key (JWK), for tools that sign their own tokens. */
  readonly privateJwkPath: string;
  /** A token signed with the key for the issuer and audience services expect by default. */
  token(claims: TestTokenClaims): Promise<string>;
  /** Deletes the directory. */
  remove(): Promise<void>;
}

/** Issuer and audience services accept by default (JWT_ISSUER, JWT_AUDIENCE). */
const ISSUER = "logistics-dev";
const AUDIENCE = "logistics-mesh";

/** Creates a fresh signing key for a test, in a temporary directory named after `name`. */
export async function createTestKeys(name = "test"): Promise<TestKeys> {
  const dir = await mkdtemp(join(tmpdir(), `${name}-keys-`));
  try {
    const { jwksPath, privateJwkPath } = await ensureDevKeys(dir);
    return {
      jwksPath,
      privateJwkPath,
      token: (claims) => mintToken({ ...claims, privateJwkPath, issuer: ISSUER, audience: AUDIENCE }),
      remove: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
