#!/usr/bin/env node
/**
 * Mints a development bearer token signed by the local development key (created on first use).
 *
 *   node services/shared/dist/cli/mint-token.js --scope scans:write --carrier acme --sub gateway-1
 *
 * Services started for local development verify these tokens against `<keys>/dev-jwks.json`. A
 * lifetime the services would refuse (over JWT_MAX_LIFETIME_SECONDS, read from the same
 * environment) is refused here, so a token that prints is one they accept.
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ensureDevKeys, mintToken, parseTtl } from "../auth/dev-keys.js";
import { DEFAULT_MAX_TOKEN_LIFETIME_SEC } from "../auth/jwt-verifier.js";
import { jwtMaxLifetimeSeconds } from "../runtime/base-config.js";
import { parseCommandLine, UsageError } from "./cli-args.js";

const USAGE = `usage: mint-token --scope <scope> [--scope <scope>...] [options]

Prints a development JWT on stdout.

  --scope <scope>   scope to grant (repeatable; a comma- or space-separated list also works)
  --sub <subject>   sub claim (default: dev)
  --carrier <code>  carrier claim, for a carrier-gateway token
  --customer <id>   customer claim, for a customer (tenant) token
  --ttl <span>      lifetime: 90s, 30m, 1h, 12h (default: 1h); at most JWT_MAX_LIFETIME_SECONDS
                    (default 86400, one day), the longest the services accept
  --keys <dir>      development key directory, created if missing (default: .dev-keys)
  --iss <issuer>    iss claim (default: logistics-dev)
  --aud <audience>  aud claim (default: logistics-mesh)
  -h, --help        show this help`;

/** Where the CLI reads its environment and writes; injectable so it can be driven in-process. */
export interface MintTokenCliIo {
  readonly cwd: string;
  /** JWT_MAX_LIFETIME_SECONDS is read from it, as the services read it. */
  readonly env: Readonly<Record<string, string | undefined>>;
  stdout(text: string): void;
  stderr(text: string): void;
}

function parseCliArgs(argv: readonly string[]) {
  return parseCommandLine({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      scope: { type: "string", multiple: true },
      sub: { type: "string", default: "dev" },
      carrier: { type: "string" },
      customer: { type: "string" },
      ttl: { type: "string", default: "1h" },
      keys: { type: "string", default: ".dev-keys" },
      iss: { type: "string", default: "logistics-dev" },
      aud: { type: "string", default: "logistics-mesh" },
      help: { type: "boolean", short: "h", default: false },
    },
  }).values;
}

/**
 * Runs the CLI with `argv` (without the node and script paths) and returns the exit code:
 * 0 on success or --help, 2 on bad arguments (a --ttl over the services' maximum among them),
 * 1 on other failures (a JWT_MAX_LIFETIME_SECONDS the services would not start with among them).
 */
export async function runMintTokenCli(argv: readonly string[], io: MintTokenCliIo): Promise<number> {
  try {
    const parsed = parseCliArgs(argv);
    if (parsed.help) {
      io.stdout(`${USAGE}\n`);
      return 0;
    }
    const scopes = (parsed.scope ?? []).flatMap((s) => s.split(/[\s,]+/)).filter((s) => s !== "");
    if (scopes.length === 0) throw new UsageError("at least one --scope is required");
    for (const [name, value] of [["--sub", parsed.sub], ["--iss", parsed.iss], ["--aud", parsed.aud], ["--keys", parsed.keys]] as const) {
      if (value.trim() === "") throw new UsageError(`${name} must not be empty`);
    }
    if (parsed.carrier !== undefined && parsed.carrier.trim() === "") throw new UsageError("--carrier must not be empty");
    if (parsed.customer !== undefined && parsed.customer.trim() === "") throw new UsageError("--customer must not be empty");
    if (parsed.carrier !== undefined && parsed.customer !== undefined) {
      throw new UsageError("a token is bound to a carrier or to a customer, not both");
    }
    let ttlSeconds: number;
    try {
      ttlSeconds = parseTtl(parsed.ttl);
    } catch (err) {
      throw new UsageError(`--ttl: ${(err as Error).message}`);
    }
    const maxSeconds = maxLifetimeSeconds(io.env);
    if (ttlSeconds > maxSeconds) {
      throw new UsageError(
        `--ttl: ${parsed.ttl} (${ttlSeconds} s) is longer than the services accept (JWT_MAX_LIFETIME_SECONDS: ${maxSeconds} s)`,
      );
    }

    const { privateJwkPath } = await ensureDevKeys(resolve(io.cwd, parsed.keys));
    const token = await mintToken({
      privateJwkPath,
      issuer: parsed.iss,
      audience: parsed.aud,
      subject: parsed.sub,
      scopes,
      expiresIn: ttlSeconds,
      ...(parsed.carrier === undefined ? {} : { carrier: parsed.carrier }),
      ...(parsed.customer === undefined ? {} : { customer: parsed.customer }),
    });
    io.stdout(`${token}\n`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`mint-token: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    io.stderr(`mint-token: ${(err as Error).message}\n`);
    return 1;
  }
}

/** JWT_MAX_LIFETIME_SECONDS of `env`, parsed as the services parse it. */
function maxLifetimeSeconds(env: MintTokenCliIo["env"]): number {
  const raw = env["JWT_MAX_LIFETIME_SECONDS"]?.trim();
  if (raw === undefined || raw === "") return DEFAULT_MAX_TOKEN_LIFETIME_SEC;
  try {
    return jwtMaxLifetimeSeconds.parse(raw);
  } catch (err) {
    throw new Error(`JWT_MAX_LIFETIME_SECONDS=${JSON.stringify(raw)}: ${(err as Error).message}`, { cause: err });
  }
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  process.exitCode = await runMintTokenCli(process.argv.slice(2), {
    cwd: process.cwd(),
    env: process.env,
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
  });
}
