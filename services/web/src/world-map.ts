import { CONTINENTS } from "./continents.js";

const SVG_NS = "http://www.w3.org/2000/svg";

/** A point to mark on the map. */
export interface MapPoint {
  readonly longitude: number;
  readonly latitude: number;
  readonly label: string;
  /** "hub" (route hub), "current" (last known position), "end" (origin or destination). */
  readonly role: "hub" | "current" | "end";
}

/** A leg to draw between two points. */
export interface MapLeg {
  readonly from: { readonly longitude: number; readonly latitude: number };
  readonly to: { readonly longitude: number; readonly latitude: number };
  /** Legs already travelled are drawn solid, the rest dashed. */
  readonly done: boolean;
  readonly title: string;
}

/** Equirectangular projection into a 360×180 box: x = lon + 180, y = 90 − lat. */
export function project(longitude: number, latitude: number): [number, number] {
  return [longitude + 180, 90 - latitude];
}

/**
 * Renders the world outline (graticule every 30°, rough continents), the route's legs and its
 * points as an SVG element, zoomed to the points with some margin (whole world when there are
 * none). Legs crossing the antimeridian are split so they do not run across the whole map.
 */
export function renderWorldMap(points: readonly MapPoint[], legs: readonly MapLeg[]): SVGSVGElement {
  const svg = el("svg", { class: "world-map", role: "img", "aria-label": "Route map", preserveAspectRatio: "xMidYMid meet" });
  svg.setAttribute("viewBox", viewBoxFor([...points, ...legs.flatMap((l) => [l.from, l.to])]));

  svg.append(el("rect", { class: "sea", x: "-360", y: "-180", width: "1080", height: "540" }));
  const grid = el("g", { class: "graticule" });
  for (let lon = -180; lon <= 180; lon += 30) grid.append(line(project(lon, 90), project(lon, -90)));
  for (let lat = -60; lat <= 60; lat += 30) grid.append(line(project(-180, lat), project(180, lat)));
  svg.append(grid);

  const land = el("g", { class: "land" });
  for (const ring of CONTINENTS) {
    land.append(el("polygon", { points: ring.map(([lon, lat]) => project(lon, lat).join(",")).join(" ") }));
  }
  svg.append(land);

  const legsG = el("g", { class: "legs" });
  for (const leg of legs) {
    for (const [a, b] of splitAtAntimeridian(leg.from, leg.to)) {
      const l = line(project(a.longitude, a.latitude), project(b.longitude, b.latitude));
      l.setAttribute("class", leg.done ? "leg done" : "leg planned");
      const title = el("title", {});
      title.textContent = leg.title;
      l.append(title);
      legsG.append(l);
    }
  }
  svg.append(legsG);

  const pts = el("g", { class: "points" });
  for (const p of points) {
    const [x, y] = project(p.longitude, p.latitude);
    const c = el("circle", { cx: fmt(x), cy: fmt(y), r: p.role === "current" ? "1.6" : "1", class: `pt ${p.role}` });
    const title = el("title", {});
    title.textContent = p.label;
    c.append(title);
    pts.append(c);
    if (p.role !== "current") {
      const t = el("text", { x: fmt(x + 1.4), y: fmt(y - 1), class: "pt-label" });
      t.textContent = p.label;
      pts.append(t);
    }
  }
  svg.append(pts);
  return svg;
}

function viewBoxFor(ps: ReadonlyArray<{ readonly longitude: number; readonly latitude: number }>): string {
  if (ps.length === 0) return "0 0 360 180";
  const xs = ps.map((p) => project(p.longitude, p.latitude));
  let minX = Math.min(...xs.map((p) => p[0]));
  let maxX = Math.max(...xs.map((p) => p[0]));
  let minY = Math.min(...xs.map((p) => p[1]));
  let maxY = Math.max(...xs.map((p) => p[1]));
  const pad = 12;
  minX -= pad;
  maxX += pad;
  minY -= pad;
  maxY += pad;
  // Keep a 2:1 aspect and a minimum size, so a short domestic route is not a blur.
  let w = Math.max(maxX - minX, 60);
  let h = Math.max(maxY - minY, 30);
  if (w < 2 * h) w = 2 * h;
  else h = w / 2;
  w = Math.min(w, 360);
  h = Math.min(h, 180);
  const cx = (minX + maxX) / 2;
  const cy = (minY + maxY) / 2;
  const x = Math.max(0, Math.min(360 - w, cx - w / 2));
  const y = Math.max(0, Math.min(180 - h, cy - h / 2));
  return [x, y, w, h].map(fmt).join(" ");
}

type LonLat = { readonly longitude: number; readonly latitude: number };

function splitAtAntimeridian(a: LonLat, b: LonLat): Array<[LonLat, LonLat]> {
  const d = b.longitude - a.longitude;
  if (Math.abs(d) <= 180) return [[a, b]];
  // Cross the ±180 meridian: interpolate latitude at the crossing.
  const east = a.longitude > 0;
  const bShifted = b.longitude + (east ? 360 : -360);
  const edge = east ? 180 : -180;
  const t = (edge - a.longitude) / (bShifted - a.longitude);
  const lat = a.latitude + t * (b.latitude - a.latitude);
  return [
    [a, { longitude: edge, latitude: lat }],
    [{ longitude: -edge, latitude: lat }, b],
  ];
}

function line([x1, y1]: [number, number], [x2, y2]: [number, number]): SVGElement {
  return el("line", { x1: fmt(x1), y1: fmt(y1), x2: fmt(x2), y2: fmt(y2) });
}

function el<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string>): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function fmt(n: number): string {
  return String(Math.round(n * 100) / 100);
}
