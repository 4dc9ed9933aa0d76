import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Principal } from "@logistics/shared/auth";
import { ShipmentHandedOverSchema, ShipmentPartnerRemovedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import {
  HandOverShipmentResponseSchema,
  RemoveShipmentPartnerResponseSchema,
  type HandOverShipmentRequest,
  type HandOverShipmentResponse,
  type RemoveShipmentPartnerRequest,
  type RemoveShipmentPartnerResponse,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import type { EventPublisher } from "@logistics/shared/nats";
import { handoverEventId, partnerRemovedEventId } from "./event-ids.js";
import { handOverRight, MAX_PARTNER_CARRIERS, MAX_PARTNER_HANDOVERS, partnerRemovalRight, partnerTerm, type ShipmentParties } from "./scan-ownership.js";
import {
  DirectoryUnavailableError,
  PartnerChangeRefusedError,
  type HandOverResult,
  type PartnerChangeRefusal,
  type ShipmentDirectory,
} from "./shipment-directory.js";

/**
 * The RPCs that change who carries a shipment: HandOverShipment adds a partner carrier,
 * RemoveShipmentPartner takes one away. Both follow the same steps: the directory entry is
 * changed first (compare-and-set, so concurrent changes never lose one, judged by the policy of
 * scan-ownership.ts on the entry it writes over), then the event is published, then the call is
 * answered. Only the shipment's own carrier and internal callers may do either: a partner's
 * credentials get PermissionDenied, even for a change that would change nothing, and so do
 * those of a carrier that does not carry the shipment; an unknown tracking number is NotFound.
 */

/** What both RPCs need to publish their events. */
interface PartnerEventOptions {
  publisher: Pick<EventPublisher, "publish">;
  region: string;
  /** How long to wait for the event's PubAck. Default 5 000 ms. */
  publishDeadlineMs?: number;
  now?: () => number;
}

/** Dependencies of {@link createShipmentHandover}. */
export interface ShipmentHandoverOptions extends PartnerEventOptions {
  directory: Pick<ShipmentDirectory, "addPartner">;
  /** Subject of the handover event for a region (`subjects.shipmentHandedOver`). */
  handedOverSubject(region: string): string;
}

/** Dependencies of {@link createShipmentPartnerRemoval}. */
export interface ShipmentPartnerRemovalOptions extends PartnerEventOptions {
  directory: Pick<ShipmentDirectory, "removePartner">;
  /** Subject of the removal event for a region (`subjects.shipmentPartnerRemoved`). */
  partnerRemovedSubject(region: string): string;
}

/** HandOverShipment's logic, for an authenticated caller whose scope the interceptor checked. */
export type ShipmentHandover = (req: HandOverShipmentRequest, caller: Principal) => Promise<HandOverShipmentResponse>;

/** RemoveShipmentPartner's logic, for an authenticated caller whose scope the interceptor checked. */
export type ShipmentPartnerRemoval = (req: RemoveShipmentPartnerRequest, caller: Principal) => Promise<RemoveShipmentPartnerResponse>;

/**
 * HandOverShipment: scans of the partner are accepted from the answer on. A repeat (the partner
 * already carries the shipment) publishes the same event again (same id, {@link handoverEventId}
 * of the partner's current term: JetStream drops it within its window), so a retry after a failed
 * publish completes the handover. A partner removed before begins a new term: a new event. A
 * shipment with the maximum of partners is FailedPrecondition.
 */
export function createShipmentHandover(opts: ShipmentHandoverOptions): ShipmentHandover {
  const now = opts.now ?? Date.now;
  return async (req, caller) => {
    const partner = req.partnerCarrierCode;
    const { parties, changed } = await changeParties(req.trackingNumber, caller, "hand over", (judge) =>
      opts.directory.addPartner(req.trackingNumber, partner, (current) => judge(handOverRight(caller.carrier, current))),
    );
    if (parties.carrier !== partner) {
      const term = partnerTerm(parties, partner);
      const event = create(ShipmentHandedOverSchema, {
        ...eventParties(req.trackingNumber, parties, partner, caller, opts.region),
        eventId: handoverEventId(req.trackingNumber, partner, term),
        partnerTerm: term,
        hubCode: req.hubCode,
        handedOverAt: timestampFromMs(now()),
      });
      await publish(opts, opts.handedOverSubject(opts.region), ShipmentHandedOverSchema, event, "handover");
    }
    return create(HandOverShipmentResponseSchema, answer(req.trackingNumber, parties, changed));
  };
}

/**
 * RemoveShipmentPartner: from the answer on every replica rejects the partner's scans (a replica
 * whose cache still lists it confirms a partner's scan with a fresh read before accepting it,
 * scan-ingestor.ts). A partner's credentials are refused whichever partner they name, their own
 * included ({@link partnerRemovalRight}); the shipment's own carrier named as the partner is
 * InvalidArgument. A carrier that is no partner is answered unchanged; if it was removed before,
 * the event of its last removal is published again (same id, {@link partnerRemovedEventId}), so
 * a retry after a failed publish completes the removal.
 */
export function createShipmentPartnerRemoval(opts: ShipmentPartnerRemovalOptions): ShipmentPartnerRemoval {
  const now = opts.now ?? Date.now;
  return async (req, caller) => {
    const partner = req.partnerCarrierCode;
    const { parties, changed } = await changeParties(req.trackingNumber, caller, "remove partners of", (judge) =>
      opts.directory.removePartner(req.trackingNumber, partner, (current) => judge(partnerRemovalRight(caller.carrier, current, partner))),
    );
    // The partner's removals so far; the last one ended term `removals - 1`.
    const removals = partnerTerm(parties, partner);
    if (removals > 0) {
      const term = removals - 1;
      const event = create(ShipmentPartnerRemovedSchema, {
        ...eventParties(req.trackingNumber, parties, partner, caller, opts.region),
        eventId: partnerRemovedEventId(req.trackingNumber, partner, term),
        partnerTerm: term,
        removedAt: timestampFromMs(now()),
      });
      await publish(opts, opts.partnerRemovedSubject(opts.region), ShipmentPartnerRemovedSchema, event, "partner's removal");
    }
    return create(RemoveShipmentPartnerResponseSchema, answer(req.trackingNumber, parties, changed));
  };
}

/**
 * Runs `write` (a directory change) with a `judge` that refuses, by throwing, whatever right the
 * policy denies on the current parties, and maps what goes wrong to Connect errors: a refusal to
 * its code ({@link refusal}), a directory that did not answer to Unavailable, no entry to NotFound.
 */
async function changeParties(
  trackingNumber: string,
  caller: Principal,
  verb: Verb,
  write: (judge: (right: PartnerChangeRefusal | "allowed") => void) => Promise<HandOverResult | undefined>,
): Promise<HandOverResult> {
  let result;
  try {
    result = await write((right) => {
      if (right !== "allowed") throw new PartnerChangeRefusedError(right);
    });
  } catch (err) {
    if (err instanceof PartnerChangeRefusedError) throw refusal(err.why, trackingNumber, caller.carrier, verb);
    if (err instanceof DirectoryUnavailableError) throw new ConnectError(err.message, Code.Unavailable, undefined, undefined, err);
    throw err;
  }
  if (!result) throw new ConnectError(`no shipment with tracking number ${trackingNumber}`, Code.NotFound);
  return result;
}

/** The fields both events take from the shipment and the caller. */
function eventParties(trackingNumber: string, parties: ShipmentParties, partner: string, caller: Principal, region: string) {
  return {
    trackingNumber,
    shipmentId: parties.shipmentId,
    carrierCode: parties.carrier,
    partnerCarrierCode: partner,
    requestedByCarrierCode: caller.carrier ?? "",
    region,
  };
}

/** What both RPCs answer: who carries the shipment now, and whether this call changed it. */
function answer(trackingNumber: string, parties: ShipmentParties, changed: boolean) {
  return { trackingNumber, carrierCode: parties.carrier, partnerCarrierCodes: [...parties.partners], changed };
}

/** Publishes `event` under its id; Unavailable (safe to retry) when its PubAck does not come in time. */
async function publish<D extends DescMessage>(
  opts: PartnerEventOptions,
  subject: string,
  schema: D,
  event: MessageShape<D> & { eventId: string },
  what: string,
): Promise<void> {
  try {
    await opts.publisher.publish(subject, schema, event, { msgId: event.eventId, timeoutMs: opts.publishDeadlineMs ?? 5000 });
  } catch (err) {
    throw new ConnectError(`the event stream did not confirm the ${what} in time; retry`, Code.Unavailable, undefined, undefined, err);
  }
}

/** How a refusal names what the caller may not do. */
type Verb = "hand over" | "remove partners of";

/** The Connect error for a refused change. */
function refusal(why: PartnerChangeRefusal, trackingNumber: string, callerCarrier: string | undefined, verb: Verb): ConnectError {
  const who = `credentials of carrier ${JSON.stringify(callerCarrier)} may not ${verb} shipment ${trackingNumber}`;
  switch (why) {
    case "full":
      return new ConnectError(
        `shipment ${trackingNumber} already has the maximum number of partner carriers (${MAX_PARTNER_CARRIERS} at once, ${MAX_PARTNER_HANDOVERS} handovers in all)`,
        Code.FailedPrecondition,
      );
    case "own_carrier":
      return new ConnectError(
        `the shipment's own carrier cannot be removed from shipment ${trackingNumber}: partner_carrier_code must name a partner carrier`,
        Code.InvalidArgument,
      );
    case "partner":
      // The message does not name the shipment's carrier: carrier tokens never see it elsewhere.
      return new ConnectError(
        `${who}: that carrier is a partner the shipment was handed over to; only the shipment's own carrier (or an internal service) may ${verb === "hand over" ? "add" : "remove"} partners`,
        Code.PermissionDenied,
      );
    case "not_carrier":
      return new ConnectError(`${who}: it is not carried by that carrier`, Code.PermissionDenied);
  }
}
