/**
 * The runner's process supervisor: starts each service as its own child process (in its own
 * process group, so a terminal's Ctrl-C reaches only the runner, which then stops everything in
 * order), declares it up only when that child itself reports ready, restarts a child that dies
 * with exponential backoff (printing why), and stops all children on request: SIGTERM to each
 * process group, SIGKILL after a grace period.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";

/** One supervised program. */
export interface ProgramSpec {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /**
   * True when a line the child printed (stdout or stderr) says it is ready; `pid` is the child's,
   * so a readiness report of another process (an orphan on the same port) never counts.
   */
  readonly isReadyLine: (line: string, pid: number) => boolean;
  /** Exit codes that mean "will fail the same way again" (e.g. 2 = bad configuration): not restarted. */
  readonly fatalExitCodes?: readonly number[];
}

/** Options for {@link Supervisor}. */
export interface SupervisorOptions {
  /** Receives every line a child prints. */
  readonly output: (name: string, line: string, stream: "stdout" | "stderr") => void;
  /** Receives the supervisor's own notices (exits, restarts). */
  readonly notice: (line: string) => void;
  /** First restart delay; doubles per consecutive failure up to `maxBackoffMs`. Default 1 000 ms. */
  readonly initialBackoffMs?: number;
  /** Default 30 000 ms. */
  readonly maxBackoffMs?: number;
  /** A child that ran this long before dying restarts after `initialBackoffMs` again. Default 30 000 ms. */
  readonly resetBackoffAfterMs?: number;
  /** Time children get to exit after SIGTERM before SIGKILL. Default 20 000 ms. */
  readonly stopGraceMs?: number;
  /** Called when a program exits with a fatal code (it is not restarted). */
  readonly onFatal?: (name: string, code: number) => void;
}

interface Program {
  spec: ProgramSpec;
  child?: ChildProcess;
  ready: boolean;
  startedAt: number;
  failures: number;
  restarts: number;
  waiters: Array<() => void>;
  exited?: Promise<void>;
}

/** See the module comment. */
export class Supervisor {
  private readonly programs = new Map<string, Program>();
  private stopping = false;
  private readonly o: Required<Omit<SupervisorOptions, "onFatal">> & Pick<SupervisorOptions, "onFatal">;

  constructor(o: SupervisorOptions) {
    this.o = {
      initialBackoffMs: 1000,
      maxBackoffMs: 30_000,
      resetBackoffAfterMs: 30_000,
      stopGraceMs: 20_000,
      ...o,
    };
  }

  /** Starts a program (once; it is restarted on its own when it dies). */
  start(spec: ProgramSpec): void {
    if (this.programs.has(spec.name)) throw new Error(`${spec.name} is already supervised`);
    const p: Program = { spec, ready: false, startedAt: 0, failures: 0, restarts: 0, waiters: [] };
    this.programs.set(spec.name, p);
    this.launch(p);
  }

  /** Resolves when the program's current child has reported ready; rejects after `timeoutMs`. */
  async waitReady(name: string, timeoutMs: number): Promise<void> {
    const p = this.programs.get(name);
    if (!p) throw new Error(`${name} is not supervised`);
    if (p.ready) return;
    const ready = new Promise<void>((resolve) => p.waiters.push(resolve));
    const ac = new AbortController();
    try {
      await Promise.race([
        ready,
        sleep(timeoutMs, undefined, { signal: ac.signal }).then(() => {
          throw new Error(`${name} did not report ready within ${Math.round(timeoutMs / 1000)} s`);
        }),
      ]);
    } finally {
      ac.abort();
    }
  }

  /** The current pid of every program that runs. */
  pids(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, p] of this.programs) if (p.child?.pid !== undefined && p.child.exitCode === null && p.child.signalCode === null) out[name] = p.child.pid;
    return out;
  }

  /** How often each program was restarted. */
  restarts(name: string): number {
    return this.programs.get(name)?.restarts ?? 0;
  }

  /**
   * Stops every program: no more restarts, SIGTERM to each process group, SIGKILL to those still
   * running after the grace period. Resolves when all have exited.
   */
  async stopAll(): Promise<void> {
    this.stopping = true;
    const waits: Promise<void>[] = [];
    for (const p of this.programs.values()) {
      const child = p.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) continue;
      signalGroup(child, "SIGTERM");
      const timer = setTimeout(() => {
        this.o.notice(`${p.spec.name} did not stop within ${this.o.stopGraceMs / 1000} s; killing it`);
        signalGroup(child, "SIGKILL");
      }, this.o.stopGraceMs);
      waits.push(p.exited!.finally(() => clearTimeout(timer)));
    }
    await Promise.all(waits);
  }

  /** SIGKILL to every program at once (a second Ctrl-C, or this process exiting). Synchronous. */
  killAll(): void {
    this.stopping = true;
    for (const p of this.programs.values()) if (p.child && p.child.exitCode === null && p.child.signalCode === null) signalGroup(p.child, "SIGKILL");
  }

  private launch(p: Program): void {
    const { spec } = p;
    p.ready = false;
    p.startedAt = Date.now();
    const child = spawn(spec.command, [...spec.args], { env: spec.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    p.child = child;
    const pid = child.pid ?? -1;
    const onLine = (stream: "stdout" | "stderr") => (line: string) => {
      this.o.output(spec.name, line, stream);
      if (!p.ready && p.child === child && spec.isReadyLine(line, pid)) {
        p.ready = true;
        if (p.restarts > 0) this.o.notice(`${spec.name} is up again (pid ${pid})`);
        for (const w of p.waiters.splice(0)) w();
      }
    };
    splitLines(child.stdout!, onLine("stdout"));
    splitLines(child.stderr!, onLine("stderr"));
    p.exited = new Promise<void>((resolve) => {
      child.once("error", (e) => {
        this.o.notice(`${spec.name} could not be started: ${e.message}`);
      });
      child.once("close", (code, signal) => {
        resolve();
        if (p.child !== child) return;
        p.ready = false;
        if (this.stopping) return;
        const how = signal ? `killed by ${signal}` : `exit code ${code}`;
        if (code !== null && spec.fatalExitCodes?.includes(code)) {
          this.o.notice(`${spec.name} exited (${how}); not restarting it (it would fail the same way)`);
          this.o.onFatal?.(spec.name, code);
          return;
        }
        const ranMs = Date.now() - p.startedAt;
        p.failures = ranMs >= this.o.resetBackoffAfterMs ? 1 : p.failures + 1;
        const delay = Math.min(this.o.maxBackoffMs, this.o.initialBackoffMs * 2 ** (p.failures - 1));
        p.restarts++;
        this.o.notice(`${spec.name} exited (${how}) after ${(ranMs / 1000).toFixed(1)} s; restarting it in ${(delay / 1000).toFixed(0)} s (restart ${p.restarts})`);
        setTimeout(() => {
          if (!this.stopping) this.launch(p);
        }, delay).unref();
      });
    });
  }
}

/** Signals a child's whole process group (it leads one: spawned detached). */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}

function splitLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buf = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  stream.on("end", () => {
    if (buf) onLine(buf);
    buf = "";
  });
}
