import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import {
  ScanRecordedSchema,
  ShipmentCreatedSchema,
  ShipmentHandedOverSchema,
  ShipmentPartnerRemovedSchema,
} from "../gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema, RouteUpdatedSchema } from "../gen/logistics/events/v1/routing_events_pb.js";
import { EtaChangedSchema, StatusChangedSchema } from "../gen/logistics/events/v1/tracking_events_pb.js";
import { createSubjects, DEFAULT_SUBJECT_PREFIX, subjectToken, type StreamSpec, type Subjects } from "../nats/subjects.js";

/**
 * The event catalog: the one place that says, for every event on the bus, which Protobuf schema
 * it carries, which stream stores it, how its subject is built and parsed, which key orders it
 * (the tracking number) and which field is its id (the `Nats-Msg-Id`); and, for every durable
 * consumer of the mesh, its name, stream, filter, the events it decodes, its ack wait, max
 * deliver, max ack pending and dead-letter subject. Publishers ({@link createCatalogPublisher})
 * and consumers ({@link startBatchConsumer}) take their wiring from here; nothing else spells a
 * subject, stream or durable name.
 *
 * Subject names themselves come from `createSubjects` (nats/subjects.ts), which the catalog wraps;
 * use `catalog.subjects` for what is not an event (streams to ensure, key-value buckets, live
 * notices, dead-letter subjects).
 *
 * | event | subject | stream | key | id |
 * |---|---|---|---|---|
 * | `scan.recorded` (ScanRecorded) | `<p>.scan.recorded.<region>.<carrier>` | SCANS | `scan.tracking_number` | `event_id` |
 * | `shipment.created` (ShipmentCreated) | `<p>.shipment.created.<region>` | SHIPMENTS | `tracking_number` | `event_id` |
 * | `shipment.handed_over` (ShipmentHandedOver) | `<p>.shipment.handed_over.<region>` | SHIPMENTS | `tracking_number` | `event_id` |
 * | `shipment.partner_removed` (ShipmentPartnerRemoved) | `<p>.shipment.partner_removed.<region>` | SHIPMENTS | `tracking_number` | `event_id` |
 * | `route.planned` (RoutePlanned) | `<p>.route.planned.<region>` | ROUTES | `tracking_number` | `event_id` |
 * | `route.updated` (RouteUpdated) | `<p>.route.updated.<region>` | ROUTES | `tracking_number` | `event_id` |
 * | `status.changed` (StatusChanged) | `<p>.status.changed.<region>` | STATUS | `tracking_number` | `event_id` |
 * | `eta.changed` (EtaChanged) | `<p>.eta.changed.<region>` | STATUS | `tracking_number` | `event_id` |
 */

/** Subject tokens of an event partitioned by region only. */
export interface RegionTokens {
  /** The region that produced the event, a subject token (`[A-Za-z0-9_-]{1,64}`). */
  readonly region: string;
}

/** Subject tokens of a scan: region and carrier. */
export interface ScanTokens extends RegionTokens {
  /** The carrier code, a subject token. */
  readonly carrier: string;
}

/** One event type of the catalog. */
export interface EventDef<N extends string = string, D extends DescMessage = DescMessage, T extends RegionTokens = RegionTokens> {
  /** The catalog name, also the subject family after the prefix: `scan.recorded`. */
  readonly name: N;
  /** The Protobuf message every event of this type carries (binary on the wire). */
  readonly schema: D;
  /** The stream that stores it. */
  readonly stream: StreamSpec;
  /** Every subject of this event, any region: `<p>.scan.recorded.>` (a consumer's filter). */
  readonly allSubjects: string;
  /** The subject for these tokens; throws SubjectTokenError for a token that is not safe. */
  subject(tokens: T): string;
  /** The ordering key: the shipment's tracking number (empty when the message has none). */
  key(message: MessageShape<D>): string;
  /** The event id, used as `Nats-Msg-Id` so a republish inside the duplicate window is dropped. */
  id(message: MessageShape<D>): string;
}

/** Any event definition. */
// Methods taking the message are bivariant, so every concrete EventDef is assignable here.
export type AnyEventDef = EventDef<string, DescMessage, RegionTokens>;

/** The message type of an event definition. */
export type MessageOf<E extends AnyEventDef> = MessageShape<E["schema"]>;

/** The subject tokens an event definition needs. */
export type TokensOf<E extends AnyEventDef> = Parameters<E["subject"]>[0];

/** A subject taken apart by {@link EventCatalog.parse}. */
export interface ParsedSubject {
  readonly event: CatalogEvent;
  readonly region: string;
  /** Only for scans. */
  readonly carrier: string | undefined;
}

/** The events of the mesh, by name. */
export interface CatalogEvents {
  readonly scanRecorded: EventDef<"scan.recorded", typeof ScanRecordedSchema, ScanTokens>;
  readonly shipmentCreated: EventDef<"shipment.created", typeof ShipmentCreatedSchema>;
  readonly shipmentHandedOver: EventDef<"shipment.handed_over", typeof ShipmentHandedOverSchema>;
  readonly shipmentPartnerRemoved: EventDef<"shipment.partner_removed", typeof ShipmentPartnerRemovedSchema>;
  readonly routePlanned: EventDef<"route.planned", typeof RoutePlannedSchema>;
  readonly routeUpdated: EventDef<"route.updated", typeof RouteUpdatedSchema>;
  readonly statusChanged: EventDef<"status.changed", typeof StatusChangedSchema>;
  readonly etaChanged: EventDef<"eta.changed", typeof EtaChangedSchema>;
}

/** Any event of the catalog (a union, so an item's `event.name` narrows its message). */
export type CatalogEvent = CatalogEvents[keyof CatalogEvents];

/** A durable pull consumer of the mesh. */
export interface ConsumerDef<E extends AnyEventDef = CatalogEvent> {
  /** Durable name, shared by every replica of the consuming service. */
  readonly durable: string;
  readonly description: string;
  readonly stream: StreamSpec;
  /**
   * The one filter subject (nats-server 2.9 has no multi-filter consumers), or undefined for the
   * whole stream: such a consumer decodes each message by its subject (one consumer instead of
   * one per event type of the stream).
   */
  readonly filterSubject: string | undefined;
  /** The events it receives; a message on any other subject is poison. */
  readonly events: readonly E[];
  /** Redelivery timeout of a message taken and not settled. Batch consumers keep it alive with in-progress acks. */
  readonly ackWaitMs: number;
  /** Deliveries before the message is dead-lettered (by the consumer, or from the server's advisory). */
  readonly maxDeliver: number;
  /** Unacknowledged messages in flight across all replicas; also bounds a replica's client-side buffer. */
  readonly maxAckPending: number;
  /** Where messages it gives up on go: `<p>.dlq.<durable>`. */
  readonly deadLetterSubject: string;
  /**
   * Durables this one took over from: when it is created it starts after the oldest of their ack
   * floors (so nothing they had not acknowledged is skipped), and they are deleted.
   */
  readonly replaces: readonly string[];
}

/** Settings a deployment may change for one consumer. */
export interface ConsumerOverrides {
  /** Replaces the service part of the durable names (`tracking` in `tracking-scans`), e.g. for a second projection. */
  readonly durablePrefix?: string;
  readonly ackWaitMs?: number;
  readonly maxDeliver?: number;
  readonly maxAckPending?: number;
}

/** The consumers of the mesh, by their default durable name. */
export interface CatalogConsumers {
  /** Tracking projector: every scan. */
  readonly "tracking-scans": ConsumerDef<CatalogEvents["scanRecorded"]>;
  /** Tracking projector: the whole shipments stream (created, handed over, partner removed). */
  readonly "tracking-shipment-events": ConsumerDef<
    CatalogEvents["shipmentCreated"] | CatalogEvents["shipmentHandedOver"] | CatalogEvents["shipmentPartnerRemoved"]
  >;
  /** Tracking projector: the whole routes stream (planned and updated). */
  readonly "tracking-routes": ConsumerDef<CatalogEvents["routePlanned"] | CatalogEvents["routeUpdated"]>;
  /** Routing: plans the first route of each new shipment. */
  readonly "routing-shipments-created": ConsumerDef<CatalogEvents["shipmentCreated"]>;
  /** Routing: compares scans with the plan and re-plans on deviation. */
  readonly "routing-scans": ConsumerDef<CatalogEvents["scanRecorded"]>;
  /** Notification: status changes become webhook deliveries. */
  readonly "notification-status": ConsumerDef<CatalogEvents["statusChanged"]>;
  /** Notification: ETA changes become webhook deliveries. */
  readonly "notification-eta": ConsumerDef<CatalogEvents["etaChanged"]>;
}

/** A consumer's default durable name. */
export type ConsumerName = keyof CatalogConsumers;

/** The catalog for one subject prefix. */
export interface EventCatalog {
  readonly prefix: string;
  /** The region of {@link EventCatalogOptions.region}, when set. */
  readonly region: string | undefined;
  /** Streams, buckets, live-notice and dead-letter subjects (see nats/subjects.ts). */
  readonly subjects: Subjects;
  readonly events: CatalogEvents;
  /** Every event, in catalog order. */
  readonly eventList: readonly CatalogEvent[];
  /** The event, region and carrier of a subject, or undefined when it is no catalog event's subject. */
  parse(subject: string): ParsedSubject | undefined;
  /** A consumer's definition, with a deployment's overrides applied. */
  consumer<N extends ConsumerName>(name: N, overrides?: ConsumerOverrides): CatalogConsumers[N];
}

const DEFAULTS = Object.freeze({
  tracking: { ackWaitMs: 10_000, maxDeliver: 20, maxAckPending: 4096 },
  routing: { ackWaitMs: 30_000, maxDeliver: 20, maxAckPending: 1000 },
  notification: { ackWaitMs: 30_000, maxDeliver: 20, maxAckPending: 1000 },
});

/** Options of {@link createEventCatalog}. */
export interface EventCatalogOptions {
  /**
   * This deployment's region, when regions are named (REGION; see nats/regions.ts). The consumers
   * whose work must happen once across all regions then read only this region's events: routing's
   * `shipments-created` (a route is planned where its shipment was created) and notification's
   * `status` and `eta` (each region's tracking publishes every change it sees, sourced causes
   * included, under its own token; a webhook is sent by the region holding the subscription). Their durable names
   * gain the region (`routing-shipments-created-eu-west`), replacing the all-regions durables
   * (nats-server 2.9 cannot change a consumer's filter in place). Tracking's projector and
   * routing's `scans` keep reading every region. Default: none, every consumer reads every region.
   */
  readonly region?: string;
}

/**
 * Builds the catalog under `prefix` (default `logistics`). Cheap and pure: services build it once
 * at start (the runtime passes it as `ctx.catalog`).
 */
export function createEventCatalog(prefix: string = DEFAULT_SUBJECT_PREFIX, opts: EventCatalogOptions = {}): EventCatalog {
  const subjects = createSubjects(prefix);
  const ownRegion = opts.region === undefined ? undefined : subjectToken("region", opts.region);
  const p = subjects.prefix;
  const s = subjects.streams;
  const byRegion = <N extends string, D extends DescMessage>(
    name: N,
    schema: D,
    stream: StreamSpec,
    key: (m: MessageShape<D>) => string,
    id: (m: MessageShape<D>) => string,
  ): EventDef<N, D> =>
    Object.freeze({
      name,
      schema,
      stream,
      allSubjects: `${p}.${name}.>`,
      subject: (t: RegionTokens) => `${p}.${name}.${subjectToken("region", t.region)}`,
      key,
      id,
    });

  const events: CatalogEvents = Object.freeze({
    scanRecorded: Object.freeze({
      name: "scan.recorded",
      schema: ScanRecordedSchema,
      stream: s.scans,
      allSubjects: subjects.allScans,
      subject: (t: ScanTokens) => subjects.scanRecorded(t.region, t.carrier),
      key: (m: MessageShape<typeof ScanRecordedSchema>) => m.scan?.trackingNumber ?? "",
      id: (m: MessageShape<typeof ScanRecordedSchema>) => m.eventId,
    }),
    shipmentCreated: byRegion("shipment.created", ShipmentCreatedSchema, s.shipments, (m) => m.trackingNumber, (m) => m.eventId),
    shipmentHandedOver: byRegion("shipment.handed_over", ShipmentHandedOverSchema, s.shipments, (m) => m.trackingNumber, (m) => m.eventId),
    shipmentPartnerRemoved: byRegion("shipment.partner_removed", ShipmentPartnerRemovedSchema, s.shipments, (m) => m.trackingNumber, (m) => m.eventId),
    routePlanned: byRegion("route.planned", RoutePlannedSchema, s.routes, (m) => m.trackingNumber, (m) => m.eventId),
    routeUpdated: byRegion("route.updated", RouteUpdatedSchema, s.routes, (m) => m.trackingNumber, (m) => m.eventId),
    statusChanged: byRegion("status.changed", StatusChangedSchema, s.status, (m) => m.trackingNumber, (m) => m.eventId),
    etaChanged: byRegion("eta.changed", EtaChangedSchema, s.status, (m) => m.trackingNumber, (m) => m.eventId),
  });
  const eventList: readonly CatalogEvent[] = Object.freeze(Object.values(events));
  const byFamily = new Map<string, CatalogEvent>(eventList.map((e) => [e.name, e]));

  const consumerDef = <E extends CatalogEvent>(
    service: keyof typeof DEFAULTS,
    role: string,
    description: string,
    stream: StreamSpec,
    events: readonly E[],
    o: { wholeStream?: boolean; ownRegion?: boolean; replaces?: readonly string[]; overrides?: ConsumerOverrides },
  ): ConsumerDef<E> => {
    const servicePart = subjectToken("consumer", o.overrides?.durablePrefix ?? service);
    const regional = o.ownRegion === true && ownRegion !== undefined;
    const durable = regional ? `${servicePart}-${role}-${ownRegion}` : `${servicePart}-${role}`;
    const only = events.length === 1 ? events[0] : undefined;
    if (!o.wholeStream && !only) throw new Error(`consumer ${durable}: one filter subject needs exactly one event`);
    const replaces = [...(o.replaces ?? []), ...(regional ? [role] : [])];
    return Object.freeze({
      durable,
      description: regional ? `${description} (region ${ownRegion})` : description,
      stream,
      // A scan's subject has a carrier token after the region; the own-region consumers read none.
      filterSubject: o.wholeStream ? undefined : regional && only ? only.subject({ region: ownRegion, carrier: "*" }) : only?.allSubjects,
      events: Object.freeze([...events]),
      ackWaitMs: o.overrides?.ackWaitMs ?? DEFAULTS[service].ackWaitMs,
      maxDeliver: o.overrides?.maxDeliver ?? DEFAULTS[service].maxDeliver,
      maxAckPending: o.overrides?.maxAckPending ?? DEFAULTS[service].maxAckPending,
      deadLetterSubject: subjects.deadLetter(durable),
      replaces: Object.freeze(replaces.map((r) => `${servicePart}-${r}`)),
    });
  };

  const consumers: { [N in ConsumerName]: (o?: ConsumerOverrides) => CatalogConsumers[N] } = {
    "tracking-scans": (overrides) =>
      consumerDef("tracking", "scans", "tracking projector: scans", s.scans, [events.scanRecorded], { ...(overrides ? { overrides } : {}) }),
    "tracking-shipment-events": (overrides) =>
      consumerDef(
        "tracking",
        "shipment-events",
        "tracking projector: shipments created, handed over and partners removed",
        s.shipments,
        [events.shipmentCreated, events.shipmentHandedOver, events.shipmentPartnerRemoved],
        { wholeStream: true, replaces: ["shipments"], ...(overrides ? { overrides } : {}) },
      ),
    "tracking-routes": (overrides) =>
      consumerDef("tracking", "routes", "tracking projector: routes planned and updated", s.routes, [events.routePlanned, events.routeUpdated], {
        wholeStream: true,
        replaces: ["routes-planned", "routes-updated"],
        ...(overrides ? { overrides } : {}),
      }),
    "routing-shipments-created": (overrides) =>
      consumerDef("routing", "shipments-created", "routing: plan the first route of each new shipment", s.shipments, [events.shipmentCreated], {
        ownRegion: true,
        ...(overrides ? { overrides } : {}),
      }),
    "routing-scans": (overrides) =>
      consumerDef("routing", "scans", "routing: compare scans with the plan and re-plan on deviation", s.scans, [events.scanRecorded], {
        ...(overrides ? { overrides } : {}),
      }),
    "notification-status": (overrides) =>
      consumerDef("notification", "status", "notification: create webhook deliveries", s.status, [events.statusChanged], {
        ownRegion: true,
        ...(overrides ? { overrides } : {}),
      }),
    "notification-eta": (overrides) =>
      consumerDef("notification", "eta", "notification: create webhook deliveries", s.status, [events.etaChanged], {
        ownRegion: true,
        ...(overrides ? { overrides } : {}),
      }),
  };

  return Object.freeze({
    prefix: p,
    region: ownRegion,
    subjects,
    events,
    eventList,
    parse(subject: string): ParsedSubject | undefined {
      if (!subject.startsWith(`${p}.`)) return undefined;
      const tokens = subject.slice(p.length + 1).split(".");
      const event = byFamily.get(`${tokens[0]}.${tokens[1]}`);
      if (!event) return undefined;
      const scan = event.name === "scan.recorded";
      if (tokens.length !== (scan ? 4 : 3)) return undefined;
      return { event, region: tokens[2] as string, carrier: scan ? tokens[3] : undefined };
    },
    consumer: <N extends ConsumerName>(name: N, overrides?: ConsumerOverrides) => consumers[name](overrides) as CatalogConsumers[N],
  });
}
