import { timestampMs } from "@bufbuild/protobuf/wkt";
import {
  ShipmentEventKind,
  WatchUpdateKind,
  type Shipment,
  type ShipmentEvent,
  type WatchShipmentResponse,
} from "../../shared/src/gen/logistics/tracking/v1/tracking_pb.js";

/** One line of the ETA history. */
export interface EtaHistoryEntry {
  /** When the ETA was set or revised (event time of the route event). */
  readonly at: number;
  /** What happened, e.g. "ETA moved to 14 Mar: missed cut-off". */
  readonly text: string;
}

/** What the page shows for one shipment. */
export interface ShipmentModel {
  readonly shipment: Shipment | undefined;
  /** History in event-time order, oldest first, without duplicates. */
  readonly events: readonly ShipmentEvent[];
  /** Route planned / re-planned events, oldest first. */
  readonly etaHistory: readonly EtaHistoryEntry[];
}

/** The mutable store behind the page: merges the history page and the live updates. */
export interface ShipmentModelStore {
  /** Replaces the history with a freshly listed one (keeps live events not yet listed). */
  setHistory(events: readonly ShipmentEvent[]): void;
  /** Applies one WatchShipment update (snapshot or change). */
  applyUpdate(update: WatchShipmentResponse): void;
  get(): ShipmentModel;
}

/**
 * Creates an empty model. Public events carry no id, so the timeline dedupes on what the event
 * says (kind, event time, status, hub, raw status, description): a change that arrives both in
 * the history listing and on the live stream appears once.
 */
export function createShipmentModel(): ShipmentModelStore {
  let shipment: Shipment | undefined;
  const events = new Map<string, ShipmentEvent>();
  const sorted = () =>
    [...events.values()].sort((a, b) => eventTimeMs(a) - eventTimeMs(b));
  return {
    setHistory(list) {
      for (const e of list) events.set(eventKey(e), e);
    },
    applyUpdate(update) {
      if (update.kind === WatchUpdateKind.SNAPSHOT || update.kind === WatchUpdateKind.CHANGE) {
        if (update.shipment) shipment = update.shipment;
      }
      if (update.cause) events.set(eventKey(update.cause), update.cause);
    },
    get() {
      const list = sorted();
      const etaHistory = list
        .filter((e) => e.kind === ShipmentEventKind.ROUTE_PLANNED || e.kind === ShipmentEventKind.ROUTE_UPDATED)
        .map((e) => ({
          at: eventTimeMs(e),
          text: e.description || (e.kind === ShipmentEventKind.ROUTE_PLANNED ? "Route planned" : "Route updated"),
        }));
      return { shipment, events: list, etaHistory };
    },
  };
}

/** Event time in epoch milliseconds (0 when unset). */
export function eventTimeMs(e: ShipmentEvent): number {
  return e.eventTime ? timestampMs(e.eventTime) : 0;
}

function eventKey(e: ShipmentEvent): string {
  const t = e.eventTime ? `${e.eventTime.seconds}.${e.eventTime.nanos}` : "-";
  return [e.kind, t, e.status, e.hubCode, e.carrierStatus?.code ?? "", e.description].join("|");
}
