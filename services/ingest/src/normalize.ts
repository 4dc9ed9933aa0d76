import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";

/** What one carrier status code means in the mesh's vocabulary. */
export interface StatusMapping {
  /** The normalized shipment status the scan indicates. */
  readonly status: ShipmentStatus;
  /** What physically happened. */
  readonly kind: ScanKind;
}

/** The outcome of {@link normalizeStatus}. */
export interface NormalizedStatus extends StatusMapping {
  /** The table that was consulted: `ups`, `dhl`, `fedex` or `generic`. */
  readonly table: string;
  /** False when the code is not in the table and {@link UNMAPPED_STATUS} was used. */
  readonly mapped: boolean;
}

/**
 * The mapping of a code no table knows: `IN_TRANSIT` / `SCAN_KIND_UNSPECIFIED`.
 *
 * Why: a carrier scanning a parcel under a code we have not mapped has physically handled it,
 * and in practice such codes are network-internal handling scans (sorting, reweighing, load
 * checks). `IN_TRANSIT` is therefore the least surprising status; it never overrides a terminal
 * status (tracking's terminal-state rules apply), and `SCAN_KIND_UNSPECIFIED` ("not mappable")
 * tells consumers the kind is unknown. The raw code and text always travel with the event, and
 * the ingest service counts unmapped codes so the tables can be extended.
 */
export const UNMAPPED_STATUS: StatusMapping = Object.freeze({
  status: ShipmentStatus.IN_TRANSIT,
  kind: ScanKind.UNSPECIFIED,
});

const S = ShipmentStatus;
const K = ScanKind;
const m = (status: ShipmentStatus, kind: ScanKind): StatusMapping => Object.freeze({ status, kind });

type Table = Readonly<Record<string, StatusMapping>>;

/** UPS-style activity codes. */
const UPS: Table = Object.freeze({
  MP: m(S.INFO_RECEIVED, K.INFO), // Order processed: ready for UPS (manifest)
  OR: m(S.IN_TRANSIT, K.PICKUP), // Origin scan
  PU: m(S.IN_TRANSIT, K.PICKUP), // Pickup scan
  DS: m(S.IN_TRANSIT, K.PICKUP), // Drop-off at a UPS Access Point (sender side)
  AR: m(S.IN_TRANSIT, K.HUB_ARRIVAL), // Arrival scan
  DP: m(S.IN_TRANSIT, K.HUB_DEPARTURE), // Departure scan
  IP: m(S.IN_TRANSIT, K.HUB_ARRIVAL), // Import scan
  EP: m(S.IN_TRANSIT, K.HUB_DEPARTURE), // Export scan
  CC: m(S.IN_TRANSIT, K.CUSTOMS), // Import customs clearance complete
  CP: m(S.IN_TRANSIT, K.CUSTOMS), // Clearance in progress
  OT: m(S.OUT_FOR_DELIVERY, K.OUT_FOR_DELIVERY), // Out for delivery today
  "48": m(S.FAILED_ATTEMPT, K.DELIVERY_ATTEMPT), // Receiver not available, 1st attempt
  "49": m(S.FAILED_ATTEMPT, K.DELIVERY_ATTEMPT), // Receiver not available, later attempt
  KB: m(S.AVAILABLE_FOR_PICKUP, K.PICKUP_POINT_ARRIVAL), // Delivered to UPS Access Point, awaiting pickup
  FS: m(S.DELIVERED, K.DELIVERED), // Delivered
  "9E": m(S.DELIVERED, K.DELIVERED), // Delivered to a safe place
  CH: m(S.EXCEPTION, K.CUSTOMS), // Customs hold: documents required
  AD: m(S.EXCEPTION, K.EXCEPTION), // Address incorrect / incomplete
  DM: m(S.EXCEPTION, K.EXCEPTION), // Damage reported
  RS: m(S.RETURNED_TO_SENDER, K.RETURN_TO_SENDER), // Returned to shipper
  UC: m(S.IN_TRANSIT, K.CORRECTION), // Update / correction of an earlier scan
});

/** DHL-Express-style checkpoint event codes. */
const DHL: Table = Object.freeze({
  SA: m(S.INFO_RECEIVED, K.INFO), // Shipment information received
  PU: m(S.IN_TRANSIT, K.PICKUP), // Shipment picked up
  PL: m(S.IN_TRANSIT, K.HUB_ARRIVAL), // Processed at location
  AF: m(S.IN_TRANSIT, K.HUB_ARRIVAL), // Arrived at facility
  AR: m(S.IN_TRANSIT, K.HUB_ARRIVAL), // Arrived at sort facility
  DF: m(S.IN_TRANSIT, K.HUB_DEPARTURE), // Departed facility
  TR: m(S.IN_TRANSIT, K.HUB_DEPARTURE), // Transferred through
  CI: m(S.IN_TRANSIT, K.CUSTOMS), // Customs status updated
  CR: m(S.IN_TRANSIT, K.CUSTOMS), // Clearance release
  WC: m(S.OUT_FOR_DELIVERY, K.OUT_FOR_DELIVERY), // With delivery courier
  NH: m(S.FAILED_ATTEMPT, K.DELIVERY_ATTEMPT), // Not home
  CA: m(S.FAILED_ATTEMPT, K.DELIVERY_ATTEMPT), // Closed on arrival
  CC: m(S.AVAILABLE_FOR_PICKUP, K.PICKUP_POINT_ARRIVAL), // Awaiting collection by consignee
  OK: m(S.DELIVERED, K.DELIVERED), // Delivered
  BA: m(S.EXCEPTION, K.EXCEPTION), // Bad address
  OH: m(S.EXCEPTION, K.EXCEPTION), // On hold
  HP: m(S.EXCEPTION, K.CUSTOMS), // Held for payment (duties and taxes)
  MS: m(S.EXCEPTION, K.EXCEPTION), // Misrouted
  RT: m(S.RETURNED_TO_SENDER, K.RETURN_TO_SENDER), // Returned to shipper
  RD: m(S.IN_TRANSIT, K.CORRECTION), // Record corrected
});

/** FedEx-style scan event type codes. */
const FEDEX: Table = Object.freeze({
  OC: m(S.INFO_RECEIVED, K.INFO), // Shipment information sent to FedEx
  PU: m(S.IN_TRANSIT, K.PICKUP), // Picked up
  AR: m(S.IN_TRANSIT, K.HUB_ARRIVAL), // Arrived at FedEx location
  AF: m(S.IN_TRANSIT, K.HUB_ARRIVAL), // At local FedEx facility
  DP: m(S.IN_TRANSIT, K.HUB_DEPARTURE), // Departed FedEx location
  IT: m(S.IN_TRANSIT, K.HUB_DEPARTURE), // In transit
  CC: m(S.IN_TRANSIT, K.CUSTOMS), // International shipment release
  OD: m(S.OUT_FOR_DELIVERY, K.OUT_FOR_DELIVERY), // On FedEx vehicle for delivery
  DE: m(S.FAILED_ATTEMPT, K.DELIVERY_ATTEMPT), // Delivery exception (customer not available)
  HP: m(S.AVAILABLE_FOR_PICKUP, K.PICKUP_POINT_ARRIVAL), // Ready for recipient pickup
  HL: m(S.AVAILABLE_FOR_PICKUP, K.PICKUP_POINT_ARRIVAL), // Held at location
  DL: m(S.DELIVERED, K.DELIVERED), // Delivered
  CD: m(S.EXCEPTION, K.CUSTOMS), // Clearance delay
  SE: m(S.EXCEPTION, K.EXCEPTION), // Shipment exception
  DY: m(S.EXCEPTION, K.EXCEPTION), // Delay
  RS: m(S.RETURNED_TO_SENDER, K.RETURN_TO_SENDER), // Return to shipper
  CO: m(S.IN_TRANSIT, K.CORRECTION), // Scan corrected
});

/** The mesh's generic codes, used for every carrier without a table of its own. */
const GENERIC: Table = Object.freeze({
  IN: m(S.INFO_RECEIVED, K.INFO), // Information received
  PU: m(S.IN_TRANSIT, K.PICKUP), // Picked up
  AR: m(S.IN_TRANSIT, K.HUB_ARRIVAL), // Arrived at hub
  DP: m(S.IN_TRANSIT, K.HUB_DEPARTURE), // Departed hub
  IT: m(S.IN_TRANSIT, K.HUB_DEPARTURE), // In transit
  CU: m(S.IN_TRANSIT, K.CUSTOMS), // Customs event
  CH: m(S.EXCEPTION, K.CUSTOMS), // Held at customs
  OD: m(S.OUT_FOR_DELIVERY, K.OUT_FOR_DELIVERY), // Out for delivery
  DA: m(S.FAILED_ATTEMPT, K.DELIVERY_ATTEMPT), // Delivery attempted
  PP: m(S.AVAILABLE_FOR_PICKUP, K.PICKUP_POINT_ARRIVAL), // At pickup point
  DL: m(S.DELIVERED, K.DELIVERED), // Delivered
  EX: m(S.EXCEPTION, K.EXCEPTION), // Exception
  RS: m(S.RETURNED_TO_SENDER, K.RETURN_TO_SENDER), // Returned to sender
  CR: m(S.IN_TRANSIT, K.CORRECTION), // Correction of an earlier scan
});

const TABLES: Readonly<Record<string, Table>> = Object.freeze({ ups: UPS, dhl: DHL, fedex: FEDEX, generic: GENERIC });

/** Carrier codes that share another carrier's table (divisions reporting the same codes). */
const ALIASES: Readonly<Record<string, string>> = Object.freeze({
  "dhl-express": "dhl",
  "fedex-ground": "fedex",
  "fedex-express": "fedex",
});

/** The name of the table used for `carrierCode`: its own (`ups`, `dhl`, `fedex`) or `generic`. */
export function statusTableFor(carrierCode: string): string {
  const name = ALIASES[carrierCode] ?? carrierCode;
  return name !== "generic" && Object.hasOwn(TABLES, name) ? name : "generic";
}

/**
 * Maps a carrier's raw status code onto the mesh's (ShipmentStatus, ScanKind).
 *
 * `ups`, `dhl` (alias `dhl-express`) and `fedex` (aliases `fedex-ground`, `fedex-express`) have
 * tables of their own; every other carrier uses the generic table (IN, PU, AR, DP, IT, CU, CH,
 * OD, DA, PP, DL, EX, RS, CR). A customs hold is an exception of kind CUSTOMS (not EXCEPTION), so
 * readers can tell "held at customs" from other problems. Codes are looked up trimmed and upper-cased. A code the table does
 * not know maps to {@link UNMAPPED_STATUS} with `mapped: false`; the caller keeps the raw code
 * and text either way. Pure: no I/O, no clock.
 */
export function normalizeStatus(carrierCode: string, rawCode: string): NormalizedStatus {
  const table = statusTableFor(carrierCode);
  const outcomes = OUTCOMES[table] as TableOutcomes;
  const key = rawCode.trim().toUpperCase();
  return (Object.hasOwn(outcomes.mapped, key) ? outcomes.mapped[key] : undefined) ?? outcomes.unmapped;
}

interface TableOutcomes {
  readonly mapped: Readonly<Record<string, NormalizedStatus>>;
  readonly unmapped: NormalizedStatus;
}

/** Every answer of {@link normalizeStatus}, built once (frozen), so a scan's costs no object. */
const OUTCOMES: Readonly<Record<string, TableOutcomes>> = Object.freeze(
  Object.fromEntries(
    Object.entries(TABLES).map(([table, codes]) => [
      table,
      Object.freeze({
        mapped: Object.freeze(Object.fromEntries(Object.entries(codes).map(([code, hit]) => [code, Object.freeze({ ...hit, table, mapped: true })]))),
        unmapped: Object.freeze({ ...UNMAPPED_STATUS, table, mapped: false }),
      }),
    ]),
  ),
);
