import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { context, propagation } from "@opentelemetry/api";
import {
  applyEach,
  ensureCatalogConsumer,
  startBatchConsumer,
  type BatchConsumer,
  type BatchItem,
  type CatalogEvents,
  type EventCatalog,
} from "@logistics/shared/events";
import type { NatsLog } from "@logistics/shared/nats";
import type { Registry } from "prom-client";
import type { ConsumerRef } from "@logistics/shared/operations";
import type { NotificationStore } from "./notification-store.js";

/** Durable consumer names (shared by all replicas, which split the messages between them). */
export const STATUS_CONSUMER = "notification-status";
export const ETA_CONSUMER = "notification-eta";

/** The catalog consumers of the intake. */
const INTAKE_CONSUMERS = [STATUS_CONSUMER, ETA_CONSUMER] as const;

/** The intake's durable consumers, for the backlog metrics. */
export function intakeConsumerRefs(catalog: Pick<EventCatalog, "consumer">): ConsumerRef[] {
  return INTAKE_CONSUMERS.map((name) => catalog.consumer(name)).map((d) => ({ durable: d.durable, stream: d.stream.name, deadLetterSubject: d.deadLetterSubject }));
}

/** Options of {@link startEventIntake}. */
export interface EventIntakeOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** With it, messages whose holder crashed on the last delivery are dead-lettered from the server advisory. */
  nc?: NatsConnection;
  catalog: EventCatalog;
  store: Pick<NotificationStore, "insertDeliveries" | "insertDeliveriesBatch">;
  /** Called after deliveries were committed (e.g. to wake the delivery worker). */
  onDeliveriesCreated?: (count: number) => void;
  logger?: NatsLog;
  /** Most events per batch (one statement). Default: the batch consumer's (256). */
  maxBatch?: number;
  /** How long a batch may wait to fill up. Default: the batch consumer's (0, no wait). */
  lingerMs?: number;
  /** The service's metrics registry, for the consumers' own counters (see `BatchConsumerOptions.registry`). */
  registry?: Registry;
}

/** The running consumers. */
export interface EventIntake {
  /** Stops both consumers after their in-flight batches are settled. */
  close(): Promise<void>;
}

type IntakeEvent = CatalogEvents["statusChanged"] | CatalogEvents["etaChanged"];

/**
 * Turns StatusChanged and EtaChanged events into delivery rows: the catalog's two durable consumers
 * on the status stream (`notification-status`, `notification-eta`) on the batch consumer. A batch's
 * deliveries are inserted in one statement, idempotently per (subscription, event id), and its
 * messages are acknowledged only after that commit — so a crash or redelivery never loses or
 * duplicates a delivery. When the batch fails, its events are inserted one at a time: an event
 * whose data can never be stored is dead-lettered alone, any other failure retries the event and
 * its shipment's later events of the batch (the consumer keeps a shipment's events in order per
 * replica; across replicas, the store's order window covers the remaining reordering). The batch's
 * consumer span trace context is stored with each delivery so the webhook request continues it.
 */
export async function startEventIntake(opts: EventIntakeOptions): Promise<EventIntake> {
  const { catalog, store } = opts;
  const log = opts.logger;
  const traceContext = () => {
    const carrier: Record<string, string> = {};
    propagation.inject(context.active(), carrier);
    return carrier;
  };
  const created = (n: number) => {
    if (n > 0) opts.onDeliveriesCreated?.(n);
  };
  const handler = async (items: ReadonlyArray<BatchItem<IntakeEvent>>) => {
    const tc = traceContext();
    try {
      created(await store.insertDeliveriesBatch(items.map((item) => ({ event: item.message, traceContext: tc }))));
      return items.map(() => ({ kind: "ack" }) as const);
    } catch (err) {
      if (items.length > 1) log?.warn({ size: items.length, err }, "delivery batch failed; inserting its events one at a time");
      return applyEach(items, async (item) => created(await store.insertDeliveries(item.message, tc)));
    }
  };
  const handles: BatchConsumer[] = [];
  try {
    for (const name of INTAKE_CONSUMERS) {
      const def = catalog.consumer(name);
      await ensureCatalogConsumer(opts.jsm, def, log);
      // Each handle is kept as soon as it exists, so a failure starting the next one closes it.
      handles.push(
        await startBatchConsumer<IntakeEvent>({
          js: opts.js,
          catalog,
          consumer: def,
          handler,
          ...(opts.nc ? { nc: opts.nc } : {}),
          ...(opts.maxBatch !== undefined ? { maxBatch: opts.maxBatch } : {}),
          ...(opts.lingerMs !== undefined ? { lingerMs: opts.lingerMs } : {}),
          ...(log ? { logger: log } : {}),
          ...(opts.registry ? { registry: opts.registry } : {}),
        }),
      );
    }
  } catch (err) {
    await Promise.allSettled(handles.map((h) => h.close()));
    throw err;
  }
  return {
    async close() {
      await Promise.allSettled(handles.map((h) => h.close()));
    },
  };
}
