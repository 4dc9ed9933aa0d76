import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Principal } from "@logistics/shared/auth";
import { ShipmentPartnerRemovedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import {
  RemoveShipmentPartnerResponseSchema,
  type RemoveShipmentPartnerRequest,
  type RemoveShipmentPartnerResponse,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import type { EventPublisher } from "@logistics/shared/nats";
import { partnerRemovedEventId } from "./event-ids.js";
import { partnerRemovalRight, partnerTerm } from "./scan-ownership.js";
import { PartnerRemovalRefusedError, type ShipmentDirectory } from "./shipment-directory.js";
import { directoryFailure, unknownShipment, unpublished } from "./shipment-handover.js";

/** Dependencies of {@link createShipmentPartnerRemoval}. */
export interface ShipmentPartnerRemovalOptions {
  directory: Pick<ShipmentDirectory, "removePartner">;
  publisher: Pick<EventPublisher, "publish">;
  /** Subject of the removal event for a region (`subjects.shipmentPartnerRemoved`). */
  partnerRemovedSubject(region: string): string;
  region: string;
  /** How long to wait for the event's PubAck. Default 5 000 ms. */
  publishDeadlineMs?: number;
  now?: () => number;
}

/** RemoveShipmentPartner's logic, for an authenticated caller whose scope the interceptor checked. */
export type ShipmentPartnerRemoval = (req: RemoveShipmentPartnerRequest, caller: Principal) => Promise<RemoveShipmentPartnerResponse>;

/**
 * RemoveShipmentPartner, the mirror of HandOverShipment (shipment-handover.ts): the directory
 * drops the partner first (compare-and-set, ending its term), then the ShipmentPartnerRemoved
 * event is published, then the call is answered. From the answer on every replica rejects the
 * partner's scans: a replica whose cache still lists it confirms a partner's scan with a fresh
 * read before accepting it (scan-ingestor.ts).
 *
 * The same callers as a handover ({@link partnerRemovalRight}): the shipment's own carrier and
 * internal callers. A partner's credentials get PermissionDenied whichever partner they name,
 * their own included, and so do those of a carrier that does not carry the shipment; the
 * shipment's own carrier named as the partner is InvalidArgument; an unknown tracking number is
 * NotFound.
 *
 * A carrier that is no partner is answered unchanged. If it was removed before, the event of its
 * last removal is published again (same id, {@link partnerRemovedEventId}: JetStream drops it
 * within its window, tracking by id), so a retry after a failed publish completes the removal.
 */
export function createShipmentPartnerRemoval(opts: ShipmentPartnerRemovalOptions): ShipmentPartnerRemoval {
  const now = opts.now ?? Date.now;
  return async (req, caller) => {
    const callerCarrier = caller.carrier;
    const partner = req.partnerCarrierCode;
    let result;
    try {
      result = await opts.directory.removePartner(req.trackingNumber, partner, (parties) => {
        const right = partnerRemovalRight(callerCarrier, parties, partner);
        if (right !== "allowed") throw new PartnerRemovalRefusedError(right);
      });
    } catch (err) {
      if (err instanceof PartnerRemovalRefusedError) throw refusal(err, req.trackingNumber, callerCarrier);
      throw directoryFailure(err);
    }
    if (!result) throw unknownShipment(req.trackingNumber);
    const { parties, changed } = result;
    // The partner's removals so far; the last one ended term `removals - 1`.
    const removals = partnerTerm(parties, partner);
    if (removals > 0) {
      const term = removals - 1;
      const eventId = partnerRemovedEventId(req.trackingNumber, partner, term);
      const event = create(ShipmentPartnerRemovedSchema, {
        eventId,
        trackingNumber: req.trackingNumber,
        shipmentId: parties.shipmentId,
        carrierCode: parties.carrier,
        partnerCarrierCode: partner,
        partnerTerm: term,
        removedAt: timestampFromMs(now()),
        requestedByCarrierCode: callerCarrier ?? "",
        region: opts.region,
      });
      try {
        await opts.publisher.publish(opts.partnerRemovedSubject(opts.region), ShipmentPartnerRemovedSchema, event, {
          msgId: eventId,
          timeoutMs: opts.publishDeadlineMs ?? 5000,
        });
      } catch (err) {
        throw unpublished("partner's removal", err);
      }
    }
    return create(RemoveShipmentPartnerResponseSchema, {
      trackingNumber: req.trackingNumber,
      carrierCode: parties.carrier,
      partnerCarrierCodes: [...parties.partners],
      changed,
    });
  };
}

/** The Connect error for a refused removal. */
function refusal(err: PartnerRemovalRefusedError, trackingNumber: string, callerCarrier: string | undefined): ConnectError {
  const who = `credentials of carrier ${JSON.stringify(callerCarrier)} may not remove partners of shipment ${trackingNumber}`;
  switch (err.why) {
    case "own_carrier":
      return new ConnectError(
        `the shipment's own carrier cannot be removed from shipment ${trackingNumber}: partner_carrier_code must name a partner carrier`,
        Code.InvalidArgument,
      );
    case "partner":
      // Like a refused handover, the message does not name the shipment's carrier.
      return new ConnectError(
        `${who}: that carrier is a partner of the shipment; only the shipment's own carrier (or an internal service) may remove partners`,
        Code.PermissionDenied,
      );
    case "not_carrier":
      return new ConnectError(`${who}: it is not carried by that carrier`, Code.PermissionDenied);
  }
}
