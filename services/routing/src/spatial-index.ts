import { EARTH_RADIUS_KM, haversineKm, type LatLon } from "./geo.js";

/** A nearest-neighbour query. */
export interface NearestQuery<T> {
  /** At most this many results. */
  limit: number;
  /** Only items within this great-circle distance; undefined or 0 means unlimited. */
  maxDistanceKm?: number;
  /** Only items for which this returns true. */
  filter?: (item: T) => boolean;
}

/** An item with its distance from the query point. */
export interface Neighbour<T> {
  readonly item: T;
  readonly distanceKm: number;
}

/** Finds the items nearest to a point by great-circle distance. */
export interface SpatialIndex<T> {
  /** Nearest first; ties broken by the items' order in the input. */
  nearest(point: LatLon, query: NearestQuery<T>): Neighbour<T>[];
  /** Every item within `radiusKm` of `point`, nearest first. */
  within(point: LatLon, radiusKm: number): Neighbour<T>[];
}

interface Node<T> {
  readonly item: T;
  readonly order: number;
  readonly p: readonly [number, number, number];
  readonly axis: 0 | 1 | 2;
  readonly left: Node<T> | undefined;
  readonly right: Node<T> | undefined;
}

const RAD = Math.PI / 180;

function unitVector(p: LatLon): [number, number, number] {
  const lat = p.lat * RAD;
  const lon = p.lon * RAD;
  return [Math.cos(lat) * Math.cos(lon), Math.cos(lat) * Math.sin(lon), Math.sin(lat)];
}

/** Great-circle kilometres → straight-line (chord) distance between unit vectors. */
function chordOf(km: number): number {
  return km >= Math.PI * EARTH_RADIUS_KM ? 2 : 2 * Math.sin(km / (2 * EARTH_RADIUS_KM));
}

/**
 * A k-d tree over the points' unit vectors on the sphere. The straight-line (chord) distance
 * between unit vectors grows monotonically with the great-circle distance, so Euclidean pruning
 * in 3-D is exact for great-circle queries, with no special cases at the antimeridian or the
 * poles. Reported distances are haversine kilometres.
 */
export function createSpatialIndex<T extends LatLon>(items: readonly T[]): SpatialIndex<T> {
  const build = (entries: { item: T; order: number; p: [number, number, number] }[], depth: number): Node<T> | undefined => {
    if (entries.length === 0) return undefined;
    const axis = (depth % 3) as 0 | 1 | 2;
    entries.sort((a, b) => a.p[axis] - b.p[axis] || a.order - b.order);
    const mid = entries.length >> 1;
    const e = entries[mid]!;
    return {
      ...e,
      axis,
      left: build(entries.slice(0, mid), depth + 1),
      right: build(entries.slice(mid + 1), depth + 1),
    };
  };
  const root = build(
    items.map((item, order) => ({ item, order, p: unitVector(item) })),
    0,
  );

  const search = (point: LatLon, limit: number, maxKm: number, filter?: (item: T) => boolean): Neighbour<T>[] => {
    const q = unitVector(point);
    const maxChord = chordOf(maxKm);
    // Best candidates so far, sorted by (chord, order); bounded by `limit`.
    const best: { node: Node<T>; chord: number }[] = [];
    const bound = () => (best.length < limit ? maxChord : Math.min(maxChord, best[best.length - 1]!.chord));
    const visit = (n: Node<T> | undefined) => {
      if (!n) return;
      const dx = q[0] - n.p[0];
      const dy = q[1] - n.p[1];
      const dz = q[2] - n.p[2];
      const chord = Math.sqrt(dx * dx + dy * dy + dz * dz);
      if (chord <= bound() && (!filter || filter(n.item))) {
        let i = best.length;
        while (i > 0 && (best[i - 1]!.chord > chord || (best[i - 1]!.chord === chord && best[i - 1]!.node.order > n.order))) i--;
        best.splice(i, 0, { node: n, chord });
        if (best.length > limit) best.pop();
      }
      const diff = q[n.axis] - n.p[n.axis];
      const [near, far] = diff < 0 ? [n.left, n.right] : [n.right, n.left];
      visit(near);
      if (Math.abs(diff) <= bound()) visit(far);
    };
    visit(root);
    return best
      .map(({ node }) => ({ item: node.item, distanceKm: haversineKm(point, node.item), order: node.order }))
      .filter((n) => n.distanceKm <= maxKm)
      .sort((a, b) => a.distanceKm - b.distanceKm || a.order - b.order)
      .map(({ item, distanceKm }) => ({ item, distanceKm }));
  };

  return {
    nearest: (point, q) =>
      q.limit <= 0 ? [] : search(point, q.limit, q.maxDistanceKm && q.maxDistanceKm > 0 ? q.maxDistanceKm : Infinity, q.filter),
    within: (point, radiusKm) => search(point, items.length, radiusKm),
  };
}
