import { RejectReason } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";

/**
 * Ingest's ownership policy: who may write scans for which shipment. Pure; the one place these
 * rules live. The shipment decides, never the scan alone:
 *
 * 1. a carrier token writes only scans whose `carrier_code` is its own carrier;
 * 2. a scan is accepted only for a shipment the mesh knows (CreateShipment registered it in the
 *    shipment directory before answering) — unknown tracking numbers are REJECTED/UNKNOWN_SHIPMENT;
 * 3. and only when its `carrier_code` is a carrier of that shipment: the shipment's carrier or a
 *    partner it was handed over to and has not removed since — otherwise REJECTED/WRONG_CARRIER.
 *
 * Rule 1 applies to carrier tokens; rules 2 and 3 to every caller (an internal backfill job
 * writes only scans the shipment's carriers could have written).
 *
 * Who may add and remove partners is decided here too ({@link handOverRight},
 * {@link partnerRemovalRight}): the shipment's own carrier and internal callers, never a partner.
 */

/** Most partner carriers one shipment can have. */
export const MAX_PARTNER_CARRIERS = 8;

/**
 * Most handovers one shipment can take in its life (every partner it has now plus every removal:
 * each removal ended one handover). Removals free a partner slot, so without this a carrier
 * looping handovers and removals would grow the shipment's directory entry (one removal count per
 * code), its events and its history without end.
 */
export const MAX_PARTNER_HANDOVERS = 32;

/** Who carries a shipment and whose it is: the shipment directory's value per tracking number. */
export interface ShipmentParties {
  readonly shipmentId: string;
  /** The carrier named at creation. */
  readonly carrier: string;
  /** Partner carriers (creation, then handovers), in the order they were added; removed ones dropped. */
  readonly partners: readonly string[];
  /** The shipper's customer account. */
  readonly customer: string;
  /**
   * Carrier code → how many times it was removed as a partner of the shipment; absent while no
   * partner was ever removed (nearly every shipment). A partner's count is its current (or next)
   * term, which its handover and removal event ids derive from ({@link partnerTerm}). Read it
   * with {@link partnerTerm}: a carrier code such as "constructor" is no key of it unless set.
   */
  readonly removals?: Readonly<Record<string, number>>;
}

/** The decision on one scan: accept, or a per-scan rejection. */
export type OwnershipVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: RejectReason; readonly detail: string };

/** What the directory said about a scan's tracking number. */
export type PartiesLookup = ShipmentParties | "unknown" | "unavailable";

const ACCEPT: OwnershipVerdict = Object.freeze({ ok: true });

/** True when `carrier` carries the shipment (its carrier or a partner). */
export function carriesShipment(parties: ShipmentParties, carrier: string): boolean {
  return parties.carrier === carrier || parties.partners.includes(carrier);
}

/**
 * Rule 1 alone, decidable without the directory: a carrier token's scan must name its carrier.
 * Undefined when it passes (or the caller is not a carrier token).
 */
export function checkCallerCarrier(callerCarrier: string | undefined, scanCarrier: string): OwnershipVerdict | undefined {
  if (callerCarrier === undefined || callerCarrier === scanCarrier) return undefined;
  return {
    ok: false,
    reason: RejectReason.WRONG_CARRIER,
    detail: `carrier_code ${JSON.stringify(scanCarrier)} does not match the credentials' carrier ${JSON.stringify(callerCarrier)}`,
  };
}

/** Rules 2 and 3 for a scan of `scanCarrier` on `trackingNumber`, given what the directory said. */
export function judgeScanOwnership(trackingNumber: string, scanCarrier: string, lookup: PartiesLookup): OwnershipVerdict {
  if (lookup === "unavailable") {
    return { ok: false, reason: RejectReason.UNAVAILABLE, detail: "the shipment directory could not be read; resend the scan" };
  }
  if (lookup === "unknown") {
    return {
      ok: false,
      reason: RejectReason.UNKNOWN_SHIPMENT,
      detail: `no shipment with tracking number ${trackingNumber}; resend after it was created`,
    };
  }
  if (!carriesShipment(lookup, scanCarrier)) {
    return {
      ok: false,
      reason: RejectReason.WRONG_CARRIER,
      detail: `shipment ${trackingNumber} is not carried by ${JSON.stringify(scanCarrier)}`,
    };
  }
  return ACCEPT;
}

/**
 * Whether a caller may hand a shipment over (add a partner), per {@link handOverRight}:
 * `allowed`, `partner` (a partner of the shipment, so it scans it but may not hand it over) or
 * `not_carrier` (a carrier that does not carry the shipment at all).
 */
export type HandOverRight = "allowed" | "partner" | "not_carrier";

/**
 * May the caller hand the shipment over? Only the shipment's own carrier (the one it was created
 * for) and internal callers (`callerCarrier` undefined; their scope already checked). A partner
 * carries the shipment and keeps scanning it, but may not bring in further carriers: it could
 * otherwise fill every partner slot with codes of its choosing, locking the shipment's carrier
 * out of adding the partners it needs, and let carriers the shipment's carrier never chose write
 * its scans.
 */
export function handOverRight(callerCarrier: string | undefined, parties: ShipmentParties): HandOverRight {
  if (callerCarrier === undefined || callerCarrier === parties.carrier) return "allowed";
  return parties.partners.includes(callerCarrier) ? "partner" : "not_carrier";
}

/**
 * Whether a caller may remove `partner` from the shipment: by {@link handOverRight} (only the
 * shipment's own carrier and internal callers; a partner may not, not even remove itself), and
 * then `own_carrier` when `partner` is the shipment's carrier, which is no partner and cannot be
 * removed. Authorization comes first, so a caller that may not change the partners learns
 * nothing about who the shipment's carrier is.
 */
export function partnerRemovalRight(callerCarrier: string | undefined, parties: ShipmentParties, partner: string): HandOverRight | "own_carrier" {
  const right = handOverRight(callerCarrier, parties);
  if (right !== "allowed") return right;
  return partner === parties.carrier ? "own_carrier" : "allowed";
}

/**
 * The term of `partner` on the shipment: how many times it was removed as a partner. A handover
 * begins term {@link partnerTerm} (0 for a carrier never removed), a removal ends it and the next
 * handover begins the one after, so a partner's handovers and removals are ordered by term.
 */
export function partnerTerm(parties: ShipmentParties, partner: string): number {
  const r = parties.removals;
  return r !== undefined && Object.hasOwn(r, partner) ? (r[partner] as number) : 0;
}

/**
 * The parties with `partner` added: "unchanged" when it already carries the shipment, "full" when
 * {@link MAX_PARTNER_CARRIERS} partners are recorded, or the shipment took
 * {@link MAX_PARTNER_HANDOVERS} handovers in all.
 */
export function withPartner(parties: ShipmentParties, partner: string): ShipmentParties | "unchanged" | "full" {
  if (carriesShipment(parties, partner)) return "unchanged";
  if (parties.partners.length >= MAX_PARTNER_CARRIERS) return "full";
  if (handoversSoFar(parties) >= MAX_PARTNER_HANDOVERS) return "full";
  return { ...parties, partners: [...parties.partners, partner] };
}

/** How many handovers the shipment took: its partners now and every removal since creation. */
function handoversSoFar(parties: ShipmentParties): number {
  let n = parties.partners.length;
  for (const k in parties.removals) n += parties.removals[k] as number;
  return n;
}

/**
 * The parties with `partner` removed and its term ended (its removal count one higher):
 * "unchanged" when it is not a partner (never was, or was removed already; the shipment's own
 * carrier is no partner either).
 */
export function withoutPartner(parties: ShipmentParties, partner: string): ShipmentParties | "unchanged" {
  if (!parties.partners.includes(partner)) return "unchanged";
  return {
    ...parties,
    partners: parties.partners.filter((p) => p !== partner),
    removals: { ...parties.removals, [partner]: partnerTerm(parties, partner) + 1 },
  };
}

/**
 * The stored form of parties (JSON, versioned so the format can evolve). `removals` is written
 * only when a partner was ever removed, so the entries of every other shipment stay byte for byte
 * what earlier releases wrote and read (an earlier release ignores the field).
 */
export function encodeParties(p: ShipmentParties): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({
      v: 1,
      shipmentId: p.shipmentId,
      carrier: p.carrier,
      partners: p.partners,
      customer: p.customer,
      ...(p.removals && Object.keys(p.removals).length > 0 ? { removals: p.removals } : {}),
    }),
  );
}

/** Reads stored parties back; undefined for anything that is not a version-1 record. */
export function decodeParties(bytes: Uint8Array): ShipmentParties | undefined {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const o = v as Record<string, unknown>;
  const partners = o["partners"];
  const removals = o["removals"];
  if (
    o["v"] !== 1 ||
    typeof o["shipmentId"] !== "string" ||
    typeof o["carrier"] !== "string" ||
    typeof o["customer"] !== "string" ||
    !Array.isArray(partners) ||
    !partners.every((x): x is string => typeof x === "string") ||
    (removals !== undefined && !isRemovals(removals))
  ) {
    return undefined;
  }
  const parties = { shipmentId: o["shipmentId"], carrier: o["carrier"], partners, customer: o["customer"] };
  return removals === undefined ? parties : { ...parties, removals };
}

/** A stored `removals`: an object of positive integer counts. */
function isRemovals(v: unknown): v is Record<string, number> {
  return (
    typeof v === "object" &&
    v !== null &&
    !Array.isArray(v) &&
    Object.values(v).every((n) => Number.isSafeInteger(n) && (n as number) > 0)
  );
}
