import { createHmac, timingSafeEqual } from "node:crypto";

/** Header carrying the delivery signature: `t=<unix seconds>,v1=<hex HMAC-SHA256>`. */
export const SIGNATURE_HEADER = "Logistics-Signature";

/** Default accepted clock difference between the signature timestamp and the receiver, in seconds. */
export const DEFAULT_SIGNATURE_TOLERANCE_SECONDS = 300;

/**
 * The `v1` signature of a delivery: hex HMAC-SHA256 keyed with the subscription's signing secret
 * (its UTF-8 bytes, exactly as returned by Subscribe) over `"<t>.<raw body>"`.
 */
export function computeSignature(secret: string, timestampSeconds: number, body: string | Uint8Array): string {
  return createHmac("sha256", secret)
    .update(`${timestampSeconds}.`)
    .update(body)
    .digest("hex");
}

/** The `Logistics-Signature` header value for `body` signed at `timestampSeconds`. */
export function signatureHeader(secret: string, timestampSeconds: number, body: string | Uint8Array): string {
  return `t=${timestampSeconds},v1=${computeSignature(secret, timestampSeconds, body)}`;
}

/** Options of {@link verifyWebhookSignature}. */
export interface VerifyWebhookSignatureOptions {
  /** The raw request body, byte for byte as received (not re-serialized JSON). */
  body: string | Uint8Array;
  /** The `Logistics-Signature` header value. */
  header: string;
  /** The subscription's signing secret. */
  secret: string;
  /** Largest accepted |now - t| in seconds. Default {@link DEFAULT_SIGNATURE_TOLERANCE_SECONDS}. */
  toleranceSeconds?: number;
  /** Current time in unix seconds. Default: the system clock. */
  nowSeconds?: number;
}

/**
 * Verifies a delivery the way a receiver should (the README's snippet implements the same
 * algorithm): parse `t` and every `v1` from the header, reject a timestamp outside the tolerance
 * window (replay protection), recompute the HMAC over `"<t>.<raw body>"` and compare in constant
 * time. Returns false for a malformed header, a stale timestamp or a mismatch; never throws.
 * Several `v1` entries are accepted (one matching suffices), so secrets can be rotated.
 */
export function verifyWebhookSignature(opts: VerifyWebhookSignatureOptions): boolean {
  const tolerance = opts.toleranceSeconds ?? DEFAULT_SIGNATURE_TOLERANCE_SECONDS;
  const now = opts.nowSeconds ?? Math.floor(Date.now() / 1000);
  let t: number | undefined;
  const candidates: string[] = [];
  for (const part of opts.header.split(",")) {
    const eq = part.indexOf("=");
    if (eq === -1) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === "t" && /^\d{1,12}$/.test(value)) t = Number(value);
    else if (key === "v1" && /^[0-9a-f]{64}$/.test(value)) candidates.push(value);
  }
  if (t === undefined || candidates.length === 0) return false;
  if (Math.abs(now - t) > tolerance) return false;
  const expected = Buffer.from(computeSignature(opts.secret, t, opts.body), "hex");
  return candidates.some((c) => timingSafeEqual(Buffer.from(c, "hex"), expected));
}
