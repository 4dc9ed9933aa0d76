import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { checkPageSize, decodeCursor } from "./cursor.js";
import { InvalidQueryError } from "./errors.js";
import type { ShipmentQuery } from "./ports.js";

/** A {@link ShipmentQuery} after validation: times normalized, cursor decoded. */
export interface NormalizedQuery {
  pageSize: number;
  after?: [updatedAt: string, trackingNumber: string];
  customerId?: string;
  statuses?: ShipmentStatus[];
  carrierCode?: string;
  updatedAfter?: string;
  updatedBefore?: string;
  near?: { lat: number; lon: number; radiusKm: number };
}

function isoTime(v: string, field: string): string {
  const ms = Date.parse(v);
  // Every store parses ISO-8601 with a four-digit year; JavaScript dates reach year 275760.
  if (!(ms >= Date.parse("0001-01-01T00:00:00Z") && ms <= Date.parse("9999-12-31T23:59:59.999Z"))) {
    throw new InvalidQueryError(field, "is not a valid time");
  }
  return new Date(ms).toISOString();
}

/** Validates a search query; throws InvalidQueryError naming the field. */
export function normalizeQuery(q: ShipmentQuery): NormalizedQuery {
  const out: NormalizedQuery = { pageSize: checkPageSize(q.pageSize) };
  const after = decodeCursor(q.cursor);
  if (after) out.after = after;
  if (q.customerId !== undefined) out.customerId = q.customerId;
  if (q.carrierCode !== undefined) out.carrierCode = q.carrierCode;
  if (q.statuses !== undefined) {
    if (q.statuses.length === 0) throw new InvalidQueryError("statuses", "must not be empty when given");
    for (const s of q.statuses) {
      if (typeof ShipmentStatus[s] !== "string" || s === ShipmentStatus.UNSPECIFIED) {
        throw new InvalidQueryError("statuses", `unknown status ${String(s)}`);
      }
    }
    out.statuses = [...q.statuses];
  }
  if (q.updatedAfter !== undefined) out.updatedAfter = isoTime(q.updatedAfter, "updatedAfter");
  if (q.updatedBefore !== undefined) out.updatedBefore = isoTime(q.updatedBefore, "updatedBefore");
  if (q.near !== undefined) {
    const { lat, lon, radiusKm } = q.near;
    if (!Number.isFinite(lat) || lat < -90 || lat > 90) throw new InvalidQueryError("near.lat", "must be in [-90, 90]");
    if (!Number.isFinite(lon) || lon < -180 || lon > 180) throw new InvalidQueryError("near.lon", "must be in [-180, 180]");
    if (!Number.isFinite(radiusKm) || radiusKm <= 0 || radiusKm > 20_000) {
      throw new InvalidQueryError("near.radiusKm", "must be in (0, 20000]");
    }
    out.near = { lat, lon, radiusKm };
  }
  return out;
}
