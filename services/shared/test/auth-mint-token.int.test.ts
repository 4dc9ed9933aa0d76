import * as assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { decodeProtectedHeader } from "jose";
import { DEV_JWKS_FILE, DEV_PRIVATE_JWK_FILE, ensureDevKeys, mintToken } from "../src/auth/dev-keys.js";
import { createJwtVerifier } from "../src/auth/jwt-verifier.js";
import { runMintTokenCli } from "../src/cli/mint-token.js";
import { compiledEntry } from "../src/testing/index.js";

const CLI = compiledEntry("services/shared/src/cli/mint-token.ts");

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The test's environment without JWT_MAX_LIFETIME_SECONDS, so the CLI's default maximum applies. */
function cliEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env["JWT_MAX_LIFETIME_SECONDS"];
  return env;
}

function runCli(cwd: string, args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, ...args], { cwd, env: cliEnv(), timeout: 60_000 }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== "number") {
        reject(err);
        return;
      }
      resolve({ code: err === null ? 0 : (err.code as number), stdout, stderr });
    });
  });
}

describe("ensureDevKeys", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "dev-keys-"));
  });

  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("creates a private JWK (mode 0600) and the matching public JWKS", async () => {
    const keysDir = join(dir, "fresh", "nested");
    const paths = await ensureDevKeys(keysDir);
    assert.equal(paths.privateJwkPath, join(keysDir, DEV_PRIVATE_JWK_FILE));
    assert.equal(paths.jwksPath, join(keysDir, DEV_JWKS_FILE));
    const priv = JSON.parse(await readFile(paths.privateJwkPath, "utf8")) as Record<string, unknown>;
    const jwks = JSON.parse(await readFile(paths.jwksPath, "utf8")) as { keys: Record<string, unknown>[] };
    assert.equal(priv["kty"], "EC");
    assert.equal(priv["alg"], "ES256");
    assert.equal(typeof priv["d"], "string");
    assert.equal(typeof priv["kid"], "string");
    assert.equal(jwks.keys.length, 1);
    assert.equal(jwks.keys[0]?.["kid"], priv["kid"]);
    assert.equal("d" in (jwks.keys[0] ?? {}), false, "the JWKS must not contain the private part");
    assert.equal((await stat(paths.privateJwkPath)).mode & 0o777, 0o600);
  });

  it("keeps an existing key and restores a deleted JWKS from it", async () => {
    const keysDir = join(dir, "stable");
    const first = await ensureDevKeys(keysDir);
    const priv = await readFile(first.privateJwkPath, "utf8");
    const jwks = await readFile(first.jwksPath, "utf8");
    await unlink(first.jwksPath);
    const second = await ensureDevKeys(keysDir);
    assert.equal(await readFile(second.privateJwkPath, "utf8"), priv);
    assert.equal(await readFile(second.jwksPath, "utf8"), jwks);
  });

  it("settles on one key pair when called concurrently", async () => {
    const keysDir = join(dir, "race");
    const results = await Promise.all(Array.from({ length: 8 }, () => ensureDevKeys(keysDir)));
    const priv = await readFile(results[0]?.privateJwkPath ?? "", "utf8");
    const token = await mintToken({ privateJwkPath: join(keysDir, DEV_PRIVATE_JWK_FILE), issuer: "i", audience: "a", subject: "s", scopes: ["admin"] });
    const verifier = await createJwtVerifier({ keyFile: join(keysDir, DEV_JWKS_FILE), issuer: "i", audience: "a" });
    assert.equal((await verifier.verify(token)).subject, "s");
    assert.equal(JSON.parse(priv).kid, decodeProtectedHeader(token).kid);
  });
});

describe("mintToken", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mint-token-"));
  });

  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("signs a token with kid, scopes, carrier and lifetime that the verifier accepts", async () => {
    const { privateJwkPath, jwksPath } = await ensureDevKeys(dir);
    const now = new Date();
    const token = await mintToken({
      privateJwkPath,
      issuer: "iss-1",
      audience: "aud-1",
      subject: "gateway-1",
      scopes: ["scans:write", "routes:read"],
      carrier: "acme",
      expiresIn: "30m",
      now,
    });
    const header = decodeProtectedHeader(token);
    assert.equal(header.alg, "ES256");
    assert.equal(header.kid, JSON.parse(await readFile(privateJwkPath, "utf8")).kid);
    const p = await (await createJwtVerifier({ keyFile: jwksPath, issuer: "iss-1", audience: "aud-1" })).verify(token);
    assert.equal(p.subject, "gateway-1");
    assert.equal(p.carrier, "acme");
    assert.deepEqual([...p.scopes], ["scans:write", "routes:read"]);
    assert.equal(p.claims.exp, Math.floor(now.getTime() / 1000) + 1800);
    assert.equal(typeof p.claims.jti, "string");
  });
});

describe("mint-token CLI", () => {
  let cwd: string;

  beforeAll(async () => {
    cwd = await mkdtemp(join(tmpdir(), "mint-token-cli-"));
  });

  afterAll(async () => {
    if (cwd !== undefined) await rm(cwd, { recursive: true, force: true });
  });

  it("prints a token the development verifier accepts, creating .dev-keys in the working directory", async () => {
    const r = await runCli(cwd, ["--scope", "scans:write", "--carrier", "acme", "--sub", "gateway-1", "--ttl", "2h"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const token = r.stdout.trim();
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    const verifier = await createJwtVerifier({
      keyFile: join(cwd, ".dev-keys", DEV_JWKS_FILE),
      issuer: "logistics-dev",
      audience: "logistics-mesh",
    });
    const p = await verifier.verify(token);
    assert.equal(p.subject, "gateway-1");
    assert.equal(p.carrier, "acme");
    assert.deepEqual([...p.scopes], ["scans:write"]);
    assert.equal((p.claims.exp ?? 0) - (p.claims.iat ?? 0), 7200);
  });

  it("honours --keys, --iss, --aud and comma-separated scopes", async () => {
    const r = await runCli(cwd, ["--scope", "routes:read,routes:write", "--scope", "admin", "--keys", "other-keys", "--iss", "x-iss", "--aud", "x-aud"]);
    assert.equal(r.code, 0, r.stderr);
    const verifier = await createJwtVerifier({ keyFile: join(cwd, "other-keys", DEV_JWKS_FILE), issuer: "x-iss", audience: "x-aud" });
    const p = await verifier.verify(r.stdout.trim());
    assert.deepEqual([...p.scopes], ["routes:read", "routes:write", "admin"]);
    assert.equal(p.subject, "dev");
    assert.equal(p.carrier, undefined);
  });

  it("exits 2 with a clear message on bad arguments", async () => {
    const cases: [string[], RegExp][] = [
      [["--scope", "admin", "--bogus"], /Unknown option '--bogus'/],
      [["--sub", "x"], /at least one --scope is required/],
      [["--scope", "admin", "--ttl", "soon"], /--ttl: invalid lifetime "soon"/],
      [["--scope", "admin", "--sub"], /--sub/],
      [["--scope", "admin", "stray"], /positional/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(cwd, args);
      assert.equal(r.code, 2, `${args.join(" ")} → ${r.code}`);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /^mint-token: /);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /usage: mint-token/);
    }
  });

  it("mints up to JWT_MAX_LIFETIME_SECONDS (default one day) and refuses a longer --ttl with exit 2", async () => {
    const run = async (args: string[], env: Record<string, string> = {}) => {
      const out = { stdout: "", stderr: "" };
      const code = await runMintTokenCli(["--scope", "scans:write", "--carrier", "acme", ...args], {
        cwd,
        env,
        stdout: (t) => (out.stdout += t),
        stderr: (t) => (out.stderr += t),
      });
      return { code, ...out };
    };
    const keyFile = join(cwd, ".dev-keys", DEV_JWKS_FILE);
    const day = await run(["--ttl", "1d"]);
    assert.equal(day.code, 0, day.stderr);
    const p = await (await createJwtVerifier({ keyFile, issuer: "logistics-dev", audience: "logistics-mesh" })).verify(day.stdout.trim());
    assert.equal((p.claims.exp ?? 0) - (p.claims.iat ?? 0), 86_400);

    const long = await run(["--ttl", "25h"]);
    assert.equal(long.code, 2);
    assert.equal(long.stdout, "");
    assert.match(long.stderr, /^mint-token: --ttl: 25h \(90000 s\) is longer than the services accept \(JWT_MAX_LIFETIME_SECONDS: 86400 s\)\n/);

    const env = { JWT_MAX_LIFETIME_SECONDS: "1800" };
    assert.equal((await run(["--ttl", "31m"], env)).code, 2);
    const half = await run(["--ttl", "30m"], env);
    assert.equal(half.code, 0, half.stderr);
    const strict = await createJwtVerifier({ keyFile, issuer: "logistics-dev", audience: "logistics-mesh", maxLifetimeSec: 1800 });
    assert.equal((await strict.verify(half.stdout.trim())).carrier, "acme");

    const bad = await run([], { JWT_MAX_LIFETIME_SECONDS: "0" });
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, 'mint-token: JWT_MAX_LIFETIME_SECONDS="0": must be >= 60\n');
  });

  it("prints usage and exits 0 for --help", async () => {
    const r = await runCli(cwd, ["--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /usage: mint-token/);
  });
});
