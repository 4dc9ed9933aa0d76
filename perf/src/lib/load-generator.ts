import * as hdr from "hdr-histogram-js";

/** One call's outcome: resolve for OK; throw an error carrying a `code` (gRPC status) otherwise. */
export type Call = () => Promise<unknown>;

export interface LoadOptions {
  /**
   * "open": start calls at a fixed arrival `rate` regardless of how fast they finish (latency is
   * measured from the intended start, so a stalled server cannot hide its queueing delay —
   * no coordinated omission). "closed": `concurrency` workers call back to back.
   */
  mode: "open" | "closed";
  /** Calls per second (open loop). */
  rate?: number;
  /** Workers (closed loop), or the cap on outstanding calls (open loop; excess counts as "dropped"). */
  concurrency: number;
  /** Measured duration. */
  durationMs: number;
  /** Unmeasured warm-up before it. Default 0. */
  warmupMs?: number;
  call: Call;
}

/** Latencies in microseconds, per-second buckets for plots, and outcome counts. */
export interface LoadResult {
  mode: "open" | "closed";
  startedAt: Date;
  durationMs: number;
  histogram: hdr.Histogram;
  ok: number;
  statusCodes: Record<string, number>;
  errors: Record<string, number>;
  /** Calls the open loop could not start because `concurrency` were outstanding. */
  dropped: number;
  timeline: Array<{ second: number; count: number; p50Us: number; p99Us: number }>;
}

const CODE_NAMES = [
  "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
  "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
  "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
];

function codeName(e: unknown): string {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "number" && CODE_NAMES[code] ? CODE_NAMES[code]! : "Unknown";
}

function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
}

/** Runs one load phase and returns its measurements. Bounded in time by construction. */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  if (o.warmupMs) await phase({ ...o, durationMs: o.warmupMs }, false);
  return phase(o, true);
}

async function phase(o: LoadOptions, measure: boolean): Promise<LoadResult> {
  const histogram = newHistogram();
  const perSecond: hdr.Histogram[] = [];
  const result: LoadResult = {
    mode: o.mode,
    startedAt: new Date(),
    durationMs: o.durationMs,
    histogram,
    ok: 0,
    statusCodes: {},
    errors: {},
    dropped: 0,
    timeline: [],
  };
  const t0 = performance.now();
  const end = t0 + o.durationMs;
  const record = (intendedStart: number, e?: unknown) => {
    if (!measure) return;
    const now = performance.now();
    const us = Math.max(1, Math.round((now - intendedStart) * 1000));
    histogram.recordValue(us);
    const sec = Math.floor((intendedStart - t0) / 1000);
    (perSecond[sec] ??= newHistogram()).recordValue(us);
    const name = e === undefined ? "OK" : codeName(e);
    result.statusCodes[name] = (result.statusCodes[name] ?? 0) + 1;
    if (e === undefined) result.ok++;
    else {
      const msg = e instanceof Error ? e.message.slice(0, 200) : String(e);
      result.errors[msg] = (result.errors[msg] ?? 0) + 1;
    }
  };
  const one = async (intendedStart: number) => {
    try {
      await o.call();
      record(intendedStart);
    } catch (e) {
      record(intendedStart, e ?? new Error("rejected"));
    }
  };

  if (o.mode === "closed") {
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (performance.now() < end) await one(performance.now());
      }),
    );
  } else {
    const rate = o.rate ?? 100;
    const intervalMs = 1000 / rate;
    let outstanding = 0;
    const pending = new Set<Promise<void>>();
    let n = 0;
    while (true) {
      const intended = t0 + n * intervalMs;
      if (intended >= end) break;
      const wait = intended - performance.now();
      // Timers are coarse: start every call that is due, then yield until the next one.
      if (wait > 1) await new Promise((r) => setTimeout(r, Math.floor(wait)));
      n++;
      if (outstanding >= o.concurrency) {
        if (measure) result.dropped++;
        continue;
      }
      outstanding++;
      const p = one(intended).finally(() => {
        outstanding--;
        pending.delete(p);
      });
      pending.add(p);
    }
    await Promise.all(pending);
  }
  result.timeline = perSecond.map((h, second) => ({
    second,
    count: h?.totalCount ?? 0,
    p50Us: h?.getValueAtPercentile(50) ?? 0,
    p99Us: h?.getValueAtPercentile(99) ?? 0,
  }));
  return result;
}

/** Percentile in milliseconds. */
export function pMs(r: LoadResult, p: number): number {
  return r.histogram.getValueAtPercentile(p) / 1000;
}

/** Completed calls per second over the measured duration. */
export function rps(r: LoadResult): number {
  return Number(r.histogram.totalCount) / (r.durationMs / 1000);
}
