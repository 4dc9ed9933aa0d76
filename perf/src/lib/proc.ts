/**
 * Process CPU and memory from Linux's /proc, for cost-per-scan figures that include processes the
 * harness did not write (nats-server, redis-server, PostgreSQL backends): utime + stime of every
 * thread of a process, in clock ticks, converted to milliseconds.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

let ticksPerSecond: number | undefined;

/** The kernel's USER_HZ (`getconf CLK_TCK`; 100 on every common Linux). */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** The fields of /proc/<pid>/stat after the command name (which may contain spaces and parentheses). */
export function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(")") + 2).trim().split(" ");
}

/**
 * CPU time (user + system, all threads) of a process from the text of its /proc/<pid>/stat, in
 * milliseconds. Fields after the name start at field 3 (state), so utime (14) and stime (15) are at
 * indexes 11 and 12.
 */
export function cpuMsFromStat(stat: string, hz = clockTicksPerSecond()): number {
  const f = statFields(stat);
  return ((Number(f[11]) + Number(f[12])) * 1000) / hz;
}

/** Parent pid from the text of /proc/<pid>/stat. */
export function ppidFromStat(stat: string): number {
  return Number(statFields(stat)[1]);
}

function readStat(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
}

/** CPU milliseconds a process has used so far; undefined once it is gone. */
export function processCpuMs(pid: number): number | undefined {
  const s = readStat(pid);
  return s === undefined ? undefined : cpuMsFromStat(s);
}

/** Every process id on the machine. */
export function allPids(): number[] {
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

/** Direct children of `parent`. */
export function childPids(parent: number): number[] {
  const out: number[] = [];
  for (const pid of allPids()) {
    const s = readStat(pid);
    if (s !== undefined && ppidFromStat(s) === parent) out.push(pid);
  }
  return out;
}

/** The first process whose executable name is `comm` and whose command line contains `needle`. */
export function findProcess(comm: string, needle: string): number | undefined {
  for (const pid of allPids()) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== comm) continue;
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").includes(needle)) return pid;
    } catch {
      // gone
    }
  }
  return undefined;
}

/** Resident set size of a process in MiB (VmRSS from /proc/<pid>/status). */
export function rssMiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** The 1-, 5- and 15-minute load averages. */
export function loadAverage(): [number, number, number] {
  const [a, b, c] = readFileSync("/proc/loadavg", "utf8").split(" ").map(Number);
  return [a ?? NaN, b ?? NaN, c ?? NaN];
}

/** Machine-wide CPU milliseconds, busy and total (all cores, all processes), from /proc/stat. */
export function machineCpuMs(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const total = line.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (line[3] ?? 0) + (line[4] ?? 0);
  const hz = clockTicksPerSecond();
  return { busy: ((total - idle) * 1000) / hz, total: (total * 1000) / hz };
}

/** A named set of processes whose CPU is summed (e.g. a PostgreSQL postmaster and its backends). */
export interface ProcessGroup {
  readonly name: string;
  /** The group's processes now; called at every sample. */
  pids(): readonly number[];
}

/** CPU milliseconds used by each group between two samples. */
export type CpuDelta = Record<string, number>;

/** One reading of every group's cumulative CPU (ms), with the machine's busy CPU and the load average. */
export interface CpuSample {
  /** performance.now() of the reading. */
  readonly at: number;
  readonly cpuMs: Readonly<Record<string, number>>;
  readonly machine: { busy: number; total: number };
  readonly load1: number;
}

/**
 * Samples cumulative CPU per group. Processes that exit between samples (PostgreSQL backends of
 * closed connections) keep their last reading, so a group's total never goes backwards; a pid
 * seen once is read again at every later sample while it lives.
 */
export class CpuSampler {
  private readonly last = new Map<string, Map<number, number>>();

  constructor(
    private readonly groups: readonly ProcessGroup[],
    /** CPU of the sampling process itself (the load generator), e.g. from process.cpuUsage(). */
    private readonly selfName = "load generator",
  ) {}

  sample(): CpuSample {
    const cpuMs: Record<string, number> = {};
    for (const g of this.groups) {
      const seen = this.last.get(g.name) ?? new Map<number, number>();
      this.last.set(g.name, seen);
      const pids = new Set([...g.pids(), ...seen.keys()]);
      for (const pid of pids) {
        const v = processCpuMs(pid);
        if (v !== undefined) seen.set(pid, v);
      }
      cpuMs[g.name] = [...seen.values()].reduce((a, b) => a + b, 0);
    }
    const self = process.cpuUsage();
    cpuMs[this.selfName] = (self.user + self.system) / 1000;
    return { at: performance.now(), cpuMs, machine: machineCpuMs(), load1: loadAverage()[0] };
  }
}

/** CPU used per group between two samples (ms), plus the machine's busy CPU over the same span. */
export function cpuBetween(a: CpuSample, b: CpuSample): { perGroup: CpuDelta; machineBusyMs: number; wallMs: number } {
  const perGroup: CpuDelta = {};
  for (const [k, v] of Object.entries(b.cpuMs)) perGroup[k] = v - (a.cpuMs[k] ?? 0);
  return { perGroup, machineBusyMs: b.machine.busy - a.machine.busy, wallMs: b.at - a.at };
}
