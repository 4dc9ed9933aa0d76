import { InvalidQueryError } from "./errors.js";

/** Largest page any query returns. */
export const MAX_PAGE_SIZE = 1000;

/**
 * Encodes a keyset position (the sort key of the last item of a page) as an opaque,
 * URL-safe cursor. Cursors are adapter-independent.
 */
export function encodeCursor(key: readonly [string, string]): string {
  return Buffer.from(JSON.stringify(key), "utf8").toString("base64url");
}

/** Decodes a cursor from {@link encodeCursor}; throws InvalidQueryError("cursor") when malformed. */
export function decodeCursor(cursor: string | undefined): [string, string] | undefined {
  if (cursor === undefined || cursor === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw new InvalidQueryError("cursor", "is not a cursor this store issued");
  }
  // Cursors are not signed: anyone can forge one, so its parts are checked as strictly as any
  // query value before they reach a database (a time the database can parse, an id of the form
  // every tracking number and event id has).
  const ms = Array.isArray(parsed) && typeof parsed[0] === "string" ? Date.parse(parsed[0]) : Number.NaN;
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 2 ||
    !(ms >= 0 && ms <= MAX_CURSOR_TIME_MS) ||
    typeof parsed[1] !== "string" ||
    !CURSOR_ID.test(parsed[1])
  ) {
    throw new InvalidQueryError("cursor", "is not a cursor this store issued");
  }
  return [new Date(ms).toISOString(), parsed[1]];
}

/** The id part of every cursor: a tracking number or an event id. */
const CURSOR_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** The last time every store can parse (9999-12-31T23:59:59.999Z). */
const MAX_CURSOR_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/** Checks `pageSize` is an integer in 1..{@link MAX_PAGE_SIZE}. */
export function checkPageSize(pageSize: number): number {
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
    throw new InvalidQueryError("pageSize", `must be an integer in 1..${MAX_PAGE_SIZE}`);
  }
  return pageSize;
}
