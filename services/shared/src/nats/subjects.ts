/**
 * The one place where NATS subjects and JetStream stream names are spelled out. Services build
 * every subject through {@link createSubjects}; nothing else in the code base types a subject
 * or stream name as a string.
 *
 * Subject layout (`<p>` is the root prefix, `logistics` in production, unique per test):
 *
 * | subject                                   | stream       |
 * |-------------------------------------------|--------------|
 * | `<p>.scan.recorded.<region>.<carrier>`    | `<P>_SCANS`     |
 * | `<p>.shipment.created.<region>`           | `<P>_SHIPMENTS` |
 * | `<p>.shipment.handed_over.<region>`       | `<P>_SHIPMENTS` |
 * | `<p>.shipment.partner_removed.<region>`   | `<P>_SHIPMENTS` |
 * | `<p>.route.planned.<region>`              | `<P>_ROUTES`    |
 * | `<p>.route.updated.<region>`              | `<P>_ROUTES`    |
 * | `<p>.status.changed.<region>`             | `<P>_STATUS`    |
 * | `<p>.eta.changed.<region>`                | `<P>_STATUS`    |
 * | `<p>.dlq.<consumer>`                      | `<P>_DLQ`       |
 * | `<p>.live.shipment.<tracking number>`     | none (core NATS notices, never stored) |
 *
 * The first three tokens name the event family (used for span names and metrics); the trailing
 * tokens partition it so consumers can filter by region (and carrier) without decoding payloads.
 *
 * JetStream key-value buckets are named here too:
 *
 * | bucket                     | keys → values | written by / read by |
 * |----------------------------|---------------|----------------------|
 * | `<P>_SHIPMENT_PARTIES`     | tracking number → the shipment's carrier, partner carriers and customer | ingest (CreateShipment, HandOverShipment, RemoveShipmentPartner) / ingest (every scan) |
 *
 * With several regions (nats/regions.ts) every region has all of these; the scans, shipments and
 * routes streams also hold the peer regions' own events (sourced under `regionFilter`), and
 * `<P>_SHIPMENT_PARTIES_PEERS` holds the peers' directory entries.
 */

/** The production root prefix. */
export const DEFAULT_SUBJECT_PREFIX = "logistics";

/** Raised when a prefix or a subject token (region, carrier, consumer) cannot be used safely. */
export class SubjectTokenError extends Error {
  override readonly name = "SubjectTokenError";
  /** Which part was rejected: "prefix", "region", "carrier" or "consumer". */
  readonly part: string;
  /** The rejected value. */
  readonly value: string;

  constructor(part: string, value: string) {
    super(
      `invalid ${part} ${JSON.stringify(value)} for a NATS subject: use 1-64 characters from ` +
        `[A-Za-z0-9_-] (no dots, spaces or wildcards)`,
    );
    this.part = part;
    this.value = value;
  }
}

/** A stream and the subjects it captures, as {@link ensureStreams} takes it. */
export interface StreamSpec {
  readonly name: string;
  readonly subjects: readonly string[];
  readonly description: string;
  /**
   * The subjects of the events one region itself produced into this stream, e.g.
   * `<p>.scan.recorded.<region>.*`: the filter under which another region sources them (see
   * nats/regions.ts). Undefined for a stream that stays in its region (status changes, dead letters).
   */
  readonly regionFilter?: (region: string) => string;
}

/** The streams of the event mesh, by role. */
export interface StreamSpecs {
  readonly scans: StreamSpec;
  readonly shipments: StreamSpec;
  readonly routes: StreamSpec;
  readonly status: StreamSpec;
  readonly deadLetters: StreamSpec;
}

/** A JetStream key-value bucket, as {@link ensureKeyValue} takes it. */
export interface BucketSpec {
  readonly name: string;
  readonly description: string;
  /**
   * With several regions: the read-only stream in each region that sources this bucket's stream
   * from every peer region (`<bucket>_PEERS`), consulted when the local bucket has no entry.
   */
  readonly peerCopy: string;
}

/** The key-value buckets of the mesh, by role. */
export interface BucketSpecs {
  /** Tracking number → who carries the shipment and whose it is (ingest's source of truth for scan ownership). */
  readonly shipmentParties: BucketSpec;
}

/** Subject builders and stream descriptions for one root prefix. */
export interface Subjects {
  /** The root prefix every subject starts with. */
  readonly prefix: string;
  /** A scan accepted by ingest: `<p>.scan.recorded.<region>.<carrier>`. */
  scanRecorded(region: string, carrier: string): string;
  /** A shipment created by an order system: `<p>.shipment.created.<region>`. */
  shipmentCreated(region: string): string;
  /** A shipment handed over to a partner carrier: `<p>.shipment.handed_over.<region>`. */
  shipmentHandedOver(region: string): string;
  /** A partner carrier removed from a shipment: `<p>.shipment.partner_removed.<region>`. */
  shipmentPartnerRemoved(region: string): string;
  /** A first route plan: `<p>.route.planned.<region>`. */
  routePlanned(region: string): string;
  /** A re-plan (new ETA after a deviation or disruption): `<p>.route.updated.<region>`. */
  routeUpdated(region: string): string;
  /** A shipment's normalized status changed: `<p>.status.changed.<region>`. */
  statusChanged(region: string): string;
  /** A shipment's ETA changed: `<p>.eta.changed.<region>`. */
  etaChanged(region: string): string;
  /** Dead letters of one consumer (by durable name): `<p>.dlq.<consumer>`. */
  deadLetter(consumer: string): string;
  /**
   * Live "shipment changed" notice between tracking replicas: `<p>.live.shipment.<tracking>`.
   * Core NATS only: no stream captures it, so notices are never stored.
   */
  liveShipment(trackingNumber: string): string;
  /** Scans of one region, any carrier: `<p>.scan.recorded.<region>.*`. */
  scansInRegion(region: string): string;
  /** Every scan: `<p>.scan.recorded.>`. */
  readonly allScans: string;
  /** Every shipment-created event: `<p>.shipment.created.>`. */
  readonly allShipmentsCreated: string;
  /** Every handover event: `<p>.shipment.handed_over.>`. */
  readonly allShipmentsHandedOver: string;
  /** Every partner-removed event: `<p>.shipment.partner_removed.>`. */
  readonly allShipmentPartnersRemoved: string;
  /** Every route event (planned and updated): `<p>.route.>`. */
  readonly allRouteEvents: string;
  /** Every route-planned event: `<p>.route.planned.>`. */
  readonly allRoutesPlanned: string;
  /** Every route-updated event: `<p>.route.updated.>`. */
  readonly allRoutesUpdated: string;
  /** Every status-changed event: `<p>.status.changed.>`. */
  readonly allStatusChanged: string;
  /** Every ETA-changed event: `<p>.eta.changed.>`. */
  readonly allEtaChanged: string;
  /** Every dead letter: `<p>.dlq.>`. */
  readonly allDeadLetters: string;
  /** The streams, by role. */
  readonly streams: StreamSpecs;
  /** All stream specs, for `ensureStreams`. */
  readonly streamList: readonly StreamSpec[];
  /** The key-value buckets, by role. */
  readonly buckets: BucketSpecs;
}

const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

/** Returns `value` if it is a safe single subject token, else throws {@link SubjectTokenError}. */
export function subjectToken(part: string, value: string): string {
  if (!TOKEN.test(value)) throw new SubjectTokenError(part, value);
  return value;
}

/**
 * The event family of a subject: its first three tokens (`logistics.scan.recorded`), a bounded
 * set suitable for span names and metric labels.
 */
export function subjectFamily(subject: string): string {
  return subject.split(".", 3).join(".");
}

/**
 * Builds subjects and stream names under `prefix` (default `logistics`). Region, carrier and
 * consumer tokens are validated: 1-64 characters from `[A-Za-z0-9_-]`; anything else (dots,
 * spaces, `*`, `>`) throws a {@link SubjectTokenError} rather than producing a subject that
 * would land in the wrong place. Stream names are the prefix uppercased (`-` becomes `_`) plus
 * a role suffix, e.g. `LOGISTICS_SCANS`; bucket names likewise (`LOGISTICS_SHIPMENT_PARTIES`).
 */
export function createSubjects(prefix: string = DEFAULT_SUBJECT_PREFIX): Subjects {
  const p = subjectToken("prefix", prefix);
  const P = p.toUpperCase().replace(/-/g, "_");
  const region = (r: string) => subjectToken("region", r);

  const stream = (role: string, subjects: string[], description: string, regionFilter?: (r: string) => string): StreamSpec =>
    Object.freeze({ name: `${P}_${role}`, subjects: Object.freeze(subjects), description, ...(regionFilter ? { regionFilter } : {}) });
  // Streams keep every region's subjects (not only their own region's): nats-server 2.9 refuses
  // to update a stream whose source filter does not overlap the subjects of the local stream
  // of the same name. Regions are kept apart by the leaf node's deny lists instead (regions.ts).
  const streams: StreamSpecs = Object.freeze({
    scans: stream("SCANS", [`${p}.scan.>`], "Carrier scans accepted by ingest", (r) => `${p}.scan.recorded.${region(r)}.*`),
    shipments: stream("SHIPMENTS", [`${p}.shipment.>`], "Shipment lifecycle events from order systems", (r) => `${p}.shipment.*.${region(r)}`),
    routes: stream("ROUTES", [`${p}.route.>`], "Route plans and re-plans with ETAs", (r) => `${p}.route.*.${region(r)}`),
    status: stream("STATUS", [`${p}.status.>`, `${p}.eta.>`], "Normalized status and ETA changes"),
    deadLetters: stream("DLQ", [`${p}.dlq.>`], "Messages consumers gave up on, with the reason in headers"),
  });
  const buckets: BucketSpecs = Object.freeze({
    shipmentParties: Object.freeze({
      name: `${P}_SHIPMENT_PARTIES`,
      description: "Tracking number to the shipment's carrier, partner carriers and customer",
      peerCopy: `${P}_SHIPMENT_PARTIES_PEERS`,
    }),
  });

  return Object.freeze({
    prefix: p,
    scanRecorded: (r: string, carrier: string) =>
      `${p}.scan.recorded.${region(r)}.${subjectToken("carrier", carrier)}`,
    shipmentCreated: (r: string) => `${p}.shipment.created.${region(r)}`,
    shipmentHandedOver: (r: string) => `${p}.shipment.handed_over.${region(r)}`,
    shipmentPartnerRemoved: (r: string) => `${p}.shipment.partner_removed.${region(r)}`,
    routePlanned: (r: string) => `${p}.route.planned.${region(r)}`,
    routeUpdated: (r: string) => `${p}.route.updated.${region(r)}`,
    statusChanged: (r: string) => `${p}.status.changed.${region(r)}`,
    etaChanged: (r: string) => `${p}.eta.changed.${region(r)}`,
    deadLetter: (consumer: string) => `${p}.dlq.${subjectToken("consumer", consumer)}`,
    liveShipment: (trackingNumber: string) => `${p}.live.shipment.${subjectToken("tracking number", trackingNumber)}`,
    scansInRegion: (r: string) => `${p}.scan.recorded.${region(r)}.*`,
    allScans: `${p}.scan.recorded.>`,
    allShipmentsCreated: `${p}.shipment.created.>`,
    allShipmentsHandedOver: `${p}.shipment.handed_over.>`,
    allShipmentPartnersRemoved: `${p}.shipment.partner_removed.>`,
    allRouteEvents: `${p}.route.>`,
    allRoutesPlanned: `${p}.route.planned.>`,
    allRoutesUpdated: `${p}.route.updated.>`,
    allStatusChanged: `${p}.status.changed.>`,
    allEtaChanged: `${p}.eta.changed.>`,
    allDeadLetters: `${p}.dlq.>`,
    streams,
    streamList: Object.freeze(Object.values(streams)),
    buckets,
  });
}
