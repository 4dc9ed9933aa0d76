import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { roundCoordinate } from "../derive.js";
import type { NormalizedQuery } from "../query.js";

/**
 * Grid of the area index (migration 5, `shipment_geo_cell(lat, lon, 8)`): cells of 1/8° of
 * latitude by 1/8° of longitude (about 14 km north–south), numbered
 * `floor((lat + 90) * 8) * 2881 + floor((lon + 180) * 8)`. The SQL function and {@link geoCell}
 * compute the same number with the same double arithmetic.
 *
 * Why this size: a cell's scan reads, in sort order, the cell's entries until it has a page
 * within the radius, so it reads every entry of the cell that lies outside the circle before
 * that — all of them when none is inside. Shipments cluster (a hub, a depot, a city's parcels
 * share a position), so with 1/4° cells (migration 2) a 25 km search around one hub read every
 * shipment at a neighbouring hub 30–40 km away: at a day's data, thousands of entries for a page
 * of 50. With 1/8° cells, and only those reaching into the circle, what is read beyond the
 * circle is a band at most one cell wide along its rim. Smaller cells narrow the band but each
 * cell may give a page of entries to merge: 1/16° measured no faster at a tenth of a day and
 * read 2× the buffers of 1/8° on the small store.
 */
export const GEO_CELLS_PER_DEGREE = 8;
const LON_COLUMNS = 360 * GEO_CELLS_PER_DEGREE + 1;
const MAX_ROW = 180 * GEO_CELLS_PER_DEGREE;

/** The index expression of the grid cell (migration 5); the searches name it exactly so. */
export const GEO_CELL_SQL = `shipment_geo_cell(lat, lon, ${GEO_CELLS_PER_DEGREE})`;

/**
 * Most grid cells an area search visits one by one (a radius up to about 100 km); a larger area
 * is searched with the GiST index instead, where a large share of all shipments usually matches.
 * Each cell costs one index descent (a few cached pages) and at most a page of entries.
 */
export const MAX_AREA_CELLS = 256;

/** earthdistance's `earth()`: the sphere radius, km, that `earth_distance` measures on. */
const EARTH_RADIUS_KM = 6378.168;
const RAD = Math.PI / 180;

/** The cell holding a position (the SQL function `shipment_geo_cell(lat, lon, 8)`). */
export function geoCell(lat: number, lon: number): number {
  return Math.floor((lat + 90) * GEO_CELLS_PER_DEGREE) * LON_COLUMNS + Math.floor((lon + 180) * GEO_CELLS_PER_DEGREE);
}

/**
 * A lower bound, in radians of arc, of the great-circle distance from (lat, lon) to any point of
 * the cell spanning latitudes `[south, north]` and longitudes `[west, east]` (degrees). Exact
 * where it matters (a center outside the cell and under 90° of longitude from it): the nearest
 * point then lies on one of the cell's meridian edges, where the distance to the center has one
 * minimum (at latitude `atan2(sin φ, cos φ cos Δλ)`, clamped to the edge); 0 otherwise, which
 * only keeps a cell.
 */
function cellDistance(lat: number, lon: number, south: number, north: number, west: number, east: number): number {
  const wrap = (d: number) => ((((d + 180) % 360) + 360) % 360) - 180;
  const phi = lat * RAD;
  if (wrap(lon - west) >= 0 && wrap(lon - west) <= east - west) {
    return lat > north ? (lat - north) * RAD : lat < south ? (south - lat) * RAD : 0;
  }
  let best = Math.PI;
  for (const edge of [west, east]) {
    const dLon = wrap(lon - edge) * RAD;
    if (Math.cos(dLon) <= 0) return 0;
    const t = Math.min(north * RAD, Math.max(south * RAD, Math.atan2(Math.sin(phi), Math.cos(phi) * Math.cos(dLon))));
    // Haversine: precise for short distances, where acos of the dot product is not.
    const h = Math.sin((t - phi) / 2) ** 2 + Math.cos(phi) * Math.cos(t) * Math.sin(dLon / 2) ** 2;
    best = Math.min(best, 2 * Math.asin(Math.min(1, Math.sqrt(h))));
  }
  return best;
}

/**
 * Every grid cell that can hold a point within `radiusKm` (great-circle distance on
 * earthdistance's sphere) of the center, or undefined when more than `max` cells would. The
 * candidates cover the circle's bounding coordinates (J. Matuschek, "Finding Points Within a
 * Distance of a Latitude/Longitude Using Bounding Coordinates"), widened by a hair against
 * rounding; a pole inside the circle takes every longitude, a circle across the antimeridian
 * takes both sides. Of those, the cells whose nearest point is farther than the radius (the
 * corners of the bounding box) are left out.
 */
export function coveringCells(lat: number, lon: number, radiusKm: number, max = MAX_AREA_CELLS): number[] | undefined {
  const d = (radiusKm / EARTH_RADIUS_KM) * (1 + 1e-9) + 1e-12;
  const latMin = lat * RAD - d;
  const latMax = lat * RAD + d;
  let lonRanges: Array<[number, number]>;
  if (latMin <= -Math.PI / 2 || latMax >= Math.PI / 2 || d >= Math.PI / 2) {
    lonRanges = [[-180, 180]];
  } else {
    const dLon = Math.asin(Math.min(1, Math.sin(d) / Math.cos(lat * RAD))) / RAD + 1e-9;
    const lo = lon - dLon;
    const hi = lon + dLon;
    if (hi - lo >= 360) lonRanges = [[-180, 180]];
    else if (lo < -180) lonRanges = [[lo + 360, 180], [-180, hi]];
    else if (hi > 180) lonRanges = [[lo, 180], [-180, hi - 360]];
    else lonRanges = [[lo, hi]];
  }
  const row = (deg: number) => Math.min(MAX_ROW, Math.max(0, Math.floor((deg + 90) * GEO_CELLS_PER_DEGREE)));
  const col = (deg: number) => Math.min(LON_COLUMNS - 1, Math.max(0, Math.floor((deg + 180) * GEO_CELLS_PER_DEGREE)));
  const rows: [number, number] = [row(Math.max(-90, latMin / RAD - 1e-9)), row(Math.min(90, latMax / RAD + 1e-9))];
  const cols = lonRanges.map(([a, b]) => [col(a), col(b)] as const);
  const count = (rows[1] - rows[0] + 1) * cols.reduce((n, [a, b]) => n + b - a + 1, 0);
  if (count > 4 * max) return undefined;
  const size = 1 / GEO_CELLS_PER_DEGREE;
  const cells: number[] = [];
  for (let i = rows[0]; i <= rows[1]; i++) {
    const south = i * size - 90;
    for (const [a, b] of cols) {
      for (let j = a; j <= b; j++) {
        const west = j * size - 180;
        if (cellDistance(lat, lon, south, south + size, west, west + size) <= d) cells.push(i * LON_COLUMNS + j);
      }
    }
  }
  return cells.length > max ? undefined : cells;
}

/**
 * The area filter of a cell's scan: the same rows as `exact` (`earth_distance(center,
 * ll_to_earth(lat, lon)) <= r`), decided by a chord in plain arithmetic. earthdistance's
 * `ll_to_earth` and `sec_to_gc` are SQL functions PostgreSQL cannot inline (a domain cast, a
 * CASE), so each call runs through the SQL-function executor: ~10 µs per entry, most of a
 * search's time when a cell holds many entries outside the circle. earth_distance is
 * `2R·asin(c / 2R)` of the chord c between the points on the sphere of radius R, so it is
 * ≤ r exactly when the squared chord on the unit sphere is ≤ `(2 sin(r / 2R))²`. That chord is
 * computed here from the row's lat/lon with `sin`/`cos` and the center's unit vector (a
 * parameter); only a row within a hair of the rim (rounding of either computation: 1e-9 relative,
 * millimetres) is left to `exact`.
 */
function withinSql(near: { lat: number; lon: number; radiusKm: number }, exact: string, p: (v: unknown) => string): string {
  const half = near.radiusKm / (2 * EARTH_RADIUS_KM);
  if (half >= Math.PI / 2) return exact;
  const phi = near.lat * RAD;
  const lambda = near.lon * RAD;
  const [x, y, z] = [Math.cos(phi) * Math.cos(lambda), Math.cos(phi) * Math.sin(lambda), Math.sin(phi)];
  const t = (2 * Math.sin(half)) ** 2;
  const margin = t * 1e-9 + 1e-18;
  const chord2 =
    `(cos(radians(lat)) * cos(radians(lon)) - ${p(x)}::float8) ^ 2 + (cos(radians(lat)) * sin(radians(lon)) - ${p(y)}::float8) ^ 2` +
    ` + (sin(radians(lat)) - ${p(z)}::float8) ^ 2`;
  return `(${chord2} <= ${p(t - margin)}::float8 OR (${chord2} <= ${p(t + margin)}::float8 AND ${exact}))`;
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
 * the area's grid cell: `(shipment_geo_cell(lat, lon, 8), updated_at DESC, tracking_number DESC)`,
 * or with a customer `(customer_id, shipment_geo_cell(lat, lon, 8), updated_at DESC, …)`) reads,
 * for each value of the key, only the first page-plus-one entries of that value in sort order,
 * merges them and fetches the documents of the page: its cost grows with the page and the number
 * of key values, not with how many shipments match. The exact filters are applied inside each
 * key's scan, so the rows and their order are those of the plain query, page after page. Other
 * searches are one query over the table (the planner picks the index).
 *
 * A customer's search never reads other customers' entries (every search of a customer token
 * has a customer): an area search goes cell by cell through the customer's own entries of each
 * cell (migration 7), and an area too wide for cells goes status by status through the
 * customer's shipments, with the area as a filter. Before migration 7, on 100 025 shipments of
 * 201 customers, 57 169 of them within 25 km of Paris, a customer with 20 shipments there read
 * all 62 000 grid entries of the 23 cells (873 buffers), a customer with 7 002 shipments read its
 * 7 002 entries once per cell (161 000, 6 794 buffers); now they read 20 entries (153 buffers,
 * mostly the 23 index descents and the 20 documents) and 1 100 (284 buffers). Over 500 km the
 * small one read the 83 026 GiST entries of the box (867 buffers), now its own 25. The price of
 * the status path: a large customer searching a wide area where it has nothing reads all of its
 * own shipments, where the empty box cost nothing (services/tracking/README.md).
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
  if (cells) keyed = { column: GEO_CELL_SQL, type: "int", keys: cells };
  else if (q.customerId !== undefined || (!near && q.carrierCode !== undefined)) {
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
    const exact = `earth_distance(${center}, ll_to_earth(lat, lon)) <= ${meters}`;
    where.push("lat IS NOT NULL AND lon IS NOT NULL");
    // Keyed by status (a customer's search of a wide area), the area is a filter only: offered
    // the GiST operator, the planner (which estimates earth_box matches at a fixed 100 rows) ANDs
    // every tenant's entries in the box with the customer's.
    if (keyed) where.push(withinSql(near, exact, p));
    else where.push(`earth_box(${center}, ${meters}) @> ll_to_earth(lat, lon)`, exact);
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
