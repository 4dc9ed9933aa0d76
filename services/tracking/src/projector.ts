import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { EtaChangedSchema, StatusChangedSchema } from "@logistics/shared/gen/logistics/events/v1/tracking_events_pb.js";
import {
  ensureCatalogConsumer,
  Outcomes,
  publication,
  startBatchConsumer,
  type BatchConsumer,
  type BatchConsumerStats,
  type BatchItem,
  type CatalogConsumers,
  type CatalogPublisher,
  type EventCatalog,
  type Outcome,
  type Publication,
} from "@logistics/shared/events";
import { silentNatsLog, type NatsLog } from "@logistics/shared/nats";
import { observeWithExemplar } from "@logistics/shared/telemetry";
import type { ConsumerRef } from "@logistics/shared/operations";
import { StoreError } from "./store/errors.js";
import type { ApplyResult, ShipmentDoc, ShipmentEventInput, ShipmentStore } from "./store/ports.js";
import { routePlannedInput, routeUpdatedInput, scanInput, shipmentCreatedInput } from "./event-inputs.js";
import type { LiveNotifier } from "./live-updates.js";
import type { ShipmentCache } from "./shipment-cache.js";
import { docAtVersion, loadHistory } from "./shipment-history.js";
import { shipmentEta, shipmentMessage } from "./shipment-view.js";
import type { TrackingMetrics } from "./tracking-metrics.js";

/** Options of {@link startProjector}. */
export interface ProjectorOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** The connection of `js`: used for the max-deliveries advisory (dead-lettering crashed deliveries). */
  nc: NatsConnection;
  /** The event catalog (the runtime's `ctx.catalog`): streams, subjects and consumers. */
  catalog: EventCatalog;
  store: Pick<ShipmentStore, "applyEvents" | "listEvents">;
  /** Publishes StatusChanged / EtaChanged. */
  publisher: CatalogPublisher;
  metrics: TrackingMetrics;
  /** Snapshot cache to refresh after each commit (optional). */
  cache?: ShipmentCache;
  /** Cross-replica change notices for watchers (optional). */
  notifier?: LiveNotifier;
  /**
   * Replaces `tracking` in the durable names (`tracking-scans`, `tracking-shipment-events`,
   * `tracking-routes`), e.g. for a second projection. Default "tracking".
   */
  durablePrefix?: string;
  /** Most events one consumer commits in one transaction. Default 256. */
  maxBatch?: number;
  /**
   * Batches of one consumer in flight at once (each holds one database connection while it
   * commits; the projector's three consumers hold at most three times this many). Default 2.
   */
  maxInFlightBatches?: number;
  /** Redelivery timeout of an unacknowledged message. Default 10 000 ms. */
  ackWaitMs?: number;
  /** Deliveries before a message is dead-lettered. Default 20. */
  maxDeliver?: number;
  /** Region token for changes whose source event names none. Default "global". */
  defaultRegion?: string;
  /**
   * With several regions (REGION): this region. Every region's projector applies every region's
   * events, but publishes StatusChanged / EtaChanged only for events of this region, so each
   * change is published (and becomes a webhook) in one region only: where its cause was ingested.
   * Default: none, changes are published for every event.
   */
  ownRegion?: string;
  logger?: NatsLog;
  /** Wall clock (for recorded_at / changed_at and the lag metric). Default `() => new Date()`. */
  now?: () => Date;
}

/** A running projector. */
export interface Projector {
  /** Stops pulling and waits for in-flight batches to be committed and settled. Idempotent. */
  close(): Promise<void>;
  /** Counters of each consumer, by durable name. */
  stats(): Record<string, BatchConsumerStats>;
}

/** What one committed event changed, for the change events. */
interface Change {
  before: ShipmentDoc | undefined;
  after: ShipmentDoc;
  statusChanged: boolean;
  etaChanged: boolean;
}

/** The projector's consumers (from the catalog), by their default names. */
const PROJECTOR_CONSUMERS = ["tracking-scans", "tracking-shipment-events", "tracking-routes"] as const;

/** The projector's durable consumers: name, stream and dead-letter subject (for the backlog sampler). */
export function projectorConsumers(catalog: Pick<EventCatalog, "consumer">, durablePrefix = "tracking"): ConsumerRef[] {
  return PROJECTOR_CONSUMERS.map((name) => {
    const def = catalog.consumer(name, { durablePrefix });
    return { durable: def.durable, stream: def.stream.name, deadLetterSubject: def.deadLetterSubject };
  });
}

/** The projector's consumers and the events they receive. */
type ProjectedEvent = CatalogConsumers[(typeof PROJECTOR_CONSUMERS)[number]]["events"][number];
type Item = BatchItem<ProjectedEvent>;

/** One message of a batch that became a store input (converted once). */
interface Entry {
  /** Position in the batch. */
  readonly index: number;
  readonly item: Item;
  readonly input: ShipmentEventInput;
  /** Region token of the change events it causes. */
  readonly region: string;
  /** Ingest's acceptance time (scans), for the ack → visible metric. */
  readonly recordedAt: Date | undefined;
}

/** Store errors caused by the event's data: no retry can change them. */
const isPoison = (err: unknown): err is StoreError =>
  err instanceof StoreError && (err.code === "INVALID_EVENT" || err.code === "DOCUMENT_TOO_LARGE");

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * Starts the tracking projector: three durable JetStream pull consumers from the event catalog
 * (`tracking-scans`, `tracking-shipment-events`, `tracking-routes`; every replica shares them)
 * on the batch consumer (`startBatchConsumer`). Each batch:
 *
 * 1. every message is converted to a store input once (an event that cannot become one is
 *    poison: dead-lettered at once, alone);
 * 2. the inputs are applied with one `store.applyEvents` call: one transaction, one statement per
 *    table for the whole batch (idempotent by event id, order-safe by event time, a shipment's
 *    events in stream order). An event the store rejects for its data (`batchIndex` set) is
 *    poison; the batch is re-applied without it, so the rest commits. Any other failure is
 *    isolated by applying the batch's events one at a time; an event whose apply fails is retried
 *    (redelivered with backoff, dead-lettered on the last delivery) together with the later events
 *    of its shipment in the batch;
 * 3. after the commit: one cache refresh and one live notice per shipment (its newest version),
 *    and every StatusChanged / EtaChanged published at once (`publishAll`) with `Nats-Msg-Id`
 *    `<tracking>.v<version>.status|eta`, so a redelivery cannot publish a change twice;
 * 4. the consumer acknowledges the batch's messages (only now: a process killed before this
 *    point leaves them unacknowledged, and their redelivery finds them applied).
 *
 * If publishing a change fails, its event (and the later ones of its shipment in the batch) is
 * redelivered; the redelivery finds the event already applied, rebuilds that version's change
 * from the history and publishes it then.
 */
export async function startProjector(opts: ProjectorOptions): Promise<Projector> {
  const { js, jsm, nc, catalog, store, publisher, metrics, cache, notifier } = opts;
  const log = opts.logger ?? silentNatsLog;
  const now = opts.now ?? (() => new Date());
  const defaultRegion = opts.defaultRegion ?? "global";
  const overrides = {
    ...(opts.durablePrefix ? { durablePrefix: opts.durablePrefix } : {}),
    ...(opts.ackWaitMs !== undefined ? { ackWaitMs: opts.ackWaitMs } : {}),
    ...(opts.maxDeliver !== undefined ? { maxDeliver: opts.maxDeliver } : {}),
  };
  const { events } = catalog;

  /** The message as a store input, or the reason it can never be one. */
  const convert = (item: Item, index: number): Entry | string => {
    try {
      const region = item.region || defaultRegion;
      switch (item.type) {
        case "scan.recorded": {
          const m = item.message;
          const recordedAt = m.recordedAt ? timestampDate(m.recordedAt) : undefined;
          return {
            index,
            item,
            input: scanInput(m),
            region: m.region || region,
            recordedAt: recordedAt && Number.isFinite(recordedAt.getTime()) ? recordedAt : undefined,
          };
        }
        case "shipment.created":
          return { index, item, input: shipmentCreatedInput(item.message, item.timestamp), region, recordedAt: undefined };
        case "route.planned":
          return { index, item, input: routePlannedInput(item.message, item.timestamp), region, recordedAt: undefined };
        case "route.updated":
          return { index, item, input: routeUpdatedInput(item.message, item.timestamp), region, recordedAt: undefined };
        default:
          return "";
      }
    } catch (err) {
      // A required part missing, or a time no date can hold: no retry can change that.
      return errorText(err) || "unusable event";
    }
  };

  /**
   * Applies the entries in one transaction; poison (per the store's `batchIndex`) is taken out
   * and the rest re-applied. Returns the results by batch position; throws what is not poison.
   */
  const applyAll = async (entries: readonly Entry[], outcomes: Outcome[]): Promise<Map<number, ApplyResult>> => {
    let pending = entries;
    const results = new Map<number, ApplyResult>();
    while (pending.length > 0) {
      try {
        const applied = await store.applyEvents(pending.map((e) => e.input));
        applied.forEach((r, k) => results.set((pending[k] as Entry).index, r));
        return results;
      } catch (err) {
        const at = isPoison(err) ? err.batchIndex : undefined;
        const bad = at === undefined ? undefined : pending[at];
        if (!bad) throw err;
        outcomes[bad.index] = Outcomes.poison(errorText(err));
        metrics.projectorFailures.inc({ type: bad.item.type });
        pending = pending.filter((e) => e !== bad);
      }
    }
    return results;
  };

  /**
   * After a failure that names no event: each event alone, in order, so one event that keeps
   * failing is retried (and in the end dead-lettered) without its batch. A shipment whose event
   * failed has its later events retried too, unapplied (the batch consumer parks the shipment).
   */
  const applyOneByOne = async (entries: readonly Entry[], outcomes: Outcome[], cause: unknown): Promise<Map<number, ApplyResult>> => {
    log.warn({ size: entries.length, err: cause }, "batch apply failed; applying its events one at a time");
    const results = new Map<number, ApplyResult>();
    const failedKeys = new Set<string>();
    for (const e of entries) {
      if (failedKeys.has(e.input.trackingNumber)) {
        outcomes[e.index] = Outcomes.retry("an earlier event of the shipment failed");
        continue;
      }
      try {
        const r = await applyAll([e], outcomes);
        for (const [i, x] of r) results.set(i, x);
      } catch (err) {
        failedKeys.add(e.input.trackingNumber);
        outcomes[e.index] = Outcomes.retry(errorText(err));
        metrics.projectorFailures.inc({ type: e.item.type });
      }
    }
    return results;
  };

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

  /** The change events of one committed change. */
  const changeEvents = (change: Change, cause: ShipmentEventInput, region: string, at: ReturnType<typeof timestampFromDate>): Publication[] => {
    const { before, after } = change;
    const tn = after.trackingNumber;
    const common = {
      trackingNumber: tn,
      shipmentId: after.shipmentId ?? "",
      customerId: after.customerId ?? "",
      carrierCode: after.carrierCode ?? "",
      version: BigInt(after.version),
    };
    const out: Publication[] = [];
    if (change.statusChanged) {
      out.push(
        publication(
          events.statusChanged,
          create(StatusChangedSchema, {
            ...common,
            eventId: `${tn}.v${after.version}.status`,
            previousStatus: before?.status ?? ShipmentStatus.UNSPECIFIED,
            status: after.status,
            carrierStatus: after.carrierStatus,
            statusTime: after.statusTime ? timestampFromDate(new Date(after.statusTime)) : undefined,
            causeEventId: cause.eventId,
            hubCode: after.hubCode ?? "",
            location: after.location ? { latitude: after.location.lat, longitude: after.location.lon } : undefined,
            recordedAt: at,
          }),
          { region },
        ),
      );
    }
    if (change.etaChanged) {
      out.push(
        publication(
          events.etaChanged,
          create(EtaChangedSchema, {
            ...common,
            eventId: `${tn}.v${after.version}.eta`,
            previousEta: before ? shipmentEta(before) : undefined,
            eta: shipmentEta(after),
            reason: after.etaReason ?? 0,
            changedAt: at,
          }),
          { region },
        ),
      );
    }
    return out;
  };

  const handle = async (items: readonly Item[]): Promise<Outcome[]> => {
    const outcomes: Outcome[] = items.map(() => Outcomes.ack);
    const entries: Entry[] = [];
    items.forEach((item, i) => {
      const e = convert(item, i);
      if (typeof e !== "string") entries.push(e);
      else if (e !== "") {
        outcomes[i] = Outcomes.poison(e);
        metrics.projectorFailures.inc({ type: item.type });
      }
      // "": an event tracking does not project (a hand-over): acknowledged.
    });
    if (entries.length === 0) return outcomes;

    let results: Map<number, ApplyResult>;
    try {
      results = await applyAll(entries, outcomes);
    } catch (err) {
      const left = entries.filter((e) => outcomes[e.index]?.kind === "ack");
      if (left.length > 1) results = await applyOneByOne(left, outcomes, err);
      else {
        results = new Map();
        for (const e of left) {
          outcomes[e.index] = Outcomes.retry(errorText(err));
          metrics.projectorFailures.inc({ type: e.item.type });
        }
      }
    }

    // After the commit: the change events, in batch order, and each shipment's newest document.
    const at = timestampFromDate(now());
    const nowMs = now().getTime();
    const newest = new Map<string, { doc: ShipmentDoc; notify: boolean }>();
    const publications: Publication[] = [];
    const causeOf: Entry[] = [];
    for (const e of entries) {
      const r = results.get(e.index);
      if (!r) continue;
      metrics.projectedEvents.inc({ type: e.input.type, outcome: r.applied ? "applied" : "duplicate" });
      if (r.applied && e.recordedAt) observeWithExemplar(metrics.ackToVisible, {}, Math.max(0, (nowMs - e.recordedAt.getTime()) / 1000));
      let change: Change | undefined;
      if (r.applied) change = { before: r.before, after: r.after, statusChanged: r.statusChanged, etaChanged: r.etaChanged };
      // An earlier delivery may have committed and then failed before publishing its changes.
      else if (e.item.redelivered) change = await rebuildChange(r.after, e.input.eventId);
      const tn = e.input.trackingNumber;
      const prev = newest.get(tn);
      const notify = (prev?.notify ?? false) || r.applied || e.item.redelivered;
      if (!prev || r.after.version >= prev.doc.version) newest.set(tn, { doc: r.after, notify });
      else prev.notify = notify;
      if (change && (opts.ownRegion === undefined || e.region === opts.ownRegion)) {
        for (const p of changeEvents(change, e.input, e.region, at)) {
          publications.push(p);
          causeOf.push(e);
        }
      }
    }

    const cacheWrites = cache
      ? [...newest.values()].map(({ doc }) =>
          cache.put(shipmentMessage(doc)).catch((err: unknown) => {
            metrics.cacheErrors.inc({ op: "put" });
            log.debug({ err, trackingNumber: doc.trackingNumber }, "cache refresh failed");
          }),
        )
      : [];
    for (const [tn, { doc, notify }] of newest) if (notify) notifier?.notify(tn, doc.version);
    const published = publications.length > 0 ? await publisher.publishAll(publications) : [];
    await Promise.all(cacheWrites);

    // A change that could not be published: its event and the later ones of its shipment come back.
    const unpublished = new Map<string, number>();
    published.forEach((p, k) => {
      const cause = causeOf[k] as Entry;
      if (p.status === "fulfilled") {
        metrics.publishedChanges.inc({ type: publications[k]?.event === events.statusChanged ? "status_changed" : "eta_changed" });
        return;
      }
      const tn = cause.input.trackingNumber;
      unpublished.set(tn, Math.min(unpublished.get(tn) ?? Infinity, cause.index));
      log.warn({ trackingNumber: tn, eventId: cause.input.eventId, err: p.reason }, "change not published; the event comes back");
    });
    if (unpublished.size > 0) {
      for (const e of entries) {
        const from = unpublished.get(e.input.trackingNumber);
        if (from !== undefined && e.index >= from && outcomes[e.index]?.kind === "ack") {
          outcomes[e.index] = Outcomes.retry("change events not published");
          metrics.projectorFailures.inc({ type: e.item.type });
        }
      }
    }
    return outcomes;
  };

  const consumers: Array<{ durable: string; consumer: BatchConsumer }> = [];
  const start = async (def: CatalogConsumers[(typeof PROJECTOR_CONSUMERS)[number]]) => {
    await ensureCatalogConsumer(jsm, def, log);
    const consumer = await startBatchConsumer<ProjectedEvent>({
      js,
      nc,
      catalog,
      consumer: def,
      handler: handle,
      ...(opts.maxBatch !== undefined ? { maxBatch: opts.maxBatch } : {}),
      ...(opts.maxInFlightBatches !== undefined ? { maxInFlightBatches: opts.maxInFlightBatches } : {}),
      logger: log,
    });
    consumers.push({ durable: def.durable, consumer });
  };

  try {
    for (const name of PROJECTOR_CONSUMERS) await start(catalog.consumer(name, overrides));
  } catch (err) {
    await Promise.allSettled(consumers.map((c) => c.consumer.close()));
    throw err;
  }

  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= Promise.all(consumers.map((c) => c.consumer.close())).then(() => undefined);
      return closing;
    },
    stats() {
      return Object.fromEntries(consumers.map((c) => [c.durable, c.consumer.stats()]));
    },
  };
}
