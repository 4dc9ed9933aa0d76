import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { TransportMode, type Route } from "@logistics/shared/gen/logistics/common/v1/route_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import type { Shipment, ShipmentEvent } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import type { ModeId } from "./messages.js";
import type { HubInfo } from "./page-config.js";

/** A departure or arrival time: the actual one when a scan showed it, else the planned one. */
export interface LegTime {
  readonly ms: number;
  readonly actual: boolean;
  /** Actual minus planned (ms), when both are known. */
  readonly deltaMs: number | undefined;
}

/** Where a leg stands. */
export type LegState = "done" | "current" | "upcoming";

/** One leg as the page shows it. */
export interface LegView {
  readonly from: string;
  readonly to: string;
  readonly mode: ModeId;
  readonly state: LegState;
  readonly departure: LegTime | undefined;
  readonly arrival: LegTime | undefined;
}

function modeId(m: TransportMode): ModeId {
  switch (m) {
    case TransportMode.AIR:
      return "air";
    case TransportMode.SEA:
      return "sea";
    case TransportMode.ROAD:
      return "road";
    case TransportMode.RAIL:
      return "rail";
    default:
      return "other";
  }
}

function legTime(actual: Timestamp | undefined, planned: Timestamp | undefined): LegTime | undefined {
  const p = planned ? timestampMs(planned) : undefined;
  if (actual) {
    const a = timestampMs(actual);
    return { ms: a, actual: true, deltaMs: p === undefined ? undefined : a - p };
  }
  return p === undefined ? undefined : { ms: p, actual: false, deltaMs: undefined };
}

/**
 * The route's legs with the times to show: actual ones for what the parcel travelled (from the
 * legs' actual times, which tracking takes from the scans), planned ones for what is ahead. A leg
 * is done once the parcel arrived at its end or anything later was scanned, current while the
 * parcel left its start but has not arrived.
 */
export function legsOf(route: Route | undefined): LegView[] {
  const legs = route?.legs ?? [];
  const lastTouched = legs.reduce((last, l, i) => (l.actualDeparture || l.actualArrival ? i : last), -1);
  return legs.map((l, i) => {
    const state: LegState = l.actualArrival || i < lastTouched ? "done" : l.actualDeparture ? "current" : "upcoming";
    return {
      from: l.fromHub,
      to: l.toHub,
      mode: modeId(l.mode),
      state,
      departure: legTime(l.actualDeparture, l.plannedDeparture),
      arrival: legTime(l.actualArrival, l.plannedArrival),
    };
  });
}

/** A place on the map. */
export interface MapPlace {
  readonly key: string;
  readonly longitude: number;
  readonly latitude: number;
  /** Text of its label (a city); places with equal labels share one label. */
  readonly label: string;
  readonly role: "origin" | "destination" | "visited" | "planned";
}

/** A line on the map. */
export interface MapLine {
  readonly from: { readonly longitude: number; readonly latitude: number };
  readonly to: { readonly longitude: number; readonly latitude: number };
  readonly state: LegState;
  readonly title: string;
}

/** What the map draws. */
export interface MapModel {
  readonly places: readonly MapPlace[];
  readonly lines: readonly MapLine[];
  /** The parcel's last known position. */
  readonly current: { readonly longitude: number; readonly latitude: number } | undefined;
}

/** Hub codes in the order the scans visited them (repeats in a row collapsed). */
export function scannedHubs(events: readonly ShipmentEvent[]): string[] {
  const out: string[] = [];
  for (const e of events) {
    if (!e.hubCode || e.scanKind === ScanKind.UNSPECIFIED) continue;
    if (out[out.length - 1] !== e.hubCode) out.push(e.hubCode);
  }
  return out;
}

/**
 * The map of a shipment: its route's legs (travelled solid, ahead dashed), the stretches its
 * scans show it travelled off the plan (after a re-route), the hubs with city labels, and its last
 * known position. Hubs the page has no position for are left out.
 */
export function mapModelOf(s: Shipment, events: readonly ShipmentEvent[], hubs: ReadonlyMap<string, HubInfo>): MapModel {
  const legs = legsOf(s.route);
  const visited = scannedHubs(events);
  const places = new Map<string, MapPlace>();
  const lines: MapLine[] = [];
  const addPlace = (code: string, role: MapPlace["role"]) => {
    const hub = hubs.get(code);
    if (!hub) return;
    const prev = places.get(code);
    if (prev && (prev.role === "origin" || prev.role === "destination")) return;
    places.set(code, { key: code, longitude: hub.longitude, latitude: hub.latitude, label: hub.city || hub.name || code, role });
  };
  const firstHub = visited[0] ?? legs[0]?.from;
  const lastHub = legs.length ? legs[legs.length - 1]!.to : undefined;
  const onRoute = new Set(legs.map((l) => `${l.from}>${l.to}`));
  for (let i = 1; i < visited.length; i++) {
    const a = hubs.get(visited[i - 1]!);
    const b = hubs.get(visited[i]!);
    if (a && b && !onRoute.has(`${a.code}>${b.code}`)) {
      lines.push({ from: a, to: b, state: "done", title: `${a.code} → ${b.code}` });
    }
  }
  for (const l of legs) {
    const a = hubs.get(l.from);
    const b = hubs.get(l.to);
    if (a && b) lines.push({ from: a, to: b, state: l.state, title: `${l.from} → ${l.to}` });
  }
  for (const code of visited) addPlace(code, "visited");
  for (const l of legs) {
    addPlace(l.from, visited.includes(l.from) ? "visited" : "planned");
    addPlace(l.to, visited.includes(l.to) ? "visited" : "planned");
  }
  if (firstHub) addPlace(firstHub, "origin");
  if (lastHub) addPlace(lastHub, "destination");
  const hub = s.currentHubCode ? hubs.get(s.currentHubCode) : undefined;
  const current = s.currentLocation
    ? { longitude: s.currentLocation.longitude, latitude: s.currentLocation.latitude }
    : hub
      ? { longitude: hub.longitude, latitude: hub.latitude }
      : undefined;
  return { places: [...places.values()], lines, current };
}
