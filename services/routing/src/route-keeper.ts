/**
 * Keeps shipments' routes current: plans the first route, re-plans on scan deviations and
 * disruptions, stores every revision and publishes route events. Used by the RPC handlers and
 * the event consumers alike; all state lives in the {@link RouteStore}, so any replica can handle
 * any event.
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
import type { EventPublisher, Subjects } from "@logistics/shared/nats";
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
import { ConcurrentUpdateError, type RouteStore, type ShipmentRoute, type StoredDisruption } from "./route-store.js";
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

/** Start of year 9000: far enough from year 9999 for any planning horizon. */
const PLANNABLE_UNTIL_MS = Date.UTC(9000, 0, 1);

/** What a disruption targets. */
export type DisruptionTarget =
  | { readonly case: "hubCode"; readonly value: string }
  | { readonly case: "area"; readonly value: { readonly lat: number; readonly lon: number; readonly radiusKm: number } };

/** Options for {@link createRouteKeeper}. */
export interface RouteKeeperOptions {
  network: HubNetwork;
  planner: Planner;
  spatial: SpatialIndex<Hub>;
  store: RouteStore;
  publisher: Pick<EventPublisher, "publish">;
  subjects: Pick<Subjects, "routePlanned" | "routeUpdated">;
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
  reportDisruption(input: {
    target: DisruptionTarget;
    startsAt: number;
    endsAt: number | undefined;
    cause: DisruptionCause;
    description: string;
  }): Promise<DisruptionOutcome>;
  clearDisruption(id: string): Promise<DisruptionOutcome>;
}

/** Creates the route keeper. */
export function createRouteKeeper(opts: RouteKeeperOptions): RouteKeeper {
  const { network, planner, spatial, store, publisher, subjects, clock } = opts;
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
  ): Promise<{ routes: PlannedRoute[]; avoided: string[] }> => {
    const active = await store.activeDisruptions(clock());
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

  const publishRevision = async (
    s: Pick<ShipmentRoute, "trackingNumber" | "region">,
    route: Route,
    previousEta: Eta | undefined,
    reason: EtaChangeReason,
    detail: string,
    at: Date,
  ) => {
    const id = eventId(s.trackingNumber, route.revision);
    if (route.revision === 1 && reason === EtaChangeReason.INITIAL_PLAN) {
      await publisher.publish(
        subjects.routePlanned(s.region),
        RoutePlannedSchema,
        create(RoutePlannedSchema, { eventId: id, trackingNumber: s.trackingNumber, route, plannedAt: timestampFromMs(at.getTime()) }),
        { msgId: id },
      );
      return;
    }
    await publisher.publish(
      subjects.routeUpdated(s.region),
      RouteUpdatedSchema,
      create(RouteUpdatedSchema, {
        eventId: id,
        trackingNumber: s.trackingNumber,
        route,
        ...(previousEta ? { previousEta } : {}),
        reason,
        detail,
        updatedAt: timestampFromMs(at.getTime()),
      }),
      { msgId: id },
    );
  };

  /** Publishes the shipment's current revision again (same event id: the stream drops duplicates). */
  const republishCurrent = async (s: ShipmentRoute) => {
    if (!s.route) return;
    const plannedAt = s.route.plannedAt ? new Date(msOf(s.route.plannedAt)) : clock();
    await publishRevision(s, s.route, s.previousEta, s.lastReason, s.lastDetail, plannedAt);
  };

  /** Stores a new revision and publishes it. */
  const commit = async (
    s: ShipmentRoute,
    plan: PlannedRoute | undefined,
    change: {
      reason: EtaChangeReason;
      detail: string;
      eventId: string;
      avoided: readonly string[];
      prefix?: readonly RouteLeg[];
      /** A ready-made route instead of `plan` (delivery closes the ETA without re-planning). */
      route?: Route;
      delivered?: boolean;
    },
  ) => {
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
    await store.saveRevision(s.trackingNumber, s.revision, {
      route,
      reason: change.reason,
      detail: change.detail,
      revisedAt: now,
      eventId: change.eventId,
      avoidedDisruptions: change.avoided,
      ...(change.delivered ? { delivered: true } : {}),
    });
    opts.onRevision?.(change.reason);
    await publishRevision(s, route, s.route?.eta, change.reason, change.detail, now);
    return route;
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

    async onShipmentCreated(ev, region) {
      const existing = await store.get(ev.trackingNumber);
      if (existing) {
        if (existing.revision === 1 && existing.lastEventId === ev.eventId) await republishCurrent(existing);
        return;
      }
      const level = serviceLevelName(ev.serviceLevel) ?? "STANDARD";
      const origin = resolvePlace(ev.origin, "origin");
      const destination = resolvePlace(ev.destination, "destination");
      const readyAt = ev.readyTime ? plannableMs(ev.readyTime, "ready_time") : clock().getTime();
      const now = clock();
      const shipment = {
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
        planned = await planAround({ origin, destination, level, readyAt }, 0);
      } catch (e) {
        if (!(e instanceof NoRouteError)) throw e;
      }
      if (!planned) {
        await store.create(shipment, undefined);
        return;
      }
      const route = routeToProto(planned.routes[0]!, {
        routeId: shipment.routeId,
        trackingNumber: ev.trackingNumber,
        revision: 1,
        plannedAt: now,
      });
      const created = await store.create(shipment, {
        route,
        reason: EtaChangeReason.INITIAL_PLAN,
        detail: "initial plan",
        revisedAt: now,
        eventId: ev.eventId,
        avoidedDisruptions: planned.avoided,
      });
      if (!created) {
        // Another replica (or an earlier delivery of this event) got there first.
        const existing = await store.get(ev.trackingNumber);
        if (existing && existing.revision === 1 && existing.lastEventId === ev.eventId) await republishCurrent(existing);
        return;
      }
      opts.onRevision?.(EtaChangeReason.INITIAL_PLAN);
      await publishRevision(shipment, route, undefined, EtaChangeReason.INITIAL_PLAN, "initial plan", now);
    },

    async onScan(ev) {
      const scan = ev.scan;
      if (!scan) return;
      await withRetry(scan.trackingNumber, async (s) => {
        if (s.lastEventId === ev.eventId) {
          await republishCurrent(s);
          return false;
        }
        if (!s.route) return false;
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
          await commit(s, undefined, {
            reason: EtaChangeReason.DELIVERED,
            detail: "delivered",
            eventId: ev.eventId,
            avoided: [],
            route,
            delivered: true,
          });
          return true;
        }
        if (!scan.hubCode || (ev.kind !== ScanKind.HUB_ARRIVAL && ev.kind !== ScanKind.HUB_DEPARTURE)) return false;
        const hub = network.hub(scan.hubCode);
        if (!hub) return false;

        const replan = detectDeviation(network, s.route, { kind: ev.kind, hub, at: t }, tolerance);
        if (!replan) return false;
        let planned: { routes: PlannedRoute[]; avoided: string[] };
        try {
          const { origin, readyAt, originProcessed } = replan;
          planned = await planAround({ origin, destination, level: s.serviceLevel, readyAt, originProcessed }, 0);
        } catch (e) {
          if (e instanceof NoRouteError) return false;
          throw e;
        }
        const best = planned.routes[0]!;
        const oldEta = msOf(s.route.eta?.estimatedArrival);
        if (replan.reason !== EtaChangeReason.UNPLANNED_HUB && best.eta.estimated === oldEta) return false;
        await commit(s, best, {
          reason: replan.reason,
          detail: replan.detail,
          eventId: ev.eventId,
          avoided: planned.avoided,
          prefix: replan.prefix,
        });
        return true;
      }, ev.eventId);
    },

    async reportDisruption(input) {
      const now = clock();
      let hubCodes: string[];
      if (input.target.case === "hubCode") {
        hubCodes = [hubOrThrow(input.target.value, "hub_code").code];
      } else {
        const { lat, lon, radiusKm } = input.target.value;
        hubCodes = spatial.within({ lat, lon }, radiusKm).map((n) => n.item.code);
      }
      const disruption = create(DisruptionSchema, {
        disruptionId: `dis-${opts.newId()}`,
        target:
          input.target.case === "hubCode"
            ? { case: "hubCode", value: input.target.value }
            : {
                case: "area",
                value: {
                  center: { latitude: input.target.value.lat, longitude: input.target.value.lon },
                  radiusKm: input.target.value.radiusKm,
                },
              },
        startsAt: timestampFromMs(input.startsAt),
        ...(input.endsAt !== undefined ? { endsAt: timestampFromMs(input.endsAt) } : {}),
        cause: input.cause,
        description: input.description,
        createdAt: timestampFromMs(now.getTime()),
      });
      await store.saveDisruption({ disruption, hubCodes });
      const set = new Set(hubCodes);
      const listed = `${hubCodes.slice(0, 5).join(", ")}${hubCodes.length > 5 ? ", ..." : ""}`;
      const detail = `re-planned around disruption ${disruption.disruptionId} (${listed})`;
      const end = input.endsAt ?? Infinity;
      let replanned = 0;
      for (const candidate of hubCodes.length ? await store.findTouchingHubs(hubCodes) : []) {
        const done = await withRetry(candidate.trackingNumber, async (s) => {
          if (!touches(s.route, set, input.startsAt, end, now.getTime())) return false;
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
