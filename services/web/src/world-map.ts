import { geoCircle, geoGraticule10, geoNaturalEarth1, geoPath, type GeoPermissibleObjects } from "d3-geo";
import type { Feature, FeatureCollection, Geometry, MultiLineString } from "geojson";
import { feature, mesh } from "topojson-client";
import type { GeometryCollection, Topology } from "topojson-specification";
import type { MapModel, MapPlace } from "./journey.js";
import { placeLabels, type Box, type LabelRequest } from "./label-layout.js";

const SVG_NS = "http://www.w3.org/2000/svg";
/** Label text size (CSS pixels): the map is drawn at its on-screen size, so this is what readers see. */
const LABEL_PX = 13;
/** The smallest area shown around a route (degrees of arc from its middle), so a short route keeps its context. */
const MIN_RADIUS_DEG = 9;

/** Land and country borders from Natural Earth (1:110m). */
interface World {
  readonly land: Feature<Geometry> | FeatureCollection<Geometry>;
  readonly borders: MultiLineString;
}

let world: Promise<World> | undefined;

/** Loads the world outline once, as its own chunk, so the page's first paint does not wait for it. */
function loadWorld(): Promise<World> {
  world ??= import("world-atlas/countries-110m.json").then((m) => {
    const topo = m.default as unknown as Topology;
    return {
      land: feature(topo, topo.objects["land"]!),
      borders: mesh(topo, topo.objects["countries"] as GeometryCollection, (a, b) => a !== b),
    };
  });
  return world;
}

/** Texts the map needs (already localized). */
export interface MapTexts {
  /** Accessible description of the whole map. */
  readonly summary: string;
  /** Title of the last-known-position marker. */
  readonly youAreHere: string;
}

/** A map that stays on the page across updates and redraws itself when its width changes. */
export interface RouteMapView {
  readonly element: HTMLElement;
  update(model: MapModel, texts: MapTexts): void;
}

/**
 * The route map: Natural Earth land and borders (`world-atlas`, via `topojson-client`) in a Natural
 * Earth projection (`d3-geo`), rotated so the route's middle longitude is the map's centre and
 * zoomed to the route. Legs are great-circle arcs (d3-geo interpolates LineStrings along the
 * sphere), so a trans-Pacific leg crosses the antimeridian as one line instead of leaving the
 * frame. The SVG is drawn at its on-screen pixel size (re-drawn when that changes), so labels keep
 * a readable size on a phone; labels are placed without overlaps (see label-layout.ts).
 */
export function createRouteMap(): RouteMapView {
  const figure = document.createElement("figure");
  figure.className = "map-frame";
  let current: { model: MapModel; texts: MapTexts } | undefined;
  let loaded: World | undefined;
  let drawnWidth = 0;

  const draw = () => {
    if (!current) return;
    const width = Math.round(figure.clientWidth) || 640;
    drawnWidth = width;
    figure.replaceChildren(drawMap(current.model, current.texts, loaded, width));
  };
  new ResizeObserver(() => {
    if (Math.round(figure.clientWidth) !== drawnWidth) draw();
  }).observe(figure);
  loadWorld().then(
    (w) => {
      loaded = w;
      draw();
    },
    () => {
      // The map stays without land; routes and places are still drawn.
    },
  );
  return {
    element: figure,
    update(model, texts) {
      current = { model, texts };
      draw();
    },
  };
}

/** The longitude in the middle of the points: opposite the widest empty arc between them. */
export function centralLongitude(lons: readonly number[]): number {
  if (lons.length === 0) return 0;
  const sorted = [...lons].map((l) => ((l % 360) + 540) % 360 - 180).sort((a, b) => a - b);
  let gapStart = sorted[sorted.length - 1]!;
  let widest = sorted[0]! + 360 - gapStart;
  for (let i = 1; i < sorted.length; i++) {
    const gap = sorted[i]! - sorted[i - 1]!;
    if (gap > widest) {
      widest = gap;
      gapStart = sorted[i - 1]!;
    }
  }
  const middle = gapStart + widest / 2 + 180;
  return ((middle % 360) + 540) % 360 - 180;
}

function drawMap(model: MapModel, texts: MapTexts, w: World | undefined, width: number): SVGSVGElement {
  const height = Math.max(240, Math.min(440, Math.round(width * 0.6)));
  const pts = [...model.places, ...(model.current ? [model.current] : [])];
  const lon0 = centralLongitude(pts.map((p) => p.longitude));
  const lat0 = pts.length ? pts.reduce((s, p) => s + p.latitude, 0) / pts.length : 20;
  const projection = geoNaturalEarth1().rotate([-lon0, 0]).precision(0.2);
  const lines = model.lines
    .filter((l) => l.from.longitude !== l.to.longitude || l.from.latitude !== l.to.latitude)
    .map((l) => ({
      line: l,
      geometry: { type: "LineString" as const, coordinates: [[l.from.longitude, l.from.latitude], [l.to.longitude, l.to.latitude]] },
    }));
  const fitTo: GeoPermissibleObjects = pts.length
    ? {
        type: "GeometryCollection",
        geometries: [
          ...lines.map((l) => l.geometry),
          ...pts.map((p) => ({ type: "Point" as const, coordinates: [p.longitude, p.latitude] })),
          geoCircle().center([lon0, lat0]).radius(MIN_RADIUS_DEG)(),
        ],
      }
    : { type: "Sphere" };
  const padX = Math.min(64, width * 0.12);
  projection.fitExtent(
    [
      [padX, 28],
      [width - padX, height - 28],
    ],
    fitTo,
  );
  projection.clipExtent([
    [0, 0],
    [width, height],
  ]);
  const path = geoPath(projection);

  const svg = el("svg", {
    class: "world-map",
    width: String(width),
    height: String(height),
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-labelledby": "route-map-title",
    focusable: "false",
    "data-projection": "naturalEarth1",
    "data-rotate": String(-lon0),
    "data-scale": String(projection.scale()),
    "data-translate": projection.translate().join(","),
  });
  const title = el("title", { id: "route-map-title" });
  title.textContent = texts.summary;
  svg.append(title);
  svg.append(el("path", { class: "sphere", d: path({ type: "Sphere" }) ?? "" }));
  svg.append(el("path", { class: "graticule", d: path(geoGraticule10()) ?? "" }));
  if (w) {
    svg.append(el("path", { class: "land", d: path(w.land) ?? "" }));
    svg.append(el("path", { class: "borders", d: path(w.borders) ?? "" }));
  }

  const legs = el("g", { class: "legs" });
  for (const { line, geometry } of lines) {
    const p = el("path", { class: `leg ${line.state}`, d: path(geometry) ?? "", "data-leg": line.title });
    const t = el("title", {});
    t.textContent = line.title;
    p.append(t);
    legs.append(p);
  }
  svg.append(legs);

  const markers = el("g", { class: "places" });
  const obstacles: Box[] = [];
  const groups = new Map<string, { place: MapPlace; x: number; y: number; priority: number }>();
  const currentXY = model.current ? projection([model.current.longitude, model.current.latitude]) : null;
  for (const place of model.places) {
    const xy = projection([place.longitude, place.latitude]);
    if (!xy || xy[0] < 0 || xy[1] < 0 || xy[0] > width || xy[1] > height) continue;
    const [x, y] = xy;
    const r = place.role === "origin" || place.role === "destination" ? 5.5 : 4;
    const c = el("circle", { cx: fmt(x), cy: fmt(y), r: String(r), class: `place ${place.role}` });
    const t = el("title", {});
    t.textContent = `${place.label} (${place.key})`;
    c.append(t);
    markers.append(c);
    obstacles.push({ x: x - r - 1, y: y - r - 1, width: 2 * r + 2, height: 2 * r + 2 });
    const priority = place.role === "origin" || place.role === "destination" ? 3 : place.role === "visited" ? 2 : 1;
    const prev = groups.get(place.label);
    if (!prev || prev.priority < priority) groups.set(place.label, { place, x, y, priority });
  }
  if (currentXY) {
    const [x, y] = currentXY;
    markers.append(el("circle", { cx: fmt(x), cy: fmt(y), r: "9", class: "current-ring" }));
    const c = el("circle", { cx: fmt(x), cy: fmt(y), r: "6", class: "current" });
    const t = el("title", {});
    t.textContent = texts.youAreHere;
    c.append(t);
    markers.append(c);
    obstacles.push({ x: x - 10, y: y - 10, width: 20, height: 20 });
  }
  svg.append(markers);

  const requests: LabelRequest[] = [...groups.values()].map((g) => ({
    key: g.place.key,
    text: g.place.label,
    x: g.x,
    y: g.y,
    clearance: clearanceAround(g.x, g.y, obstacles),
    width: textWidth(g.place.label) + 2,
    height: Math.ceil(LABEL_PX * 1.3),
    priority: g.priority,
  }));
  const labels = el("g", { class: "labels", "aria-hidden": "true" });
  for (const l of placeLabels(requests, { x: 2, y: 2, width: width - 4, height: height - 4 }, obstacles)) {
    const t = el("text", { class: "place-label", x: fmt(l.textX), y: fmt(l.textY), "text-anchor": l.anchor, "data-key": l.key });
    t.textContent = l.text;
    labels.append(t);
  }
  svg.append(labels);
  return svg;
}

/**
 * How far a label must stay from its anchor: past the far edge of every marker drawn on or right
 * next to it (its own, a hub of the same city, the last-position marker).
 */
function clearanceAround(x: number, y: number, obstacles: readonly Box[]): number {
  let clearance = 0;
  for (const b of obstacles) {
    const cx = b.x + b.width / 2;
    const cy = b.y + b.height / 2;
    if (Math.hypot(cx - x, cy - y) > 14) continue;
    clearance = Math.max(clearance, Math.abs(cx - x) + b.width / 2, Math.abs(cy - y) + b.height / 2);
  }
  return clearance;
}

let measure: CanvasRenderingContext2D | null | undefined;

/** Width of a label in pixels, measured with the page's font (an estimate when canvas is unavailable). */
function textWidth(text: string): number {
  if (measure === undefined) {
    measure = document.createElement("canvas").getContext("2d");
    if (measure) measure.font = `600 ${LABEL_PX}px ${getComputedStyle(document.body).fontFamily || "sans-serif"}`;
  }
  return measure ? Math.ceil(measure.measureText(text).width) : Math.ceil(text.length * LABEL_PX * 0.62);
}

function el<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string>): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function fmt(n: number): string {
  return String(Math.round(n * 10) / 10);
}
