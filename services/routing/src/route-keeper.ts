/**
 * Keeps shipments' routes current: plans the first route, re-plans on scan deviations and
 * disruptions, stores every revision and publishes route events. Used by the RPC handlers and
 * the event consumers alike. All state lives in the {@link RouteStore}, so any replica can handle
 * any event; a replica keeps the shipments it last saw in a bounded cache, used only while the
 * store holds them at the same revision (checked by the batch's read, or by the compare-and-set of
 * the revision decided from it).
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  EtaChangeReason,
  EtaSchema,
  RouteSchema,
  type Eta,
  type Route,
  type RouteLeg,
} from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import type { Place } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import type { ScanRecorded, ShipmentCreated } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import {
  RoutePlannedSchema,
  RouteUpdatedSchema,
} from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { DisruptionSchema, type Disruption, type DisruptionCause } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { Outcomes, publication, type CatalogEvents, type CatalogPublisher, type Outcome, type Publication } from "@logistics/shared/events";
import { permanentFailureReason } from "@logistics/shared/nats";
import { databaseUnavailableReason } from "@logistics/shared/postgres";
import type { Hub, HubNetwork } from "./hub-network.js";
import {
  DEFAULT_HORIZON_MS,
  MODES_BY_SERVICE_LEVEL,
  NoRouteError,
  type BlockedWindow,
  type PlannedRoute,
  type Planner,
  type ServiceLevelName,
} from "./planner.js";
import { detectDeviation } from "./deviation.js";
import { msOf, routeToProto, serviceLevelName } from "./route-mapping.js";
import {
  ConcurrentUpdateError,
  registered,
  type ChangedShipments,
  withRevision,
  type NewShipment,
  type RevisionWrite,
  type RouteRevision,
  type RouteStore,
  type ShipmentRoute,
  type ShipmentWrite,
  type StoredDisruption,
} from "./route-store.js";
import type { SpatialIndex } from "./spatial-index.js";

const MIN_MS = 60_000;

/** A hub code that is not in the network. Maps to InvalidArgument. */
export class UnknownHubError extends Error {
  override readonly name = "UnknownHubError";
  constructor(
    readonly field: string,
    readonly code: string,
  ) {
    super(`${field}: hub ${code} is not in the network`);
  }
}

/** A tracking number or disruption id routing does not know. Maps to NotFound. */
export class NotFoundError extends Error {
  override readonly name = "NotFoundError";
}

/** A request the planner cannot serve as given (e.g. unspecified service level). Maps to InvalidArgument. */
export class InvalidRequestError extends Error {
  override readonly name = "InvalidRequestError";
}

/**
 * Epoch milliseconds of an event's timestamp, checked: routing plans from it and publishes times
 * after it, all of which must stay representable (RFC 3339 ends with year 9999). Events that
 * passed the edge's rules always pass; InvalidRequestError otherwise (a consumer dead-letters it).
 */
export function plannableMs(ts: Timestamp, field: string): number {
  const ms = msOf(ts);
  if (!(ts.nanos >= 0 && ts.nanos <= 999_999_999) || !(ms >= 0 && ms < PLANNABLE_UNTIL_MS)) {
    throw new InvalidRequestError(`${field} (${ts.seconds} s, ${ts.nanos} ns) is not a time routing can plan with`);
  }
  return ms;
}

/** An event routing can never plan (a hub not in the network, a time it cannot plan with): dead-lettered at once. */
export function unplannable(e: unknown): string | undefined {
  return e instanceof UnknownHubError || e instanceof InvalidRequestError ? e.message : undefined;
}

/** Shipments a replica keeps in memory by default ({@link RouteKeeperOptions.cacheSize}). */
export const DEFAULT_ROUTE_CACHE_SIZE = 10_000;

/** A new revision of a shipment's route. */
interface Change {
  readonly reason: EtaChangeReason;
  readonly detail: string;
  readonly eventId: string;
  readonly avoided: readonly string[];
  /** Legs already travelled, kept in front of the plan. */
  readonly prefix?: readonly RouteLeg[];
  /** A ready-made route instead of a plan (delivery closes the ETA without re-planning). */
  readonly route?: Route;
  readonly delivered?: boolean;
}

/** What an event means for its shipment: nothing, republishing the revision it produced, or a new revision. */
type Decision = undefined | { readonly kind: "republish" } | { readonly kind: "revise"; readonly plan: PlannedRoute | undefined; readonly change: Change };

/** A revision to store, the shipment afterwards and its route event. */
interface SaveStep {
  readonly kind: "save";
  readonly write: RevisionWrite;
  readonly after: ShipmentRoute;
  readonly publication: Publication;
  readonly reason: EtaChangeReason;
}

/** A shipment to register (with its first route, if one was found). */
interface CreateStep {
  readonly kind: "create";
  readonly write: ShipmentWrite;
  readonly after: ShipmentRoute;
  readonly publication: Publication | undefined;
  readonly reason: EtaChangeReason | undefined;
}

/** What one event of a batch does: nothing, a republish, a revision or a registration. */
type Step = undefined | { readonly kind: "publish"; readonly publication: Publication } | SaveStep | CreateStep;

/** Start of year 9000: far enough from year 9999 for any planning horizon. */
const PLANNABLE_UNTIL_MS = Date.UTC(9000, 0, 1);

/** Options for {@link createRouteKeeper}. */
export interface RouteKeeperOptions {
  network: HubNetwork;
  planner: Planner;
  spatial: SpatialIndex<Hub>;
  store: RouteStore;
  /** Route events go out through `publishAll` (a batch's events in one round). */
  publisher: Pick<CatalogPublisher, "publishAll">;
  events: Pick<CatalogEvents, "routePlanned" | "routeUpdated">;
  /** Current time. */
  clock: () => Date;
  /** Planning horizon. Default {@link DEFAULT_HORIZON_MS} (60 days). */
  horizonMs?: number;
  /** How late a hub arrival or departure may be before the route is re-planned. Default 30 min. */
  lateToleranceMs?: number;
  /** New opaque ids (route and disruption ids). */
  newId: () => string;
  /** Called after each stored revision (metrics). */
  onRevision?: (reason: EtaChangeReason) => void;
  /** Shipments kept in memory between their events (least recently used out first); 0: none. Default {@link DEFAULT_ROUTE_CACHE_SIZE}. */
  cacheSize?: number;
}

/** The outcome of a disruption report or clearance. */
export interface DisruptionOutcome {
  readonly disruption: Disruption;
  readonly replanned: number;
}

/** See the module comment. */
export interface RouteKeeper {
  /** The hub serving a place: its hub code when set (UnknownHubError if unknown), else the nearest hub. */
  resolvePlace(place: Place | undefined, field: string): Hub;
  /** Best route plus alternatives around the active disruptions. Throws NoRouteError. */
  plan(origin: Hub, destination: Hub, level: ServiceLevelName, readyAt: number, alternatives: number): Promise<PlannedRoute[]>;
  /**
   * Stores `plan` as the shipment's next route revision and publishes the route event (later
   * re-plans keep the service level the shipment was created with). Throws NotFoundError when
   * routing does not know the shipment.
   */
  storeRequestedPlan(trackingNumber: string, plan: PlannedRoute, requestId: string): Promise<Route>;
  /** Plans and stores the first route of a new shipment and publishes RoutePlanned. Idempotent. */
  onShipmentCreated(event: ShipmentCreated, region: string): Promise<void>;
  /** Compares a scan with the plan; re-plans and publishes RouteUpdated on a deviation. Idempotent. */
  onScan(event: ScanRecorded): Promise<void>;
  /**
   * {@link onShipmentCreated} for a consumer batch, with one outcome per event (see
   * {@link onScans} for how a batch is applied).
   */
  onShipmentsCreated(batch: ReadonlyArray<{ readonly event: ShipmentCreated; readonly region: string }>): Promise<Outcome[]>;
  /**
   * {@link onScan} for a consumer batch: one statement reads the batch's shipments and stores the
   * revisions of those this replica holds (none reads them when each one's first step is such a
   * revision), one more stores the others' revisions, and one publishing round sends the route
   * events (more only when a shipment has several revisions in the batch). A shipment's events are applied in batch order; one that can
   * never be applied is poison (the shipment's later events go on), any other failure retries it
   * and the shipment's later events, unapplied. Every outcome holds after its effects are stored
   * and published.
   */
  onScans(batch: readonly ScanRecorded[]): Promise<Outcome[]>;
  /**
   * Stores a disruption of the contract's target (a hub, UnknownHubError if unknown; or an area
   * with a center, InvalidRequestError otherwise) and re-plans the shipments whose route uses its
   * hubs within its window.
   */
  reportDisruption(input: {
    target: Disruption["target"];
    startsAt: Timestamp;
    endsAt: Timestamp | undefined;
    cause: DisruptionCause;
    description: string;
  }): Promise<DisruptionOutcome>;
  clearDisruption(id: string): Promise<DisruptionOutcome>;
}

/** Creates the route keeper. */
export function createRouteKeeper(opts: RouteKeeperOptions): RouteKeeper {
  const { network, planner, spatial, store, publisher, events, clock } = opts;
  const horizonMs = opts.horizonMs ?? DEFAULT_HORIZON_MS;
  const tolerance = opts.lateToleranceMs ?? 30 * MIN_MS;

  const hubOrThrow = (code: string, field: string): Hub => {
    const h = network.hub(code);
    if (!h) throw new UnknownHubError(field, code);
    return h;
  };

  const resolvePlace = (place: Place | undefined, field: string): Hub => {
    if (place?.hubCode) return hubOrThrow(place.hubCode, `${field}.hub_code`);
    const loc = place?.location;
    if (!loc) throw new InvalidRequestError(`${field}.location is required`);
    const [nearest] = spatial.nearest({ lat: loc.latitude, lon: loc.longitude }, { limit: 1 });
    if (!nearest) throw new InvalidRequestError(`${field}: the network has no hubs`);
    return nearest.item;
  };

  const windowsOf = (ds: readonly StoredDisruption[]): { windows: BlockedWindow[]; byId: Map<string, Set<number>> } => {
    const windows: BlockedWindow[] = [];
    const byId = new Map<string, Set<number>>();
    for (const { disruption, hubCodes } of ds) {
      const startMs = msOf(disruption.startsAt);
      const end = Math.min(
        disruption.endsAt ? msOf(disruption.endsAt) : Infinity,
        disruption.clearedAt ? msOf(disruption.clearedAt) : Infinity,
      );
      const hubs = new Set<number>();
      for (const code of hubCodes) {
        const h = network.hub(code);
        if (!h) continue;
        hubs.add(h.index);
        windows.push({ hub: h.index, startMs, endMs: end });
      }
      byId.set(disruption.disruptionId, hubs);
    }
    return { windows, byId };
  };

  /**
   * Plans around the active disruptions; also reports which disruptions changed the plan (the
   * unconstrained best route passes through their hubs), so clearing one re-plans exactly those.
   */
  const planAround = async (
    query: { origin: Hub; destination: Hub; level: ServiceLevelName; readyAt: number; originProcessed?: boolean },
    alternatives: number,
    disruptions?: () => Promise<readonly StoredDisruption[]>,
  ): Promise<{ routes: PlannedRoute[]; avoided: string[] }> => {
    const active = disruptions ? await disruptions() : await store.activeDisruptions(clock());
    const { windows, byId } = windowsOf(active);
    const base = {
      origin: query.origin.index,
      destination: query.destination.index,
      readyAt: query.readyAt,
      modes: MODES_BY_SERVICE_LEVEL[query.level],
      horizonMs,
      ...(query.originProcessed ? { originProcessed: true } : {}),
    };
    const routes = planner.planAlternatives({ ...base, blocked: windows }, alternatives);
    const avoided: string[] = [];
    if (windows.length > 0) {
      try {
        const free = planner.plan(base);
        const best = routes[0]!;
        if (free.eta.estimated !== best.eta.estimated || free.legs.length !== best.legs.length) {
          const touched = new Set(free.legs.flatMap((l) => [l.from.index, l.to.index]));
          for (const [id, hubs] of byId) if ([...hubs].some((h) => touched.has(h))) avoided.push(id);
        }
      } catch (e) {
        if (!(e instanceof NoRouteError)) throw e;
      }
    }
    return { routes, avoided };
  };

  const eventId = (trackingNumber: string, revision: number) => `route-${trackingNumber}-r${revision}`;

  /** The route event of a stored revision: RoutePlanned for the initial plan, RouteUpdated otherwise. */
  const revisionPublication = (
    s: Pick<ShipmentRoute, "trackingNumber" | "region">,
    route: Route,
    previousEta: Eta | undefined,
    reason: EtaChangeReason,
    detail: string,
    at: Timestamp,
  ): Publication => {
    const id = eventId(s.trackingNumber, route.revision);
    if (route.revision === 1 && reason === EtaChangeReason.INITIAL_PLAN) {
      return publication(
        events.routePlanned,
        create(RoutePlannedSchema, { eventId: id, trackingNumber: s.trackingNumber, route, plannedAt: at }),
        { region: s.region },
      );
    }
    return publication(
      events.routeUpdated,
      create(RouteUpdatedSchema, {
        eventId: id,
        trackingNumber: s.trackingNumber,
        route,
        ...(previousEta ? { previousEta } : {}),
        reason,
        detail,
        updatedAt: at,
      }),
      { region: s.region },
    );
  };

  const publishOne = async (p: Publication) => {
    const [result] = await publisher.publishAll([p]);
    if (result?.status === "rejected") throw result.reason;
  };

  /** The shipment's current revision as published before (same event id: the stream drops duplicates). */
  const currentPublication = (s: ShipmentRoute): Publication | undefined => {
    if (!s.route) return undefined;
    return revisionPublication(s, s.route, s.previousEta, s.lastReason, s.lastDetail, s.route.plannedAt ?? timestampFromMs(clock().getTime()));
  };

  /** Publishes the shipment's current revision again. */
  const republishCurrent = async (s: ShipmentRoute) => {
    const p = currentPublication(s);
    if (p) await publishOne(p);
  };

  /** The next revision of `s` (nothing stored yet): what to store, the shipment afterwards, and its route event. */
  const prepare = (s: ShipmentRoute, plan: PlannedRoute | undefined, change: Change) => {
    const now = clock();
    const revision = s.revision + 1;
    const route =
      change.route ??
      routeToProto(plan!, {
        routeId: s.routeId,
        trackingNumber: s.trackingNumber,
        revision,
        plannedAt: now,
        ...(change.prefix ? { prefix: change.prefix } : {}),
      });
    route.revision = revision;
    const stored: RouteRevision = {
      route,
      reason: change.reason,
      detail: change.detail,
      revisedAt: now,
      eventId: change.eventId,
      avoidedDisruptions: change.avoided,
      ...(change.delivered ? { delivered: true } : {}),
    };
    return {
      write: { trackingNumber: s.trackingNumber, expectedRevision: s.revision, revision: stored } satisfies RevisionWrite,
      after: withRevision(s, stored),
      publication: revisionPublication(s, route, s.route?.eta, change.reason, change.detail, route.plannedAt ?? timestampFromMs(now.getTime())),
    };
  };

  /** Stores a new revision and publishes it. */
  const commit = async (s: ShipmentRoute, plan: PlannedRoute | undefined, change: Change) => {
    const next = prepare(s, plan, change);
    cache.delete(s.trackingNumber);
    await store.saveRevision(s.trackingNumber, s.revision, next.write.revision);
    opts.onRevision?.(change.reason);
    await publishOne(next.publication);
    return next.write.revision.route;
  };

  /** Where the parcel will next be processed, and the legs already behind it. */
  const position = (s: ShipmentRoute, now: number): { hub: Hub; readyAt: number; prefix: RouteLeg[] } | undefined => {
    const legs = s.route?.legs ?? [];
    // A leg with an actual departure has been taken, whatever its plan said.
    const i = legs.findIndex((l) => !l.actualDeparture && msOf(l.plannedDeparture) > now);
    if (i < 0) return undefined;
    const leg = legs[i]!;
    const hub = network.hub(leg.fromHub);
    if (!hub) return undefined;
    const before = legs[i - 1];
    const arrivedAt = before ? msOf(before.actualArrival ?? before.plannedArrival) : s.readyAt.getTime();
    // Processing already under way counts: the planner adds processing, so the parcel is ready at
    // max(arrival + processing, now).
    const readyAt = Math.max(arrivedAt, now - hub.processingMin * MIN_MS);
    return { hub, readyAt, prefix: legs.slice(0, i) };
  };

  /** Re-plans a stored shipment from where it is now (disruption report or clearance). */
  const replanFromPosition = async (
    s: ShipmentRoute,
    reason: EtaChangeReason,
    detail: string,
    eventId: string,
    extraAvoided: readonly string[],
  ) => {
    const now = clock().getTime();
    const pos = position(s, now);
    if (!pos) return false;
    const destination = hubOrThrow(s.destinationHub, "destination");
    let result: { routes: PlannedRoute[]; avoided: string[] };
    try {
      result = await planAround({ origin: pos.hub, destination, level: s.serviceLevel, readyAt: pos.readyAt }, 0);
    } catch (e) {
      if (e instanceof NoRouteError) return false; // the current plan stays until a route exists again
      throw e;
    }
    const avoided = [...new Set([...result.avoided, ...extraAvoided])];
    await commit(s, result.routes[0], { reason, detail, eventId, avoided, prefix: pos.prefix });
    return true;
  };

  const withRetry = async (
    trackingNumber: string,
    fn: (s: ShipmentRoute) => Promise<boolean>,
    eventId?: string,
  ): Promise<boolean> => {
    for (let attempt = 0; ; attempt++) {
      const s = await store.get(trackingNumber);
      if (!s) return false;
      // A redelivered event whose revision was stored but not published (the publish failed)
      // is republished even when that revision delivered the shipment.
      if (eventId !== undefined && s.lastEventId === eventId) {
        await republishCurrent(s);
        return false;
      }
      if (s.delivered) return false;
      try {
        return await fn(s);
      } catch (e) {
        if (!(e instanceof ConcurrentUpdateError) || attempt >= 3) throw e;
      }
    }
  };

  const touches = (route: Route | undefined, hubCodes: ReadonlySet<string>, from: number, to: number, now: number) =>
    (route?.legs ?? []).some((l) => {
      const dep = msOf(l.plannedDeparture);
      const arr = msOf(l.plannedArrival);
      const departsInWindow = hubCodes.has(l.fromHub) && dep >= from && dep < to && dep >= now;
      const arrivesInWindow = hubCodes.has(l.toHub) && arr >= from && arr < to && arr >= now;
      return departsInWindow || arrivesInWindow;
    });

  /**
   * What a scan means for a shipment in state `s`: nothing (on plan, not a hub scan, unknown or
   * delivered shipment), republishing the revision it already produced (a redelivery), or a new
   * revision (delivery, or a deviation whose re-plan changes the route). Throws InvalidRequestError
   * or UnknownHubError for a scan that can never be applied.
   */
  const decideScan = async (
    s: ShipmentRoute | undefined,
    ev: ScanRecorded,
    disruptions?: () => Promise<readonly StoredDisruption[]>,
  ): Promise<Decision> => {
    const scan = ev.scan;
    if (!scan || !s) return undefined;
    // A redelivered scan whose revision was stored but perhaps not published (the publish failed)
    // is republished even when that revision delivered the shipment.
    if (s.lastEventId === ev.eventId) return { kind: "republish" };
    if (s.delivered || !s.route) return undefined;
    const t = scan.eventTime ? plannableMs(scan.eventTime, "scan.event_time") : clock().getTime();
    const destination = hubOrThrow(s.destinationHub, "destination");

    if (ev.kind === ScanKind.DELIVERED) {
      const route = create(RouteSchema, {
        ...s.route,
        eta: create(EtaSchema, {
          estimatedArrival: timestampFromMs(t),
          earliest: timestampFromMs(t),
          latest: timestampFromMs(t),
          confidence: 1,
        }),
        plannedAt: timestampFromMs(clock().getTime()),
      });
      return {
        kind: "revise",
        plan: undefined,
        change: { reason: EtaChangeReason.DELIVERED, detail: "delivered", eventId: ev.eventId, avoided: [], route, delivered: true },
      };
    }
    if (!scan.hubCode || (ev.kind !== ScanKind.HUB_ARRIVAL && ev.kind !== ScanKind.HUB_DEPARTURE)) return undefined;
    const hub = network.hub(scan.hubCode);
    if (!hub) return undefined;

    const replan = detectDeviation(network, s.route, { kind: ev.kind, hub, at: t }, tolerance);
    if (!replan) return undefined;
    let planned: { routes: PlannedRoute[]; avoided: string[] };
    try {
      const { origin, readyAt, originProcessed } = replan;
      planned = await planAround({ origin, destination, level: s.serviceLevel, readyAt, originProcessed }, 0, disruptions);
    } catch (e) {
      if (e instanceof NoRouteError) return undefined;
      throw e;
    }
    const best = planned.routes[0]!;
    const oldEta = msOf(s.route.eta?.estimatedArrival);
    if (replan.reason !== EtaChangeReason.UNPLANNED_HUB && best.eta.estimated === oldEta) return undefined;
    return {
      kind: "revise",
      plan: best,
      change: { reason: replan.reason, detail: replan.detail, eventId: ev.eventId, avoided: planned.avoided, prefix: replan.prefix },
    };
  };

  /**
   * How a new shipment is registered: its first route (or none when nothing reaches the
   * destination within the horizon). Throws UnknownHubError or InvalidRequestError for an event
   * that can never be planned.
   */
  const planShipment = async (ev: ShipmentCreated, region: string, disruptions?: () => Promise<readonly StoredDisruption[]>): Promise<ShipmentWrite> => {
    const level = serviceLevelName(ev.serviceLevel) ?? "STANDARD";
    const origin = resolvePlace(ev.origin, "origin");
    const destination = resolvePlace(ev.destination, "destination");
    const readyAt = ev.readyTime ? plannableMs(ev.readyTime, "ready_time") : clock().getTime();
    const now = clock();
    const shipment: NewShipment = {
      trackingNumber: ev.trackingNumber,
      region,
      routeId: `rt-${opts.newId()}`,
      originHub: origin.code,
      destinationHub: destination.code,
      serviceLevel: level,
      readyAt: new Date(readyAt),
      route: undefined,
      lastEventId: ev.eventId,
      avoidedDisruptions: [],
    };
    let planned: { routes: PlannedRoute[]; avoided: string[] } | undefined;
    try {
      planned = await planAround({ origin, destination, level, readyAt }, 0, disruptions);
    } catch (e) {
      if (!(e instanceof NoRouteError)) throw e;
    }
    if (!planned) return { shipment, first: undefined };
    const route = routeToProto(planned.routes[0]!, {
      routeId: shipment.routeId,
      trackingNumber: ev.trackingNumber,
      revision: 1,
      plannedAt: now,
    });
    return {
      shipment,
      first: { route, reason: EtaChangeReason.INITIAL_PLAN, detail: "initial plan", revisedAt: now, eventId: ev.eventId, avoidedDisruptions: planned.avoided },
    };
  };

  /** Bounded, least recently used first out: shipments as last read or written by this replica. */
  const cache = new Map<string, ShipmentRoute>();
  const cacheSize = Math.max(0, opts.cacheSize ?? DEFAULT_ROUTE_CACHE_SIZE);
  const remember = (s: ShipmentRoute) => {
    cache.delete(s.trackingNumber);
    // A delivered shipment gets no more revisions: a redelivered event reads it from the store.
    if (s.delivered || cacheSize === 0) return;
    cache.set(s.trackingNumber, s);
    if (cache.size > cacheSize) cache.delete(cache.keys().next().value as string);
  };

  /** A step of a round: item `i` of shipment `key`. */
  interface RoundStep {
    readonly key: string;
    readonly i: number;
    readonly step: Exclude<Step, undefined>;
  }

  /** What a shipment's events lead to from an assumed state, decided before reading it. */
  interface Guess {
    /** The state assumed: what this replica holds, or none (a new shipment). */
    readonly basis: ShipmentRoute | undefined;
    /** Position after the last event decided. */
    readonly end: number;
    /** The first step, if any. */
    readonly step: RoundStep | undefined;
  }

  /**
   * Applies a batch of events to their shipments: rounds in which each shipment takes its events in
   * order up to the first that stores a revision or publishes; a round's revisions are stored in one
   * statement and its route events published at once (`publishAll`). A shipment has at most one
   * revision per round, so a revision whose event failed to publish is always the shipment's
   * newest: its event's redelivery republishes it. A revision that lost a race with another
   * replica, or a round whose statement failed, falls back to the one-event path for the
   * shipments concerned; when the failure says the database is unavailable (a statement or
   * connection timeout), their events are retried instead. The active disruptions are asked for at
   * most once.
   *
   * Every decision is made from the shipment as stored, read before or checked by the write that
   * depends on it. First, each shipment's events are decided from what this replica holds of it (or,
   * with `guessAbsent`, from nothing when it holds nothing: a new shipment). A shipment whose first
   * step so found is a revision of the revision held (or a registration) needs no read: the write's
   * compare-and-set (or the insert's `ON CONFLICT DO NOTHING`) checks what it was decided from, and
   * when it finds otherwise, all the shipment's events take the one-event path, which reads. The
   * others are read in one statement (`getChanged`), which also stores those revisions
   * (`saveRevisionsAndGetChanged`); a shipment stored as held keeps what was decided for it, any
   * other is decided from what was read. So a batch of shipments this replica holds costs one
   * statement, and none more when nothing changes; without anything held it is read first, as
   * before. A first statement that fails is followed by the plain read and the rounds, as if
   * nothing had been decided before.
   */
  const applyBatch = async <T>(
    items: readonly T[],
    keyOf: (item: T) => string,
    decide: (s: ShipmentRoute | undefined, item: T, disruptions: () => Promise<readonly StoredDisruption[]>) => Promise<Step>,
    one: (item: T) => Promise<void>,
    guessAbsent: boolean,
  ): Promise<Outcome[]> => {
    const outcomes: Outcome[] = items.map(() => Outcomes.ack);
    const byKey = new Map<string, number[]>();
    items.forEach((item, i) => {
      const key = keyOf(item);
      const list = byKey.get(key);
      if (list) list.push(i);
      else byKey.set(key, [i]);
    });
    if (byKey.size === 0) return outcomes;
    const pos = new Map<string, number>();
    /** Fails item `i` of `key` (retried, or poison) and, unless poison, retries the key's later items. */
    const fail = (key: string, i: number, err: unknown) => {
      const poison = unplannable(err) ?? permanentFailureReason(err);
      if (poison !== undefined) {
        outcomes[i] = Outcomes.poison(poison);
        return;
      }
      const reason = err instanceof Error ? err.message : String(err);
      outcomes[i] = Outcomes.retry(reason);
      const list = byKey.get(key)!;
      for (let p = pos.get(key)!; p < list.length; p++) outcomes[list[p]!] = Outcomes.retry(`an earlier event of the shipment is retried: ${reason}`);
      pos.set(key, list.length);
    };
    /** Shipments handed to the one-event path (from item `from` on), after the rounds. */
    const alone = new Map<string, number>();
    let active: Promise<readonly StoredDisruption[]> | undefined;
    const disruptions = () => (active ??= store.activeDisruptions(clock()));
    const all = [...byKey.keys()];

    // What this replica holds, for the whole batch: another batch may evict it meanwhile.
    const held = new Map<string, ShipmentRoute>();
    for (const tn of all) {
      const s = cache.get(tn);
      if (s) held.set(tn, s);
    }
    const knownOf = (tns: readonly string[]) => new Map(tns.flatMap((tn) => (held.has(tn) ? [[tn, held.get(tn)!.revision] as const] : [])));

    /** `key`'s events decided from `basis` up to its first step; undefined when a decision threw (it is made again from the stored state). */
    const guess = async (key: string, basis: ShipmentRoute | undefined): Promise<Guess | undefined> => {
      const list = byKey.get(key)!;
      for (let p = 0; p < list.length; p++) {
        let step: Step;
        try {
          step = await decide(basis, items[list[p]!]!, disruptions);
        } catch {
          return undefined;
        }
        if (step) return { basis, end: p + 1, step: { key, i: list[p]!, step } };
      }
      return { basis, end: list.length, step: undefined };
    };
    const guesses = new Map<string, Guess>();
    for (const key of all) {
      const basis = held.get(key);
      if (!basis && !guessAbsent) continue;
      const g = await guess(key, basis);
      if (g) guesses.set(key, g);
    }
    const writesFirst = (key: string) => {
      const kind = guesses.get(key)?.step?.step.kind;
      return kind === "save" || kind === "create";
    };
    const guarded = all.filter(writesFirst);
    const unread = all.filter((key) => !writesFirst(key));

    const states = new Map<string, ShipmentRoute>();
    /** Each shipment's step of the first round, when decided before it. */
    const preset = new Map<string, RoundStep>();
    /** Shipments whose first write checks what they were decided from: on a conflict, all their events go alone. */
    const unchecked = new Set<string>();
    /** First-round revisions stored with the read, and those of them that conflicted. */
    let prewritten: { keys: Set<string>; conflicts: Set<string> } | undefined;
    const adopt = (key: string, checked: boolean) => {
      const g = guesses.get(key)!;
      pos.set(key, g.end);
      if (g.step) preset.set(key, g.step);
      if (!checked) unchecked.add(key);
      if (g.basis) {
        states.set(key, g.basis);
        remember(g.basis);
      }
    };
    /** Takes in a read of `tns`: each one's stored state; a guess made from that state stands. */
    const absorb = (tns: readonly string[], read: ChangedShipments) => {
      for (const tn of tns) {
        const s = read.changed.get(tn) ?? (read.unchanged.has(tn) ? held.get(tn) : undefined);
        if (s) {
          states.set(tn, s);
          remember(s);
        } else cache.delete(tn);
        if (guesses.has(tn) && guesses.get(tn)!.basis === s) adopt(tn, true);
      }
    };
    /** The plain read of the whole batch, before the first round (as if nothing had been decided before). */
    const readAll = async () => {
      pos.clear();
      preset.clear();
      unchecked.clear();
      states.clear();
      prewritten = undefined;
      absorb(all, await store.getChanged(all, knownOf(all)));
    };

    /** Whether the first round's writes are the batch's only check (nothing read before them). */
    let unread0 = unread.length === 0;
    if (unread0) for (const key of guarded) adopt(key, false);
    else {
      const saves = guarded.filter((key) => guesses.get(key)!.step!.step.kind === "save");
      if (saves.length > 0 && saves.length === guarded.length) {
        try {
          const writes = saves.map((key) => (guesses.get(key)!.step!.step as SaveStep).write);
          const res = await store.saveRevisionsAndGetChanged(writes, unread, knownOf(unread));
          prewritten = { keys: new Set(saves), conflicts: res.conflicts };
          for (const key of saves) adopt(key, false);
          absorb(unread, res);
        } catch {
          // Nothing was stored.
          prewritten = undefined;
        }
      }
      if (!prewritten) await readAll();
    }

    let keys = all;
    for (let round = 0; keys.length > 0; round++) {
      const steps: RoundStep[] = [];
      for (const key of keys) {
        const pre = preset.get(key);
        if (pre) {
          steps.push(pre);
          continue;
        }
        const list = byKey.get(key)!;
        let p = pos.get(key) ?? 0;
        while (p < list.length) {
          const i = list[p++]!;
          pos.set(key, p);
          let step: Step;
          try {
            step = await decide(states.get(key), items[i]!, disruptions);
          } catch (err) {
            fail(key, i, err);
            p = pos.get(key)!;
            continue;
          }
          if (step) {
            steps.push({ key, i, step });
            break;
          }
        }
      }
      preset.clear();

      // Store the round's revisions and new shipments, one statement each (the first round's
      // revisions may already be stored with the read).
      const stored: RoundStep[] = [];
      const conflict = (s: RoundStep) => alone.set(s.key, unchecked.has(s.key) ? byKey.get(s.key)![0]! : s.i);
      const pre = round === 0 ? prewritten : undefined;
      const saves = steps.filter((s) => s.step.kind === "save" && !pre?.keys.has(s.key));
      const creates = steps.filter((s) => s.step.kind === "create");
      for (const s of steps) if (pre?.keys.has(s.key)) (pre.conflicts.has(s.key) ? conflict(s) : stored.push(s));
      try {
        const conflicts = await store.saveRevisions(saves.map((s) => (s.step as SaveStep).write));
        const created = await store.createMany(creates.map((s) => (s.step as CreateStep).write));
        for (const s of saves) {
          if (conflicts.has(s.key)) conflict(s);
          else stored.push(s);
        }
        for (const s of creates) {
          if (created.has(s.key)) stored.push(s);
          else conflict(s); // another replica registered it first
        }
      } catch (err) {
        if (unread0) {
          // Nothing is known to be stored, nor anything decided to hold: read, and decide again.
          unread0 = false;
          await readAll();
          round--;
          continue;
        }
        // A database that is unavailable (a timeout, a lost connection) would fail the one-event
        // path too, one timeout per shipment: the round's events are retried later instead.
        if (databaseUnavailableReason(err) !== undefined) for (const s of [...saves, ...creates]) fail(s.key, s.i, err);
        // Not knowing which write the store refused, each shipment takes the one-event path.
        else for (const s of [...saves, ...creates]) alone.set(s.key, s.i);
      }
      unread0 = false;
      unchecked.clear();
      for (const key of alone.keys()) {
        cache.delete(key);
        pos.set(key, byKey.get(key)!.length);
      }
      for (const s of stored) {
        const { after, reason } = s.step as SaveStep | CreateStep;
        states.set(s.key, after);
        remember(after);
        if (reason !== undefined) opts.onRevision?.(reason);
      }

      // Publish what was stored (and the republished revisions) at once.
      const sent = [...steps.filter((s) => s.step.kind === "publish"), ...stored].filter((s) => s.step.publication !== undefined);
      const results = sent.length > 0 ? await publisher.publishAll(sent.map((s) => s.step.publication!)) : [];
      results.forEach((r, k) => {
        if (r.status === "rejected") fail(sent[k]!.key, sent[k]!.i, r.reason);
      });
      keys = keys.filter((key) => (pos.get(key) ?? 0) < byKey.get(key)!.length);
    }

    // The one-event path, a shipment's events in order; a failure retries the shipment's later events.
    for (const [key, from] of alone) {
      const list = byKey.get(key)!;
      let failed: string | undefined;
      for (const i of list.slice(list.indexOf(from))) {
        if (failed !== undefined) {
          outcomes[i] = Outcomes.retry(`an earlier event of the shipment is retried: ${failed}`);
          continue;
        }
        try {
          await one(items[i]!);
          outcomes[i] = Outcomes.ack;
        } catch (err) {
          const poison = unplannable(err) ?? permanentFailureReason(err);
          if (poison !== undefined) outcomes[i] = Outcomes.poison(poison);
          else outcomes[i] = Outcomes.retry((failed = err instanceof Error ? err.message : String(err)));
        }
      }
    }
    return outcomes;
  };

  const onShipmentCreated = async (ev: ShipmentCreated, region: string): Promise<void> => {
    const existing = await store.get(ev.trackingNumber);
    if (existing) {
      if (existing.revision === 1 && existing.lastEventId === ev.eventId) await republishCurrent(existing);
      return;
    }
    const { shipment, first } = await planShipment(ev, region);
    cache.delete(ev.trackingNumber);
    if (!(await store.create(shipment, first))) {
      // Another replica (or an earlier delivery of this event) got there first.
      const existing = await store.get(ev.trackingNumber);
      if (existing && existing.revision === 1 && existing.lastEventId === ev.eventId) await republishCurrent(existing);
      return;
    }
    if (!first) return;
    opts.onRevision?.(EtaChangeReason.INITIAL_PLAN);
    await publishOne(revisionPublication(shipment, first.route, undefined, first.reason, first.detail, first.route.plannedAt!));
  };

  const onScan = async (ev: ScanRecorded): Promise<void> => {
    if (!ev.scan) return;
    await withRetry(
      ev.scan.trackingNumber,
      async (s) => {
        const d = await decideScan(s, ev);
        if (!d) return false;
        if (d.kind === "republish") {
          await republishCurrent(s);
          return false;
        }
        await commit(s, d.plan, d.change);
        return true;
      },
      ev.eventId,
    );
  };

  /** A republish step for `s`'s current revision (none when it has no route). */
  const republishStep = (s: ShipmentRoute): Step => {
    const p = currentPublication(s);
    return p ? { kind: "publish", publication: p } : undefined;
  };

  return {
    resolvePlace,

    async plan(origin, destination, level, readyAt, alternatives) {
      return (await planAround({ origin, destination, level, readyAt }, alternatives)).routes;
    },

    async storeRequestedPlan(trackingNumber, plan, requestId) {
      for (let attempt = 0; ; attempt++) {
        const s = await store.get(trackingNumber);
        if (!s) throw new NotFoundError(`shipment ${trackingNumber} is unknown to routing`);
        const first = s.revision === 0;
        try {
          return await commit(s, plan, {
            reason: first ? EtaChangeReason.INITIAL_PLAN : EtaChangeReason.UNSPECIFIED,
            detail: first ? "initial plan" : "re-planned on request",
            eventId: requestId,
            avoided: [],
          });
        } catch (e) {
          if (!(e instanceof ConcurrentUpdateError) || attempt >= 3) throw e;
        }
      }
    },

    onShipmentCreated,
    onScan,

    onShipmentsCreated(batch) {
      return applyBatch(
        batch,
        (b) => b.event.trackingNumber,
        async (s, { event: ev, region }, disruptions): Promise<Step> => {
          if (s) return s.revision === 1 && s.lastEventId === ev.eventId ? republishStep(s) : undefined;
          const write = await planShipment(ev, region, disruptions);
          const { shipment, first } = write;
          return {
            kind: "create",
            write,
            after: registered(shipment, first),
            publication: first && revisionPublication(shipment, first.route, undefined, first.reason, first.detail, first.route.plannedAt!),
            reason: first?.reason,
          };
        },
        (b) => onShipmentCreated(b.event, b.region),
        true,
      );
    },

    onScans(batch) {
      return applyBatch(
        batch,
        (ev) => ev.scan?.trackingNumber ?? "",
        async (s, ev, disruptions): Promise<Step> => {
          const d = await decideScan(s, ev, disruptions);
          if (!d) return undefined;
          if (d.kind === "republish") return republishStep(s!);
          const next = prepare(s!, d.plan, d.change);
          return { kind: "save", write: next.write, after: next.after, publication: next.publication, reason: d.change.reason };
        },
        onScan,
        false,
      );
    },

    async reportDisruption(input) {
      const now = clock();
      const { target } = input;
      let hubCodes: string[];
      if (target.case === "hubCode") {
        hubCodes = [hubOrThrow(target.value, "hub_code").code];
      } else if (target.case === "area" && target.value.center) {
        const { center, radiusKm } = target.value;
        hubCodes = spatial.within({ lat: center.latitude, lon: center.longitude }, radiusKm).map((n) => n.item.code);
      } else {
        throw new InvalidRequestError("one of hub_code or area (with a center) is required");
      }
      const disruption = create(DisruptionSchema, {
        disruptionId: `dis-${opts.newId()}`,
        target,
        startsAt: input.startsAt,
        ...(input.endsAt ? { endsAt: input.endsAt } : {}),
        cause: input.cause,
        description: input.description,
        createdAt: timestampFromMs(now.getTime()),
      });
      await store.saveDisruption({ disruption, hubCodes });
      const set = new Set(hubCodes);
      const listed = `${hubCodes.slice(0, 5).join(", ")}${hubCodes.length > 5 ? ", ..." : ""}`;
      const detail = `re-planned around disruption ${disruption.disruptionId} (${listed})`;
      const start = msOf(input.startsAt);
      const end = input.endsAt ? msOf(input.endsAt) : Infinity;
      let replanned = 0;
      for (const candidate of hubCodes.length ? await store.findTouchingHubs(hubCodes) : []) {
        const done = await withRetry(candidate.trackingNumber, async (s) => {
          if (!touches(s.route, set, start, end, now.getTime())) return false;
          const eventId = `${disruption.disruptionId}-${s.revision}`;
          return replanFromPosition(s, EtaChangeReason.DISRUPTION, detail, eventId, [disruption.disruptionId]);
        });
        if (done) replanned++;
      }
      return { disruption, replanned };
    },

    async clearDisruption(id) {
      const cleared = await store.clearDisruption(id, clock());
      if (!cleared) throw new NotFoundError(`disruption ${id} is unknown`);
      if (!cleared.changed) return { disruption: cleared.disruption.disruption, replanned: 0 };
      let replanned = 0;
      for (const candidate of await store.findAvoiding(id)) {
        const done = await withRetry(candidate.trackingNumber, async (s) => {
          if (!s.avoidedDisruptions.includes(id)) return false;
          return replanFromPosition(s, EtaChangeReason.DISRUPTION_CLEARED, `disruption ${id} cleared`, `${id}-cleared-${s.revision}`, []);
        });
        if (done) replanned++;
      }
      return { disruption: cleared.disruption.disruption, replanned };
    },
  };
}
