import { mkdtemp, rm } from "node:fs/promises";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getFreePort } from "./free-port.js";
import { launchOnFreePorts } from "./free-port-launch.js";
import { removeOnExit, spawnManagedProcess, type ManagedProcess } from "./managed-process.js";
import { waitFor } from "./wait-for.js";

/** Options for {@link startRedisServer}. */
export interface RedisServerOptions {
  /** Port on 127.0.0.1. Default: a free port (retried if another process takes it first). */
  port?: number;
  /** The redis-server executable, resolved through PATH. Default "redis-server". */
  binary?: string;
  /** How long to wait for PONG. Default 10 000 ms. */
  startTimeoutMs?: number;
  /**
   * Working directory. Default: a fresh directory under the OS temp dir, removed by `stop()`. A
   * directory passed here is used as is and never removed.
   */
  dir?: string;
  /** Stopped by the caller on signals, in its own process group (see `ManagedProcessOptions`). */
  supervised?: boolean;
}

/** A running redis-server started by {@link startRedisServer}. */
export interface RedisServerHandle {
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** The current process id (changes on restart). */
  readonly pid: number | undefined;
  /** True while the server process runs. */
  isRunning(): boolean;
  /** Recent server log output. */
  logs(): string;
  /** Graceful stop (SIGTERM, wait for exit) and removal of the working directory it created. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL, as in a crash (for "Redis is down" tests); `restart()` brings it back. */
  kill(): Promise<void>;
  /** Stops the server if it runs and starts it again on the same port (empty: no persistence). */
  restart(): Promise<void>;
}

const LOOPBACK = "127.0.0.1";

/**
 * Starts a throwaway redis-server on 127.0.0.1 without persistence (`--save "" --appendonly
 * no`, working directory in the OS temp dir) and resolves once it answers PING with PONG.
 * The process is killed if the test process exits without stopping it.
 */
export async function startRedisServer(opts: RedisServerOptions = {}): Promise<RedisServerHandle> {
  const binary = opts.binary ?? "redis-server";
  const startTimeoutMs = opts.startTimeoutMs ?? 10_000;
  const ownedDir = opts.dir === undefined ? await mkdtemp(join(tmpdir(), "redis-test-")) : undefined;
  const dir = opts.dir ?? (ownedDir as string);
  const forgetDir = ownedDir ? removeOnExit(ownedDir) : () => {};
  let port = opts.port ?? 0;
  let proc: ManagedProcess | undefined;
  let removed = false;

  const launch = async () => {
    const p = spawnManagedProcess(binary, [
      "--port", String(port),
      "--bind", LOOPBACK,
      "--save", "",
      "--appendonly", "no",
      "--dir", dir,
      "--daemonize", "no",
    ], { supervised: opts.supervised === true });
    proc = p;
    try {
      await waitFor(() => ping(port), {
        timeoutMs: startTimeoutMs,
        intervalMs: 25,
        message: `redis-server on port ${port} to answer PING`,
        signal: p.exitSignal,
      });
    } catch (err) {
      await p.stop("SIGKILL");
      throw err;
    }
  };
  const cleanup = async () => {
    if (!removed) {
      removed = true;
      if (ownedDir) await rm(ownedDir, { recursive: true, force: true });
      forgetDir();
    }
  };

  try {
    await launchOnFreePorts({
      async pick() {
        if (opts.port === undefined) port = await getFreePort();
      },
      launch,
      output: () => proc?.output() ?? "",
      fixed: opts.port !== undefined,
    });
  } catch (err) {
    await cleanup();
    throw err;
  }

  const stopProcess = async (signal: NodeJS.Signals) => {
    if (proc?.isRunning()) await proc.stop(signal);
  };
  return {
    url: `redis://${LOOPBACK}:${port}`,
    port,
    get pid() {
      return proc?.pid;
    },
    isRunning: () => proc?.isRunning() ?? false,
    logs: () => proc?.output() ?? "",
    async stop() {
      await stopProcess("SIGTERM");
      await cleanup();
    },
    kill: () => stopProcess("SIGKILL"),
    async restart() {
      if (removed) throw new Error("redis-server was stopped");
      await stopProcess("SIGTERM");
      await launch();
    },
  };
}

/** Sends an inline PING over a fresh TCP connection; true when the reply is +PONG. */
function ping(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: LOOPBACK, port }, () => socket.write("PING\r\n"));
    let buf = "";
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no reply to PING on port ${port}`)));
    socket.on("data", (chunk: Buffer) => {
      buf += chunk.toString("utf8");
      if (!buf.includes("\r\n")) return;
      socket.destroy();
      resolve(buf.startsWith("+PONG"));
    });
    socket.on("error", reject);
  });
}
