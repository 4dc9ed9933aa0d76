import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { roundCoordinate } from "../derive.js";
import type { NormalizedQuery } from "../query.js";

/**
 * Grid of the area index (migration 2, `shipment_geo_cell`): cells of 1/4° of latitude by 1/4°
 * of longitude, numbered `floor((lat + 90) * 4) * 1441 + floor((lon + 180) * 4)`. The SQL
 * function and {@link geoCell} compute the same number with the same double arithmetic.
 */
export const GEO_CELLS_PER_DEGREE = 4;
const LON_COLUMNS = 360 * GEO_CELLS_PER_DEGREE + 1;
const MAX_ROW = 180 * GEO_CELLS_PER_DEGREE;

/**
 * Most grid cells an area search visits one by one; a larger area (a radius beyond about 100 km)
 * is searched with the GiST index instead, where a large share of all shipments usually matches.
 */
export const MAX_AREA_CELLS = 64;

/** earthdistance's `earth()`: the sphere radius, km, that `earth_distance` measures on. */
const EARTH_RADIUS_KM = 6378.168;

/** The cell holding a position (the SQL function `shipment_geo_cell`). */
export function geoCell(lat: number, lon: number): number {
  return Math.floor((lat + 90) * GEO_CELLS_PER_DEGREE) * LON_COLUMNS + Math.floor((lon + 180) * GEO_CELLS_PER_DEGREE);
}

/**
 * Every grid cell that holds a point within `radiusKm` (great-circle distance on earthdistance's
 * sphere) of the center, or undefined when more than `max` cells would. The cells cover the
 * circle's bounding coordinates (J. Matuschek, "Finding Points Within a Distance of a
 * Latitude/Longitude Using Bounding Coordinates"), widened by a hair against rounding; a pole
 * inside the circle takes every longitude, a circle across the antimeridian takes both sides.
 */
export function coveringCells(lat: number, lon: number, radiusKm: number, max = MAX_AREA_CELLS): number[] | undefined {
  const rad = Math.PI / 180;
  const d = (radiusKm / EARTH_RADIUS_KM) * (1 + 1e-9) + 1e-12;
  const latMin = lat * rad - d;
  const latMax = lat * rad + d;
  let lonRanges: Array<[number, number]>;
  if (latMin <= -Math.PI / 2 || latMax >= Math.PI / 2 || d >= Math.PI / 2) {
    lonRanges = [[-180, 180]];
  } else {
    const dLon = Math.asin(Math.min(1, Math.sin(d) / Math.cos(lat * rad))) / rad + 1e-9;
    const lo = lon - dLon;
    const hi = lon + dLon;
    if (hi - lo >= 360) lonRanges = [[-180, 180]];
    else if (lo < -180) lonRanges = [[lo + 360, 180], [-180, hi]];
    else if (hi > 180) lonRanges = [[lo, 180], [-180, hi - 360]];
    else lonRanges = [[lo, hi]];
  }
  const row = (deg: number) => Math.min(MAX_ROW, Math.max(0, Math.floor((deg + 90) * GEO_CELLS_PER_DEGREE)));
  const col = (deg: number) => Math.min(LON_COLUMNS - 1, Math.max(0, Math.floor((deg + 180) * GEO_CELLS_PER_DEGREE)));
  const rows: [number, number] = [row(Math.max(-90, latMin / rad - 1e-9)), row(Math.min(90, latMax / rad + 1e-9))];
  const cols = lonRanges.map(([a, b]) => [col(a), col(b)] as const);
  const count = (rows[1] - rows[0] + 1) * cols.reduce((n, [a, b]) => n + b - a + 1, 0);
  if (count > max) return undefined;
  const cells: number[] = [];
  for (let i = rows[0]; i <= rows[1]; i++) for (const [a, b] of cols) for (let j = a; j <= b; j++) cells.push(i * LON_COLUMNS + j);
  return cells;
}

/** Every status a shipment can have (a customer's or carrier's search without a status filter visits each). */
const ALL_STATUSES: readonly ShipmentStatus[] = Object.values(ShipmentStatus).filter(
  (v): v is ShipmentStatus => typeof v === "number" && v !== ShipmentStatus.UNSPECIFIED,
);

/**
 * The SQL of a shipment search (exported so tests can EXPLAIN exactly what runs): the page of
 * shipments matching every filter in the searches' order, `updated_at DESC, tracking_number
 * DESC`, after the cursor's position; `pageSize + 1` rows, to know whether another page exists.
 *
 * A search whose filters pin a key of an index led by that key and then the sort order (a
 * customer's or carrier's status: `(customer_id, status, updated_at DESC, tracking_number DESC)`;
 * the area's grid cell: `(shipment_geo_cell(lat, lon), updated_at DESC, tracking_number DESC)`)
 * reads, for each value of the key, only the first page-plus-one entries of that value in sort
 * order, merges them and fetches the documents of the page: its cost grows with the page and the
 * number of key values, not with how many shipments match. The exact filters are applied inside
 * each key's scan, so the rows and their order are those of the plain query, page after page.
 * Other searches are one query over the table (the planner picks the index).
 *
 * The area filter is the earthdistance idiom: the exact `earth_distance` (and, on the GiST path,
 * `earth_box @> ll_to_earth(lat, lon)`, served by shipments_geo_idx).
 */
export function buildSearchSql(q: NormalizedQuery): { text: string; values: unknown[] } {
  const where: string[] = [];
  const values: unknown[] = [];
  const p = (v: unknown) => {
    values.push(v);
    return `$${values.length}`;
  };
  let keyed: { column: string; type: string; keys: readonly number[] } | undefined;
  const near = q.near && { lat: roundCoordinate(q.near.lat), lon: roundCoordinate(q.near.lon), radiusKm: q.near.radiusKm };
  const cells = near && coveringCells(near.lat, near.lon, near.radiusKm);
  if (cells) keyed = { column: "shipment_geo_cell(lat, lon)", type: "int", keys: cells };
  else if (!near && (q.customerId !== undefined || q.carrierCode !== undefined)) {
    keyed = { column: "status", type: "smallint", keys: q.statuses ? [...new Set(q.statuses)] : ALL_STATUSES };
  }
  if (q.customerId !== undefined) where.push(`customer_id = ${p(q.customerId)}`);
  if (q.carrierCode !== undefined) where.push(`carrier_code = ${p(q.carrierCode)}`);
  if (q.statuses && keyed?.column !== "status") where.push(`status = ANY(${p(q.statuses)}::smallint[])`);
  if (q.updatedAfter !== undefined) where.push(`updated_at >= ${p(q.updatedAfter)}::timestamptz`);
  if (q.updatedBefore !== undefined) where.push(`updated_at < ${p(q.updatedBefore)}::timestamptz`);
  if (near) {
    const center = `ll_to_earth(${p(near.lat)}::float8, ${p(near.lon)}::float8)`;
    const meters = `${p(near.radiusKm * 1000)}::float8`;
    where.push("lat IS NOT NULL AND lon IS NOT NULL");
    if (!cells) where.push(`earth_box(${center}, ${meters}) @> ll_to_earth(lat, lon)`);
    where.push(`earth_distance(${center}, ll_to_earth(lat, lon)) <= ${meters}`);
  }
  if (q.after) where.push(`(updated_at, tracking_number) < (${p(q.after[0])}::timestamptz, ${p(q.after[1])})`);
  const limit = p(q.pageSize + 1);
  if (!keyed) {
    const text = `SELECT doc FROM shipments ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
    ORDER BY updated_at DESC, tracking_number DESC LIMIT ${limit}`;
    return { text, values };
  }
  where.unshift(`${keyed.column} = k.v`);
  const text = `SELECT s.doc FROM (
      SELECT m.tracking_number, m.updated_at FROM unnest(${p(keyed.keys)}::${keyed.type}[]) AS k(v)
      CROSS JOIN LATERAL (
        SELECT tracking_number, updated_at FROM shipments WHERE ${where.join(" AND ")}
        ORDER BY updated_at DESC, tracking_number DESC LIMIT ${limit}) m
      ORDER BY m.updated_at DESC, m.tracking_number DESC LIMIT ${limit}) top
    JOIN shipments s ON s.tracking_number = top.tracking_number
    ORDER BY top.updated_at DESC, top.tracking_number DESC`;
  return { text, values };
}
