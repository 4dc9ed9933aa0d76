import * as assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import {
  base64url,
  exportJWK,
  exportPKCS8,
  exportSPKI,
  generateKeyPair,
  SignJWT,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from "jose";
import { AuthError } from "../src/auth/auth-error.js";
import { createJwtVerifier, type JwtVerifier } from "../src/auth/jwt-verifier.js";

const ISSUER = "verifier-test-issuer";
const AUDIENCE = "verifier-test-audience";

interface KeyPair {
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
}

async function keyPair(alg: string): Promise<KeyPair> {
  return generateKeyPair(alg, { extractable: true });
}

async function publicJwk(k: KeyPair, extra: Partial<JWK> = {}): Promise<JWK> {
  return { ...(await exportJWK(k.publicKey)), use: "sig", ...extra };
}

/** Signs `claims` (defaults: valid iss/aud/sub/iat/exp) with the given key and header. */
async function sign(
  key: CryptoKey,
  opts: { alg?: string; kid?: string; claims?: JWTPayload; omit?: readonly string[] } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const claims: JWTPayload = { iss: ISSUER, aud: AUDIENCE, sub: "subject-1", iat: now, exp: now + 600, ...opts.claims };
  for (const c of opts.omit ?? []) delete claims[c];
  const alg = opts.alg ?? "ES256";
  return new SignJWT(claims).setProtectedHeader(opts.kid === undefined ? { alg } : { alg, kid: opts.kid }).sign(key);
}

async function rejectsWith(p: Promise<unknown>, kind: AuthError["kind"], message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof AuthError, `expected AuthError, got ${String(err)}`);
    assert.equal(err.kind, kind);
    assert.match(err.message, message);
    return true;
  });
}

describe("createJwtVerifier", () => {
  let dir: string;
  let es: KeyPair;
  let verifier: JwtVerifier;

  const file = async (name: string, content: string) => {
    const path = join(dir, name);
    await writeFile(path, content);
    return path;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "jwt-verifier-"));
    es = await keyPair("ES256");
    const jwks = await file("jwks.json", JSON.stringify({ keys: [await publicJwk(es, { kid: "k1", alg: "ES256" })] }));
    verifier = await createJwtVerifier({ keyFile: jwks, issuer: ISSUER, audience: AUDIENCE });
  });

  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  describe("principal", () => {
    it("carries subject, scopes from scope and scp, the carrier and all claims", async () => {
      const p = await verifier.verify(
        await sign(es.privateKey, { kid: "k1", claims: { sub: "gw-1", scope: "scans:write routes:read", scp: ["shipments:read"], carrier: "acme", zone: "eu" } }),
      );
      assert.equal(p.subject, "gw-1");
      assert.equal(p.anonymous, false);
      assert.equal(p.carrier, "acme");
      assert.equal(p.role, "carrier");
      assert.deepEqual([...p.scopes].sort(), ["routes:read", "scans:write", "shipments:read"]);
      assert.equal(p.claims["zone"], "eu");
    });

    it("carries the customer claim of a tenant token", async () => {
      const p = await verifier.verify(await sign(es.privateKey, { kid: "k1", claims: { scope: "subscriptions:read", customer: "cust-9" } }));
      assert.equal(p.role, "customer");
      assert.equal(p.customer, "cust-9");
    });

    it("rejects admin in a token bound to a carrier, even when it arrives through scp", async () => {
      await rejectsWith(
        verifier.verify(await sign(es.privateKey, { kid: "k1", claims: { scope: "scans:write", scp: ["admin"], carrier: "acme" } })),
        "unauthenticated",
        /bound to a carrier may not carry the admin scope/,
      );
    });

    it("has no carrier when the token has no carrier claim", async () => {
      const p = await verifier.verify(await sign(es.privateKey, { kid: "k1" }));
      assert.equal(p.carrier, undefined);
      assert.equal("carrier" in p, false);
      assert.equal(p.scopes.size, 0);
    });

    it("accepts an audience array containing the audience", async () => {
      const p = await verifier.verify(await sign(es.privateKey, { kid: "k1", claims: { aud: ["other", AUDIENCE] } }));
      assert.equal(p.subject, "subject-1");
    });
  });

  describe("rejections", () => {
    it("rejects a token without sub or exp", async () => {
      await rejectsWith(verifier.verify(await sign(es.privateKey, { kid: "k1", omit: ["sub"] })), "unauthenticated", /^token has no "sub" claim$/);
      await rejectsWith(verifier.verify(await sign(es.privateKey, { kid: "k1", omit: ["exp"] })), "unauthenticated", /^token has no "exp" claim$/);
    });

    it("rejects a carrier claim that is not a carrier code", async () => {
      await rejectsWith(
        verifier.verify(await sign(es.privateKey, { kid: "k1", claims: { carrier: 7 } })),
        "unauthenticated",
        /"carrier" claim must be a carrier code/,
      );
    });

    it("rejects a token that is not valid yet", async () => {
      const nbf = Math.floor(Date.now() / 1000) + 600;
      await rejectsWith(verifier.verify(await sign(es.privateKey, { kid: "k1", claims: { nbf } })), "unauthenticated", /^token is not valid yet$/);
    });

    it("rejects an algorithm outside the allowed list, including unsigned tokens", async () => {
      const es384 = await keyPair("ES384");
      await rejectsWith(verifier.verify(await sign(es384.privateKey, { alg: "ES384", kid: "k1" })), "unauthenticated", /^token algorithm is not accepted$/);
      const header = base64url.encode(JSON.stringify({ alg: "none" }));
      const now = Math.floor(Date.now() / 1000);
      const body = base64url.encode(JSON.stringify({ iss: ISSUER, aud: AUDIENCE, sub: "x", exp: now + 60, scope: "admin" }));
      await rejectsWith(verifier.verify(`${header}.${body}.`), "unauthenticated", /^token algorithm is not accepted$/);
    });

    it("rejects garbage as a malformed token", async () => {
      await rejectsWith(verifier.verify("a.b.c"), "unauthenticated", /^malformed token$/);
      await rejectsWith(verifier.verify(""), "unauthenticated", /^malformed token$/);
    });

    it("keeps the library's error as the cause but not in the message", async () => {
      await assert.rejects(verifier.verify(await sign(es.privateKey, { kid: "k1", claims: { iss: "x" } })), (err: unknown) => {
        assert.ok(err instanceof AuthError);
        assert.equal(err.message, "token issuer is not accepted");
        assert.ok(err.cause instanceof Error);
        return true;
      });
    });
  });

  describe("clock tolerance", () => {
    it("accepts a token expired within the tolerance and rejects it without tolerance", async () => {
      const token = await sign(es.privateKey, { kid: "k1" });
      const jwks = join(dir, "jwks.json");
      const late = () => new Date(Date.now() + 610_000); // 10 s after exp
      const lenient = await createJwtVerifier({ keyFile: jwks, issuer: ISSUER, audience: AUDIENCE, clock: late });
      assert.equal((await lenient.verify(token)).subject, "subject-1");
      const strict = await createJwtVerifier({ keyFile: jwks, issuer: ISSUER, audience: AUDIENCE, clock: late, clockToleranceSec: 0 });
      await rejectsWith(strict.verify(token), "unauthenticated", /^token expired$/);
    });
  });

  describe("verified-token cache", () => {
    it("serves a token verified before without verifying it again, unless the cache is off", async () => {
      const token = await sign(es.privateKey, { kid: "k1" });
      assert.equal(await verifier.verify(token), await verifier.verify(token), "the same principal, from the cache");
      const uncached = await createJwtVerifier({ keyFile: join(dir, "jwks.json"), issuer: ISSUER, audience: AUDIENCE, cacheSize: 0 });
      assert.notEqual(await uncached.verify(token), await uncached.verify(token));
    });

    it("never serves a token past its exp, not even within the clock tolerance", async () => {
      let now = Date.now();
      const jwks = join(dir, "jwks.json");
      const token = await sign(es.privateKey, { kid: "k1" }); // exp: 600 s from now
      const strict = await createJwtVerifier({ keyFile: jwks, issuer: ISSUER, audience: AUDIENCE, clock: () => new Date(now), clockToleranceSec: 0 });
      const lenient = await createJwtVerifier({ keyFile: jwks, issuer: ISSUER, audience: AUDIENCE, clock: () => new Date(now) });
      assert.equal((await strict.verify(token)).subject, "subject-1");
      const before = await lenient.verify(token);
      assert.equal(await lenient.verify(token), before);
      now += 610_000; // 10 s after exp
      await rejectsWith(strict.verify(token), "unauthenticated", /^token expired$/);
      const after = await lenient.verify(token);
      assert.notEqual(after, before, "verified again: the tolerance is the verification's, not the cache's");
      assert.equal(after.subject, "subject-1");
    });

    it("drops a token whose key was rotated out of the JWKS once the verifier refetched it", async () => {
      const keys = { r1: await keyPair("ES256"), r2: await keyPair("ES256") };
      let body = JSON.stringify({ keys: [await publicJwk(keys.r1, { kid: "r1", alg: "ES256" })] });
      const rotating = http.createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(body));
      await new Promise<void>((resolve) => rotating.listen(0, "127.0.0.1", () => resolve()));
      try {
        const url = `http://127.0.0.1:${(rotating.address() as AddressInfo).port}/jwks`;
        const v = await createJwtVerifier({ jwksUrl: url, issuer: ISSUER, audience: AUDIENCE, jwksCooldownMs: 0 });
        const old = await sign(keys.r1.privateKey, { kid: "r1" });
        assert.equal(await v.verify(old), await v.verify(old), "cached while r1 is served");
        body = JSON.stringify({ keys: [await publicJwk(keys.r2, { kid: "r2", alg: "ES256" })] });
        // A token of the new key makes the verifier refetch the set, which no longer has r1.
        assert.equal((await v.verify(await sign(keys.r2.privateKey, { kid: "r2" }))).subject, "subject-1");
        await rejectsWith(v.verify(old), "unauthenticated", /^token is signed by an unknown key$/);
      } finally {
        rotating.closeAllConnections();
        await new Promise<void>((resolve) => rotating.close(() => resolve()));
      }
    });
  });

  describe("key files", () => {
    it("accepts a single public JWK instead of a set", async () => {
      const path = await file("single.jwk.json", JSON.stringify(await publicJwk(es)));
      const v = await createJwtVerifier({ keyFile: path, issuer: ISSUER, audience: AUDIENCE });
      assert.equal((await v.verify(await sign(es.privateKey))).subject, "subject-1");
    });

    it("tries every candidate key when a token has no kid", async () => {
      const other = await keyPair("ES256");
      const path = await file("two.json", JSON.stringify({ keys: [await publicJwk(other, { kid: "a" }), await publicJwk(es, { kid: "b" })] }));
      const v = await createJwtVerifier({ keyFile: path, issuer: ISSUER, audience: AUDIENCE });
      assert.equal((await v.verify(await sign(es.privateKey))).subject, "subject-1");
      assert.equal((await v.verify(await sign(other.privateKey))).subject, "subject-1");
      const stranger = await keyPair("ES256");
      await rejectsWith(v.verify(await sign(stranger.privateKey)), "unauthenticated", /^token signature is invalid$/);
    });

    it("verifies EdDSA tokens from an Ed25519 JWKS", async () => {
      const ed = await keyPair("EdDSA");
      const path = await file("ed.json", JSON.stringify({ keys: [await publicJwk(ed, { kid: "ed" })] }));
      const v = await createJwtVerifier({ keyFile: path, issuer: ISSUER, audience: AUDIENCE });
      assert.equal((await v.verify(await sign(ed.privateKey, { alg: "EdDSA", kid: "ed" }))).subject, "subject-1");
    });

    it("verifies RS256 and PS256 tokens against one RSA PEM key when both are allowed", async () => {
      const rsa = await keyPair("RS256");
      const path = await file("rsa.pem", await exportSPKI(rsa.publicKey));
      const v = await createJwtVerifier({ keyFile: path, issuer: ISSUER, audience: AUDIENCE, algorithms: ["RS256", "PS256"] });
      assert.equal((await v.verify(await sign(rsa.privateKey, { alg: "RS256" }))).subject, "subject-1");
      const pss = await generateKeyPair("PS256", { extractable: true });
      const pssPath = await file("rsa-for-pss.pem", await exportSPKI(pss.publicKey));
      const v2 = await createJwtVerifier({ keyFile: pssPath, issuer: ISSUER, audience: AUDIENCE, algorithms: ["RS256", "PS256"] });
      assert.equal((await v2.verify(await sign(pss.privateKey, { alg: "PS256" }))).subject, "subject-1");
    });

    it("rejects a token whose algorithm does not fit the PEM key", async () => {
      const path = await file("ec.pem", await exportSPKI(es.publicKey));
      const v = await createJwtVerifier({ keyFile: path, issuer: ISSUER, audience: AUDIENCE });
      const rsa = await keyPair("RS256");
      await rejectsWith(v.verify(await sign(rsa.privateKey, { alg: "RS256" })), "unauthenticated", /^token algorithm does not match the verification key$/);
    });

    it("refuses bad key sources at creation", async () => {
      const opts = { issuer: ISSUER, audience: AUDIENCE };
      await assert.rejects(createJwtVerifier(opts), /exactly one key source/);
      await assert.rejects(createJwtVerifier({ ...opts, keyFile: join(dir, "jwks.json"), jwksUrl: "http://127.0.0.1:1/" }), /exactly one key source/);
      await assert.rejects(createJwtVerifier({ ...opts, keyFile: join(dir, "missing.json") }), /cannot read key file/);
      await assert.rejects(createJwtVerifier({ ...opts, keyFile: await file("junk.txt", "hello") }), /neither a JWKS/);
      await assert.rejects(createJwtVerifier({ ...opts, keyFile: await file("bad.json", "{nope") }), /not valid JSON/);
      await assert.rejects(createJwtVerifier({ ...opts, keyFile: await file("empty.json", '{"keys":[]}') }), /holds no keys/);
      await assert.rejects(
        createJwtVerifier({ ...opts, keyFile: await file("private.json", JSON.stringify({ keys: [await exportJWK(es.privateKey)] })) }),
        /private or symmetric key material/,
      );
      await assert.rejects(createJwtVerifier({ ...opts, keyFile: await file("private.pem", await exportPKCS8(es.privateKey)) }), /holds a private key/);
      const rsa = await keyPair("RS256");
      await assert.rejects(
        createJwtVerifier({ ...opts, keyFile: await file("rsa-only.pem", await exportSPKI(rsa.publicKey)), algorithms: ["ES256"] }),
        /none of the allowed algorithms \(ES256\)/,
      );
      await assert.rejects(createJwtVerifier({ ...opts, jwksUrl: "not a url" }), /not a valid URL/);
      await assert.rejects(createJwtVerifier({ ...opts, jwksUrl: "file:///etc/jwks.json" }), /http or https/);
    });
  });

  describe("JWKS URL", () => {
    let server: http.Server;
    let base: string;
    let jwksBody: string;
    let status = 200;

    beforeAll(async () => {
      jwksBody = JSON.stringify({ keys: [await publicJwk(es, { kid: "r1", alg: "ES256" })] });
      server = http.createServer((req, res) => {
        if (req.url === "/garbage") {
          res.writeHead(200, { "content-type": "application/json" }).end("<html>");
          return;
        }
        res.writeHead(status, { "content-type": "application/json" }).end(status === 200 ? jwksBody : "{}");
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    afterAll(async () => {
      server?.closeAllConnections();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    });

    it("verifies tokens with keys served over HTTP", async () => {
      const v = await createJwtVerifier({ jwksUrl: `${base}/jwks`, issuer: ISSUER, audience: AUDIENCE });
      assert.equal((await v.verify(await sign(es.privateKey, { kid: "r1" }))).subject, "subject-1");
    });

    it("reports an endpoint answering non-200 or non-JSON as unavailable, not as a bad token", async () => {
      status = 503;
      try {
        const v = await createJwtVerifier({ jwksUrl: `${base}/jwks`, issuer: ISSUER, audience: AUDIENCE });
        await rejectsWith(v.verify(await sign(es.privateKey, { kid: "r1" })), "unavailable", /^token signing keys are unavailable$/);
      } finally {
        status = 200;
      }
      const g = await createJwtVerifier({ jwksUrl: `${base}/garbage`, issuer: ISSUER, audience: AUDIENCE });
      await rejectsWith(g.verify(await sign(es.privateKey, { kid: "r1" })), "unavailable", /^token signing keys are unavailable$/);
    });

    it("still rejects a malformed token without contacting the endpoint", async () => {
      const v = await createJwtVerifier({ jwksUrl: "http://127.0.0.1:9/jwks", issuer: ISSUER, audience: AUDIENCE, jwksTimeoutMs: 1000 });
      await rejectsWith(v.verify("garbage"), "unauthenticated", /^malformed token$/);
    });
  });
});
