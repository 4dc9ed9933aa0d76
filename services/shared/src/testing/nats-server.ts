import { mkdtemp, rm } from "node:fs/promises";
import * as http from "node:http";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getFreePort } from "./free-port.js";
import { isBindRace, launchOnFreePorts } from "./free-port-launch.js";
import { removeOnExit, spawnManagedProcess, type ManagedProcess } from "./managed-process.js";
import { uniqueName } from "./unique.js";
import { waitFor } from "./wait-for.js";

/** Options for {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Enable JetStream (`-js`). Default true. */
  jetstream?: boolean;
  /** Client port on 127.0.0.1. Default: a free port (retried if another process takes it first). */
  port?: number;
  /** Monitoring (HTTP) port, used to check readiness. Default: a free port. */
  httpPort?: number;
  /**
   * JetStream store directory. Default: a fresh directory under the OS temp dir, removed by the
   * final `stop()`. A directory passed here is used as is and never removed.
   */
  storeDir?: string;
  /** The nats-server executable, resolved through PATH. Default "nats-server". */
  binary?: string;
  /** `server_name`; required to be distinct per node in a JetStream cluster. Default: generated. */
  serverName?: string;
  /** Join a cluster: listen for routes on `port` and solicit the given route ports. */
  cluster?: { name: string; port: number; routes: readonly number[] };
  /** How long to wait for the server to become ready. Default 15 000 ms. */
  startTimeoutMs?: number;
  /**
   * A configuration file (`-c`), e.g. with `accounts` and users; the options above are command
   * line flags and win over the file's settings.
   */
  configFile?: string;
  /** Stopped by the caller on signals, in its own process group (see `ManagedProcessOptions`). */
  supervised?: boolean;
}

/** A running nats-server started by {@link startNatsServer}. */
export interface NatsServerHandle {
  /** Client URL, `nats://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** Monitoring base URL, `http://127.0.0.1:<httpPort>`. */
  readonly monitorUrl: string;
  readonly serverName: string;
  /** The JetStream store directory (kept across `kill()`/`restart()`). */
  readonly storeDir: string;
  /** The current process id (changes on restart). */
  readonly pid: number | undefined;
  /** True while the server process runs. */
  isRunning(): boolean;
  /** Recent server log output, for failure messages. */
  logs(): string;
  /**
   * Graceful stop (SIGTERM, wait for exit; SIGKILL after 10 s). Removes the store directory the
   * launcher created unless `keepStore` is set. Idempotent.
   */
  stop(opts?: { keepStore?: boolean }): Promise<void>;
  /** SIGKILL, as in a crash; the store directory is kept so `restart()` can recover it. */
  kill(): Promise<void>;
  /**
   * Stops the server if it runs (gracefully, keeping the store) and starts it again on the same
   * ports with the same store directory, so JetStream data survives. Resolves when ready.
   */
  restart(): Promise<void>;
}

const LOOPBACK = "127.0.0.1";
const BIND_RETRIES = 3;

/**
 * Starts a real nats-server on 127.0.0.1 (JetStream on by default, with its own store
 * directory) and resolves once it serves clients: the monitoring `/healthz` endpoint reports ok
 * (which for JetStream means the JetStream subsystem is up) and a TCP client receives the
 * server's INFO. Ports left unspecified are picked free and retried on a bind race.
 *
 * The process is killed if the test process exits without stopping it.
 */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const jetstream = opts.jetstream ?? true;
  const binary = opts.binary ?? "nats-server";
  const serverName = opts.serverName ?? uniqueName("nats");
  const startTimeoutMs = opts.startTimeoutMs ?? 15_000;
  const ownedDir = opts.storeDir === undefined ? await mkdtemp(join(tmpdir(), "nats-test-")) : undefined;
  const storeDir = opts.storeDir ?? join(ownedDir as string, "store");
  const forgetDir = ownedDir ? removeOnExit(ownedDir) : () => {};

  let port = opts.port ?? 0;
  let httpPort = opts.httpPort ?? 0;
  let proc: ManagedProcess | undefined;
  let removed = false;

  const args = () => {
    const a = opts.configFile !== undefined ? ["-c", opts.configFile] : [];
    a.push("-a", LOOPBACK, "-p", String(port), "-m", String(httpPort), "--server_name", serverName);
    if (jetstream) a.push("-js", "-sd", storeDir);
    if (opts.cluster) {
      const routes = opts.cluster.routes.filter((p) => p !== opts.cluster?.port);
      a.push("--cluster_name", opts.cluster.name, "--cluster", `nats://${LOOPBACK}:${opts.cluster.port}`);
      if (routes.length > 0) a.push("--routes", routes.map((p) => `nats://${LOOPBACK}:${p}`).join(","));
    }
    return a;
  };

  const launch = async () => {
    const p = spawnManagedProcess(binary, args(), { supervised: opts.supervised === true });
    proc = p;
    try {
      await waitFor(() => isReady(port, httpPort, jetstream), {
        timeoutMs: startTimeoutMs,
        intervalMs: 25,
        message: `nats-server ${serverName} on port ${port} to become ready`,
        signal: p.exitSignal,
      });
    } catch (err) {
      await p.stop("SIGKILL");
      throw err;
    }
  };

  const cleanup = async () => {
    if (ownedDir && !removed) {
      removed = true;
      await rm(ownedDir, { recursive: true, force: true });
      forgetDir();
    }
  };

  try {
    await launchOnFreePorts({
      async pick() {
        if (opts.port === undefined) port = await getFreePort();
        if (opts.httpPort === undefined) httpPort = await getFreePort();
      },
      launch,
      output: () => proc?.output() ?? "",
      fixed: opts.port !== undefined || opts.httpPort !== undefined || opts.cluster !== undefined,
      attempts: BIND_RETRIES,
    });
  } catch (err) {
    await cleanup();
    throw err;
  }

  const stopProcess = async (signal: NodeJS.Signals) => {
    if (proc?.isRunning()) await proc.stop(signal);
  };

  return {
    url: `nats://${LOOPBACK}:${port}`,
    port,
    monitorUrl: `http://${LOOPBACK}:${httpPort}`,
    serverName,
    storeDir,
    get pid() {
      return proc?.pid;
    },
    isRunning: () => proc?.isRunning() ?? false,
    logs: () => proc?.output() ?? "",
    async stop(stopOpts = {}) {
      await stopProcess("SIGTERM");
      if (!stopOpts.keepStore) await cleanup();
    },
    kill: () => stopProcess("SIGKILL"),
    async restart() {
      if (removed) throw new Error(`nats-server ${serverName} was stopped and its store removed`);
      await stopProcess("SIGTERM");
      await launch();
    },
  };
}

/** Options for {@link startNatsCluster}. */
export interface NatsClusterOptions {
  /** Number of nodes. Default 3. */
  size?: number;
  /** The nats-server executable. Default "nats-server". */
  binary?: string;
  /** How long to wait for the cluster (routes and a JetStream meta leader). Default 30 000 ms. */
  startTimeoutMs?: number;
}

/** A running JetStream cluster started by {@link startNatsCluster}. */
export interface NatsClusterHandle {
  /** Client URLs of all nodes; pass them all as `servers`. */
  readonly urls: string[];
  readonly servers: NatsServerHandle[];
  readonly clusterName: string;
  /** Stops every node and removes their store directories. */
  stop(): Promise<void>;
}

/**
 * Starts a JetStream cluster of `size` nats-server processes on loopback (distinct
 * `server_name`s, one cluster name, full-mesh routes on free ports) and resolves when every node
 * is healthy, sees all its routes and agrees on a JetStream meta leader whose group has all
 * peers current, so a stream with `num_replicas = size` can be created right away.
 */
export async function startNatsCluster(opts: NatsClusterOptions = {}): Promise<NatsClusterHandle> {
  const size = opts.size ?? 3;
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  for (let attempt = 1; ; attempt++) {
    const clusterName = uniqueName("cluster");
    const routePorts = await distinctFreePorts(size);
    const started = await Promise.allSettled(
      routePorts.map(async (routePort, i) => {
        const [port, httpPort] = await distinctFreePorts(2);
        return startNatsServer({
          ...(opts.binary ? { binary: opts.binary } : {}),
          port,
          httpPort,
          serverName: `${clusterName}_n${i + 1}`,
          cluster: { name: clusterName, port: routePort, routes: routePorts },
          startTimeoutMs,
        });
      }),
    );
    const servers = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const stopAll = async () => {
      await Promise.all(servers.map((s) => s.stop()));
    };
    const failure = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failure) {
      await stopAll();
      // Another process took one of the ports picked (the route ports above all: a node binds its
      // own only once started, after the others were told it): pick new ones.
      if (isBindRace(failure.reason) && attempt < BIND_RETRIES) continue;
      throw failure.reason;
    }
    try {
      await waitFor(() => clusterReady(servers), {
        timeoutMs: startTimeoutMs,
        intervalMs: 100,
        message: `JetStream cluster ${clusterName} to elect a meta leader with ${size} current peers`,
      });
    } catch (err) {
      const logs = servers.map((s) => `--- ${s.serverName} ---\n${s.logs().slice(-2000)}`).join("\n");
      await stopAll();
      throw new Error(`${(err as Error).message}\n${logs}`, { cause: err });
    }
    return { urls: servers.map((s) => s.url), servers, clusterName, stop: stopAll };
  }
}

async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await getFreePort());
  return [...ports];
}

async function isReady(port: number, httpPort: number, jetstream: boolean): Promise<boolean> {
  const health = await httpGetJson(`http://${LOOPBACK}:${httpPort}/healthz`);
  if (field(health, "status") !== "ok") return false;
  const info = await readServerInfo(port);
  return !jetstream || field(info, "jetstream") === true;
}

async function clusterReady(servers: readonly NatsServerHandle[]): Promise<boolean> {
  const size = servers.length;
  const views = await Promise.all(
    servers.map(async (s) => ({
      health: await httpGetJson(`${s.monitorUrl}/healthz`),
      routes: await httpGetJson(`${s.monitorUrl}/routez`),
      jsz: await httpGetJson(`${s.monitorUrl}/jsz`),
    })),
  );
  const leaders = new Set<unknown>();
  for (const v of views) {
    if (field(v.health, "status") !== "ok") return false;
    const numRoutes = field(v.routes, "num_routes");
    if (typeof numRoutes !== "number" || numRoutes < size - 1) return false;
    const meta = field(v.jsz, "meta_cluster");
    const leader = field(meta, "leader");
    if (typeof leader !== "string" || leader === "") return false;
    leaders.add(leader);
    const replicas = field(meta, "replicas");
    if (Array.isArray(replicas)) {
      if (replicas.length < size - 1 || !replicas.every((r: unknown) => field(r, "current") === true)) {
        return false;
      }
    }
  }
  return leaders.size === 1;
}

function field(obj: unknown, key: string): unknown {
  return typeof obj === "object" && obj !== null ? (obj as Record<string, unknown>)[key] : undefined;
}

/** GET a JSON document without keep-alive (so no socket outlives the probe). */
function httpGetJson(url: string, timeoutMs = 1000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs, headers: { connection: "close" } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        } catch (err) {
          reject(err);
        }
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on("error", reject);
  });
}

/** Connects to the client port and returns the parsed INFO the server greets with. */
function readServerInfo(port: number, timeoutMs = 1000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: LOOPBACK, port });
    let buf = "";
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no INFO from port ${port}`)));
    socket.on("data", (chunk: Buffer) => {
      buf += chunk.toString("utf8");
      const end = buf.indexOf("\r\n");
      if (end < 0) return;
      socket.destroy();
      const line = buf.slice(0, end);
      if (!line.startsWith("INFO ")) {
        reject(new Error(`unexpected greeting: ${line.slice(0, 80)}`));
        return;
      }
      try {
        resolve(JSON.parse(line.slice(5)));
      } catch (err) {
        reject(err);
      }
    });
    socket.on("error", reject);
  });
}
