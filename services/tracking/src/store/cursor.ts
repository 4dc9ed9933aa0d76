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
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 2 ||
    typeof parsed[0] !== "string" ||
    typeof parsed[1] !== "string" ||
    !Number.isFinite(Date.parse(parsed[0]))
  ) {
    throw new InvalidQueryError("cursor", "is not a cursor this store issued");
  }
  return [parsed[0], parsed[1]];
}

/** Checks `pageSize` is an integer in 1..{@link MAX_PAGE_SIZE}. */
export function checkPageSize(pageSize: number): number {
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
    throw new InvalidQueryError("pageSize", `must be an integer in 1..${MAX_PAGE_SIZE}`);
  }
  return pageSize;
}
