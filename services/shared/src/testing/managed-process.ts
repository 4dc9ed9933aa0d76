import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";

/** How a managed process ended. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all (e.g. the binary is not on PATH). */
  error?: Error;
}

/** A child process started for a test, with its recent output kept for error messages. */
export interface ManagedProcess {
  /** The OS process id, or undefined when spawning failed. */
  readonly pid: number | undefined;
  /** Settles when the process has exited (never rejects). */
  readonly exited: Promise<ProcessExit>;
  /** Aborted when the process exits; hand it to `waitFor` so startup waits stop at once. */
  readonly exitSignal: AbortSignal;
  /** True until the process has exited. */
  isRunning(): boolean;
  /** The last 64 KiB of the process's stdout and stderr, interleaved. */
  output(): string;
  /**
   * Sends `signal` (default SIGTERM) and waits for the exit; if the process is still running
   * after `graceMs` (default 10 000 ms) it is killed with SIGKILL. Resolves at once when the
   * process has already exited.
   */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<ProcessExit>;
}

/** Options for {@link spawnManagedProcess}. */
export interface ManagedProcessOptions {
  /**
   * The caller stops the process itself on SIGINT/SIGTERM (a supervisor that stops its services
   * first): the process runs in its own process group, so a terminal's Ctrl-C does not reach it,
   * and this module's signal hook leaves it alone. It is still killed if this process exits first.
   */
  supervised?: boolean;
  /** Environment of the process. Default: this process's. */
  env?: NodeJS.ProcessEnv;
  /** Working directory. Default: this process's. */
  cwd?: string;
  /** User and group to run as (a root parent starting a server that refuses root). */
  uid?: number;
  gid?: number;
}

const OUTPUT_LIMIT = 64 * 1024;
const live = new Set<ChildProcess>();
const supervised = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;

/**
 * Kills every still-running managed process and removes registered temp directories when the
 * test process exits or is interrupted (SIGINT/SIGTERM, e.g. a test-runner timeout), so a
 * failing test never leaves servers or files behind. After cleaning up on a signal, the signal
 * is re-raised unless someone else handles it, so the process still terminates as it would have.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = () => {
    for (const child of live) child.kill("SIGKILL");
    live.clear();
  };
  const cleanup = () => {
    for (const child of live) if (!supervised.has(child)) child.kill("SIGKILL");
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
    tempDirs.clear();
  };
  process.on("exit", () => {
    killAll();
    cleanup();
  });
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    const onSignal = () => {
      cleanup();
      process.off(sig, onSignal);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/**
 * Registers a temp directory to be removed if the process exits before the owner removes it;
 * returns a function that unregisters it (call it after removing the directory yourself).
 */
export function removeOnExit(dir: string): () => void {
  installExitHook();
  tempDirs.add(dir);
  return () => {
    tempDirs.delete(dir);
  };
}

/**
 * Spawns `binary args...` (resolved through PATH) with stdin closed and stdout/stderr captured.
 * The process is killed with SIGKILL if the parent exits first.
 */
export function spawnManagedProcess(binary: string, args: readonly string[], opts: ManagedProcessOptions = {}): ManagedProcess {
  installExitHook();
  const child = spawn(binary, args, {
    stdio: ["ignore", "pipe", "pipe"],
    detached: opts.supervised === true,
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
    ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
  });
  let output = "";
  const append = (chunk: Buffer) => {
    output += chunk.toString("utf8");
    if (output.length > OUTPUT_LIMIT) output = output.slice(-OUTPUT_LIMIT);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);

  const exitController = new AbortController();
  let running = true;
  const exited = new Promise<ProcessExit>((resolve) => {
    const done = (exit: ProcessExit) => {
      if (!running) return;
      running = false;
      live.delete(child);
      supervised.delete(child);
      exitController.abort(
        new Error(
          `${binary} exited (code ${exit.code}, signal ${exit.signal})` +
            (exit.error ? `: ${exit.error.message}` : "") +
            `\n--- output ---\n${output.slice(-4000)}`,
        ),
      );
      resolve(exit);
    };
    child.once("exit", (code, signal) => done({ code, signal }));
    child.once("error", (error) => done({ code: null, signal: null, error }));
  });
  if (child.pid !== undefined) {
    live.add(child);
    if (opts.supervised) supervised.add(child);
  }

  return {
    pid: child.pid,
    exited,
    exitSignal: exitController.signal,
    isRunning: () => running,
    output: () => output,
    async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 10_000) {
      if (!running) return exited;
      child.kill(signal);
      if (signal === "SIGKILL") return exited;
      let timer: NodeJS.Timeout | undefined;
      const forced = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          child.kill("SIGKILL");
          resolve();
        }, graceMs);
      });
      await Promise.race([exited, forced]);
      clearTimeout(timer);
      return exited;
    },
  };
}
