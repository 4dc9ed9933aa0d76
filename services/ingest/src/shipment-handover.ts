import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Principal } from "@logistics/shared/auth";
import { ShipmentHandedOverSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import {
  HandOverShipmentResponseSchema,
  type HandOverShipmentRequest,
  type HandOverShipmentResponse,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import type { EventPublisher } from "@logistics/shared/nats";
import { handoverEventId } from "./event-ids.js";
import { handOverRight, partnerTerm } from "./scan-ownership.js";
import { DirectoryUnavailableError, HandOverRefusedError, type ShipmentDirectory } from "./shipment-directory.js";

/** Dependencies of {@link createShipmentHandover}. */
export interface ShipmentHandoverOptions {
  directory: Pick<ShipmentDirectory, "addPartner">;
  publisher: Pick<EventPublisher, "publish">;
  /** Subject of the handover event for a region (`subjects.shipmentHandedOver`). */
  handedOverSubject(region: string): string;
  region: string;
  /** How long to wait for the event's PubAck. Default 5 000 ms. */
  publishDeadlineMs?: number;
  now?: () => number;
}

/** HandOverShipment's logic, for an authenticated caller whose scope the interceptor checked. */
export type ShipmentHandover = (req: HandOverShipmentRequest, caller: Principal) => Promise<HandOverShipmentResponse>;

/**
 * HandOverShipment: the directory records the partner first (compare-and-set, so concurrent
 * handovers never lose one), then the ShipmentHandedOver event is published, then the call is
 * answered; scans of the partner are accepted from the answer on. A repeat (the partner already
 * carries the shipment) publishes the same event again (same id, {@link handoverEventId} of the
 * partner's current term: JetStream drops it within its window), so a retry after a failed
 * publish completes the handover. A partner removed before begins a new term: a new event.
 *
 * Only the shipment's own carrier and internal callers may hand it over ({@link handOverRight},
 * judged on the entry the compare-and-set writes over): a partner's credentials get
 * PermissionDenied, even for a handover that would change nothing, and so do those of a carrier
 * that does not carry the shipment; an unknown tracking number is NotFound.
 */
export function createShipmentHandover(opts: ShipmentHandoverOptions): ShipmentHandover {
  const now = opts.now ?? Date.now;
  return async (req, caller) => {
    const callerCarrier = caller.carrier;
    let result;
    try {
      result = await opts.directory.addPartner(req.trackingNumber, req.partnerCarrierCode, (parties) => {
        const right = handOverRight(callerCarrier, parties);
        if (right !== "allowed") throw new HandOverRefusedError(right);
      });
    } catch (err) {
      if (err instanceof HandOverRefusedError) throw refusal(err, req.trackingNumber, callerCarrier);
      throw directoryFailure(err);
    }
    if (!result) throw unknownShipment(req.trackingNumber);
    const { parties, changed } = result;
    if (parties.carrier !== req.partnerCarrierCode) {
      const term = partnerTerm(parties, req.partnerCarrierCode);
      const eventId = handoverEventId(req.trackingNumber, req.partnerCarrierCode, term);
      const event = create(ShipmentHandedOverSchema, {
        eventId,
        trackingNumber: req.trackingNumber,
        shipmentId: parties.shipmentId,
        carrierCode: parties.carrier,
        partnerCarrierCode: req.partnerCarrierCode,
        hubCode: req.hubCode,
        handedOverAt: timestampFromMs(now()),
        requestedByCarrierCode: callerCarrier ?? "",
        region: opts.region,
        partnerTerm: term,
      });
      try {
        await opts.publisher.publish(opts.handedOverSubject(opts.region), ShipmentHandedOverSchema, event, {
          msgId: eventId,
          timeoutMs: opts.publishDeadlineMs ?? 5000,
        });
      } catch (err) {
        throw unpublished("handover", err);
      }
    }
    return create(HandOverShipmentResponseSchema, {
      trackingNumber: req.trackingNumber,
      carrierCode: parties.carrier,
      partnerCarrierCodes: [...parties.partners],
      changed,
    });
  };
}

/** Unavailable for a directory that did not answer; anything else is passed on as it is. */
export function directoryFailure(err: unknown): unknown {
  return err instanceof DirectoryUnavailableError ? new ConnectError(err.message, Code.Unavailable, undefined, undefined, err) : err;
}

/** NotFound for a tracking number the directory does not hold. */
export function unknownShipment(trackingNumber: string): ConnectError {
  return new ConnectError(`no shipment with tracking number ${trackingNumber}`, Code.NotFound);
}

/** Unavailable for an event whose PubAck did not come in time: the call is safe to retry. */
export function unpublished(what: string, err: unknown): ConnectError {
  return new ConnectError(`the event stream did not confirm the ${what} in time; retry`, Code.Unavailable, undefined, undefined, err);
}

/** The Connect error for a refused handover. */
function refusal(err: HandOverRefusedError, trackingNumber: string, callerCarrier: string | undefined): ConnectError {
  const who = `credentials of carrier ${JSON.stringify(callerCarrier)} may not hand over shipment ${trackingNumber}`;
  switch (err.why) {
    case "full":
      return new ConnectError(`shipment ${trackingNumber} already has the maximum number of partner carriers`, Code.FailedPrecondition);
    case "partner":
      // The message does not name the shipment's carrier: carrier tokens never see it elsewhere.
      return new ConnectError(
        `${who}: that carrier is a partner the shipment was handed over to; only the shipment's own carrier (or an internal service) may add partners`,
        Code.PermissionDenied,
      );
    case "not_carrier":
      return new ConnectError(`${who}: it is not carried by that carrier`, Code.PermissionDenied);
  }
}
