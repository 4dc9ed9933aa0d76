/**
 * Consumer backlog from nats-server's monitoring endpoint (`/jsz?accounts=true&consumers=true`):
 * per durable, messages not yet delivered (`num_pending`) plus delivered but unacknowledged
 * (`num_ack_pending`). Read from the server, so it needs no hook in the services.
 */

/** Backlog of one durable consumer at one moment. */
export interface ConsumerBacklog {
  /** `<stream>/<durable>`. */
  readonly name: string;
  readonly pending: number;
  readonly ackPending: number;
  readonly redelivered: number;
}

interface Jsz {
  account_details?: Array<{
    stream_detail?: Array<{
      name: string;
      consumer_detail?: Array<{ name: string; num_pending?: number; num_ack_pending?: number; num_redelivered?: number }>;
    }>;
  }>;
}

/** The per-durable backlog in a `/jsz?accounts=true&consumers=true` document. */
export function parseJsz(doc: unknown): ConsumerBacklog[] {
  const out: ConsumerBacklog[] = [];
  for (const a of (doc as Jsz).account_details ?? []) {
    for (const s of a.stream_detail ?? []) {
      for (const c of s.consumer_detail ?? []) {
        out.push({
          name: `${s.name}/${c.name}`,
          pending: c.num_pending ?? 0,
          ackPending: c.num_ack_pending ?? 0,
          redelivered: c.num_redelivered ?? 0,
        });
      }
    }
  }
  return out.sort((x, y) => x.name.localeCompare(y.name));
}

/** Reads every durable's backlog from a nats-server monitoring URL. */
export async function readBacklog(monitorUrl: string, timeoutMs = 2000): Promise<ConsumerBacklog[]> {
  const res = await fetch(`${monitorUrl}/jsz?accounts=true&consumers=true`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`/jsz answered ${res.status}`);
  return parseJsz(await res.json());
}

/** One sample: when (performance.now()), and backlog (pending + ack pending) per durable. */
export interface BacklogSample {
  readonly at: number;
  readonly perConsumer: Readonly<Record<string, number>>;
  readonly total: number;
}

/** Samples the backlog every `intervalMs` until stopped; failed reads are skipped. */
export function sampleBacklog(monitorUrl: string, intervalMs: number): { samples: BacklogSample[]; stop(): Promise<void>; now(): Promise<BacklogSample | undefined> } {
  const samples: BacklogSample[] = [];
  const read = async (): Promise<BacklogSample | undefined> => {
    try {
      const list = await readBacklog(monitorUrl);
      const perConsumer: Record<string, number> = {};
      let total = 0;
      for (const c of list) {
        perConsumer[c.name] = c.pending + c.ackPending;
        total += c.pending + c.ackPending;
      }
      const s = { at: performance.now(), perConsumer, total };
      samples.push(s);
      return s;
    } catch {
      return undefined;
    }
  };
  let running = true;
  let inflight: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    if (running) inflight = read();
  }, intervalMs);
  return {
    samples,
    now: read,
    async stop() {
      running = false;
      clearInterval(timer);
      await inflight;
    },
  };
}
