import { create } from "@bufbuild/protobuf";
import { timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { EtaChangeReason, RouteSchema, TransportMode } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind, ScanSchema } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel, ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema, RouteUpdatedSchema } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import type { ProjectedEvent } from "../../src/store/ports.js";
import { handedOver, partnerRemoved } from "./event-builders.js";

/**
 * Generated data for the tests that pin the hand-written readers and writers of the document's
 * proto JSON and of the Shipment (doc-json.ts, shipment-view.ts, shipment-binary.ts) to
 * protobuf-es: documents the way the store derives them from shipments' events (creation, scans,
 * route plans with legs, handovers), and the odd values a document could hold. Everything is
 * drawn from a seeded `random`.
 */

export type Random = () => number;

export const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
const int = (random: Random, lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
const pad = (n: number, width: number) => String(n).padStart(width, "0");

/** Strings of every kind a field can hold: empty, ASCII, accented, emoji, a lone surrogate. */
export function text(random: Random): string {
  return pick(random, ["", "FRA", "Frankfurt am Main", "Zürich", "東京", "📦 parcel", "a\ud800b", "x".repeat(int(random, 30, 200)), `h${int(random, 0, 99999)}`]);
}

/** A time as proto JSON writes it, in epoch ms plus extra nanoseconds (0 to 999 999). */
export function isoOf(ms: number, extraNanos = 0): string {
  const base = new Date(ms).toISOString();
  const nanos = (ms % 1000) * 1e6 + extraNanos;
  if (nanos === 0) return base.replace(".000Z", "Z");
  const digits = String(nanos).padStart(9, "0");
  return base.slice(0, 19) + "." + (digits.endsWith("000000") ? digits.slice(0, 3) : digits.endsWith("000") ? digits.slice(0, 6) : digits) + "Z";
}

/**
 * An ISO-8601 string: mostly the forms the store writes (`Z`, 0/3/6/9 fraction digits, 1970 to
 * 2100), also any fraction length, far years, offsets, lower case, invalid dates and times
 * (30 Feb, 24:00:00, a leap second), other text.
 */
export function iso(random: Random): string {
  const r = random();
  if (r < 0.6) return isoOf(int(random, 0, 4102444800000), pick(random, [0, 0, 0, 123000, 456789]));
  const year = r < 0.7 ? int(random, 0, 9999) : int(random, 1960, 2100);
  const date = `${pad(year, 4)}-${pad(int(random, 0, 13), 2)}-${pad(int(random, 0, 32), 2)}`;
  const time = `${pad(int(random, 0, 24), 2)}:${pad(int(random, 0, 60), 2)}:${pad(int(random, 0, 60), 2)}`;
  const fraction = random() < 0.5 ? "" : "." + String(int(random, 0, 999999999)).padStart(9, "0").slice(0, int(random, 0, 10));
  const zone = pick(random, ["Z", "Z", "Z", "+01:00", "-05:30", "+00:00", "z", "", "+0100"]);
  const s = `${date}${random() < 0.95 ? "T" : pick(random, ["t", " "])}${time}${fraction}${zone}`;
  return random() < 0.05 ? s.slice(0, int(random, 0, s.length)) : s;
}

/**
 * How often a generated value is odd: a value of another type, a null, a proto field name, an
 * unknown key, a lone surrogate, a time not in the store's form. 0 gives the store's forms only.
 */
export type Oddness = number;

/** A value for a string field. */
function str(random: Random, odd: Oddness): unknown {
  if (random() >= odd) {
    const s = text(random);
    return s.includes("\ud800") ? "Zürich" : s;
  }
  return pick(random, [null, 5, true, {}, undefined, "a\ud800b"]);
}

/** A value for a double field: a number (-0 too), or what else proto JSON accepts or refuses. */
function double(random: Random, odd: Oddness): unknown {
  return random() >= odd ? pick(random, [0, -0, 0.5, 1, 52.52, -13.405, 1e-7, int(random, -180, 180) + random()]) : pick(random, ["NaN", "Infinity", "0.25", " 1", "", null, true]);
}

/** A value for a Timestamp field. */
function time(random: Random, odd: Oddness): unknown {
  return random() >= odd ? isoOf(int(random, 0, 4102444800000), pick(random, [0, 0, 0, 123000, 456789])) : random() < 0.9 ? iso(random) : pick(random, [null, 0, {}]);
}

type Maker = (random: Random, odd: Oddness) => unknown;

/** An object of some of `fields` (value makers by JSON name), when odd with a proto name, a null or an unknown key. */
function someOf(random: Random, odd: Oddness, fields: Record<string, Maker>, protoNames: Record<string, string> = {}): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [name, make] of Object.entries(fields)) if (random() < 0.7) o[name] = make(random, odd);
  if (random() >= odd) return o;
  const kind = random();
  if (kind < 0.3) o.unknownKey = 1;
  else if (kind < 0.6 && Object.keys(protoNames).length > 0) {
    const [json, proto] = pick(random, Object.entries(protoNames));
    o[proto] = fields[json]?.(random, 0);
    if (random() < 0.5) o[json] = fields[json]?.(random, 0);
  } else o[pick(random, Object.keys(fields))] = null;
  return o;
}

export function geoPointJson(random: Random, odd: Oddness = 0.1): unknown {
  return random() >= odd / 4 ? someOf(random, odd, { latitude: double, longitude: double }) : pick(random, [null, [], "x"]);
}

export function placeJson(random: Random, odd: Oddness = 0.1): unknown {
  return someOf(
    random,
    odd,
    { countryCode: str, postalCode: str, city: str, location: geoPointJson, hubCode: str },
    { countryCode: "country_code", postalCode: "postal_code", hubCode: "hub_code" },
  );
}

export function carrierStatusJson(random: Random, odd: Oddness = 0.1): unknown {
  return someOf(random, odd, { code: str, text: str });
}

export function etaJson(random: Random, odd: Oddness = 0.1): unknown {
  return someOf(random, odd, { estimatedArrival: time, earliest: time, latest: time, confidence: double }, { estimatedArrival: "estimated_arrival" });
}

function mode(random: Random, odd: Oddness): unknown {
  return random() >= odd
    ? pick(random, ["TRANSPORT_MODE_ROAD", "TRANSPORT_MODE_AIR", "TRANSPORT_MODE_UNSPECIFIED", 2, 7])
    : pick(random, [-1, 2 ** 31, 1.5, "AIR", null, "3"]);
}

export function legJson(random: Random, odd: Oddness = 0.1): unknown {
  if (random() < odd / 4) return pick(random, [null, 3]);
  return someOf(
    random,
    odd,
    { fromHub: str, toHub: str, mode, plannedDeparture: time, plannedArrival: time, departureId: str, actualDeparture: time, actualArrival: time },
    { fromHub: "from_hub", departureId: "departure_id" },
  );
}

/** A route plan as the document keeps it (no ETA, usually), with its legs. */
export function planJson(random: Random, odd: Oddness = 0.1): Record<string, unknown> {
  const revision: Maker = (r, o) => (r() >= o ? pick(r, [1, 2, 0, 17, 2 ** 32 - 1]) : pick(r, [-1, 1.5, "3", 2 ** 32]));
  const plan = someOf(
    random,
    odd,
    { routeId: str, revision, plannedAt: time, ...(random() < 0.1 ? { eta: etaJson, trackingNumber: str } : {}) },
    { routeId: "route_id", plannedAt: "planned_at" },
  );
  plan.legs = Array.from({ length: int(random, 0, 5) }, () => legJson(random, odd));
  return plan;
}

/** The actual times of `n` legs, each set or not ("" too, which sets nothing). */
export function actualsJson(random: Random, n: number, odd: Oddness = 0.1): Array<{ departure?: string; arrival?: string }> {
  return Array.from({ length: n }, () => {
    const a: { departure?: string; arrival?: string } = {};
    if (random() < 0.5) a.departure = random() >= odd ? (time(random, 0) as string) : pick(random, ["", iso(random)]);
    if (random() < 0.5) a.arrival = random() >= odd ? (time(random, 0) as string) : pick(random, ["", iso(random)]);
    return a;
  });
}

const HOUR = 3_600_000;
const HUBS = ["FRA", "CDG", "AMS", "MAD", "LHR", "MUC", "BRU", "MXP", "WAW", "VIE"];
const ts = (ms: number, nanos = 0): Timestamp => ({ ...timestampFromMs(ms), nanos: (ms % 1000) * 1e6 + nanos });

/**
 * A shipment's events as the mesh sends them: a creation, a route plan (legs through some hubs,
 * an ETA with a confidence), scans along the legs (arrivals and departures at the hubs, times
 * with and without sub-millisecond parts), sometimes a handover (and a removal of the partner), a
 * re-plan and a delivery, in an order close to event time with now and then a late one.
 */
export function shipmentEvents(random: Random, n: number): ProjectedEvent[] {
  const tn = `TN${String(10_000_000 + n)}`;
  const t0 = Date.UTC(2026, 2, 1) + int(random, 0, 365) * 86_400_000 + int(random, 0, 86_399_999);
  const hubs = Array.from({ length: int(random, 2, 6) }, () => pick(random, HUBS));
  const nanos = () => pick(random, [0, 0, 0, 1, 250_000, 999_999]);
  const events: ProjectedEvent[] = [];
  if (random() < 0.9) {
    events.push({
      type: "shipment.created",
      message: create(ShipmentCreatedSchema, {
        eventId: `${tn}-c`,
        trackingNumber: tn,
        createdAt: ts(t0, nanos()),
        shipmentId: random() < 0.9 ? `s-${tn}` : "",
        carrierCode: "acme",
        customerId: `cust-${int(random, 1, 9)}`,
        customerReference: random() < 0.5 ? text(random) : "",
        serviceLevel: pick(random, [ServiceLevel.STANDARD, ServiceLevel.EXPRESS, ServiceLevel.UNSPECIFIED]),
        ...(random() < 0.9 ? { origin: { countryCode: "DE", city: text(random), postalCode: "10115", location: { latitude: 52.52, longitude: 13.405 }, hubCode: hubs[0] } } : {}),
        ...(random() < 0.8 ? { destination: { countryCode: "FR", city: "Paris", location: { latitude: 48.86, longitude: -0 } } } : {}),
        partnerCarrierCodes: random() < 0.2 ? ["late-mile"] : [],
      }),
    });
  }
  const routeEvent = (id: string, at: number, revision: number): ProjectedEvent => {
    const legs = hubs.slice(1).map((toHub, i) => ({
      fromHub: hubs[i] as string,
      toHub,
      mode: pick(random, [TransportMode.ROAD, TransportMode.AIR, TransportMode.UNSPECIFIED]),
      plannedDeparture: ts(at + (2 * i + 1) * HOUR),
      plannedArrival: ts(at + (2 * i + 2) * HOUR, nanos()),
      departureId: random() < 0.8 ? `dep_${hubs[i]}_${toHub}` : "",
      ...(revision > 1 && i === 0 && random() < 0.5 ? { actualDeparture: ts(at + HOUR + 60_000) } : {}),
    }));
    const etaMs = at + (2 * legs.length + 3) * HOUR;
    const route = create(RouteSchema, {
      routeId: `r_${tn}`,
      trackingNumber: tn,
      legs,
      revision,
      plannedAt: ts(at),
      eta: {
        estimatedArrival: ts(etaMs, nanos()),
        ...(random() < 0.7 ? { earliest: ts(etaMs - HOUR), latest: ts(etaMs + 2 * HOUR) } : {}),
        confidence: pick(random, [0, 0.83, 1]),
      },
    });
    return revision === 1
      ? { type: "route.planned", message: create(RoutePlannedSchema, { eventId: id, trackingNumber: tn, plannedAt: ts(at), route }) }
      : {
          type: "route.updated",
          message: create(RouteUpdatedSchema, { eventId: id, trackingNumber: tn, updatedAt: ts(at), reason: EtaChangeReason.LATE_ARRIVAL, route }),
        };
  };
  if (random() < 0.9) events.push(routeEvent(`${tn}-r1`, t0 + 1000, 1));
  const scan = (id: string, at: number, kind: ScanKind, hubCode?: string): ProjectedEvent => ({
    type: "scan.recorded",
    message: create(ScanRecordedSchema, {
      eventId: id,
      kind,
      status: random() < 0.1 ? ShipmentStatus.EXCEPTION : ShipmentStatus.UNSPECIFIED,
      scan: create(ScanSchema, {
        eventId: id,
        trackingNumber: tn,
        carrierCode: "acme",
        eventTime: ts(at, nanos()),
        ...(random() < 0.95 ? { rawStatus: { code: ScanKind[kind], text: random() < 0.8 ? text(random) : "" } } : {}),
        ...(hubCode ? { hubCode, location: { latitude: 50 + random(), longitude: 8 + random() } } : {}),
      }),
    }),
  });
  let at = t0 + HOUR;
  events.push(scan(`${tn}-s0`, at, ScanKind.PICKUP));
  hubs.forEach((hub, i) => {
    if (i > 0) events.push(scan(`${tn}-a${i}`, (at += HOUR), ScanKind.HUB_ARRIVAL, hub));
    if (i < hubs.length - 1 && random() < 0.9) events.push(scan(`${tn}-d${i}`, (at += HOUR), ScanKind.HUB_DEPARTURE, hub));
    if (i === 1 && random() < 0.3) events.push(routeEvent(`${tn}-r2`, at + 5000, 2));
  });
  if (random() < 0.15) {
    events.push(handedOver(tn, `${tn}-h`, (at += 60_000), "late-mile", hubs[hubs.length - 1]));
    // Now and then the partner is removed again, and sometimes handed the shipment once more.
    if (random() < 0.4) {
      events.push(partnerRemoved(tn, `${tn}-pr`, (at += 60_000), "late-mile"));
      if (random() < 0.5) events.push(handedOver(tn, `${tn}-h1`, (at += 60_000), "late-mile", "", 1));
    }
  }
  if (random() < 0.6) {
    events.push(scan(`${tn}-o`, (at += HOUR), ScanKind.OUT_FOR_DELIVERY));
    events.push(scan(`${tn}-x`, (at += HOUR), random() < 0.8 ? ScanKind.DELIVERED : ScanKind.DELIVERY_ATTEMPT));
  }
  if (random() < 0.2 && events.length > 3) {
    // One event arrives late.
    const [late] = events.splice(int(random, 0, events.length - 2), 1);
    events.push(late as ProjectedEvent);
  }
  return events;
}
