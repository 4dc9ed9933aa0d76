import { hash } from "node:crypto";

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

function sha256(text: string): Buffer {
  return hash("sha256", text, "buffer");
}

/** The first 32 hex digits (128 bits) of sha256(text), in one call (no Hash object, no Buffer). */
function sha256Hex128(text: string): string {
  return hash("sha256", text, "hex").slice(0, 32);
}

/** RFC 4648 base32 alphabet (upper case, no padding) of the first `chars` characters. */
function base32(bytes: Uint8Array, chars: number): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < chars) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
    if (out.length >= chars) break;
  }
  return out;
}

/**
 * The mesh-wide id of a scan event: `sc-` + the first 32 hex digits (128 bits) of
 * `sha256(carrierCode + ":" + eventId)`. Deterministic, so a resent scan gets the same id, which
 * is both the JetStream `Nats-Msg-Id` (stream dedupe) and the key of the longer-lived dedupe set.
 * The separator cannot occur in a carrier code, so distinct pairs never share an input.
 */
export function recordedEventId(carrierCode: string, eventId: string): string {
  return `sc-${sha256Hex128(`${carrierCode}:${eventId}`)}`;
}

/**
 * The id of the ShipmentCreated event of one CreateShipment request: `sh-` + 32 hex digits of
 * `sha256(callerSubject + "\n" + idempotencyKey)`. Deterministic, so a retried request can never
 * publish two different creation events (JetStream drops the second by `Nats-Msg-Id`).
 */
export function shipmentEventId(callerSubject: string, idempotencyKey: string): string {
  return `sh-${sha256Hex128(`${callerSubject}\n${idempotencyKey}`)}`;
}

/**
 * The id of the ShipmentHandedOver event that begins `partner`'s term `term` on a shipment: `ho-`
 * + 32 hex digits of `sha256("handover\n" + trackingNumber + "\n" + partner)`, with `"\n" + term`
 * appended from term 1 on (term 0 keeps the id handovers had before partners could be removed).
 * Deterministic, so a repeated handover publishes the same event (JetStream drops it within its
 * duplicate window, tracking by id), and handing a shipment again to a partner removed before
 * publishes a new one.
 */
export function handoverEventId(trackingNumber: string, partner: string, term: number): string {
  return `ho-${sha256Hex128(`handover\n${trackingNumber}\n${partner}${term > 0 ? `\n${term}` : ""}`)}`;
}

/**
 * The id of the ShipmentPartnerRemoved event that ends `partner`'s term `term` on a shipment:
 * `pr-` + 32 hex digits of `sha256("partner-removed\n" + trackingNumber + "\n" + partner + "\n" +
 * term)`. Deterministic, so a repeated removal publishes the same event.
 */
export function partnerRemovedEventId(trackingNumber: string, partner: string, term: number): string {
  return `pr-${sha256Hex128(`partner-removed\n${trackingNumber}\n${partner}\n${term}`)}`;
}

/** The internal shipment id for one CreateShipment request: `shp_` + 26 base32 characters (130 bits), lower-cased. */
export function shipmentIdFor(callerSubject: string, idempotencyKey: string): string {
  return `shp_${base32(sha256(`shipment\n${callerSubject}\n${idempotencyKey}`), 26).toLowerCase()}`;
}

/**
 * A tracking number the mesh assigns: `LM` + 10 base32 characters (50 bits), matching
 * `^[A-Z0-9]{8,30}$`. Derived from the caller, the idempotency key and an attempt counter rather
 * than drawn at random, so that a retried request yields the same number even when the
 * idempotency store is unavailable; `attempt` moves to the next candidate when a number is
 * already taken. Tracking numbers are identifiers, not secrets.
 */
export function assignedTrackingNumber(callerSubject: string, idempotencyKey: string, attempt = 0): string {
  return `LM${base32(sha256(`tracking\n${callerSubject}\n${idempotencyKey}\n${attempt}`), 10)}`;
}
