import type { EtaChangeReason, TransportMode } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import type { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import type { ServiceLevel, ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";

/**
 * Storage ports of the shipment read model. Everything here is domain-level and JSON-safe: no
 * driver types, times as ISO-8601 UTC strings (`Date.prototype.toISOString()` form, which also
 * sorts lexicographically), enums as the generated protobuf enums.
 */

/** A WGS 84 point in decimal degrees. */
export interface GeoPointDoc {
  lat: number;
  lon: number;
}

/** A carrier's own status code and text, kept verbatim. */
export interface CarrierStatusDoc {
  code: string;
  text: string;
}

/** An address reduced to what tracking shows. */
export interface PlaceDoc {
  countryCode: string;
  postalCode?: string;
  city: string;
  location?: GeoPointDoc;
  hubCode?: string;
}

/** An estimated time of arrival with its window. */
export interface EtaDoc {
  estimatedArrival: string;
  earliest?: string;
  latest?: string;
  confidence?: number;
}

/** One leg of a planned route: a scheduled movement between two hubs. */
export interface RouteLegDoc {
  /** Hub code the leg departs from, `^[A-Z0-9]{3,8}$`. */
  fromHub: string;
  /** Hub code the leg arrives at, `^[A-Z0-9]{3,8}$`. */
  toHub: string;
  mode: TransportMode;
  plannedDeparture?: string;
  plannedArrival?: string;
  /** The schedule entry (flight, sailing, train or truck departure), `^[A-Za-z0-9_-]{1,64}$`. */
  departureId?: string;
  /** When routing saw the parcel leave `fromHub` on this leg (travelled legs kept in a re-plan). */
  actualDeparture?: string;
  /** When routing saw the parcel arrive at `toHub` on this leg. */
  actualArrival?: string;
}

/**
 * The route plan of the newest route event (the same event that set the ETA). `legs` are in
 * travel order; empty when origin and destination are served by the same hub.
 */
export interface RouteDoc {
  routeId?: string;
  /** Routing's revision of the shipment's route (1 for the first plan). */
  revision?: number;
  /** When routing planned this revision. */
  plannedAt?: string;
  legs: RouteLegDoc[];
}

/** Fields every event carries. */
export interface EventBase {
  /** Globally unique, stable across redeliveries; the idempotency key. 1..128 chars. */
  eventId: string;
  /** `^[A-Z0-9]{8,30}$`. */
  trackingNumber: string;
  /** When it happened (ISO-8601); the order key for derivation. */
  eventTime: string;
}

/** The shipper's order system created the shipment. */
export interface ShipmentCreatedInput extends EventBase {
  type: "shipment_created";
  shipmentId: string;
  carrierCode: string;
  customerId: string;
  customerReference?: string;
  origin?: PlaceDoc;
  destination?: PlaceDoc;
  serviceLevel: ServiceLevel;
  weightGrams?: number;
}

/** A carrier scan, normalized by ingest. */
export interface ScanInput extends EventBase {
  type: "scan";
  carrierCode: string;
  kind: ScanKind;
  /**
   * The normalized status ingest derived, if any. UNSPECIFIED/absent: derived from `kind`.
   * For CORRECTION scans it is the status the shipment is corrected to.
   */
  status?: ShipmentStatus;
  rawStatus: CarrierStatusDoc;
  hubCode?: string;
  location?: GeoPointDoc;
  note?: string;
  attributes?: Record<string, string>;
}

/**
 * Routing planned or re-planned the route; carries the new ETA and, when routing sent them, the
 * route's legs (at most `MAX_ROUTE_LEGS`, see derive.ts), revision and planning time. An event without
 * `legs`, `revision` and `plannedAt` carries no route plan: it still sets the ETA, and the
 * document keeps no `route` while it is the newest route event.
 */
export interface RouteInput extends EventBase {
  type: "route_planned" | "route_updated";
  eta: EtaDoc;
  reason?: EtaChangeReason;
  routeId?: string;
  detail?: string;
  /** The legs in travel order (an empty list is a plan without legs). */
  legs?: RouteLegDoc[];
  /** Routing's revision of the route, a non-negative integer. */
  revision?: number;
  /** When routing planned this revision. */
  plannedAt?: string;
}


/** Any event the shipment store applies. */
export type ShipmentEventInput = ShipmentCreatedInput | ScanInput | RouteInput;

/** One status-relevant entry of a shipment's timeline (scans and the creation event). */
export interface TimelineEntry {
  eventId: string;
  eventTime: string;
  kind: ScanKind;
  /** Resolved normalized status; UNSPECIFIED for a CORRECTION without an explicit status. */
  status: ShipmentStatus;
  carrierStatus?: CarrierStatusDoc;
  hubCode?: string;
}

/**
 * The shipment read-model document. `derivation` is bookkeeping that makes derivation a function
 * of the SET of applied events (so any arrival order converges, apart from the order recorded in
 * `eventIds`); readers may ignore it.
 */
export interface ShipmentDoc {
  trackingNumber: string;
  shipmentId?: string;
  customerId?: string;
  customerReference?: string;
  carrierCode?: string;
  serviceLevel?: ServiceLevel;
  origin?: PlaceDoc;
  destination?: PlaceDoc;
  weightGrams?: number;
  status: ShipmentStatus;
  /** Event time of the scan that set `status`. */
  statusTime?: string;
  statusEventId?: string;
  carrierStatus?: CarrierStatusDoc;
  hubCode?: string;
  /** Position of the newest (event time) scan that carried one. */
  location?: GeoPointDoc;
  locationTime?: string;
  locationEventId?: string;
  eta?: EtaDoc;
  etaReason?: EtaChangeReason;
  /** Event time of the route event that set `eta`. */
  etaTime?: string;
  etaEventId?: string;
  /** Route plan of the route event that set `eta` (absent when that event carried none). */
  route?: RouteDoc;
  /** Newest scan event time applied (the reference for the `late` flag). */
  lastScanTime?: string;
  /** Newest event time of any applied event; the sort key of searches. */
  updatedAt: string;
  /** Number of distinct events applied; the compare-and-set token. */
  version: number;
  derivation: {
    timeline: TimelineEntry[];
    /**
     * Ids of every applied event in the order they were applied (version k is the document after
     * `eventIds[k - 1]`); the adapter-independent idempotency record. The only part of the
     * document that depends on arrival order.
     */
    eventIds: string[];
    /** eventTime|eventId of the creation event that set the static fields. */
    createdKey?: string;
  };
}

/** What {@link ShipmentStore.applyEvent} did. */
export interface ApplyResult {
  /** The event changed the store (false for duplicates). */
  applied: boolean;
  /** The event id had been applied before; nothing changed. */
  duplicate: boolean;
  /** An event of the same family with a newer event time had already been applied. */
  late: boolean;
  /** The document before the event (absent for a new shipment or a duplicate). */
  before?: ShipmentDoc;
  after: ShipmentDoc;
  statusChanged: boolean;
  etaChanged: boolean;
  /** `after.version`. */
  version: number;
}

/** An event as kept in a shipment's history. */
export interface StoredEvent {
  eventId: string;
  trackingNumber: string;
  type: ShipmentEventInput["type"];
  eventTime: string;
  /** Arrived after a newer event of its family; kept but did not move the status backwards. */
  late: boolean;
  /** When the store applied it (wall clock). */
  appliedAt: string;
  event: ShipmentEventInput;
}

/** A page of results; `nextCursor` is absent on the last page. */
export interface Page<T> {
  items: T[];
  nextCursor?: string;
}

/** Paging parameters; `pageSize` 1..1000, `cursor` from a previous page. */
export interface PageRequest {
  pageSize: number;
  cursor?: string;
}

/** Search filters; all optional and ANDed. Results newest `updatedAt` first. */
export interface ShipmentQuery extends PageRequest {
  customerId?: string;
  statuses?: ShipmentStatus[];
  carrierCode?: string;
  /** Inclusive lower bound on `updatedAt`. */
  updatedAfter?: string;
  /** Exclusive upper bound on `updatedAt`. */
  updatedBefore?: string;
  /** Shipments whose `location` is within `radiusKm` (great circle) of the point. */
  near?: { lat: number; lon: number; radiusKm: number };
}

/** The shipment read model's durable store. */
export interface ShipmentStore {
  /**
   * Applies one event atomically to the shipment document and its history. Idempotent by
   * `eventId` (a repeat returns `duplicate: true` and changes nothing) and order-safe (see
   * derive.ts). Throws InvalidEventError / DocumentTooLargeError with nothing written.
   */
  applyEvent(event: ShipmentEventInput): Promise<ApplyResult>;
  /**
   * Applies a batch of events; the group-commit form of {@link applyEvent}. Returns one result
   * per input, in input order, equal to what calling `applyEvent` for each event in input order
   * would have returned: idempotent by `eventId` (against earlier batches and within the batch:
   * a repeat later in the same batch is `duplicate: true`), order-safe, and several events of one
   * shipment are applied in input order (`before` of each is the `after` of the previous one).
   * An empty batch returns `[]`.
   *
   * Every event is validated before anything is written. A StoreError caused by one event
   * (InvalidEventError, DocumentTooLargeError) is thrown with `batchIndex` set to that event's
   * position, so the caller can split the batch: apply `events.slice(0, i)` and
   * `events.slice(i + 1)` and deal with `events[i]` alone. Because applying is idempotent,
   * re-applying events that did get written is always safe. Adapter atomicity:
   * - PostgreSQL: one transaction per batch; when it throws, nothing of the batch was written.
   * - MongoDB: validation up front (an invalid event writes nothing), then events are applied one
   *   by one in order; a DocumentTooLargeError or ConflictError at index i leaves events before i
   *   applied.
   */
  applyEvents(events: readonly ShipmentEventInput[]): Promise<ApplyResult[]>;
  /** The current document, or undefined. */
  getShipment(trackingNumber: string): Promise<ShipmentDoc | undefined>;
  /** The shipment's history in (eventTime, eventId) order. */
  listEvents(trackingNumber: string, page: PageRequest): Promise<Page<StoredEvent>>;
  /** Filtered search, ordered by (updatedAt desc, trackingNumber desc). */
  searchShipments(query: ShipmentQuery): Promise<Page<ShipmentDoc>>;
  /** Releases connections (only those the store created itself). */
  close(): Promise<void>;
}
