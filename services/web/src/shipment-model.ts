import { timestampMs } from "@bufbuild/protobuf/wkt";
import {
  WatchUpdateKind,
  type Shipment,
  type ShipmentEvent,
  type WatchShipmentResponse,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";

/** What the page shows for one shipment. */
export interface ShipmentModel {
  readonly shipment: Shipment | undefined;
  /** The customer-facing history in event-time order, oldest first, without duplicates. */
  readonly events: readonly ShipmentEvent[];
}

/** The mutable store behind the page: merges the history listing and the live updates. */
export interface ShipmentModelStore {
  /** Adds a freshly listed page of history (events already known are kept once). */
  setHistory(events: readonly ShipmentEvent[]): void;
  /** Applies one WatchShipment update (snapshot or change). */
  applyUpdate(update: WatchShipmentResponse): void;
  get(): ShipmentModel;
}

/**
 * Creates an empty model. Public events carry no id, so the history dedupes on what the event
 * says (kind, event time, status, scan kind, hub, carrier text, partner): a change that arrives
 * both in the history listing and on the live stream appears once.
 */
export function createShipmentModel(): ShipmentModelStore {
  let shipment: Shipment | undefined;
  const events = new Map<string, ShipmentEvent>();
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
      return { shipment, events: [...events.values()].sort((a, b) => eventTimeMs(a) - eventTimeMs(b)) };
    },
  };
}

/** Event time in epoch milliseconds (0 when unset). */
export function eventTimeMs(e: ShipmentEvent): number {
  return e.eventTime ? timestampMs(e.eventTime) : 0;
}

function eventKey(e: ShipmentEvent): string {
  const t = e.eventTime ? `${e.eventTime.seconds}.${e.eventTime.nanos}` : "-";
  return [e.kind, t, e.status, e.scanKind, e.hubCode, e.carrierStatus?.text ?? "", e.partnerCarrierCode].join("|");
}
