/** Conversions between the planner's plain values and the Protobuf contract messages. Pure. */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  EtaSchema,
  RouteLegSchema,
  RouteSchema,
  TransportMode,
  type Eta,
  type Route,
  type RouteLeg,
} from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { HubKind, HubSchema, type Hub as HubMessage } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import type { Hub, HubKindName, ModeName } from "./hub-network.js";
import type { EtaEstimate, PlannedLeg, PlannedRoute, ServiceLevelName } from "./planner.js";

const MODE: Record<ModeName, TransportMode> = {
  AIR: TransportMode.AIR,
  SEA: TransportMode.SEA,
  ROAD: TransportMode.ROAD,
  RAIL: TransportMode.RAIL,
};

const KIND: Record<HubKindName, HubKind> = {
  AIRPORT: HubKind.AIRPORT,
  SEAPORT: HubKind.SEAPORT,
  RAIL_TERMINAL: HubKind.RAIL_TERMINAL,
  ROAD_HUB: HubKind.ROAD_HUB,
};

/** The contract's transport mode for a planner mode. */
export const modeToProto = (m: ModeName): TransportMode => MODE[m];

/** The planner's mode for a contract transport mode, undefined for UNSPECIFIED. */
export function modeFromProto(m: TransportMode): ModeName | undefined {
  return (Object.keys(MODE) as ModeName[]).find((k) => MODE[k] === m);
}

/** The planner's hub kind for a contract hub kind, undefined for UNSPECIFIED. */
export function hubKindFromProto(k: HubKind): HubKindName | undefined {
  return (Object.keys(KIND) as HubKindName[]).find((n) => KIND[n] === k);
}

/** The planner's service level, undefined for UNSPECIFIED or unknown values. */
export function serviceLevelName(level: ServiceLevel): ServiceLevelName | undefined {
  switch (level) {
    case ServiceLevel.ECONOMY:
      return "ECONOMY";
    case ServiceLevel.STANDARD:
      return "STANDARD";
    case ServiceLevel.EXPRESS:
      return "EXPRESS";
    case ServiceLevel.OVERNIGHT:
      return "OVERNIGHT";
    default:
      return undefined;
  }
}

/** A hub as the contract describes it. */
export function hubToProto(h: Hub): HubMessage {
  return create(HubSchema, {
    code: h.code,
    name: h.name,
    city: h.city,
    countryCode: h.country,
    location: { latitude: h.lat, longitude: h.lon },
    kind: KIND[h.kind],
    timeZone: h.timeZone,
    processingTime: durationFromMs(h.processingMin * 60_000),
  });
}

/** A planned leg as a contract route leg. */
export function legToProto(leg: PlannedLeg): RouteLeg {
  return create(RouteLegSchema, {
    fromHub: leg.from.code,
    toHub: leg.to.code,
    mode: MODE[leg.lane.mode],
    plannedDeparture: timestampFromMs(leg.departure),
    plannedArrival: timestampFromMs(leg.arrival),
    departureId: leg.departureId,
  });
}

/** An ETA estimate as a contract ETA. */
export function etaToProto(e: EtaEstimate): Eta {
  return create(EtaSchema, {
    estimatedArrival: timestampFromMs(e.estimated),
    earliest: timestampFromMs(e.earliest),
    latest: timestampFromMs(e.latest),
    confidence: e.confidence,
  });
}

/** What identifies a route revision besides its plan. */
export interface RouteMeta {
  routeId: string;
  trackingNumber: string;
  revision: number;
  plannedAt: Date;
  /** Legs already travelled, kept in front of the new plan's legs. */
  prefix?: readonly RouteLeg[];
}

/** A plan as a contract route. */
export function routeToProto(plan: PlannedRoute, meta: RouteMeta): Route {
  return create(RouteSchema, {
    routeId: meta.routeId,
    trackingNumber: meta.trackingNumber,
    legs: [...(meta.prefix ?? []), ...plan.legs.map(legToProto)],
    eta: etaToProto(plan.eta),
    revision: meta.revision,
    plannedAt: timestampFromMs(meta.plannedAt.getTime()),
  });
}

/** Epoch milliseconds of a timestamp (0 when unset). */
export function msOf(ts: Timestamp | undefined): number {
  return ts ? timestampDate(ts).getTime() : 0;
}
