import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  ClearDisruptionResponseSchema,
  EtaRevisionSchema,
  GetRouteResponseSchema,
  HubDistanceSchema,
  NearestHubsResponseSchema,
  PlanRouteResponseSchema,
  ReportDisruptionResponseSchema,
  type RoutingService,
} from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import type { Hub } from "./hub-network.js";
import { NoRouteError } from "./planner.js";
import { hubKindFromProto, hubToProto, msOf, routeToProto, serviceLevelName } from "./route-mapping.js";
import { InvalidRequestError, NotFoundError, UnknownHubError, type RouteKeeper } from "./route-keeper.js";
import type { RouteStore } from "./route-store.js";
import type { SpatialIndex } from "./spatial-index.js";

/** The RPC handlers. */
export type RoutingHandlers = ServiceImpl<typeof RoutingService>;

/** Dependencies of the routing handlers (narrow interfaces, built by the service definition). */
export interface RoutingHandlersDeps {
  spatial: SpatialIndex<Hub>;
  routeStore: Pick<RouteStore, "get" | "etaHistory">;
  /** Planning, storing, publishing and disruption handling. */
  keeper: RouteKeeper;
  clock: () => Date;
  /** New opaque ids for unstored plans and requests. */
  newId: () => string;
}

/** Default number of hubs NearestHubs returns. */
export const DEFAULT_NEAREST_LIMIT = 5;

/**
 * Maps domain errors to Connect errors, in one place: unknown hub or invalid input →
 * InvalidArgument, unknown shipment or disruption → NotFound, no route within the horizon →
 * FailedPrecondition. Anything else is rethrown (the server answers Internal).
 */
export function toConnectError(e: unknown): unknown {
  if (e instanceof ConnectError) return e;
  if (e instanceof UnknownHubError || e instanceof InvalidRequestError) return new ConnectError(e.message, Code.InvalidArgument);
  if (e instanceof NotFoundError) return new ConnectError(e.message, Code.NotFound);
  if (e instanceof NoRouteError) return new ConnectError(e.message, Code.FailedPrecondition);
  return e;
}

/** Creates the RoutingService handlers. */
export function createRoutingHandlers(deps: RoutingHandlersDeps): RoutingHandlers {
  const { spatial, routeStore, keeper, clock, newId } = deps;
  const mapped = <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await fn(...args);
      } catch (e) {
        throw toConnectError(e);
      }
    };

  return {
    planRoute: mapped(async (req) => {
      const level = serviceLevelName(req.serviceLevel);
      if (!level) throw new InvalidRequestError("service_level must be a defined value other than UNSPECIFIED");
      const origin = keeper.resolvePlace(req.origin, "origin");
      const destination = keeper.resolvePlace(req.destination, "destination");
      const readyAt = req.readyTime ? msOf(req.readyTime) : clock().getTime();
      const plans = await keeper.plan(origin, destination, level, readyAt, req.alternatives);
      const now = clock();
      const unstored = (i: number) =>
        routeToProto(plans[i]!, { routeId: `plan-${newId()}`, trackingNumber: "", revision: 0, plannedAt: now });
      const routes = plans.map((_, i) => unstored(i));
      if (req.trackingNumber) {
        routes[0] = await keeper.storeRequestedPlan(req.trackingNumber, plans[0]!, `plan-${newId()}`);
      }
      return create(PlanRouteResponseSchema, { routes });
    }),

    getRoute: mapped(async (req) => {
      const s = await routeStore.get(req.trackingNumber);
      if (!s?.route) throw new NotFoundError(`no route for ${req.trackingNumber}`);
      const history = await routeStore.etaHistory(req.trackingNumber);
      return create(GetRouteResponseSchema, {
        route: s.route,
        etaHistory: history.map((h) =>
          create(EtaRevisionSchema, {
            ...(h.eta ? { eta: h.eta } : {}),
            revisedAt: timestampFromDate(h.revisedAt),
            reason: h.reason,
            detail: h.detail,
            routeRevision: h.revision,
          }),
        ),
      });
    }),

    nearestHubs: mapped(async (req) => {
      const point = req.point;
      if (!point) throw new InvalidRequestError("point is required");
      const kinds = new Set(req.kinds.map(hubKindFromProto).filter((k) => k !== undefined));
      const found = spatial.nearest(
        { lat: point.latitude, lon: point.longitude },
        {
          limit: req.limit || DEFAULT_NEAREST_LIMIT,
          maxDistanceKm: req.maxDistanceKm,
          ...(kinds.size ? { filter: (h: Hub) => kinds.has(h.kind) } : {}),
        },
      );
      return create(NearestHubsResponseSchema, {
        hubs: found.map((n) => create(HubDistanceSchema, { hub: hubToProto(n.item), distanceKm: n.distanceKm })),
      });
    }),

    reportDisruption: mapped(async (req) => {
      if (!req.startsAt) throw new InvalidRequestError("starts_at is required");
      const outcome = await keeper.reportDisruption({
        target: req.target,
        startsAt: req.startsAt,
        endsAt: req.endsAt,
        cause: req.cause,
        description: req.description,
      });
      return create(ReportDisruptionResponseSchema, { disruption: outcome.disruption, replannedShipments: outcome.replanned });
    }),

    clearDisruption: mapped(async (req) => {
      const outcome = await keeper.clearDisruption(req.disruptionId);
      return create(ClearDisruptionResponseSchema, { disruption: outcome.disruption, replannedShipments: outcome.replanned });
    }),
  };
}
