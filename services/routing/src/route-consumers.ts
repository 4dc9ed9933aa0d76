import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ensureCatalogConsumer, startBatchConsumer, type BatchConsumer, type EventCatalog } from "@logistics/shared/events";
import type { NatsLog } from "@logistics/shared/nats";
import type { Registry } from "prom-client";
import type { ConsumerRef } from "@logistics/shared/operations";
import type { RouteKeeper } from "./route-keeper.js";

/** Routing's durable consumers, by their catalog names. */
const ROUTING_CONSUMER_NAMES = ["routing-shipments-created", "routing-scans"] as const;

/** Routing's durable consumers, for the backlog metrics. */
export function routingConsumerRefs(catalog: Pick<EventCatalog, "consumer">): ConsumerRef[] {
  return ROUTING_CONSUMER_NAMES.map((name) => catalog.consumer(name)).map((d) => ({
    durable: d.durable,
    stream: d.stream.name,
    deadLetterSubject: d.deadLetterSubject,
  }));
}

/** Options for {@link startRouteConsumers}. */
export interface RouteConsumersOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  catalog: EventCatalog;
  keeper: RouteKeeper;
  logger?: NatsLog;
  /** Most events per batch. Default: the batch consumer's (256). */
  maxBatch?: number;
  /** How long a batch may wait to fill up (the batch consumer's `lingerMs`). Default 0. */
  lingerMs?: number;
  /** The service's metrics registry, for the consumers' own counters (see `BatchConsumerOptions.registry`). */
  registry?: Registry;
}

/** The running consumers. */
export interface RouteConsumers {
  close(): Promise<void>;
}

/**
 * Starts the two durable consumers of the catalog on the batch consumer: `routing-shipments-created`
 * (plan the first route, publish RoutePlanned) and `routing-scans` (re-plan on deviation, publish
 * RouteUpdated). A batch is applied by the keeper's batch path (`onShipmentsCreated`, `onScans`):
 * one read of its shipments (folded into the first write, or left to the writes' checks, where it
 * can be), one statement per round for its writes, one publishing round; a shipment's
 * events in stream order; every event acknowledged after its effects are stored and published. A
 * failure is retried with backoff (with the shipment's later events, unapplied) and dead-lettered
 * after the last delivery, except events that can never be planned (unknown hub, unusable time,
 * data the store rejects), which are dead-lettered at once, alone.
 */
export async function startRouteConsumers(opts: RouteConsumersOptions): Promise<RouteConsumers> {
  const { catalog, keeper } = opts;
  const common = {
    js: opts.js,
    nc: opts.nc,
    catalog,
    ...(opts.maxBatch !== undefined ? { maxBatch: opts.maxBatch } : {}),
    ...(opts.lingerMs !== undefined ? { lingerMs: opts.lingerMs } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.registry ? { registry: opts.registry } : {}),
  };
  const shipments = catalog.consumer("routing-shipments-created");
  const scans = catalog.consumer("routing-scans");
  await ensureCatalogConsumer(opts.jsm, shipments, opts.logger);
  await ensureCatalogConsumer(opts.jsm, scans, opts.logger);
  const handles: BatchConsumer[] = [];
  try {
    handles.push(
      await startBatchConsumer({
        ...common,
        consumer: shipments,
        handler: (items) => keeper.onShipmentsCreated(items.map((item) => ({ event: item.message, region: item.region }))),
      }),
    );
    handles.push(
      await startBatchConsumer({
        ...common,
        consumer: scans,
        handler: (items) => keeper.onScans(items.map((item) => item.message)),
      }),
    );
  } catch (e) {
    await Promise.allSettled(handles.map((h) => h.close()));
    throw e;
  }
  return { close: async () => void (await Promise.allSettled(handles.map((h) => h.close()))) };
}
