import { createHash } from "node:crypto";
import type { HandlerContext } from "@connectrpc/connect";
import type { Principal } from "@logistics/shared/auth";

/** How long shared caches may keep anonymous read answers (TRACKING_PUBLIC_MAX_AGE_SECONDS, …). */
export interface ReadCachePolicy {
  /** `max-age` of an anonymous answer: the staleness a customer accepts for a tracking page. */
  maxAgeSeconds: number;
  /** `stale-while-revalidate`: a cache may answer from a stale copy this long while it refreshes. */
  staleWhileRevalidateSeconds: number;
}

/**
 * Sets the HTTP caching headers of a GetShipment / ListShipmentEvents answer (both are
 * NO_SIDE_EFFECTS, so Connect clients send them as GET and caches see them).
 *
 * - Anonymous callers get the public view, the same for everyone: `public` with a short max-age,
 *   so a CDN or caching proxy in front of tracking answers repeated reads of a popular parcel.
 * - Any caller with a token is `private, no-cache`: shared caches never store it (RFC 9111 §3.5
 *   also forbids storing answers to requests with `Authorization` unless marked public), and a
 *   browser revalidates it every time.
 * - The ETag names the answer's content (see {@link contentEtag}); the server answers a GET whose
 *   `If-None-Match` matches with `304 Not Modified` (see the shared server's conditional GET), so
 *   a revalidation costs a read and no body.
 * - `Vary: Authorization, Origin` keeps a cache from handing one caller's variant, or one page
 *   origin's CORS answer, to another.
 */
export function setReadCaching(
  ctx: HandlerContext,
  principal: Principal,
  version: bigint,
  content: Uint8Array,
  policy: ReadCachePolicy,
): void {
  const h = ctx.responseHeader;
  h.set("vary", "Authorization, Origin");
  h.set("etag", contentEtag(version, content));
  h.set(
    "cache-control",
    principal.role === "anonymous"
      ? `public, max-age=${policy.maxAgeSeconds}, stale-while-revalidate=${policy.staleWhileRevalidateSeconds}`
      : "private, no-cache",
  );
}

/**
 * The strong ETag of a read answer, `"<version>.<digest>"`: the shipment version (the tracking page
 * reads it to tell a cached history from a current one) and 22 base64url characters (132 bits) of
 * the SHA-256 of the answer message's protobuf encoding. The version alone does not name the
 * content: two regions that have not converged can both be at version 5 with different events, and
 * a cache revalidating against the other region would get a wrong 304. The digest does: the same
 * message encodes to the same bytes in every region and replica, whatever order its events were
 * applied in, and the public and full views of a shipment differ in their bytes.
 */
export function contentEtag(version: bigint, content: Uint8Array): string {
  return `"${version}.${createHash("sha256").update(content).digest("base64url").slice(0, 22)}"`;
}
