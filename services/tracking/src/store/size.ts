import { DocumentTooLargeError } from "./errors.js";

/** Default limit for one stored document or event, in UTF-8 bytes of its JSON. */
export const MAX_DOCUMENT_BYTES = 256 * 1024;

/** Throws DocumentTooLargeError when `value`'s JSON exceeds `limit` UTF-8 bytes. */
export function assertSize(what: "document" | "event", value: unknown, limit = MAX_DOCUMENT_BYTES): void {
  assertJsonSize(what, JSON.stringify(value), limit);
}

/** {@link assertSize} for JSON already serialized (so a writer serializes a document once). */
export function assertJsonSize(what: "document" | "event", json: string, limit = MAX_DOCUMENT_BYTES): void {
  if (fitsLimit(json, limit)) return;
  throw new DocumentTooLargeError(what, utf8Length(json), limit);
}

/**
 * Whether `json` is at most `limit` UTF-8 bytes. A UTF-16 code unit is at most 3 UTF-8 bytes, so
 * the bytes are counted only when that could exceed the limit: for a document under a third of
 * the limit (nearly all), one comparison.
 */
export function fitsLimit(json: string, limit = MAX_DOCUMENT_BYTES): boolean {
  return json.length * 3 <= limit || utf8Length(json) <= limit;
}

/** UTF-8 bytes of `s` (an unpaired surrogate counted as the 3 bytes of its replacement character). */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      // A surrogate pair: 4 bytes for 2 UTF-16 units.
      n += 2;
      i++;
    } else n += 2;
  }
  return n;
}
