import { setTimeout as sleep } from "node:timers/promises";
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate, timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { PlaceSchema } from "@logistics/shared/gen/logistics/common/v1/geo_pb.js";
import type { ScanSchema } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { IngestService, ScanOutcome } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { RoutingService } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { openScanStream, type ScanStream } from "@logistics/ingest/client";

/** Waits `ms`, or less when `signal` aborts (then resolves instead of rejecting). */
const pause = (ms: number, signal: AbortSignal): Promise<void> =>
  sleep(ms, undefined, { signal }).catch(() => undefined);

type PlaceInit = MessageInitShape<typeof PlaceSchema>;
type ScanInit = MessageInitShape<typeof ScanSchema>;
type LatLon = { latitude: number; longitude: number };

/** An origin–destination pair the simulator ships along, with hubs to use when routing has no plan. */
export interface SimulatedLane {
  readonly origin: PlaceInit & { location: LatLon };
  readonly destination: PlaceInit & { location: LatLon };
  /** Hubs from origin to destination, used when routing cannot be asked or has no route yet. */
  readonly fallbackHubs: readonly string[];
  readonly serviceLevel: ServiceLevel;
}

/** A handful of intercontinental lanes through hubs of the routing network. */
export const DEFAULT_LANES: readonly SimulatedLane[] = [
  {
    origin: { countryCode: "DE", city: "Frankfurt", postalCode: "60311", location: { latitude: 50.11, longitude: 8.68 } },
    destination: { countryCode: "US", city: "Chicago", postalCode: "60601", location: { latitude: 41.88, longitude: -87.63 } },
    fallbackHubs: ["FRA", "JFK", "ORD"],
    serviceLevel: ServiceLevel.EXPRESS,
  },
  {
    origin: { countryCode: "CN", city: "Shanghai", location: { latitude: 31.23, longitude: 121.47 } },
    destination: { countryCode: "GB", city: "London", postalCode: "EC1A 1BB", location: { latitude: 51.51, longitude: -0.13 } },
    fallbackHubs: ["PVG", "DXB", "LHR"],
    serviceLevel: ServiceLevel.STANDARD,
  },
  {
    origin: { countryCode: "BR", city: "São Paulo", location: { latitude: -23.55, longitude: -46.63 } },
    destination: { countryCode: "JP", city: "Tokyo", location: { latitude: 35.68, longitude: 139.69 } },
    fallbackHubs: ["GRU", "LAX", "NRT"],
    serviceLevel: ServiceLevel.EXPRESS,
  },
  {
    origin: { countryCode: "AU", city: "Sydney", location: { latitude: -33.87, longitude: 151.21 } },
    destination: { countryCode: "ZA", city: "Johannesburg", location: { latitude: -26.2, longitude: 28.05 } },
    fallbackHubs: ["SYD", "SIN", "JNB"],
    serviceLevel: ServiceLevel.STANDARD,
  },
];

/** Something the simulator did, for the runner's log. */
export type SimulatorEvent =
  | { readonly type: "created"; readonly trackingNumber: string; readonly route: "routing" | "fallback"; readonly hubs: readonly string[] }
  | { readonly type: "scan"; readonly trackingNumber: string; readonly code: string; readonly hub: string; readonly outcome: string }
  | { readonly type: "error"; readonly message: string };

/**
 * A bearer token: fixed, or a function giving one valid now, called before every call and every
 * stream (re)opened, so a simulator running for days can renew its tokens (`createRenewingToken`).
 */
export type TokenSource = string | (() => Promise<string>);

/** Options for {@link startCarrierSimulator}. */
export interface CarrierSimulatorOptions {
  /** Ingest's base URL, e.g. "http://127.0.0.1:8081" (CreateShipment and StreamScans go there). */
  readonly ingestUrl: string;
  /** Routing's base URL; without it every shipment follows its lane's fallback hubs. */
  readonly routingUrl?: string;
  /** Token with `scans:write` and the carrier claim. */
  readonly scansToken: TokenSource;
  /** Token with `shipments:write`. */
  readonly shipmentsToken: TokenSource;
  /** Token with `routes:read` (needed with routingUrl). */
  readonly routesToken?: TokenSource;
  /** Carrier code; it uses the generic status codes (PU, AR, DP, CH, CU, OD, DL). Default "acme". */
  readonly carrierCode?: string;
  /** Shipments moving at once; each delivered one is replaced by a new one. Default 3. */
  readonly shipments?: number;
  /**
   * Mean wall-clock pause between two scans of one shipment; each pause is this mean scaled by
   * the planned time between the two scans (within a quarter and four times the mean), so a long
   * flight takes longer than a hub transfer. Default 20 000 ms: a parcel takes minutes to deliver.
   */
  readonly scanIntervalMs?: number;
  /**
   * How far back each shipment's ready time lies. Scans carry the event times of the planned route
   * (arrival at each hub at its planned arrival, departure at its planned departure, ...), so the
   * whole plan must lie in the past when its scans are sent (ingest refuses event times in the
   * future). Default 7 days, longer than any planned route.
   */
  readonly backdateMs?: number;
  /** How long to wait for routing to plan a new shipment's route. Default 10 000 ms. */
  readonly routeWaitMs?: number;
  /** Position of a hub by code (the scans carry it). */
  readonly hubLocation?: (code: string) => LatLon | undefined;
  /** Lanes to pick from, round robin. Default {@link DEFAULT_LANES}. */
  readonly lanes?: readonly SimulatedLane[];
  readonly onEvent?: (e: SimulatorEvent) => void;
}

/** A running simulator. */
export interface CarrierSimulator {
  /** The shipments of the first batch, in creation order. */
  readonly trackingNumbers: readonly string[];
  /** Stops sending scans and closes the stream. Idempotent. */
  close(): Promise<void>;
}

/**
 * A carrier gateway for local development: creates shipments through ingest's CreateShipment,
 * asks routing for each one's planned route (falling back to the lane's fixed hubs), then walks
 * every parcel along it — pickup, arrival and departure at each hub, customs at the first hub in
 * the destination country (sometimes held there first), out for delivery, delivered — streaming
 * the scans over a grpc-js StreamScans call (reopened after a failure). Each shipment is ready
 * `backdateMs` ago and its scans carry the event times of its planned route, so history and plan
 * agree (no arrival before the planned departure); they are sent paced over minutes of wall-clock
 * time, so the tracking page shows the parcel moving. A delivered shipment is replaced by a new one
 * until {@link CarrierSimulator.close}.
 */
export async function startCarrierSimulator(o: CarrierSimulatorOptions): Promise<CarrierSimulator> {
  const carrier = o.carrierCode ?? "acme";
  const lanes = o.lanes ?? DEFAULT_LANES;
  const interval = o.scanIntervalMs ?? 20_000;
  const backdateMs = o.backdateMs ?? 7 * 24 * 3_600_000;
  const emit = o.onEvent ?? (() => {});
  const stop = new AbortController();
  const ingest = createClient(IngestService, createGrpcTransport({ baseUrl: o.ingestUrl }));
  const routing = o.routingUrl ? createClient(RoutingService, createGrpcTransport({ baseUrl: o.routingUrl })) : undefined;
  const address = new URL(o.ingestUrl).host;
  let stream: ScanStream | undefined;
  let laneIndex = 0;
  const tokenOf = async (source: TokenSource) => (typeof source === "string" ? source : source());
  const bearer = async (source: TokenSource) => ({ authorization: `Bearer ${await tokenOf(source)}` });

  async function send(scan: ScanInit): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      // Awaited before the check: an await between the check and the open would let two slots
      // each open a stream.
      const token = await tokenOf(o.scansToken);
      if (!stream || stream.closed) stream = openScanStream({ address, token });
      try {
        const [ack] = await stream.send([scan]);
        return ack ? ScanOutcome[ack.outcome] + (ack.detail ? ` (${ack.detail})` : "") : "NO_ACK";
      } catch (e) {
        if (attempt >= 2 || stop.signal.aborted) throw e;
        await pause(500 * (attempt + 1), stop.signal);
      }
    }
  }

  async function createShipment(): Promise<Created> {
    const lane = lanes[laneIndex++ % lanes.length]!;
    const res = await ingest.createShipment(
      {
        idempotencyKey: `sim-${randomUUID()}`,
        carrierCode: carrier,
        customerId: "demo-shop",
        customerReference: `order-${Math.floor(Math.random() * 1e6)}`,
        origin: lane.origin,
        destination: lane.destination,
        serviceLevel: lane.serviceLevel,
        parcel: { weightGrams: 500 + Math.floor(Math.random() * 5000), lengthMm: 300, widthMm: 200, heightMm: 150 },
        readyTime: timestampFromDate(new Date(Date.now() - backdateMs)),
      },
      { headers: await bearer(o.shipmentsToken), signal: stop.signal },
    );
    return { trackingNumber: res.trackingNumber, lane, readyAt: Date.now() - backdateMs };
  }

  async function plannedRoute(trackingNumber: string, lane: SimulatedLane, readyAt: number): Promise<Plan> {
    const routesToken = o.routesToken;
    if (routing && routesToken) {
      const deadline = Date.now() + (o.routeWaitMs ?? 10_000);
      while (Date.now() < deadline && !stop.signal.aborted) {
        try {
          const res = await routing.getRoute(
            { trackingNumber },
            { headers: await bearer(routesToken), timeoutMs: 2000, signal: stop.signal },
          );
          const legs = res.route?.legs ?? [];
          if (legs.length) {
            return {
              hubs: [legs[0]!.fromHub, ...legs.map((l) => l.toHub)],
              from: "routing",
              legs: legs.map((l) => ({
                departure: l.plannedDeparture ? timestampMs(l.plannedDeparture) : NaN,
                arrival: l.plannedArrival ? timestampMs(l.plannedArrival) : NaN,
              })),
            };
          }
        } catch {
          // Not planned yet (NotFound) or routing not up: ask again shortly.
        }
        await pause(500, stop.signal);
      }
    }
    // No plan from routing: hops of 6 h in the air after 4 h at each hub.
    const hubs = [...lane.fallbackHubs];
    const legs = hubs.slice(1).map((_, i) => ({ departure: readyAt + 4 * HOUR + i * 10 * HOUR, arrival: readyAt + 10 * HOUR + i * 10 * HOUR }));
    return { hubs, from: "fallback", legs };
  }

  function script(trackingNumber: string, lane: SimulatedLane, readyAt: number, plan: Plan): Array<{ scan: ScanInit; at: number }> {
    const { hubs, legs } = plan;
    const steps: Array<{ code: string; text: string; at: number; hub?: string; place?: LatLon }> = [];
    const firstDeparture = legs[0]?.departure ?? readyAt + 4 * HOUR;
    const pickup = readyAt + Math.min(30 * 60_000, (firstDeparture - readyAt) / 3);
    steps.push({ code: "PU", text: "Picked up", at: pickup, place: lane.origin.location });
    hubs.forEach((hub, i) => {
      // At hub i: arrived at its planned arrival (the first hub between pickup and departure),
      // departed at the next leg's planned departure.
      const arrived = i === 0 ? pickup + (firstDeparture - pickup) / 2 : legs[i - 1]!.arrival;
      const departs = i < legs.length ? legs[i]!.departure : arrived + 6 * HOUR;
      steps.push({ code: "AR", text: "Arrived at hub", at: arrived, hub });
      const hubCountry = countryOfHubIndex(i, hubs.length, lane);
      if (i > 0 && hubCountry === lane.destination.countryCode && lane.origin.countryCode !== lane.destination.countryCode) {
        // About one parcel in four is held at customs for a while first, so the page's exception
        // state shows up in a demo.
        if (Math.random() < 0.25) steps.push({ code: "CH", text: "Held at customs: import duties to be confirmed", at: arrived + (departs - arrived) / 4, hub });
        steps.push({ code: "CU", text: "Customs clearance completed", at: arrived + (departs - arrived) / 2, hub });
      }
      if (i < hubs.length - 1) steps.push({ code: "DP", text: "Departed hub", at: departs, hub });
    });
    const lastArrival = legs.at(-1)?.arrival ?? pickup + HOUR;
    steps.push({ code: "OD", text: "Out for delivery", at: lastArrival + 4 * HOUR, place: lane.destination.location });
    steps.push({ code: "DL", text: "Delivered", at: lastArrival + 8 * HOUR, place: lane.destination.location });
    // Never backwards, never in the future (a plan longer than backdateMs): clamp, keeping the order.
    let previous = -Infinity;
    return steps.map((s, i) => {
      const at = Math.min(Date.now() - 1000, Math.max(Number.isFinite(s.at) ? s.at : previous + 60_000, previous + 1000));
      previous = at;
      const location = s.hub ? o.hubLocation?.(s.hub) : s.place;
      return {
        at,
        scan: {
          eventId: `sim-${trackingNumber}-${i}`,
          trackingNumber,
          carrierCode: carrier,
          rawStatus: { code: s.code, text: s.text },
          eventTime: timestampFromDate(new Date(at)),
          hubCode: s.hub ?? "",
          ...(location ? { location } : {}),
        },
      };
    });
  }

  /** Wall-clock pauses before each scan: the mean interval scaled by the planned gaps. */
  function pacing(times: readonly number[]): number[] {
    const span = Math.max(1, (times.at(-1) ?? 0) - (times[0] ?? 0));
    const n = Math.max(1, times.length - 1);
    return times.map((t, i) => {
      if (i === 0) return Math.min(interval, 3000);
      const share = ((t - times[i - 1]!) / span) * n;
      return Math.round(interval * Math.min(4, Math.max(0.25, share)));
    });
  }

  async function runSlot(first: Created, delayMs: number): Promise<void> {
    let current: Created | undefined = first;
    await pause(delayMs, stop.signal);
    while (!stop.signal.aborted) {
      try {
        current ??= await createShipment();
        const { trackingNumber, lane, readyAt } = current;
        const plan = await plannedRoute(trackingNumber, lane, readyAt);
        emit({ type: "created", trackingNumber, route: plan.from, hubs: plan.hubs });
        const steps = script(trackingNumber, lane, readyAt, plan);
        const pauses = pacing(steps.map((s) => s.at));
        for (const [i, { scan }] of steps.entries()) {
          await pause(pauses[i]!, stop.signal);
          if (stop.signal.aborted) return;
          const outcome = await send(scan);
          emit({ type: "scan", trackingNumber, code: scan.rawStatus?.code ?? "", hub: scan.hubCode ?? "", outcome });
        }
      } catch (e) {
        if (stop.signal.aborted) return;
        emit({ type: "error", message: e instanceof Error ? e.message : String(e) });
        await pause(interval, stop.signal);
      }
      current = undefined;
    }
  }

  const count = o.shipments ?? 3;
  const firstBatch: Created[] = [];
  for (let i = 0; i < count; i++) firstBatch.push(await createShipment());
  const slots = firstBatch.map((s, i) => runSlot(s, Math.round((interval * i) / count)));
  let closing: Promise<void> | undefined;
  return {
    trackingNumbers: firstBatch.map((s) => s.trackingNumber),
    close: () =>
      (closing ??= (async () => {
        stop.abort();
        await Promise.allSettled(slots);
        await stream?.close();
      })()),
  };
}

const HOUR = 3_600_000;

interface Created {
  trackingNumber: string;
  lane: SimulatedLane;
  /** The ready time given to CreateShipment (ms). */
  readyAt: number;
}

/** The route a parcel follows: hubs in order and each leg's planned times (ms). */
interface Plan {
  hubs: string[];
  from: "routing" | "fallback";
  legs: Array<{ departure: number; arrival: number }>;
}

/** Rough guess of which country hub i of n is in: the first hub is in the origin country, the last in the destination's. */
function countryOfHubIndex(i: number, n: number, lane: SimulatedLane): string {
  if (i === n - 1) return lane.destination.countryCode ?? "";
  if (i === 0) return lane.origin.countryCode ?? "";
  return "";
}


