import type { Eta, EtaChangeReason, Route } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import type { Disruption } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import type { ServiceLevelName } from "./planner.js";

/** A shipment routing knows about, with its current route. */
export interface ShipmentRoute {
  readonly trackingNumber: string;
  /** Region token of the shipment's events (subject suffix). */
  readonly region: string;
  readonly routeId: string;
  /** Revision of `route`; 0 while the shipment has no route (it could not be planned). */
  readonly revision: number;
  readonly originHub: string;
  readonly destinationHub: string;
  readonly serviceLevel: ServiceLevelName;
  /** When the parcel was ready at the origin. */
  readonly readyAt: Date;
  /** The current route, undefined when none could be planned. */
  readonly route: Route | undefined;
  readonly delivered: boolean;
  /** Event (scan, shipment or request id) that produced the current revision. */
  readonly lastEventId: string | undefined;
  readonly lastReason: EtaChangeReason;
  readonly lastDetail: string;
  /** ETA of the revision before the current one. */
  readonly previousEta: Eta | undefined;
  /** Disruptions the current route was planned around (re-planned when one clears). */
  readonly avoidedDisruptions: readonly string[];
}

/** What registering a shipment takes: everything but the state later revisions change. */
export type NewShipment = Omit<ShipmentRoute, "revision" | "previousEta" | "lastReason" | "lastDetail" | "delivered">;

/** A new revision of a shipment's route. */
export interface RouteRevision {
  readonly route: Route;
  readonly reason: EtaChangeReason;
  readonly detail: string;
  readonly revisedAt: Date;
  readonly eventId: string;
  readonly avoidedDisruptions: readonly string[];
  readonly delivered?: boolean;
}

/** One stored ETA revision. */
export interface StoredEtaRevision {
  readonly revision: number;
  readonly eta: Eta | undefined;
  readonly reason: EtaChangeReason;
  readonly detail: string;
  readonly revisedAt: Date;
}

/** A stored disruption: the message plus the hub codes it resolved to when reported. */
export interface StoredDisruption {
  readonly disruption: Disruption;
  readonly hubCodes: readonly string[];
}

/** A revision to store: `revision.route` becomes revision `expectedRevision + 1` of the shipment. */
export interface RevisionWrite {
  readonly trackingNumber: string;
  readonly expectedRevision: number;
  readonly revision: RouteRevision;
}

/** A shipment to register, with its first route or none. */
export interface ShipmentWrite {
  readonly shipment: NewShipment;
  readonly first: RouteRevision | undefined;
}

/** What {@link RouteStore.getChanged} found. */
export interface ChangedShipments {
  /** Shipments whose stored revision is not the one the caller holds, read in full. */
  readonly changed: ReadonlyMap<string, ShipmentRoute>;
  /** Shipments stored at exactly the revision the caller holds (not read again). */
  readonly unchanged: ReadonlySet<string>;
}

/** The shipment as stored after `r` was saved on top of `s` (what {@link RouteStore.saveRevision} writes). */
export function withRevision(s: ShipmentRoute, r: RouteRevision): ShipmentRoute {
  return {
    ...s,
    revision: s.revision + 1,
    route: r.route,
    previousEta: s.route?.eta,
    lastEventId: r.eventId,
    lastReason: r.reason,
    lastDetail: r.detail,
    avoidedDisruptions: r.avoidedDisruptions,
    delivered: s.delivered || r.delivered === true,
  };
}

/** The shipment as stored after {@link RouteStore.create} registered it. */
export function registered(s: NewShipment, first: RouteRevision | undefined): ShipmentRoute {
  return {
    ...s,
    revision: first ? 1 : 0,
    route: first?.route,
    previousEta: undefined,
    delivered: false,
    lastReason: first?.reason ?? 0,
    lastDetail: first?.detail ?? "",
    avoidedDisruptions: first?.avoidedDisruptions ?? [],
  };
}

/** Raised when a shipment's revision changed between read and write (another replica won). */
export class ConcurrentUpdateError extends Error {
  override readonly name = "ConcurrentUpdateError";
  constructor(readonly trackingNumber: string) {
    super(`route of ${trackingNumber} changed concurrently`);
  }
}

/**
 * Where routes, ETA history and disruptions live: shared by every replica, so nothing routing
 * decides depends on which replica handled an event.
 */
export interface RouteStore {
  get(trackingNumber: string): Promise<ShipmentRoute | undefined>;
  /**
   * One read for a batch: every shipment of `trackingNumbers` that exists, read in full unless
   * `known` holds its stored revision (then only named in `unchanged`, so a caller's copy of an
   * unchanged shipment is not decoded again). Unknown tracking numbers are in neither.
   */
  getChanged(trackingNumbers: readonly string[], known: ReadonlyMap<string, number>): Promise<ChangedShipments>;
  /**
   * Registers a shipment with its first route (revision 1) or without one (revision 0).
   * Returns false, changing nothing, when the shipment already exists.
   */
  create(shipment: NewShipment, first: RouteRevision | undefined): Promise<boolean>;
  /**
   * Stores `revision.route` as revision `expectedRevision + 1` and appends it to the ETA history.
   * Throws {@link ConcurrentUpdateError} when the current revision is not `expectedRevision`.
   */
  saveRevision(trackingNumber: string, expectedRevision: number, revision: RouteRevision): Promise<void>;
  /**
   * {@link saveRevision} for many shipments in one statement (one write per shipment): each is
   * stored only if its current revision is its `expectedRevision`. Returns the tracking numbers
   * that were not stored because their revision had changed.
   */
  saveRevisions(writes: readonly RevisionWrite[]): Promise<Set<string>>;
  /**
   * {@link saveRevisions} of `writes` and {@link getChanged} of `trackingNumbers` (other shipments
   * than the written ones) in one statement: the read sees its shipments as the writes found them.
   * Returns what both return; nothing is stored when it fails.
   */
  saveRevisionsAndGetChanged(
    writes: readonly RevisionWrite[],
    trackingNumbers: readonly string[],
    known: ReadonlyMap<string, number>,
  ): Promise<ChangedShipments & { readonly conflicts: Set<string> }>;
  /**
   * {@link create} for many shipments in one statement (one per shipment). Returns the tracking
   * numbers registered; the others already existed and are unchanged.
   */
  createMany(writes: readonly ShipmentWrite[]): Promise<Set<string>>;
  etaHistory(trackingNumber: string): Promise<StoredEtaRevision[]>;
  /** Undelivered shipments whose current route passes through any of `hubCodes`. */
  findTouchingHubs(hubCodes: readonly string[]): Promise<ShipmentRoute[]>;
  /** Undelivered shipments whose current route was planned around `disruptionId`. */
  findAvoiding(disruptionId: string): Promise<ShipmentRoute[]>;
  saveDisruption(d: StoredDisruption): Promise<void>;
  getDisruption(id: string): Promise<StoredDisruption | undefined>;
  /** Sets `cleared_at` unless already set; returns the disruption as stored afterwards. */
  clearDisruption(id: string, at: Date): Promise<{ disruption: StoredDisruption; changed: boolean } | undefined>;
  /** Disruptions not cleared and not ended before `at`. */
  activeDisruptions(at: Date): Promise<StoredDisruption[]>;
}
