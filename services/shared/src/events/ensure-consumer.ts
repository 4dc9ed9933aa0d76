import { JetStreamApiCodes, JetStreamApiError, type JetStreamManager } from "@nats-io/jetstream";
import { silentNatsLog, type NatsLog } from "../nats/nats-log.js";
import { ensureConsumer, type EnsureConsumerResult } from "../nats/streams.js";
import type { AnyEventDef, ConsumerDef } from "./catalog.js";

/**
 * Creates or updates the durable consumer `def` describes (see `ensureConsumer`), and takes over
 * from the consumers it `replaces`: when it does not exist yet, it starts right after the oldest
 * ack floor of those that do (so no message they had not acknowledged is skipped; messages they
 * had acknowledged may come again, which idempotent consumers absorb), and the replaced consumers
 * are deleted once it exists. Safe to call from every replica at start.
 */
export async function ensureCatalogConsumer(
  jsm: JetStreamManager,
  def: ConsumerDef<AnyEventDef>,
  log: NatsLog = silentNatsLog,
): Promise<EnsureConsumerResult> {
  const stream = def.stream.name;
  let startSequence: number | undefined;
  const old: string[] = [];
  for (const name of def.replaces) {
    const info = await jsm.consumers.info(stream, name).catch((err: unknown) => {
      if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound) return undefined;
      throw err;
    });
    if (!info) continue;
    old.push(name);
    const next = info.ack_floor.stream_seq + 1;
    startSequence = startSequence === undefined ? next : Math.min(startSequence, next);
  }
  const result = await ensureConsumer(jsm, stream, {
    durable: def.durable,
    ...(def.filterSubject ? { filterSubject: def.filterSubject } : {}),
    ackWaitMs: def.ackWaitMs,
    maxDeliver: def.maxDeliver,
    maxAckPending: def.maxAckPending,
    description: def.description,
    ...(startSequence !== undefined ? { startSequence } : {}),
  });
  for (const name of old) {
    await jsm.consumers.delete(stream, name).catch((err: unknown) => {
      if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound)) throw err;
    });
    log.info({ stream, durable: def.durable, replaced: name, startSequence }, "consumer replaced");
  }
  return result;
}
