/**
 * Realistic shipments and their tracking events, for filling a shipment store to a size
 * (`datagen`). Routes come from routing's own planner over the hub network; each shipment is
 * created, planned, scanned along its route (pickup, arrival and departure at every hub, customs
 * in the destination country, sometimes held first, out for delivery, delivered), sometimes
 * re-planned: 10–15 events. Ready times are spread over the run's days; a share of the shipments
 * are still in flight (their later events have not happened yet) and a share receive events late
 * (out of order: a scan arrives after a later one).
 *
 * For every shipment the events (the mesh's Protobuf messages) are derived exactly as the store's
 * apply path derives them — the store's own `checkEvent` and `applyToDoc`, in arrival order — so the rows (`shipments`,
 * `shipment_events`, `applied_events`) are the rows `applyEvents` would have written for the same
 * events in the same order (the integration test compares them). Deterministic for a seed.
 */
import {
  createHubNetwork,
  createPlanner,
  hubNetworkData,
  MODES_BY_SERVICE_LEVEL,
  type ServiceLevelName,
} from "@logistics/routing";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { EtaChangeReason, TransportMode } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema, RouteUpdatedSchema } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { seededRandom } from "@logistics/shared/testing";
import { applyToDoc, checkEvent, eventTimestamp, type ProjectedEvent, type ShipmentDoc } from "@logistics/tracking/store";

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

/** The sizing the issue works from: shipments per day of traffic. */
export const SHIPMENTS_PER_DAY = 1_000_000;

/** Carrier mix (code, share). */
export const CARRIERS: ReadonlyArray<readonly [string, number]> = [
  ["dhl", 0.28],
  ["ups", 0.22],
  ["fedex", 0.18],
  ["dpd", 0.12],
  ["gls", 0.08],
  ["postnl", 0.07],
  ["acme", 0.05],
];

const LEVELS: ReadonlyArray<readonly [ServiceLevelName, ServiceLevel, number]> = [
  ["ECONOMY", ServiceLevel.ECONOMY, 0.3],
  ["STANDARD", ServiceLevel.STANDARD, 0.5],
  ["EXPRESS", ServiceLevel.EXPRESS, 0.2],
];

const HUB_LOCATIONS: ReadonlyMap<string, Point> = new Map(hubNetworkData.hubs.map((h) => [h.code, { latitude: h.lat, longitude: h.lon }]));

function weighted<T>(r: number, items: ReadonlyArray<readonly [T, number]>): T {
  let acc = 0;
  for (const [v, w] of items) {
    acc += w;
    if (r < acc) return v;
  }
  return items[items.length - 1]![0];
}

interface Point {
  latitude: number;
  longitude: number;
}

/** A planned route, times relative to its ready time. */
interface RouteTemplate {
  level: ServiceLevel;
  origin: { countryCode: string; city: string; hub: string; location: Point };
  destination: { countryCode: string; city: string; hub: string; location: Point };
  legs: Array<{ fromHub: string; toHub: string; mode: TransportMode; dep: number; arr: number; departureId: string; toCountry: string }>;
  arrival: number;
  eta: { estimated: number; earliest: number; latest: number; confidence: number };
}

/**
 * Plans `count` routes between random hub pairs (domestic and international, 1–3 legs kept)
 * with routing's planner; shipments reuse them with their own ready times.
 */
export function routeTemplates(count: number, seed: number): RouteTemplate[] {
  const network = createHubNetwork(hubNetworkData);
  const planner = createPlanner(network);
  const random = seededRandom(seed);
  const hubs = network.hubs;
  const readyAt = Date.UTC(2026, 10, 2, 8); // a Monday: the weekly schedules repeat
  const out: RouteTemplate[] = [];
  for (let tries = 0; out.length < count && tries < count * 20; tries++) {
    const o = hubs[Math.floor(random() * hubs.length)]!;
    // Half domestic-or-continental, half anywhere.
    const pool = random() < 0.5 ? hubs.filter((h) => h.continent === o.continent && h !== o) : hubs.filter((h) => h !== o);
    const d = pool[Math.floor(random() * pool.length)];
    if (!d) continue;
    const [levelName, level] = weighted(random(), LEVELS.map(([n, l, w]) => [[n, l] as const, w] as const));
    let route;
    try {
      route = planner.plan({ origin: o.index, destination: d.index, readyAt, modes: MODES_BY_SERVICE_LEVEL[levelName] });
    } catch {
      continue;
    }
    if (route.legs.length < 1 || route.legs.length > 3) continue;
    const jitter = (h: { lat: number; lon: number }) => ({
      latitude: h.lat + (random() - 0.5) * 0.4,
      longitude: h.lon + (random() - 0.5) * 0.4,
    });
    out.push({
      level,
      origin: { countryCode: o.country, city: o.city, hub: o.code, location: jitter(o) },
      destination: { countryCode: d.country, city: d.city, hub: d.code, location: jitter(d) },
      legs: route.legs.map((l) => ({
        fromHub: l.from.code,
        toHub: l.to.code,
        mode: TransportMode[l.lane.mode as keyof typeof TransportMode] ?? TransportMode.UNSPECIFIED,
        dep: l.departure - readyAt,
        arr: l.arrival - readyAt,
        departureId: l.departureId,
        toCountry: l.to.country,
      })),
      arrival: route.arrival - readyAt,
      eta: {
        estimated: route.eta.estimated - readyAt,
        earliest: route.eta.earliest - readyAt,
        latest: route.eta.latest - readyAt,
        confidence: route.eta.confidence,
      },
    });
  }
  if (out.length === 0) throw new Error("the planner produced no route between random hubs");
  return out;
}

/** Options of {@link ShipmentGenerator}. */
export interface GeneratorOptions {
  /** Tracking-number prefix, `[A-Z0-9]{2,8}`: keeps runs apart. */
  prefix: string;
  /** Days the ready times are spread over (at least one day, so event times span days). */
  days: number;
  /** Shipments the whole run will generate (sets the customer count: one per 100 shipments, at least 50). */
  total: number;
  seed: number;
  /** The run's "now" (epoch ms): ready times lie before it. */
  nowMs: number;
  /** Share of shipments still in flight (their last events are in the future). Default 0.1. */
  inFlightShare?: number;
  /** Share of shipments with a late (out-of-order) scan. Default 0.05. */
  lateShare?: number;
  /** Share of shipments re-planned once in transit. Default 0.1. */
  replanShare?: number;
  /** Route templates planned up front. Default 400. */
  templates?: number;
}

/** One generated shipment: its events in arrival order and what the store would hold. */
export interface GeneratedShipment {
  trackingNumber: string;
  customerId: string;
  /** Events the store accepts, in the order they arrive at it. */
  events: ProjectedEvent[];
  /** Per event (same order): its stored JSON, as the store writes it. */
  payloads: string[];
  /** Per event (same order): whether the store marks it late. */
  late: boolean[];
  /** The document after the last event. */
  doc: ShipmentDoc;
}

/** Generates shipments one at a time (constant memory); the n-th shipment is the same for a seed. */
export class ShipmentGenerator {
  readonly customers: number;
  private readonly templates: RouteTemplate[];
  private readonly random: () => number;
  private next = 0;
  private readonly spanMs: number;

  constructor(private readonly o: GeneratorOptions) {
    this.templates = routeTemplates(o.templates ?? 400, o.seed);
    this.random = seededRandom(o.seed ^ 0x9e3779b9);
    this.customers = Math.max(50, Math.round(o.total / 100));
    this.spanMs = Math.max(1, o.days) * DAY;
  }

  /** Customer ids by rank: `customerId(0)` sends the most shipments (Zipf-like, s ≈ 1). */
  customerId(rank: number): string {
    return `cust-${String(rank).padStart(6, "0")}`;
  }

  /** Tracking number of the n-th shipment. */
  trackingNumber(n: number): string {
    return `${this.o.prefix}${n.toString(36).toUpperCase().padStart(9, "0")}`;
  }

  generate(): GeneratedShipment {
    const random = this.random;
    const n = this.next++;
    const tn = this.trackingNumber(n);
    const t = this.templates[Math.floor(random() * this.templates.length)]!;
    const carrier = weighted(random(), CARRIERS);
    // Zipf-like customer rank: a few large shippers, a long tail.
    const rank = Math.min(this.customers - 1, Math.floor(Math.exp(random() * Math.log(this.customers + 1))) - 1);
    const customerId = this.customerId(rank);
    const inFlight = random() < (this.o.inFlightShare ?? 0.1);
    // Delivered shipments are ready within the span ending when their route would be done;
    // in-flight ones were ready recently enough that their route is not.
    const readyAt = inFlight
      ? this.o.nowMs - Math.floor(random() * t.arrival * 0.8) - HOUR
      : this.o.nowMs - t.arrival - 6 * HOUR - Math.floor(random() * this.spanMs);
    const at = (rel: number) => timestampFromMs(readyAt + rel);
    const id = (k: number) => `${tn}.${k}`;
    const raw: ProjectedEvent[] = [];
    raw.push({
      type: "shipment.created",
      message: create(ShipmentCreatedSchema, {
        eventId: id(0),
        trackingNumber: tn,
        createdAt: at(-3 * HOUR),
        shipmentId: `shp-${tn.toLowerCase()}`,
        carrierCode: carrier,
        customerId,
        customerReference: `PO-${Math.floor(random() * 1e8)}`,
        origin: { countryCode: t.origin.countryCode, city: t.origin.city, location: t.origin.location },
        destination: { countryCode: t.destination.countryCode, city: t.destination.city, location: t.destination.location },
        serviceLevel: t.level,
        weightGrams: 200 + Math.floor(random() * 20_000),
      }),
    });
    const legs = t.legs.map((l) => ({
      fromHub: l.fromHub,
      toHub: l.toHub,
      mode: l.mode,
      plannedDeparture: at(l.dep),
      plannedArrival: at(l.arr),
      departureId: l.departureId,
    }));
    raw.push({
      type: "route.planned",
      message: create(RoutePlannedSchema, {
        eventId: id(1),
        trackingNumber: tn,
        plannedAt: at(-3 * HOUR + MIN),
        route: {
          routeId: `rt-${tn.toLowerCase()}`,
          trackingNumber: tn,
          legs,
          eta: { estimatedArrival: at(t.eta.estimated), earliest: at(t.eta.earliest), latest: at(t.eta.latest), confidence: t.eta.confidence },
          revision: 1,
          plannedAt: at(-3 * HOUR + MIN),
        },
      }),
    });
    let k = 2;
    const scan = (kind: ScanKind, code: string, text: string, rel: number, place: { hubCode?: string; location?: Point }) => {
      const eventId = id(k++);
      raw.push({
        type: "scan.recorded",
        message: create(ScanRecordedSchema, {
          eventId,
          kind,
          scan: {
            eventId,
            trackingNumber: tn,
            carrierCode: carrier,
            eventTime: at(rel),
            rawStatus: { code, text },
            hubCode: place.hubCode ?? "",
            location: place.location,
          },
        }),
      });
    };
    const hubLoc = HUB_LOCATIONS;
    scan(ScanKind.PICKUP, "PU", "Picked up", -2 * HOUR, { location: t.origin.location });
    scan(ScanKind.HUB_ARRIVAL, "AR", "Arrived at hub", 0, { hubCode: t.legs[0]!.fromHub, location: hubLoc.get(t.legs[0]!.fromHub)! });
    const international = t.origin.countryCode !== t.destination.countryCode;
    const held = random() < 0.25;
    const replan = random() < (this.o.replanShare ?? 0.1);
    let cleared = false;
    t.legs.forEach((l, i) => {
      scan(ScanKind.HUB_DEPARTURE, "DP", "Departed hub", l.dep, { hubCode: l.fromHub, location: hubLoc.get(l.fromHub)! });
      if (replan && i === 0) {
        raw.push({
          type: "route.updated",
          message: create(RouteUpdatedSchema, {
            eventId: id(k++),
            trackingNumber: tn,
            updatedAt: at(l.dep + 5 * MIN),
            reason: EtaChangeReason.MISSED_CUTOFF,
            route: {
              routeId: `rt-${tn.toLowerCase()}`,
              trackingNumber: tn,
              legs,
              eta: { estimatedArrival: at(t.eta.estimated + 2 * HOUR), earliest: at(t.eta.earliest + HOUR), latest: at(t.eta.latest + 3 * HOUR) },
              revision: 2,
              plannedAt: at(l.dep + 5 * MIN),
            },
          }),
        });
      }
      scan(ScanKind.HUB_ARRIVAL, "AR", "Arrived at hub", l.arr, { hubCode: l.toHub, location: hubLoc.get(l.toHub)! });
      if (international && !cleared && l.toCountry === t.destination.countryCode) {
        cleared = true;
        if (held) scan(ScanKind.CUSTOMS, "CH", "Held at customs", l.arr + 20 * MIN, { hubCode: l.toHub });
        scan(ScanKind.CUSTOMS, "CU", "Customs clearance completed", l.arr + 40 * MIN, { hubCode: l.toHub });
      }
    });
    scan(ScanKind.OUT_FOR_DELIVERY, "OD", "Out for delivery", t.arrival + 2 * HOUR, { location: t.destination.location });
    scan(ScanKind.DELIVERED, "DL", "Delivered", t.arrival + 4 * HOUR, { location: t.destination.location });

    // What has happened by now, in arrival order.
    let arrived = raw.filter((e) => timestampMs(eventTimestamp(e)!) <= this.o.nowMs);
    if (arrived.length > 4 && random() < (this.o.lateShare ?? 0.05)) {
      // A scan arrives after the next one (a carrier batch uploaded late): out of order.
      const i = 3 + Math.floor(random() * (arrived.length - 4));
      arrived = [...arrived.slice(0, i), arrived[i + 1]!, arrived[i]!, ...arrived.slice(i + 2)];
    }
    const payloads: string[] = [];
    const late: boolean[] = [];
    let doc: ShipmentDoc | undefined;
    for (const e of arrived) {
      payloads.push(checkEvent(e));
      const d = applyToDoc(doc, e);
      if (d.duplicate) throw new Error(`generated event ${e.message.eventId} derived as a duplicate`);
      late.push(d.late);
      doc = d.doc;
    }
    return { trackingNumber: tn, customerId, events: arrived, payloads, late, doc: doc! };
  }
}
