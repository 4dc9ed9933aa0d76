import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDevKeys, mintToken } from "../../shared/src/auth/index.js";
import { startService, type RunningService } from "../../shared/src/runtime/start-service.js";
import {
  createTestSchema,
  startNatsServer,
  uniqueName,
  type NatsServerHandle,
  type TestSchema,
} from "../../shared/src/testing/index.js";
import { ingestConfig } from "../../ingest/src/config.js";
import { ingestService } from "../../ingest/src/ingest.js";
import { notificationConfig } from "../../notification/src/config.js";
import { notificationService } from "../../notification/src/notification.js";
import { routingConfig } from "../../routing/src/config.js";
import { routingService } from "../../routing/src/routing.js";
import { trackingConfig } from "../../tracking/src/config.js";
import { trackingService } from "../../tracking/src/tracking.js";

/** A service of the mesh. */
export type MeshServiceName = "ingest" | "routing" | "tracking" | "notification";

/** Options for {@link startE2eMesh}. */
export interface E2eMeshOptions {
  /** Services to start, in this order. Default all four. */
  readonly services?: readonly MeshServiceName[];
  /** Services whose failure to start is tolerated (reported in `failed`). Default none. */
  readonly optional?: readonly MeshServiceName[];
  /** Extra environment for every service (e.g. CORS_ORIGINS). */
  readonly env?: Readonly<Record<string, string>>;
}

/** The mesh a test runs against. */
export interface E2eMesh {
  readonly env: Readonly<Record<string, string>>;
  readonly services: ReadonlyMap<MeshServiceName, RunningService>;
  /** Optional services that did not start, with the reason. */
  readonly failed: ReadonlyMap<MeshServiceName, string>;
  /** A running service (throws when it is not running). */
  get(name: MeshServiceName): RunningService;
  /** Stops `name` (draining its RPCs and consumers). */
  stop(name: MeshServiceName): Promise<void>;
  /** Starts `name` again with the same configuration, on `port` (default: a new free port). */
  restart(name: MeshServiceName, port?: number): Promise<RunningService>;
  /** Mints a bearer token signed with the mesh's test key. */
  token(scopes: readonly string[], extra?: { carrier?: string }): Promise<string>;
  /** Stops everything and removes what was created (schemas, keys, nats-server). */
  close(): Promise<void>;
}

/**
 * Starts the mesh in this process for an end-to-end test: a private nats-server, a unique
 * subject prefix, a PostgreSQL schema per service, unique Redis key prefixes on the local Redis,
 * dev signing keys in a temporary folder, and the services on free ports (PORT=0, METRICS_PORT=0).
 */
export async function startE2eMesh(o: E2eMeshOptions = {}): Promise<E2eMesh> {
  const names = o.services ?? ["ingest", "routing", "tracking", "notification"];
  const cleanups: Array<() => Promise<unknown>> = [];
  const running = new Map<MeshServiceName, RunningService>();
  const failed = new Map<MeshServiceName, string>();
  const envs = new Map<MeshServiceName, Record<string, string>>();
  const undo = async () => {
    for (const s of running.values()) await s.close().catch(() => {});
    running.clear();
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    const nats: NatsServerHandle = await startNatsServer();
    cleanups.push(() => nats.stop());
    const keysDir = await mkdtemp(join(tmpdir(), "e2e-keys-"));
    cleanups.push(() => rm(keysDir, { recursive: true, force: true }));
    const keys = await ensureDevKeys(keysDir);
    const id = uniqueName("e2e");
    const schemas: TestSchema[] = [];
    cleanups.push(async () => {
      for (const s of schemas) await s.drop();
    });
    const schema = async (prefix: string) => {
      const s = await createTestSchema({ prefix });
      schemas.push(s);
      return s;
    };
    const base: Record<string, string> = {
      HOST: "127.0.0.1",
      PORT: "0",
      METRICS_PORT: "0",
      LOG_LEVEL: "silent",
      NATS_URL: nats.url,
      SUBJECT_PREFIX: id,
      JWT_PUBLIC_KEY_FILE: keys.jwksPath,
      SHUTDOWN_GRACE_MS: "2000",
      ...o.env,
    };
    for (const name of names) {
      const env: Record<string, string> = { ...base };
      if (name === "ingest") env["INGEST_REDIS_KEY_PREFIX"] = `${id}:ingest:`;
      if (name === "tracking") {
        const s = await schema("e2etrk");
        env["DATABASE_URL"] = s.connectionString;
        env["TRACKING_REDIS_KEY_PREFIX"] = `${id}:tracking:`;
        env["TRACKING_WATCH_HEARTBEAT_MS"] = "2000";
      }
      if (name === "routing") {
        const s = await schema("e2erte");
        env["DATABASE_SCHEMA"] = s.schema;
      }
      if (name === "notification") {
        const s = await schema("e2entf");
        env["NOTIFICATION_DB_SCHEMA"] = s.schema;
        env["NOTIFICATION_ALLOW_HTTP"] = "true";
        env["NOTIFICATION_WEBHOOK_ALLOW_HOSTS"] = "127.0.0.1,localhost";
        env["NOTIFICATION_WEBHOOK_ALLOW_CIDRS"] = "127.0.0.0/8";
        env["NOTIFICATION_RETRY_BASE_MS"] = "200";
        env["NOTIFICATION_POLL_INTERVAL_MS"] = "100";
      }
      envs.set(name, env);
      try {
        running.set(name, await start(name, env));
      } catch (e) {
        if (!o.optional?.includes(name)) throw e;
        failed.set(name, e instanceof Error ? e.message : String(e));
      }
    }
    let closing: Promise<void> | undefined;
    return {
      env: base,
      services: running,
      failed,
      get(name) {
        const s = running.get(name);
        if (!s) throw new Error(`${name} is not running${failed.has(name) ? `: ${failed.get(name)}` : ""}`);
        return s;
      },
      async stop(name) {
        const s = running.get(name);
        running.delete(name);
        await s?.close();
      },
      async restart(name, port) {
        await running.get(name)?.close();
        const env = { ...envs.get(name)!, PORT: String(port ?? 0) };
        const s = await start(name, env);
        running.set(name, s);
        return s;
      },
      token: (scopes, extra = {}) =>
        mintToken({
          privateJwkPath: keys.privateJwkPath,
          issuer: "logistics-dev",
          audience: "logistics-mesh",
          subject: "e2e",
          scopes,
          ...extra,
        }),
      close: () => (closing ??= undo()),
    };
  } catch (e) {
    await undo();
    throw e;
  }
}

function start(name: MeshServiceName, env: Record<string, string>): Promise<RunningService> {
  switch (name) {
    case "ingest":
      return startService(ingestService, ingestConfig.parse(env));
    case "routing":
      return startService(routingService, routingConfig.parse(env));
    case "tracking":
      return startService(trackingService, trackingConfig.parse(env));
    case "notification":
      return startService(notificationService, notificationConfig.parse(env));
  }
}
