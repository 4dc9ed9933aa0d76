import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { context, propagation } from "@opentelemetry/api";
import { EtaChangedSchema, StatusChangedSchema } from "@logistics/shared/gen/logistics/events/v1/tracking_events_pb.js";
import { startConsumer, type ConsumerHandle, ensureConsumer } from "@logistics/shared/nats";
import type { NatsLog, Subjects } from "@logistics/shared/nats";
import type { NotificationStore } from "./notification-store.js";
import { etaChangedEvent, statusChangedEvent } from "./webhook-payload.js";

/** Durable consumer names (shared by all replicas, which split the messages between them). */
export const STATUS_CONSUMER = "notification-status";
export const ETA_CONSUMER = "notification-eta";

/** Options of {@link startEventIntake}. */
export interface EventIntakeOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** With it, messages whose holder crashed on the last delivery are dead-lettered from the server advisory. */
  nc?: NatsConnection;
  subjects: Subjects;
  store: Pick<NotificationStore, "insertDeliveries">;
  /** Called after deliveries were committed (e.g. to wake the delivery worker). */
  onDeliveriesCreated?: (count: number) => void;
  logger?: NatsLog;
  /** Messages handled at once per consumer. Default 16. */
  concurrency?: number;
}

/** The running consumers. */
export interface EventIntake {
  /** Stops both consumers after their in-flight messages are settled. */
  close(): Promise<void>;
}

/**
 * Turns StatusChanged and EtaChanged events into delivery rows: one durable pull consumer per
 * subject family on the status stream (nats-server 2.9 has no multi-filter consumers). Each
 * message's matching deliveries are inserted in one transaction, idempotently per (subscription,
 * event id), and the message is acknowledged only after that commit — so a crash or redelivery
 * never loses or duplicates a delivery. Messages of one shipment are handled one at a time per
 * replica (`keyOf`); across replicas, the store's order window covers the remaining reordering.
 * The consumer span's trace context is stored with each
 * delivery so the webhook request continues the event's trace.
 */
export async function startEventIntake(opts: EventIntakeOptions): Promise<EventIntake> {
  const stream = opts.subjects.streams.status.name;
  const traceContext = () => {
    const carrier: Record<string, string> = {};
    propagation.inject(context.active(), carrier);
    return carrier;
  };
  const created = (n: number) => {
    if (n > 0) opts.onDeliveriesCreated?.(n);
  };
  const common = {
    js: opts.js,
    stream,
    concurrency: opts.concurrency ?? 16,
    ...(opts.nc ? { nc: opts.nc } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  };
  const handles: ConsumerHandle[] = [];
  try {
    for (const [durable, filterSubject] of [
      [STATUS_CONSUMER, opts.subjects.allStatusChanged],
      [ETA_CONSUMER, opts.subjects.allEtaChanged],
    ] as const) {
      await ensureConsumer(opts.jsm, stream, {
        durable,
        filterSubject,
        ackWaitMs: 30_000,
        maxDeliver: 20,
        maxAckPending: 1000,
        description: "notification: create webhook deliveries",
      });
    }
    // Each handle is kept as soon as it exists, so a failure starting the next one closes it.
    handles.push(
      await startConsumer({
        ...common,
        durable: STATUS_CONSUMER,
        schema: StatusChangedSchema,
        deadLetter: { subject: opts.subjects.deadLetter(STATUS_CONSUMER) },
        keyOf: (m) => m.trackingNumber,
        handler: async (message) => created(await opts.store.insertDeliveries(statusChangedEvent(message), traceContext())),
      }),
    );
    handles.push(
      await startConsumer({
        ...common,
        durable: ETA_CONSUMER,
        schema: EtaChangedSchema,
        deadLetter: { subject: opts.subjects.deadLetter(ETA_CONSUMER) },
        keyOf: (m) => m.trackingNumber,
        handler: async (message) => created(await opts.store.insertDeliveries(etaChangedEvent(message), traceContext())),
      }),
    );
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
