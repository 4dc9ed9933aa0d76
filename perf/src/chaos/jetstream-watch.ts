/**
 * The chaos run's own view of the JetStream cluster, over a plain client connection to every
 * node: who leads a stream (the fault to inject), and the consumers' backlog over time (num_pending
 * + num_ack_pending from the consumer's leader), and dead letters at the end.
 */
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createSubjects } from "@logistics/shared/nats";

/** A backlog sample: time (ms since the run's epoch) and pending + ack pending per durable. */
export interface LagSample {
  readonly at: number;
  readonly total: number;
  readonly perConsumer: Readonly<Record<string, number>>;
  /** Ack pending alone, per durable (a consumer mid-batch has some). */
  readonly ackPending: Readonly<Record<string, number>>;
}

export interface JetStreamWatch {
  readonly streams: ReturnType<typeof createSubjects>["streams"];
  /** The stream's leader and its other replicas (server names), or undefined while unknown. */
  placement(stream: string): Promise<{ leader: string; replicas: string[] } | undefined>;
  /** One backlog sample (undefined when JetStream did not answer). */
  sample(): Promise<LagSample | undefined>;
  /** Samples every `intervalMs` into `samples` until stopped. */
  startSampling(intervalMs: number, epoch: number): { samples: LagSample[]; stop(): Promise<void> };
  /** Asks the stream's leader to step down (a new one is elected among the current replicas). */
  stepDown(stream: string): Promise<void>;
  /** Messages in the dead-letter stream. */
  deadLetters(): Promise<number>;
  close(): Promise<void>;
}

export async function watchJetStream(urls: readonly string[], subjectPrefix: string, epoch: number): Promise<JetStreamWatch> {
  const nc: NatsConnection = await connect({ servers: [...urls], maxReconnectAttempts: -1, reconnectTimeWait: 250, name: "chaos-watch" });
  const jsm: JetStreamManager = await jetstreamManager(nc, { timeout: 2000 });
  const { streams } = createSubjects(subjectPrefix);
  const consumerStreams = [streams.scans, streams.shipments, streams.routes, streams.status].map((s) => s.name);

  const sample = async (): Promise<LagSample | undefined> => {
    try {
      const perConsumer: Record<string, number> = {};
      const ackPending: Record<string, number> = {};
      let total = 0;
      for (const stream of consumerStreams) {
        for await (const c of jsm.consumers.list(stream)) {
          const backlog = c.num_pending + c.num_ack_pending;
          perConsumer[c.name] = backlog;
          ackPending[c.name] = c.num_ack_pending;
          total += backlog;
        }
      }
      return { at: performance.now() - epoch, total, perConsumer, ackPending };
    } catch {
      return undefined;
    }
  };

  return {
    streams,
    async placement(stream) {
      try {
        const info = await jsm.streams.info(stream);
        const leader = info.cluster?.leader;
        if (!leader) return undefined;
        return { leader, replicas: (info.cluster?.replicas ?? []).map((r) => r.name) };
      } catch {
        return undefined;
      }
    },
    sample,
    startSampling(intervalMs) {
      const samples: LagSample[] = [];
      let running = true;
      const loop = (async () => {
        while (running) {
          const started = performance.now();
          const s = await sample();
          if (s) samples.push(s);
          const wait = intervalMs - (performance.now() - started);
          if (wait > 0 && running) await new Promise((r) => setTimeout(r, wait));
        }
      })();
      return {
        samples,
        async stop() {
          running = false;
          await loop;
        },
      };
    },
    async stepDown(stream) {
      await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, undefined, { timeout: 5000 });
    },
    async deadLetters() {
      const info = await jsm.streams.info(streams.deadLetters.name);
      return info.state.messages;
    },
    close: () => nc.close(),
  };
}
