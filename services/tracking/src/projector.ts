import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { GeoPointSchema } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { EtaChangedSchema, StatusChangedSchema } from "@logistics/shared/gen/logistics/events/v1/tracking_events_pb.js";
import {
  DEFAULT_MAX_BATCH,
  DEFAULT_MAX_IN_FLIGHT_BATCHES,
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
import { createRoundTripCoalescer } from "@logistics/shared/batching";
import { silentNatsLog, type NatsLog } from "@logistics/shared/nats";
import { databaseUnavailableReason } from "@logistics/shared/postgres";
import { observeWithExemplar } from "@logistics/shared/telemetry";
import type { ConsumerRef } from "@logistics/shared/operations";
import { sameEta, trimmedIds } from "./store/derive.js";
import { carrierStatusFromDoc } from "./store/doc-json.js";
import type { ShipmentMessages } from "./watch-messages.js";
import { StoreError } from "./store/errors.js";
import { eventKey } from "./store/events.js";
import type { ApplyResult, ProjectedEvent, ShipmentDoc, ShipmentStore } from "./store/ports.js";
import { noticeChange } from "./live-notice.js";
import type { LiveNotifier } from "./live-updates.js";
import type { ShipmentCache } from "./shipment-cache.js";
import { docAtVersion, loadHistory, VersionsTrimmedError } from "./shipment-history.js";
import { docTime, shipmentEta, shipmentMessage } from "./shipment-view.js";
import type { TrackingMetrics } from "./tracking-metrics.js";
import type { Registry } from "prom-client";

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
  /** Renders the Shipment of a cache refresh (default `shipmentMessage`): a memo shared with the watchers renders each version once. */
  shipmentMessages?: ShipmentMessages;
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
  /** How long a batch may wait to fill up (the batch consumer's `lingerMs`). Default 0. */
  lingerMs?: number;
  /** Redelivery timeout of an unacknowledged message. Default 10 000 ms. */
  ackWaitMs?: number;
  /** Deliveries before a message is dead-lettered. Default 20. */
  maxDeliver?: number;
  /** Region token for changes whose source event names none. Default "global". */
  defaultRegion?: string;
  /**
   * With several regions (REGION): this region. Every region's projector applies every region's
   * events (its own and those sourced from the peers) and publishes the StatusChanged /
   * EtaChanged they cause under this region's token, into this region's status stream (never
   * sourced): this region's notification then fires the webhooks of the subscriptions it holds,
   * for scans ingested in any region. A subscription lives in one region, so each webhook fires
   * once. Default: none, a change carries the region of the event that caused it.
   */
  ownRegion?: string;
  logger?: NatsLog;
  /** The service's metrics registry, for the consumers' own counters (see `BatchConsumerOptions.registry`). */
  registry?: Registry;
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
type ConsumedEventDef = CatalogConsumers[(typeof PROJECTOR_CONSUMERS)[number]]["events"][number];
type Item = BatchItem<ConsumedEventDef>;

/** One message of a batch that the store applies. */
interface Entry {
  /** Position in the batch. */
  readonly index: number;
  readonly item: Item;
  /** The item itself, or a copy with the stream's time filled in (see {@link withEventTime}). */
  readonly event: ProjectedEvent;
  readonly trackingNumber: string;
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
 * 1. every message is passed on to the store as it was decoded (a creation, handover or route
 *    event whose producer left its time out gets the stream's time);
 * 2. the events are applied with one `store.applyEvents` call, merged with the other consumers'
 *    batches waiting at that moment (group apply, below): one transaction, one statement for them
 *    all (idempotent by event id, order-safe by event time, a shipment's events in stream order).
 *    An event the store rejects for its data (`batchIndex` set) is poison; the batch is re-applied
 *    without it, so the rest commits. Any other failure is
 *    isolated by applying the batch's events one at a time; an event whose apply fails is retried
 *    (redelivered with backoff, dead-lettered on the last delivery) together with the later events
 *    of its shipment in the batch. A failure that says the database is unavailable (a statement or
 *    connection timeout, a lost connection: `databaseUnavailableReason`) retries the whole batch
 *    instead, never as poison;
 * 3. after the commit: one cache refresh and one live notice per shipment (its newest version,
 *    with the document and the events applied when the store reported them, see live-notice.ts),
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
  const render = opts.shipmentMessages ?? shipmentMessage;
  const log = opts.logger ?? silentNatsLog;
  const now = opts.now ?? (() => new Date());
  const defaultRegion = opts.defaultRegion ?? "global";
  const overrides = {
    ...(opts.durablePrefix ? { durablePrefix: opts.durablePrefix } : {}),
    ...(opts.ackWaitMs !== undefined ? { ackWaitMs: opts.ackWaitMs } : {}),
    ...(opts.maxDeliver !== undefined ? { maxDeliver: opts.maxDeliver } : {}),
  };
  const { events } = catalog;
  /**
   * Group apply: one store apply at a time, into which the three consumers' waiting batches are
   * merged. Their batches nearly always share shipments (a shipment's creation, route and scans
   * arrive on three streams within seconds), so two applied at once would meet in the store (a
   * compare-and-set miss, then a locking retry), and applied one after the other each paid a
   * round trip and a commit for a few events: under load that queue, not the database, set how
   * many events a second the projector applied. Merged, one statement and one commit take
   * everything waiting (at most the consumers' batches in flight: 3 × `maxInFlightBatches` ×
   * `maxBatch`, 6,144 events with the service's defaults). An event the store rejects for its data fails only the batch that sent
   * it (at its own `batchIndex`) and the others apply again without it; any other failure fails
   * every batch of the round, each to its own fallback (`applyOneByOne`, whose applies go to the
   * store directly, unmerged).
   */
  const applier = createRoundTripCoalescer<ProjectedEvent, ApplyResult>({
    serial: true,
    // Everything the consumers can have waiting: one apply takes it all.
    maxItems: PROJECTOR_CONSUMERS.length * (opts.maxInFlightBatches ?? DEFAULT_MAX_IN_FLIGHT_BATCHES) * (opts.maxBatch ?? DEFAULT_MAX_BATCH),
    send: (events) => {
      metrics.storeApplyEvents.observe(events.length);
      return store.applyEvents(events);
    },
    blame: {
      itemOf: (err) => (isPoison(err) ? err.batchIndex : undefined),
      forCall: (err, index) => Object.assign(err as StoreError, { batchIndex: index }),
    },
  });

  /** The message as the store applies it. */
  const convert = (item: Item, index: number): Entry => {
    const event = withEventTime(item);
    const { trackingNumber } = eventKey(event);
    if (item.type !== "scan.recorded") return { index, item, event, trackingNumber, region: item.region || defaultRegion, recordedAt: undefined };
    const m = item.message;
    const recordedAt = m.recordedAt ? timestampDate(m.recordedAt) : undefined;
    return {
      index,
      item,
      event,
      trackingNumber,
      region: m.region || item.region || defaultRegion,
      recordedAt: recordedAt && Number.isFinite(recordedAt.getTime()) ? recordedAt : undefined,
    };
  };

  /**
   * Applies the entries in one transaction (with the other consumers' waiting batches unless
   * `alone`); poison (per the store's `batchIndex`) is taken out and the rest re-applied. Returns
   * the results by batch position; throws what is not poison.
   */
  const applyAll = async (entries: readonly Entry[], outcomes: Outcome[], alone = false): Promise<Map<number, ApplyResult>> => {
    let pending = entries;
    const results = new Map<number, ApplyResult>();
    while (pending.length > 0) {
      try {
        const batch = pending;
        const events = batch.map((e) => e.event);
        const applied = alone ? await store.applyEvents(events) : await applier.call(events);
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
   * Once a failure says the database is unavailable, the rest are retried unapplied.
   */
  const applyOneByOne = async (entries: readonly Entry[], outcomes: Outcome[], cause: unknown): Promise<Map<number, ApplyResult>> => {
    log.warn({ size: entries.length, err: cause }, "batch apply failed; applying its events one at a time");
    const results = new Map<number, ApplyResult>();
    const failedKeys = new Set<string>();
    let unavailable: string | undefined;
    for (const e of entries) {
      if (unavailable !== undefined) {
        outcomes[e.index] = Outcomes.retry(unavailable);
        continue;
      }
      if (failedKeys.has(e.trackingNumber)) {
        outcomes[e.index] = Outcomes.retry("an earlier event of the shipment failed");
        continue;
      }
      try {
        const r = await applyAll([e], outcomes, true);
        for (const [i, x] of r) results.set(i, x);
      } catch (err) {
        failedKeys.add(e.trackingNumber);
        outcomes[e.index] = Outcomes.retry(errorText(err));
        metrics.projectorFailures.inc({ type: e.item.type });
        // The database is down or stalled: each further event would wait out the same timeout.
        if (databaseUnavailableReason(err) !== undefined) unavailable = `the database is unavailable: ${errorText(err)}`;
      }
    }
    return results;
  };

  /**
   * The change an already-applied event made, rebuilt from the history (redeliveries only).
   * Undefined when the document no longer lists the event, or dropped the ids the rebuild needs
   * (a document trimmed to its size limit: shipment-history.ts): a change of such a shipment lost
   * by a crash between commit and publish stays unpublished.
   */
  const rebuildChange = async (after: ShipmentDoc, eventId: string): Promise<Change | undefined> => {
    const index = after.derivation.eventIds.indexOf(eventId);
    if (index < 0) return undefined;
    const version = index + 1 + trimmedIds(after);
    const history = await loadHistory(store, after.trackingNumber);
    let at: ShipmentDoc;
    let before: ShipmentDoc | undefined;
    try {
      at = docAtVersion(after, version, history);
      before = version > 1 ? docAtVersion(after, version - 1, history) : undefined;
    } catch (err) {
      if (!(err instanceof VersionsTrimmedError)) throw err;
      log.debug({ trackingNumber: after.trackingNumber, eventId, err }, "change of a redelivered event not rebuilt");
      return undefined;
    }
    return {
      before,
      after: at,
      statusChanged: (before?.status ?? ShipmentStatus.UNSPECIFIED) !== at.status,
      etaChanged: !sameEta(before?.eta, at.eta),
    };
  };

  /** The change events of one committed change. */
  const changeEvents = (change: Change, causeEventId: string, region: string, at: ReturnType<typeof timestampFromDate>): Publication[] => {
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
            carrierStatus: after.carrierStatus && carrierStatusFromDoc(after.carrierStatus),
            statusTime: docTime(after.statusTime),
            causeEventId,
            hubCode: after.hubCode ?? "",
            location: after.location && create(GeoPointSchema, after.location),
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
    const entries = items.map(convert);
    if (entries.length === 0) return outcomes;

    let results: Map<number, ApplyResult>;
    try {
      results = await applyAll(entries, outcomes);
    } catch (err) {
      const left = entries.filter((e) => outcomes[e.index]?.kind === "ack");
      // One at a time isolates an event that fails; a database that is unavailable (a timeout, a
      // lost connection) fails them all: the batch is retried as a whole, later.
      if (left.length > 1 && databaseUnavailableReason(err) === undefined) results = await applyOneByOne(left, outcomes, err);
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
    /** Each shipment's applied events in the order applied: what its notice carries. */
    const appliedOf = new Map<string, Array<{ event: ProjectedEvent; result: ApplyResult }>>();
    const publications: Publication[] = [];
    const causeOf: Entry[] = [];
    for (const e of entries) {
      const r = results.get(e.index);
      if (!r) continue;
      metrics.projectedEvents.inc({ type: e.item.type, outcome: r.applied ? "applied" : "duplicate" });
      if (r.applied && e.recordedAt) observeWithExemplar(metrics.ackToVisible, {}, Math.max(0, (nowMs - e.recordedAt.getTime()) / 1000));
      let change: Change | undefined;
      if (r.applied) change = { before: r.before, after: r.after, statusChanged: r.statusChanged, etaChanged: r.etaChanged };
      // An earlier delivery may have committed and then failed before publishing its changes.
      else if (e.item.redelivered) change = await rebuildChange(r.after, eventKey(e.event).eventId);
      const tn = e.trackingNumber;
      if (r.applied) {
        const applied = appliedOf.get(tn);
        if (applied) applied.push({ event: e.event, result: r });
        else appliedOf.set(tn, [{ event: e.event, result: r }]);
      }
      const prev = newest.get(tn);
      const notify = (prev?.notify ?? false) || r.applied || e.item.redelivered;
      if (!prev || r.after.version >= prev.doc.version) newest.set(tn, { doc: r.after, notify });
      else prev.notify = notify;
      if (change) {
        for (const p of changeEvents(change, eventKey(e.event).eventId, opts.ownRegion ?? e.region, at)) {
          publications.push(p);
          causeOf.push(e);
        }
      }
    }

    const cacheWrites = cache
      ? [...newest.values()].map(({ doc }) =>
          cache.put(render(doc)).catch((err: unknown) => {
            metrics.cacheErrors.inc({ op: "put" });
            log.debug({ err, trackingNumber: doc.trackingNumber }, "cache refresh failed");
          }),
        )
      : [];
    if (notifier) for (const [tn, { doc, notify }] of newest) if (notify) notifier.notify(tn, doc.version, noticeChange(doc, appliedOf.get(tn) ?? []));
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
      const tn = cause.trackingNumber;
      unpublished.set(tn, Math.min(unpublished.get(tn) ?? Infinity, cause.index));
      log.warn({ trackingNumber: tn, eventId: eventKey(cause.event).eventId, err: p.reason }, "change not published; the event comes back");
    });
    if (unpublished.size > 0) {
      for (const e of entries) {
        const from = unpublished.get(e.trackingNumber);
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
    const consumer = await startBatchConsumer<ConsumedEventDef>({
      js,
      nc,
      catalog,
      consumer: def,
      handler: handle,
      ...(opts.maxBatch !== undefined ? { maxBatch: opts.maxBatch } : {}),
      ...(opts.maxInFlightBatches !== undefined ? { maxInFlightBatches: opts.maxInFlightBatches } : {}),
      ...(opts.lingerMs !== undefined ? { lingerMs: opts.lingerMs } : {}),
      ...(opts.registry ? { registry: opts.registry } : {}),
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

/**
 * The event as the store applies it: the item itself, or, for a creation, handover, partner
 * removal or route event whose producer left its time out, a copy carrying the stream's time in the message's time field,
 * so the stored event keeps the time it was applied with.
 */
function withEventTime(item: Item): ProjectedEvent {
  const streamTime = () => timestampFromDate(item.timestamp);
  switch (item.type) {
    case "scan.recorded":
      return item;
    case "shipment.created":
      return item.message.createdAt || item.message.readyTime ? item : { type: item.type, message: { ...item.message, createdAt: streamTime() } };
    case "shipment.handed_over":
      return item.message.handedOverAt ? item : { type: item.type, message: { ...item.message, handedOverAt: streamTime() } };
    case "shipment.partner_removed":
      return item.message.removedAt ? item : { type: item.type, message: { ...item.message, removedAt: streamTime() } };
    case "route.planned":
      return item.message.plannedAt || item.message.route?.plannedAt ? item : { type: item.type, message: { ...item.message, plannedAt: streamTime() } };
    case "route.updated":
      return item.message.updatedAt || item.message.route?.plannedAt ? item : { type: item.type, message: { ...item.message, updatedAt: streamTime() } };
  }
}
