/** Tracking numbers the mesh accepts: 8 to 30 upper-case letters and digits (as in the contracts). */
export const TRACKING_NUMBER = /^[A-Z0-9]{8,30}$/;

/** What our own tracking numbers look like (`LM` and 10 base-32 characters), shown as the example. */
export const EXAMPLE_TRACKING_NUMBER = "LM7QK2TX5HRA";

/** Upper-cases and strips spaces and dashes, as numbers are printed and typed in groups. */
export function normalizeTrackingNumber(raw: string): string {
  return raw.toUpperCase().replace(/[\s-]+/g, "");
}

/** True when `normalized` can be a tracking number. */
export function isTrackingNumber(normalized: string): boolean {
  return TRACKING_NUMBER.test(normalized);
}
