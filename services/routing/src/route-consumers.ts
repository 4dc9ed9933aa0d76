import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { PoisonMessageError, startConsumer, type ConsumerHandle, ensureConsumer } from "@logistics/shared/nats";
import type { NatsLog, Subjects } from "@logistics/shared/nats";
import type { ConsumerRef } from "@logistics/shared/operations";
import { InvalidRequestError, UnknownHubError, type RouteKeeper } from "./route-keeper.js";

/**
 * Runs a keeper step for one event; an event routing can never plan (a hub not in the network, a
 * time it cannot plan with) is poison: dead-lettered at once with the reason, not retried.
 */
async function applyOrPoison(step: () => Promise<void>): Promise<void> {
  try {
    await step();
  } catch (e) {
    if (e instanceof UnknownHubError || e instanceof InvalidRequestError) throw new PoisonMessageError(e.message, { cause: e });
    throw e;
  }
}

/** Durable consumer names of the routing service. */
export const ROUTING_CONSUMERS = Object.freeze({
  shipmentsCreated: "routing-shipments-created",
  scans: "routing-scans",
});

/** Routing's durable consumers, for the backlog metrics. */
export function routingConsumerRefs(subjects: Subjects): ConsumerRef[] {
  return [
    { durable: ROUTING_CONSUMERS.shipmentsCreated, stream: subjects.streams.shipments.name },
    { durable: ROUTING_CONSUMERS.scans, stream: subjects.streams.scans.name },
  ].map((c) => ({ ...c, deadLetterSubject: subjects.deadLetter(c.durable) }));
}

/** Options for {@link startRouteConsumers}. */
export interface RouteConsumersOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  subjects: Subjects;
  keeper: RouteKeeper;
  logger?: NatsLog;
  /** Handlers running at once per consumer. Default 8. */
  concurrency?: number;
}

/** The running consumers. */
export interface RouteConsumers {
  close(): Promise<void>;
}

/**
 * Starts the two durable consumers: shipment-created events (plan the first route, publish
 * RoutePlanned) and scans (re-plan on deviation, publish RouteUpdated). Messages of the same
 * shipment are handled one at a time, in stream order; failures are retried with backoff and
 * dead-lettered after the last delivery, except events that can never be planned (unknown hub,
 * unusable time, data the store rejects), which are dead-lettered at once.
 */
export async function startRouteConsumers(opts: RouteConsumersOptions): Promise<RouteConsumers> {
  const { subjects, keeper } = opts;
  const concurrency = opts.concurrency ?? 8;
  // Retry delays come from the shared consumer's nak schedule (0.5 s doubling to 60 s); a server
  // backoff list would also shorten ack_wait to its first step, which a CPU-bound plan can exceed.
  const common = { ackWaitMs: 30_000, maxDeliver: 20 };
  await ensureConsumer(opts.jsm, subjects.streams.shipments.name, {
    durable: ROUTING_CONSUMERS.shipmentsCreated,
    filterSubject: subjects.allShipmentsCreated,
    description: "routing: plan the first route of each new shipment",
    ...common,
  });
  await ensureConsumer(opts.jsm, subjects.streams.scans.name, {
    durable: ROUTING_CONSUMERS.scans,
    filterSubject: subjects.allScans,
    description: "routing: compare scans with the plan and re-plan on deviation",
    ...common,
  });
  const handles: ConsumerHandle[] = [];
  try {
    handles.push(
      await startConsumer({
        js: opts.js,
        nc: opts.nc,
        stream: subjects.streams.shipments.name,
        durable: ROUTING_CONSUMERS.shipmentsCreated,
        schema: ShipmentCreatedSchema,
        concurrency,
        keyOf: (m) => m.trackingNumber,
        deadLetter: { subject: subjects.deadLetter(ROUTING_CONSUMERS.shipmentsCreated) },
        ...(opts.logger ? { logger: opts.logger } : {}),
        handler: (m, meta) => applyOrPoison(() => keeper.onShipmentCreated(m, meta.subject.split(".").at(-1) ?? "default")),
      }),
    );
    handles.push(
      await startConsumer({
        js: opts.js,
        nc: opts.nc,
        stream: subjects.streams.scans.name,
        durable: ROUTING_CONSUMERS.scans,
        schema: ScanRecordedSchema,
        concurrency,
        keyOf: (m) => m.scan?.trackingNumber,
        deadLetter: { subject: subjects.deadLetter(ROUTING_CONSUMERS.scans) },
        ...(opts.logger ? { logger: opts.logger } : {}),
        handler: (m) => applyOrPoison(() => keeper.onScan(m)),
      }),
    );
  } catch (e) {
    await Promise.all(handles.map((h) => h.close()));
    throw e;
  }
  return { close: async () => void (await Promise.all(handles.map((h) => h.close()))) };
}
