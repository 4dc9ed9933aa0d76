import { compiledEntry } from "./repo-paths.js";
import { spawnManagedProcess, type ManagedProcess } from "./managed-process.js";
import { waitFor } from "./wait-for.js";

/** Heap figures of a process right after full garbage collection. */
export interface HeapFigures {
  /** V8 heap in use, bytes. */
  heapUsed: number;
  /** Resident set size, bytes. */
  rss: number;
}

/** A service entry running in its own process with the heap probe preloaded. */
export interface ProbedProcess {
  readonly proc: ManagedProcess;
  /** Runs full GCs in the process and resolves with its heap figures. */
  heapAfterGc(): Promise<HeapFigures>;
}

/**
 * Starts `node --expose-gc --import heap-probe <entry>` with `env` (on top of this process's
 * environment), so a memory test measures the service exactly as deployed. Stop it with
 * `proc.stop()`; it is killed if the test process exits first.
 */
export function spawnProbedProcess(entry: string, env: Record<string, string>): ProbedProcess {
  const probe = compiledEntry("services/shared/src/testing/heap-probe.ts");
  const proc = spawnManagedProcess(process.execPath, ["--expose-gc", "--import", probe, entry], { env: { ...process.env, ...env } });
  let asked = 0;
  return {
    proc,
    async heapAfterGc() {
      const seen = () => proc.output().split("\n").filter((l) => l.startsWith("heap-probe ")).length;
      // The output buffer keeps the last 64 KiB only: count answers from what is there now.
      const before = seen();
      asked++;
      process.kill(proc.pid!, "SIGUSR2");
      await waitFor(() => seen() > before, { message: `heap probe answer ${asked}`, signal: proc.exitSignal });
      const line = proc.output().split("\n").filter((l) => l.startsWith("heap-probe ")).at(-1)!;
      const figures = JSON.parse(line.slice("heap-probe ".length)) as HeapFigures & { gc: boolean };
      if (!figures.gc) throw new Error("the process runs without --expose-gc");
      return { heapUsed: figures.heapUsed, rss: figures.rss };
    },
  };
}

/** The sum of a metric's samples on a Prometheus endpoint (names may carry a prefix), or undefined while it does not answer. */
export async function readMetric(metricsUrl: string, nameSuffix: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await (await fetch(metricsUrl, { signal: AbortSignal.timeout(5000) })).text();
  } catch {
    return undefined;
  }
  let sum = 0;
  for (const line of text.split("\n")) {
    const name = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line)?.[1];
    if (name?.endsWith(nameSuffix)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/** Figures of a memory test, in MiB, for its log line and assertions. */
export function mib(bytes: number): string {
  return (bytes / 1_048_576).toFixed(1);
}

/** Streams a memory test opened, and how to close them (resolving once the server let go of them). */
export interface OpenStreams {
  close(): Promise<void>;
}

/**
 * The memory test of long-lived streams: after a warm-up round (so the baseline includes what a
 * first stream creates once), measures the heap after GC before, with `streams` open, and after
 * they closed (again until it is back within `marginBytes`, for up to 30 s); logs the figures and
 * fails when the open streams did not show or the heap did not come back.
 */
export async function assertHeapReturnsAfterStreams(
  svc: ProbedProcess,
  open: (n: number) => Promise<OpenStreams>,
  o: { label: string; streams: number; warmUp?: number; marginBytes: number },
): Promise<{ before: HeapFigures; peak: HeapFigures; after: HeapFigures }> {
  await (await open(o.warmUp ?? 50)).close();
  const before = await svc.heapAfterGc();
  const streams = await open(o.streams);
  const peak = await svc.heapAfterGc();
  await streams.close();
  let after = await svc.heapAfterGc();
  await waitFor(async () => (after = await svc.heapAfterGc()).heapUsed <= before.heapUsed + o.marginBytes, { timeoutMs: 30_000 }).catch(
    () => {},
  );
  console.info(
    `${o.label} x${o.streams}: heap before ${mib(before.heapUsed)} MiB, with streams open ${mib(peak.heapUsed)} MiB, ` +
      `after close ${mib(after.heapUsed)} MiB (rss ${mib(before.rss)} / ${mib(peak.rss)} / ${mib(after.rss)} MiB)`,
  );
  if (peak.heapUsed <= before.heapUsed) throw new Error(`${o.label}: open streams did not show in the heap; the test measures nothing`);
  if (after.heapUsed > before.heapUsed + o.marginBytes) {
    throw new Error(
      `${o.label}: heap after close ${mib(after.heapUsed)} MiB exceeds baseline ${mib(before.heapUsed)} MiB + ${mib(o.marginBytes)} MiB`,
    );
  }
  return { before, peak, after };
}
