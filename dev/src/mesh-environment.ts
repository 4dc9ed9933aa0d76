import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDevKeys, mintToken } from "@logistics/shared/auth";
import type { MeshServiceName } from "./service-entry.js";
import {
  createTestSchema,
  startNatsServer,
  testDatabaseUrl,
  testRedisUrl,
  uniqueName,
  type NatsServerHandle,
  type TestSchema,
} from "@logistics/shared/testing";


/** Everything an isolated mesh run needs, for in-process tests and multi-process perf runs alike. */
export interface MeshEnvironment {
  /** The unique id behind the subject prefix, Redis key prefixes and schema names. */
  readonly id: string;
  readonly nats: NatsServerHandle;
  /** Variables every service gets (NATS, subject prefix, signing keys, loopback host). */
  readonly base: Readonly<Record<string, string>>;
  /**
   * A service's full environment: `base`, then its own isolation (a fresh PostgreSQL schema, Redis
   * key prefix, webhook allow-list for loopback receivers), then `overrides`.
   */
  envFor(name: MeshServiceName, overrides?: Readonly<Record<string, string>>): Promise<Record<string, string>>;
  /** Mints a bearer token signed with this environment's key, living `tokenLifetimeSeconds`. */
  token(scopes: readonly string[], extra?: { carrier?: string; customer?: string }): Promise<string>;
  /** Stops nats-server, drops the schemas and removes the keys. Stop the services first. */
  close(): Promise<void>;
}

/** Options for {@link createMeshEnvironment}. */
export interface MeshEnvironmentOptions {
  /** Prefix of the unique id (subject prefix, Redis key prefixes, schema names). */
  idPrefix: string;
  /** Variables every service gets, added to the defaults. */
  base?: Readonly<Record<string, string>>;
  /**
   * PostgreSQL server for the services' schemas (every service gets `DATABASE_URL` on it).
   * Default: the test database (`DATABASE_URL`, provided by the tests' global setup).
   */
  databaseUrl?: string;
  /** Redis for every service (`REDIS_URL`). Default: the tests' Redis (`REDIS_URL`, provided by their global setup). */
  redisUrl?: string;
  /**
   * A nats-server the caller started (and stops), e.g. one of a region's with its JetStream domain
   * and leaf node. Default: a private one started here and stopped by `close()`.
   */
  nats?: NatsServerHandle;
  /**
   * Lifetime of the tokens `token()` mints, in seconds. Default one hour. A run that holds its
   * tokens for longer (a perf soak) sets more, up to the services' JWT_MAX_LIFETIME_SECONDS,
   * beyond which they refuse the tokens.
   */
  tokenLifetimeSeconds?: number;
}

/**
 * Creates an isolated mesh environment: a private nats-server (unless `nats`), a unique subject prefix, a
 * PostgreSQL schema per service (on the test database unless `databaseUrl`), unique Redis key
 * prefixes (on the tests' Redis unless `redisUrl`) and development signing keys in a temporary folder.
 */
export async function createMeshEnvironment(o: MeshEnvironmentOptions): Promise<MeshEnvironment> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const undo = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    cleanups.length = 0;
  };
  try {
    const nats = o.nats ?? (await startNatsServer());
    if (!o.nats) cleanups.push(() => nats.stop());
    const keysDir = await mkdtemp(join(tmpdir(), `${o.idPrefix}-keys-`));
    cleanups.push(() => rm(keysDir, { recursive: true, force: true }));
    const keys = await ensureDevKeys(keysDir);
    const id = uniqueName(o.idPrefix);
    const schemas: TestSchema[] = [];
    cleanups.push(async () => {
      for (const s of schemas) await s.drop();
    });
    const schema = async (suffix: string) => {
      const s = await createTestSchema({ prefix: `${o.idPrefix}${suffix}`, ...(o.databaseUrl ? { connectionString: o.databaseUrl } : {}) });
      schemas.push(s);
      return s;
    };
    const base: Record<string, string> = {
      HOST: "127.0.0.1",
      PORT: "0",
      METRICS_PORT: "0",
      NATS_URL: nats.url,
      SUBJECT_PREFIX: id,
      JWT_PUBLIC_KEY_FILE: keys.jwksPath,
      DATABASE_URL: o.databaseUrl ?? testDatabaseUrl(),
      REDIS_URL: o.redisUrl ?? testRedisUrl(),
      ...o.base,
    };
    let closing: Promise<void> | undefined;
    return {
      id,
      nats,
      base,
      async envFor(name, overrides = {}) {
        const env: Record<string, string> = { ...base };
        switch (name) {
          case "ingest":
            env["INGEST_REDIS_KEY_PREFIX"] = `${id}:ingest:`;
            break;
          case "tracking":
            env["DATABASE_URL"] = (await schema("trk")).connectionString;
            env["TRACKING_REDIS_KEY_PREFIX"] = `${id}:tracking:`;
            break;
          case "routing":
            env["DATABASE_SCHEMA"] = (await schema("rte")).schema;
            break;
          case "notification":
            env["NOTIFICATION_DB_SCHEMA"] = (await schema("ntf")).schema;
            env["NOTIFICATION_ALLOW_HTTP"] = "true";
            env["NOTIFICATION_WEBHOOK_ALLOW_HOSTS"] = "127.0.0.1,localhost";
            env["NOTIFICATION_WEBHOOK_ALLOW_CIDRS"] = "127.0.0.0/8";
            break;
        }
        return { ...env, ...overrides };
      },
      token: (scopes, extra = {}) =>
        mintToken({
          privateJwkPath: keys.privateJwkPath,
          issuer: "logistics-dev",
          audience: "logistics-mesh",
          subject: o.idPrefix,
          scopes,
          ...(o.tokenLifetimeSeconds === undefined ? {} : { expiresIn: o.tokenLifetimeSeconds }),
          ...extra,
        }),
      close: () => (closing ??= undo()),
    };
  } catch (e) {
    await undo();
    throw e;
  }
}
