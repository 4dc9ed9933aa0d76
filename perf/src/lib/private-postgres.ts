/**
 * A private PostgreSQL cluster for one perf run: `initdb` in a temporary directory, the server on a
 * free loopback port, stopped and removed afterwards. Every backend is then the mesh's, so the
 * postmaster and its children are exactly the database's cost (on the shared server other
 * people's tests would be mixed in). Settings mirror the machine's shared server (fsync and
 * synchronous_commit on, 128 MB shared buffers), so the figures stay comparable.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { getFreePort, removeOnExit, waitFor } from "@logistics/shared/testing";

export interface PrivatePostgres {
  /** `postgres://postgres@127.0.0.1:<port>/perf`. */
  readonly url: string;
  readonly port: number;
  /** The postmaster's pid; its children are the backends and background workers. */
  readonly pid: number;
  readonly version: string;
  stop(): Promise<void>;
}

/** The newest installed PostgreSQL's bin directory (`PG_BIN` wins), or undefined. */
export function postgresBinDir(): string | undefined {
  const fromEnv = process.env["PG_BIN"];
  if (fromEnv) return existsSync(join(fromEnv, "initdb")) ? fromEnv : undefined;
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, "bin", "initdb")))
    .sort((a, b) => Number(a) - Number(b));
  const v = versions.at(-1);
  return v ? join(root, v, "bin") : undefined;
}

/** uid/gid to run the server as: PostgreSQL refuses to run as root. */
function runAs(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  const r = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const g = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  if (r.status !== 0 || g.status !== 0) throw new Error("running as root and there is no 'postgres' user to run PostgreSQL as");
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** Starts a private cluster; throws when PostgreSQL's binaries are not installed. */
export async function startPrivatePostgres(o: { startTimeoutMs?: number } = {}): Promise<PrivatePostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error("no PostgreSQL binaries (set PG_BIN to the directory holding initdb and postgres)");
  const user = runAs();
  const dir = mkdtempSync(join(tmpdir(), "perf-pg-"));
  const forget = removeOnExit(dir);
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, "data");
  const ids = user ? { uid: user.uid, gid: user.gid } : {};
  let child: ChildProcess | undefined;
  const cleanup = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child!.once("exit", () => r()));
      child.kill("SIGINT"); // fast shutdown
      const timer = setTimeout(() => child?.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
    forget();
  };
  try {
    const init = spawnSync(join(bin, "initdb"), ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], {
      ...ids,
      encoding: "utf8",
    });
    if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr || init.stdout}`);
    const port = await getFreePort();
    writeFileSync(
      join(data, "postgresql.auto.conf"),
      [
        `listen_addresses = '127.0.0.1'`,
        `port = ${port}`,
        `unix_socket_directories = '${dir}'`,
        `max_connections = 200`,
        `shared_buffers = '128MB'`,
        `max_wal_size = '1GB'`,
        `min_wal_size = '80MB'`,
        `fsync = on`,
        `synchronous_commit = on`,
        `log_min_messages = warning`,
        "",
      ].join("\n"),
    );
    if (user) chownSync(join(data, "postgresql.auto.conf"), user.uid, user.gid);
    const logs: string[] = [];
    const proc = spawn(join(bin, "postgres"), ["-D", data], { ...ids, stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    const keep = (b: Buffer) => {
      logs.push(b.toString("utf8"));
      if (logs.length > 50) logs.shift();
    };
    proc.stdout?.on("data", keep);
    proc.stderr?.on("data", keep);
    process.once("exit", () => proc.kill("SIGKILL"));
    const admin = `postgres://postgres@127.0.0.1:${port}/postgres`;
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`postgres exited: ${logs.join("")}`);
        const c = new pg.Client({ connectionString: admin });
        try {
          await c.connect();
          return true;
        } catch {
          return false;
        } finally {
          await c.end().catch(() => {});
        }
      },
      { timeoutMs: o.startTimeoutMs ?? 30_000, intervalMs: 100, message: "private PostgreSQL to accept connections" },
    );
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    let version: string;
    try {
      await c.query("CREATE DATABASE perf");
      version = (await c.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
    } finally {
      await c.end();
    }
    let stopping: Promise<void> | undefined;
    return {
      url: `postgres://postgres@127.0.0.1:${port}/perf`,
      port,
      pid: proc.pid ?? 0,
      version,
      stop: () => (stopping ??= cleanup()),
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
