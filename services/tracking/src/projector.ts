import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema, RouteUpdatedSchema } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { EtaChangedSchema, StatusChangedSchema } from "@logistics/shared/gen/logistics/events/v1/tracking_events_pb.js";
import {
  PoisonMessageError,
  startConsumer,
  type ConsumerHandle,
  type ConsumerStats,
  type MessageMeta,
  silentNatsLog,
  type NatsLog,
  ensureConsumer,
} from "@logistics/shared/nats";
import type { EventPublisher, Subjects } from "@logistics/shared/nats";
import type { ConsumerRef } from "@logistics/shared/operations";
import { StoreError } from "./store/errors.js";
import type { ShipmentDoc, ShipmentEventInput, ShipmentStore } from "./store/ports.js";
import { createApplyBatcher } from "./apply-batcher.js";
import {
  regionOfSubject,
  routePlannedInput,
  routeUpdatedInput,
  scanInput,
  shipmentCreatedInput,
} from "./event-inputs.js";
import type { LiveNotifier } from "./live-updates.js";
import type { ShipmentCache } from "./shipment-cache.js";
import { docAtVersion, loadHistory } from "./shipment-history.js";
import { shipmentMessage } from "./shipment-view.js";
import type { TrackingMetrics } from "./tracking-metrics.js";

/** Options of {@link startProjector}. */
export interface ProjectorOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** The connection of `js`: used for the max-deliveries advisory (dead-lettering crashed deliveries). */
  nc: NatsConnection;
  subjects: Subjects;
  store: Pick<ShipmentStore, "applyEvents" | "listEvents">;
  publisher: EventPublisher;
  metrics: TrackingMetrics;
  /** Snapshot cache to refresh after each commit (optional). */
  cache?: ShipmentCache;
  /** Cross-replica change notices for watchers (optional). */
  notifier?: LiveNotifier;
  /** Durable consumer names are `<prefix>-scans`, `-shipments`, `-routes-planned`, `-routes-updated`. Default "tracking". */
  durablePrefix?: string;
  /** Handlers per consumer at once (one shipment's events stay serialized). Default 32. */
  concurrency?: number;
  /**
   * Apply transactions in flight at once (each batch holds one database connection while it
   * commits). Default 4.
   */
  maxConcurrentApplies?: number;
  /** Most events committed in one transaction. Default 200. */
  maxBatch?: number;
  /** Redelivery timeout of an unacknowledged message. Default 10 000 ms. */
  ackWaitMs?: number;
  /** Deliveries before a message is dead-lettered. Default 20. */
  maxDeliver?: number;
  /** Region token for changes whose source event names none. Default "global". */
  defaultRegion?: string;
  logger?: NatsLog;
  /** Wall clock (for recorded_at / changed_at and the lag metric). Default `() => new Date()`. */
  now?: () => Date;
}

/** A running projector. */
export interface Projector {
  /** Stops pulling and waits for in-flight events to be committed and acked. Idempotent. */
  close(): Promise<void>;
  /** Counters of each consumer, by durable name. */
  stats(): Record<string, ConsumerStats>;
}

/** What one committed event changed, for the change events. */
interface Change {
  before: ShipmentDoc | undefined;
  after: ShipmentDoc;
  statusChanged: boolean;
  etaChanged: boolean;
}

/** The projector's durable consumers: name (`<prefix>-<suffix>`), stream and dead-letter subject. */
export function projectorConsumers(subjects: Subjects, durablePrefix = "tracking"): ConsumerRef[] {
  const streams: Record<ProjectorConsumerSuffix, string> = {
    scans: subjects.streams.scans.name,
    shipments: subjects.streams.shipments.name,
    "routes-planned": subjects.streams.routes.name,
    "routes-updated": subjects.streams.routes.name,
  };
  return Object.entries(streams).map(([suffix, stream]) => {
    const durable = `${durablePrefix}-${suffix}`;
    return { durable, stream, deadLetterSubject: subjects.deadLetter(durable) };
  });
}

type ProjectorConsumerSuffix = "scans" | "shipments" | "routes-planned" | "routes-updated";

/**
 * Starts the tracking projector: durable JetStream pull consumers over scans, created shipments
 * and route events (shared by every replica: each message goes to one of them). Each message is
 * applied with `store.applyEvent` (idempotent by event id, order-safe by event time) and acked
 * only after the commit (the consumer acks when the handler resolves; failures are redelivered
 * with backoff and dead-lettered on the last delivery). Messages of one shipment are handled one
 * at a time per replica (`keyOf` = tracking number).
 *
 * After a commit: the cache snapshot is refreshed (version-guarded), a live notice goes out, and
 * StatusChanged / EtaChanged are published with `Nats-Msg-Id` `<tracking>.v<version>.status|eta`,
 * so a redelivery cannot publish a change twice. If publishing fails the message is redelivered;
 * the redelivery finds the event already applied, rebuilds that version's change from the
 * history and publishes it then.
 */
export async function startProjector(opts: ProjectorOptions): Promise<Projector> {
  const { js, jsm, nc, subjects, store, publisher, metrics, cache, notifier } = opts;
  const log = opts.logger ?? silentNatsLog;
  const prefix = opts.durablePrefix ?? "tracking";
  const concurrency = opts.concurrency ?? 32;
  const now = opts.now ?? (() => new Date());
  const defaultRegion = opts.defaultRegion ?? "global";
  // Group commit: concurrent applies share transactions (see apply-batcher.ts).
  const batcher = createApplyBatcher(store, {
    maxConcurrentBatches: Math.max(1, opts.maxConcurrentApplies ?? 4),
    maxBatch: opts.maxBatch ?? 200,
  });

  /** The change an already-applied event made, rebuilt from the history (redeliveries only). */
  const rebuildChange = async (after: ShipmentDoc, eventId: string): Promise<Change | undefined> => {
    const index = after.derivation.eventIds.indexOf(eventId);
    if (index < 0) return undefined;
    const history = await loadHistory(store, after.trackingNumber);
    const at = docAtVersion(after, index + 1, history);
    const before = index > 0 ? docAtVersion(after, index, history) : undefined;
    return {
      before,
      after: at,
      statusChanged: (before?.status ?? ShipmentStatus.UNSPECIFIED) !== at.status,
      etaChanged: JSON.stringify(before?.eta ?? null) !== JSON.stringify(at.eta ?? null),
    };
  };

  const publishChanges = async (change: Change, cause: ShipmentEventInput, region: string) => {
    const { before, after } = change;
    const tn = after.trackingNumber;
    const version = BigInt(after.version);
    const at = timestampFromDate(now());
    if (change.statusChanged) {
      const id = `${tn}.v${after.version}.status`;
      await publisher.publish(
        subjects.statusChanged(region),
        StatusChangedSchema,
        create(StatusChangedSchema, {
          eventId: id,
          trackingNumber: tn,
          shipmentId: after.shipmentId ?? "",
          customerId: after.customerId ?? "",
          carrierCode: after.carrierCode ?? "",
          previousStatus: before?.status ?? ShipmentStatus.UNSPECIFIED,
          status: after.status,
          carrierStatus: after.carrierStatus,
          statusTime: after.statusTime ? timestampFromDate(new Date(after.statusTime)) : undefined,
          causeEventId: cause.eventId,
          hubCode: after.hubCode ?? "",
          location: after.location ? { latitude: after.location.lat, longitude: after.location.lon } : undefined,
          version,
          recordedAt: at,
        }),
        { msgId: id },
      );
      metrics.publishedChanges.inc({ type: "status_changed" });
    }
    if (change.etaChanged) {
      const id = `${tn}.v${after.version}.eta`;
      const full = shipmentMessage(after);
      const prev = before ? shipmentMessage(before) : undefined;
      await publisher.publish(
        subjects.etaChanged(region),
        EtaChangedSchema,
        create(EtaChangedSchema, {
          eventId: id,
          trackingNumber: tn,
          shipmentId: after.shipmentId ?? "",
          customerId: after.customerId ?? "",
          carrierCode: after.carrierCode ?? "",
          previousEta: prev?.eta,
          eta: full.eta,
          reason: after.etaReason ?? 0,
          version,
          changedAt: at,
        }),
        { msgId: id },
      );
      metrics.publishedChanges.inc({ type: "eta_changed" });
    }
  };

  const project = async (input: ShipmentEventInput, meta: MessageMeta, region: string, recordedAt?: Date) => {
    const result = await batcher.apply(input).catch((err: unknown) => {
      // Bad data never applies, however often it is retried: dead-letter it at once.
      if (err instanceof StoreError && (err.code === "INVALID_EVENT" || err.code === "DOCUMENT_TOO_LARGE")) {
        throw new PoisonMessageError(err.message, { cause: err });
      }
      throw err;
    });
    metrics.projectedEvents.inc({ type: input.type, outcome: result.applied ? "applied" : "duplicate" });
    if (result.applied && recordedAt) {
      metrics.ackToVisible.observe(Math.max(0, (now().getTime() - recordedAt.getTime()) / 1000));
    }
    let change: Change | undefined;
    if (result.applied) {
      change = { before: result.before, after: result.after, statusChanged: result.statusChanged, etaChanged: result.etaChanged };
    } else if (meta.redelivered) {
      // An earlier delivery may have committed and then failed before publishing its changes.
      change = await rebuildChange(result.after, input.eventId);
    }
    if (cache) {
      await cache.put(shipmentMessage(result.after)).catch((err: unknown) => {
        metrics.cacheErrors.inc({ op: "put" });
        log.debug({ err, trackingNumber: input.trackingNumber }, "cache refresh failed");
      });
    }
    if (result.applied || meta.redelivered) notifier?.notify(input.trackingNumber, result.after.version);
    if (change) await publishChanges(change, input, region);
  };

  const consumers: Array<{ durable: string; handle: ConsumerHandle }> = [];
  const start = async <Desc extends DescMessage>(
    suffix: ProjectorConsumerSuffix,
    stream: string,
    filterSubject: string,
    schema: Desc,
    toInput: (m: MessageShape<Desc>, meta: MessageMeta) => { input: ShipmentEventInput; region: string; recordedAt?: Date },
  ) => {
    const durable = `${prefix}-${suffix}`;
    await ensureConsumer(jsm, stream, {
      durable,
      filterSubject,
      ackWaitMs: opts.ackWaitMs ?? 10_000,
      maxDeliver: opts.maxDeliver ?? 20,
      maxAckPending: Math.max(1000, concurrency * 4),
      description: `tracking projector: ${suffix}`,
    });
    const handle = await startConsumer({
      js,
      nc,
      stream,
      durable,
      schema,
      concurrency,
      keyOf: (m, meta) => {
        try {
          return toInput(m, meta).input.trackingNumber;
        } catch {
          return undefined;
        }
      },
      deadLetter: { subject: subjects.deadLetter(durable) },
      logger: log,
      onError: () => metrics.projectorFailures.inc({ type: suffix }),
      handler: async (m, meta) => {
        let converted: ReturnType<typeof toInput>;
        try {
          converted = toInput(m, meta);
        } catch (err) {
          // A required part missing, or a time no date can hold: no retry can change that.
          throw new PoisonMessageError(err instanceof Error ? err.message : String(err), { cause: err });
        }
        await project(converted.input, meta, converted.region, converted.recordedAt);
      },
    });
    consumers.push({ durable, handle });
  };

  const regionOf = (meta: MessageMeta, explicit?: string) => explicit || regionOfSubject(meta.subject) || defaultRegion;
  try {
    await start("scans", subjects.streams.scans.name, subjects.allScans, ScanRecordedSchema, (m, meta) => ({
      input: scanInput(m),
      region: regionOf(meta, m.region),
      ...(m.recordedAt && Number.isFinite(timestampDate(m.recordedAt).getTime()) ? { recordedAt: timestampDate(m.recordedAt) } : {}),
    }));
    await start("shipments", subjects.streams.shipments.name, subjects.allShipmentsCreated, ShipmentCreatedSchema, (m, meta) => ({
      input: shipmentCreatedInput(m, meta.timestamp),
      region: regionOf(meta),
    }));
    await start("routes-planned", subjects.streams.routes.name, subjects.allRoutesPlanned, RoutePlannedSchema, (m, meta) => ({
      input: routePlannedInput(m, meta.timestamp),
      region: regionOf(meta),
    }));
    await start("routes-updated", subjects.streams.routes.name, subjects.allRoutesUpdated, RouteUpdatedSchema, (m, meta) => ({
      input: routeUpdatedInput(m, meta.timestamp),
      region: regionOf(meta),
    }));
  } catch (err) {
    await Promise.allSettled(consumers.map((c) => c.handle.close()));
    throw err;
  }

  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= Promise.all(consumers.map((c) => c.handle.close())).then(() => undefined);
      return closing;
    },
    stats() {
      return Object.fromEntries(consumers.map((c) => [c.durable, c.handle.stats()]));
    },
  };
}
