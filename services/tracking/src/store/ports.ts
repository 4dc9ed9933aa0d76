import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { GeoPoint, PlaceJson } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import type { EtaChangeReason, EtaJson, RouteJson } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import type { CarrierStatusJson, ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import type { ServiceLevel, ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import type {
  ScanRecorded,
  ShipmentCreated,
  ShipmentHandedOver,
  ShipmentPartnerRemoved,
} from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import type { RoutePlanned, RouteUpdated } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";

/**
 * Storage ports of the shipment read model. Events come in as the mesh's Protobuf messages and
 * are kept as their proto JSON (`toJson`); the document's nested values (places, ETA, route,
 * carrier status) are proto JSON too, so rendering them is `fromJson`. The document's own order
 * keys (event times of what set each field, `updatedAt`) are ISO-8601 UTC strings in
 * `Date.prototype.toISOString()` form, which sort lexicographically; enums are the generated
 * protobuf enums.
 */

/**
 * An event the store applies: a catalog event in its Protobuf form, tagged with its catalog name
 * (a batch consumer's item is one). Its event time is the message's own (see events.ts
 * `eventKey`); a producer's message without one gets it filled in by the projector.
 */
export type ProjectedEvent =
  | { readonly type: "scan.recorded"; readonly message: ScanRecorded }
  | { readonly type: "shipment.created"; readonly message: ShipmentCreated }
  | { readonly type: "shipment.handed_over"; readonly message: ShipmentHandedOver }
  | { readonly type: "shipment.partner_removed"; readonly message: ShipmentPartnerRemoved }
  | { readonly type: "route.planned"; readonly message: RoutePlanned }
  | { readonly type: "route.updated"; readonly message: RouteUpdated };

/** A WGS 84 position as the document keeps it (both coordinates always present, rounded to 1e-7°). */
export type DocPoint = Pick<GeoPoint, "latitude" | "longitude">;

/** One status-relevant entry of a shipment's timeline (scans and the creation event). */
export interface TimelineEntry {
  eventId: string;
  eventTime: string;
  kind: ScanKind;
  /** Resolved normalized status; UNSPECIFIED for a CORRECTION without an explicit status. */
  status: ShipmentStatus;
  carrierStatus?: CarrierStatusJson;
  hubCode?: string;
}

/**
 * Where the status fold over a timeline stands (derive.ts `deriveStatus`): the status, the entry
 * that set it, and the last non-terminal status (what a CORRECTION without a status reopens to).
 */
export interface StatusFold {
  status: ShipmentStatus;
  entry?: TimelineEntry;
  lastNonTerminal?: ShipmentStatus;
}

/**
 * What a document no longer holds one by one (trim-document.ts). A document that would pass the
 * store's size limit (a carrier that keeps scanning one parcel) drops its oldest timeline entries,
 * their effect kept in `fold`, and, when that is not enough, the oldest of its `eventIds`.
 */
export interface TrimmedHistory {
  /** Timeline entries dropped so far, each time the oldest in (eventTime, eventId) order. */
  entries: number;
  /** Event ids dropped from the front of `eventIds`: `eventIds[0]` is the event of version `ids + 1`. */
  ids: number;
  /** The status fold over every dropped entry, in order: where the fold over the timeline starts. */
  fold: StatusFold;
  /** The newest dropped entry that had a hub: the current hub when no newer kept entry has one. */
  hubEntry?: TimelineEntry;
}

/** A handover or a partner removal the document holds (see {@link ShipmentDoc.derivation}). */
export interface HandoverEntry {
  eventId: string;
  eventTime: string;
  /** The partner carrier that took the shipment over (or, in `removals`, was removed). */
  carrierCode: string;
  /** The event's `partner_term`; absent for 0 (and in entries written before terms existed). */
  term?: number;
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
  /**
   * Partner carriers besides `carrierCode`, each once: the creation's (`derivation.createdPartners`)
   * first, then the handovers' (`derivation.handovers`) in (eventTime, eventId) order, without
   * those a removal (`derivation.removals`) ended (derive.ts). Absent while there are none.
   */
  partnerCarrierCodes?: string[];
  serviceLevel?: ServiceLevel;
  origin?: PlaceJson;
  destination?: PlaceJson;
  weightGrams?: number;
  status: ShipmentStatus;
  /** Event time of the scan that set `status`. */
  statusTime?: string;
  statusEventId?: string;
  carrierStatus?: CarrierStatusJson;
  hubCode?: string;
  /** Position of the newest (event time) scan that carried one. */
  location?: DocPoint;
  locationTime?: string;
  locationEventId?: string;
  eta?: EtaJson;
  etaReason?: EtaChangeReason;
  /** Event time of the route event that set `eta`. */
  etaTime?: string;
  etaEventId?: string;
  /** Route plan of the route event that set `eta`: its Route without the ETA (kept in `eta`). */
  route?: Omit<RouteJson, "eta">;
  /** Newest scan event time applied (the reference for the `late` flag). */
  lastScanTime?: string;
  /** Newest event time of any applied event; the sort key of searches. */
  updatedAt: string;
  /** Number of distinct events applied; the compare-and-set token. */
  version: number;
  derivation: {
    /** The status-relevant entries in (eventTime, eventId) order, but for those a trim dropped (`trimmed`). */
    timeline: TimelineEntry[];
    /**
     * Ids of every applied event in the order they were applied (version k is the document after
     * `eventIds[k - 1 - trimmed.ids]`, derive.ts `eventIdOfVersion`); the adapter-independent
     * idempotency record, but for the ids a trim dropped. The only part of the document that
     * depends on arrival order.
     */
    eventIds: string[];
    /** eventTime|eventId of the creation event that set the static fields. */
    createdKey?: string;
    /** The partner carriers named by the creation event that set the static fields (absent: none). */
    createdPartners?: string[];
    /** Every applied handover, in (eventTime, eventId) order (absent: none). */
    handovers?: HandoverEntry[];
    /** Every applied partner removal, in (eventTime, eventId) order (absent: none). */
    removals?: HandoverEntry[];
    /** What the document dropped to stay within the size limit (absent: nothing, nearly always). */
    trimmed?: TrimmedHistory;
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
  /**
   * How an applied event was written, when the adapter reports it (PostgreSQL `applyEvents`), so
   * that the caller can pass the change on (the live notice, live-updates.ts) without serializing
   * the event or the document again. Absent on duplicates.
   */
  stored?: StoredWrite;
}

/** What {@link ApplyResult.stored} reports: the event's history row, and the document as written. */
export interface StoredWrite {
  /** The history row's payload: the event's proto JSON text. */
  readonly eventJson: string;
  /** The event that text is the JSON of: what reading the row back gives (never to be changed). */
  readonly event: ProjectedEvent;
  /** The history row's `appliedAt` (what `listEvents` will report). */
  readonly appliedAt: Date;
  /**
   * The document's JSON as written; only on a shipment's last applied result of the call (the
   * one version of the shipment the call wrote).
   */
  readonly docJson?: string;
}

/** An event as kept in a shipment's history. */
export interface StoredEvent {
  event: ProjectedEvent;
  eventId: string;
  trackingNumber: string;
  /** Its event time (ISO): with `eventId`, the history's order. */
  eventTime: string;
  /** Arrived after a newer event of its family; kept but did not move the status backwards. */
  late: boolean;
  /** When the store applied it (wall clock). */
  appliedAt: Timestamp;
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
   * derive.ts). A document that would pass the size limit is written trimmed (trim-document.ts;
   * `after` is the trimmed document). Throws InvalidEventError / DocumentTooLargeError (the event
   * alone over the limit, or a document that cannot fit even trimmed) with nothing written.
   */
  applyEvent(event: ProjectedEvent): Promise<ApplyResult>;
  /**
   * Applies a batch of events; the group-commit form of {@link applyEvent}. Returns one result
   * per input, in input order, equal to what calling `applyEvent` for each event in input order
   * would have returned: idempotent by `eventId` (against earlier batches and within the batch:
   * a repeat later in the same batch is `duplicate: true`), order-safe, and several events of one
   * shipment are applied in input order (`before` of each is the `after` of the previous one).
   * An empty batch returns `[]`. One difference: a document over the size limit is trimmed where
   * it is written; PostgreSQL writes a shipment's last document of the batch (its last result's
   * `after`) only, so it trims that one, not one at each event that crossed the limit, and the
   * shipment's earlier results keep their documents as derived (same status, ETA, location).
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
  applyEvents(events: readonly ProjectedEvent[]): Promise<ApplyResult[]>;
  /** The current document, or undefined. */
  getShipment(trackingNumber: string): Promise<ShipmentDoc | undefined>;
  /** The shipment's history in (eventTime, eventId) order. */
  listEvents(trackingNumber: string, page: PageRequest): Promise<Page<StoredEvent>>;
  /** Filtered search, ordered by (updatedAt desc, trackingNumber desc). */
  searchShipments(query: ShipmentQuery): Promise<Page<ShipmentDoc>>;
  /** Releases connections (only those the store created itself). */
  close(): Promise<void>;
}
