import * as assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from "jose";
import { AuthError } from "./auth-error.js";
import { createJwtVerifier, DEFAULT_MAX_TOKEN_LIFETIME_SEC, type JwtVerifierOptions } from "./jwt-verifier.js";

const ISSUER = "lifetime-test-issuer";
const AUDIENCE = "lifetime-test-audience";
/** The verifiers' fixed clock: 2030-01-01T00:00:00Z, in seconds. */
const NOW = 1_893_456_000;
const HOUR = 3600;

describe("createJwtVerifier: token lifetime", () => {
  let dir: string;
  let privateKey: CryptoKey;
  let keyFile: string;

  /** A verifier at {@link NOW} with the default 30 s clock tolerance. */
  const verifierWith = (o: Partial<JwtVerifierOptions> = {}) =>
    createJwtVerifier({ keyFile, issuer: ISSUER, audience: AUDIENCE, clock: () => new Date(NOW * 1000), ...o });

  /** Signs valid claims (issued at NOW, one hour long) with `claims` over them and `omit` left out. */
  const sign = (claims: JWTPayload = {}, omit: readonly string[] = []) => {
    const payload: JWTPayload = { iss: ISSUER, aud: AUDIENCE, sub: "gateway-1", iat: NOW, exp: NOW + HOUR, ...claims };
    for (const c of omit) delete payload[c];
    return new SignJWT(payload).setProtectedHeader({ alg: "ES256", kid: "k1" }).sign(privateKey);
  };

  /** Asserts `p` rejects with an `unauthenticated` AuthError whose message is exactly `message`. */
  const refused = (p: Promise<unknown>, message: string) =>
    assert.rejects(p, (err: unknown) => {
      assert.ok(err instanceof AuthError, `expected AuthError, got ${String(err)}`);
      assert.equal(err.kind, "unauthenticated");
      assert.equal(err.message, message);
      return true;
    });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "jwt-lifetime-"));
    const pair = await generateKeyPair("ES256", { extractable: true });
    privateKey = pair.privateKey;
    keyFile = join(dir, "jwks.json");
    await writeFile(keyFile, JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "ES256", use: "sig" }] }));
  });

  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("accepts a token whose lifetime is exactly the maximum, and a shorter one", async () => {
    const v = await verifierWith({ maxLifetimeSec: 2 * HOUR });
    assert.equal((await v.verify(await sign({ exp: NOW + 2 * HOUR }))).subject, "gateway-1");
    assert.equal((await v.verify(await sign({ exp: NOW + 60 }))).subject, "gateway-1");
  });

  it("refuses a token living one second longer than the maximum, with a message naming the rule only", async () => {
    const v = await verifierWith({ maxLifetimeSec: 2 * HOUR });
    await refused(v.verify(await sign({ exp: NOW + 2 * HOUR + 1 })), "token lifetime (exp - iat) exceeds the maximum accepted");
  });

  it("measures the lifetime from iat, not from now: an old token with a long life is refused too", async () => {
    const v = await verifierWith({ maxLifetimeSec: 2 * HOUR });
    // Issued 10 h ago, valid for another hour: its remaining hour is within the limit, its life is not.
    await refused(v.verify(await sign({ iat: NOW - 10 * HOUR, exp: NOW + HOUR })), "token lifetime (exp - iat) exceeds the maximum accepted");
  });

  it("refuses a token issued years ahead of its expiry under the default maximum of one day", async () => {
    const v = await verifierWith();
    assert.equal(DEFAULT_MAX_TOKEN_LIFETIME_SEC, 86_400);
    assert.equal((await v.verify(await sign({ exp: NOW + 86_400 }))).subject, "gateway-1");
    await refused(v.verify(await sign({ exp: NOW + 86_401 })), "token lifetime (exp - iat) exceeds the maximum accepted");
    await refused(v.verify(await sign({ exp: NOW + 10 * 365 * 86_400 })), "token lifetime (exp - iat) exceeds the maximum accepted");
  });

  it("refuses a token without exp or without iat", async () => {
    const v = await verifierWith();
    await refused(v.verify(await sign({}, ["exp"])), 'token has no "exp" claim');
    await refused(v.verify(await sign({}, ["iat"])), 'token has no "iat" claim');
  });

  it("refuses an iat that is not a number", async () => {
    const v = await verifierWith();
    await refused(v.verify(await sign({ iat: String(NOW) as unknown as number })), 'token "iat" claim is invalid');
  });

  it("refuses an iat later than now plus the clock tolerance, and accepts one within it", async () => {
    const v = await verifierWith({ clockToleranceSec: 30 });
    // A short life that starts in a year would otherwise pass the lifetime check.
    await refused(v.verify(await sign({ iat: NOW + 365 * 86_400, exp: NOW + 365 * 86_400 + HOUR })), 'token "iat" claim is in the future');
    await refused(v.verify(await sign({ iat: NOW + 31, exp: NOW + 31 + HOUR })), 'token "iat" claim is in the future');
    assert.equal((await v.verify(await sign({ iat: NOW + 30, exp: NOW + 30 + HOUR }))).subject, "gateway-1");
    const strict = await verifierWith({ clockToleranceSec: 0 });
    await refused(strict.verify(await sign({ iat: NOW + 1, exp: NOW + 1 + HOUR })), 'token "iat" claim is in the future');
  });

  it("still reports an expired long-lived token as expired", async () => {
    const v = await verifierWith();
    await refused(v.verify(await sign({ iat: NOW - 400 * 86_400, exp: NOW - HOUR })), "token expired");
  });

  it("refuses a maximum lifetime that is not a positive number of seconds at creation", async () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await assert.rejects(verifierWith({ maxLifetimeSec: bad }), /maximum token lifetime of a positive number of seconds/, String(bad));
    }
  });
});
