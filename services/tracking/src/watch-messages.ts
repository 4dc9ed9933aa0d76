import { create } from "@bufbuild/protobuf";
import {
  WatchShipmentResponseSchema,
  WatchUpdateKind,
  type Shipment,
  type WatchShipmentResponse,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import type { VersionStep } from "./shipment-history.js";
import { isPublicEvent, publicShipment, publicShipmentEvent, shipmentEventMessage, shipmentMessage } from "./shipment-view.js";
import type { ShipmentDoc } from "./store/ports.js";

/**
 * WatchShipment's SNAPSHOT and CHANGE messages, built once per document (or step) and view, and
 * shared by every stream handed the same object: a shipment's watchers get the same documents and
 * steps from its feed (watch-feed.ts), so a version is rendered once per replica, not once per
 * watcher. A message is never changed once built, so one object may be sent on many streams.
 */
export interface WatchMessages {
  /** The SNAPSHOT of `doc` in the full or the public view. */
  snapshot(doc: ShipmentDoc, full: boolean): WatchShipmentResponse;
  /** The CHANGE of `step` (its document and, when the view shows it, its cause). */
  change(step: VersionStep, full: boolean): WatchShipmentResponse;
}

/** One object's messages in the two views, each built on first use. */
interface Views<T> {
  full?: T;
  public?: T;
}

function memo<K extends object, T>(build: (key: K, full: boolean) => T): (key: K, full: boolean) => T {
  const built = new WeakMap<K, Views<T>>();
  return (key, full) => {
    let views = built.get(key);
    if (!views) built.set(key, (views = {}));
    return full ? (views.full ??= build(key, true)) : (views.public ??= build(key, false));
  };
}

/**
 * The full Shipment message of a document, built once per document object (a WeakMap memo): the
 * projector's cache refresh and the replica's watchers, handed the same document in process
 * (live-updates.ts), share one message. A message is never changed once built.
 */
export type ShipmentMessages = (doc: ShipmentDoc) => Shipment;

/** Creates a {@link ShipmentMessages} memo. */
export function createShipmentMessages(): ShipmentMessages {
  const built = new WeakMap<ShipmentDoc, Shipment>();
  return (doc) => {
    let m = built.get(doc);
    if (!m) built.set(doc, (m = shipmentMessage(doc)));
    return m;
  };
}

/**
 * Creates the message memo of a replica's WatchShipment handlers (entries live as long as their
 * documents and steps); `full` renders the full Shipment of a document (default: a memo of its own).
 */
export function createWatchMessages(full: ShipmentMessages = createShipmentMessages()): WatchMessages {
  // The public view is made from the full one.
  const shipment: (doc: ShipmentDoc, full: boolean) => Shipment = memo((doc: ShipmentDoc, isFull: boolean) =>
    isFull ? full(doc) : publicShipment(shipment(doc, true)),
  );
  return {
    snapshot: memo((doc, full) =>
      create(WatchShipmentResponseSchema, { sequence: BigInt(doc.version), kind: WatchUpdateKind.SNAPSHOT, shipment: shipment(doc, full) }),
    ),
    change: memo((step, full) => {
      const cause = shipmentEventMessage(step.cause);
      return create(WatchShipmentResponseSchema, {
        sequence: BigInt(step.version),
        kind: WatchUpdateKind.CHANGE,
        shipment: shipment(step.doc, full),
        ...(full ? { cause } : isPublicEvent(cause) ? { cause: publicShipmentEvent(cause) } : {}),
      });
    }),
  };
}
