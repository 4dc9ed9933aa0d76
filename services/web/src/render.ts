import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Shipment, ShipmentEvent } from "../../shared/src/gen/logistics/tracking/v1/tracking_pb.js";
import {
  eventKindLabel,
  formatAtLongitude,
  formatInZone,
  formatLocal,
  formatRelative,
  modeLabel,
  statusLabel,
  statusTone,
  viewerTimeZone,
} from "./format.js";
import type { HubInfo } from "./page-config.js";
import { eventTimeMs, type ShipmentModel } from "./shipment-model.js";
import type { WatchState } from "./shipment-watch.js";
import { renderWorldMap, type MapLeg, type MapPoint } from "./world-map.js";

/** Creates an element with a class and optional text. */
function h<K extends keyof HTMLElementTagNameMap>(tag: K, cls = "", text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** The banner for a watch state; empty (hidden) while live. */
export function renderBanner(target: HTMLElement, state: WatchState, trackingNumber: string): void {
  target.hidden = false;
  target.className = "banner";
  switch (state.kind) {
    case "connecting":
      target.classList.add("info");
      target.textContent = `Looking up ${trackingNumber}…`;
      target.dataset["state"] = "connecting";
      return;
    case "live":
      target.hidden = true;
      target.textContent = "";
      target.dataset["state"] = "live";
      return;
    case "retrying": {
      const s = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
      target.classList.add("warn");
      const why = state.reason === "connection lost" ? "" : ` (${state.reason})`;
      target.textContent = `Connection lost${why}, retrying${s > 0 ? ` in ${s} s` : ""}… Updates resume where they stopped.`;
      target.dataset["state"] = "retrying";
      return;
    }
    case "not-found":
      target.classList.add("bad");
      target.textContent = `No shipment with tracking number ${trackingNumber}. Check the number and try again; new shipments can take a moment to appear.`;
      target.dataset["state"] = "not-found";
      return;
    case "error":
      target.classList.add("bad");
      target.textContent = `Something went wrong: ${state.message}`;
      target.dataset["state"] = "error";
      return;
    case "stopped":
      target.hidden = true;
      target.dataset["state"] = "stopped";
      return;
  }
}

/** Renders the whole shipment view into `target` (replacing what was there). */
export function renderShipment(
  target: HTMLElement,
  model: ShipmentModel,
  hubs: ReadonlyMap<string, HubInfo>,
  live: boolean,
): void {
  const s = model.shipment;
  // Keep what the reader expanded across live re-renders.
  const etaOpen = target.querySelector<HTMLDetailsElement>("details.eta-details")?.open ?? false;
  target.replaceChildren();
  if (!s) {
    target.hidden = true;
    return;
  }
  target.hidden = false;
  target.append(summary(s, hubs, live), eta(s, model, etaOpen), routeMap(s, model.events, hubs), timeline(model.events, hubs));
}

function summary(s: Shipment, hubs: ReadonlyMap<string, HubInfo>, live: boolean): HTMLElement {
  const sec = h("section", "card summary");
  const top = h("div", "summary-top");
  top.append(h("h2", "tn", s.trackingNumber));
  const liveTag = h("span", `live ${live ? "on" : "off"}`, live ? "Live" : "Offline");
  liveTag.dataset["testid"] = "live";
  top.append(liveTag);
  sec.append(top);
  const badge = h("p", `status ${statusTone(s.status)}`, statusLabel(s.status));
  badge.dataset["testid"] = "status";
  badge.dataset["status"] = String(s.status);
  sec.append(badge);
  const details = h("dl", "facts");
  const fact = (k: string, v: string) => {
    if (!v) return;
    details.append(h("dt", "", k), h("dd", "", v));
  };
  if (s.lastCarrierStatus) fact("Carrier says", `${s.lastCarrierStatus.text || s.lastCarrierStatus.code}`);
  if (s.statusTime) fact("Since", formatLocal(timestampMs(s.statusTime)));
  if (s.currentHubCode) fact("Last hub", hubName(s.currentHubCode, hubs));
  const place = (p: Shipment["origin"]) => (p ? [p.city, p.countryCode].filter(Boolean).join(", ") : "");
  fact("From", place(s.origin));
  fact("To", place(s.destination));
  if (s.deliveredAt) fact("Delivered", formatLocal(timestampMs(s.deliveredAt)));
  sec.append(details);
  return sec;
}

function eta(s: Shipment, model: ShipmentModel, historyOpen: boolean): HTMLElement {
  const sec = h("section", "card eta");
  sec.dataset["testid"] = "eta";
  sec.append(h("h3", "", "Estimated delivery"));
  const e = s.eta ?? s.route?.eta;
  if (s.deliveredAt) {
    sec.append(h("p", "eta-main", `Delivered ${formatLocal(timestampMs(s.deliveredAt))}`));
  } else if (e?.estimatedArrival) {
    const ms = timestampMs(e.estimatedArrival);
    sec.append(h("p", "eta-main", `${formatLocal(ms)} (${formatRelative(ms)})`));
    if (e.earliest && e.latest) {
      const conf = e.confidence > 0 ? `, ${Math.round(e.confidence * 100)}% likely` : "";
      sec.append(h("p", "muted", `Window ${formatLocal(timestampMs(e.earliest))} – ${formatLocal(timestampMs(e.latest))}${conf}`));
    }
  } else {
    sec.append(h("p", "muted", "Not estimated yet: the route is being planned."));
  }
  if (model.etaHistory.length) {
    const ol = h("ol", "eta-history");
    for (const x of [...model.etaHistory].reverse()) {
      const li = h("li");
      li.append(h("time", "", formatLocal(x.at)), h("span", "", ` ${x.text}`));
      ol.append(li);
    }
    const det = h("details", "eta-details");
    det.open = historyOpen;
    det.append(h("summary", "", `ETA history (${model.etaHistory.length})`), ol);
    sec.append(det);
  }
  return sec;
}

function routeMap(s: Shipment, events: readonly ShipmentEvent[], hubs: ReadonlyMap<string, HubInfo>): HTMLElement {
  const sec = h("section", "card map");
  sec.append(h("h3", "", "Route"));
  const legs = s.route?.legs ?? [];
  const visited = new Set(events.map((e) => e.hubCode).filter(Boolean));
  const points: MapPoint[] = [];
  const mapLegs: MapLeg[] = [];
  const seen = new Set<string>();
  const addHub = (code: string) => {
    const hub = hubs.get(code);
    if (!hub || seen.has(code)) return;
    seen.add(code);
    points.push({ longitude: hub.longitude, latitude: hub.latitude, label: code, role: "hub" });
  };
  const list = h("ol", "legs");
  for (const leg of legs) {
    addHub(leg.fromHub);
    addHub(leg.toHub);
    const a = hubs.get(leg.fromHub);
    const b = hubs.get(leg.toHub);
    const done = visited.has(leg.toHub);
    if (a && b) mapLegs.push({ from: a, to: b, done, title: `${leg.fromHub} → ${leg.toHub} ${modeLabel(leg.mode)}` });
    const li = h("li", done ? "done" : "");
    const dep = leg.plannedDeparture ? formatLocal(timestampMs(leg.plannedDeparture)) : "";
    li.append(
      h("strong", "", `${leg.fromHub} → ${leg.toHub}`),
      h("span", "mode", ` ${modeLabel(leg.mode)}`),
      h("span", "muted", dep ? ` · departs ${dep}` : ""),
    );
    list.append(li);
  }
  // Hubs scanned that are not on the plan, and the last known position.
  for (const e of events) if (e.hubCode) addHub(e.hubCode);
  if (!legs.length) {
    // No plan (yet, or no longer after delivery): draw the path the scans took instead.
    let prev: { longitude: number; latitude: number; label: string } | undefined;
    for (const e of events) {
      const hub = e.hubCode ? hubs.get(e.hubCode) : undefined;
      const at = hub ? { longitude: hub.longitude, latitude: hub.latitude, label: hub.code } : e.location
        ? { longitude: e.location.longitude, latitude: e.location.latitude, label: "scan" }
        : undefined;
      if (!at) continue;
      if (prev && (prev.longitude !== at.longitude || prev.latitude !== at.latitude)) {
        mapLegs.push({ from: prev, to: at, done: true, title: `${prev.label} → ${at.label}` });
      }
      prev = at;
    }
  }
  const cur = s.currentLocation ?? (s.currentHubCode ? hubs.get(s.currentHubCode) : undefined);
  if (cur) points.push({ longitude: cur.longitude, latitude: cur.latitude, label: "Last known position", role: "current" });
  const figure = h("figure", "map-frame");
  figure.append(renderWorldMap(points, mapLegs));
  sec.append(figure);
  if (legs.length) sec.append(list);
  else if (s.eta || mapLegs.length) sec.append(h("p", "muted", "The map shows where the parcel has been scanned so far."));
  else sec.append(h("p", "muted", "No route planned yet."));
  return sec;
}

function timeline(events: readonly ShipmentEvent[], hubs: ReadonlyMap<string, HubInfo>): HTMLElement {
  const sec = h("section", "card timeline");
  sec.append(h("h3", "", "History"));
  sec.append(h("p", "muted small", `Times in your time zone (${viewerTimeZone()}), with the local time at the hub.`));
  const ol = h("ol", "events");
  ol.dataset["testid"] = "timeline";
  for (const e of [...events].reverse()) {
    const li = h("li", `ev ${statusTone(e.status)}`);
    const ms = eventTimeMs(e);
    const when = h("div", "when");
    when.append(h("time", "", ms ? formatLocal(ms) : ""));
    const hub = e.hubCode ? hubs.get(e.hubCode) : undefined;
    const local = ms
      ? hub?.timeZone
        ? formatInZone(ms, hub.timeZone)
        : e.location
          ? formatAtLongitude(ms, e.location.longitude)
          : undefined
      : undefined;
    if (local) when.append(h("span", "hub-time", `${local}${hub ? ` at ${hub.code}` : " local"}`));
    const what = h("div", "what");
    what.append(h("strong", "", e.description || eventKindLabel(e.kind)));
    const sub = [e.status ? statusLabel(e.status) : "", e.hubCode ? hubName(e.hubCode, hubs) : "", e.carrierStatus?.code ? `code ${e.carrierStatus.code}` : ""]
      .filter(Boolean)
      .join(" · ");
    what.append(h("span", "muted", sub));
    li.append(when, what);
    ol.append(li);
  }
  if (!events.length) sec.append(h("p", "muted", "No events yet."));
  sec.append(ol);
  return sec;
}

function hubName(code: string, hubs: ReadonlyMap<string, HubInfo>): string {
  const hub = hubs.get(code);
  return hub ? `${hub.city || hub.name} (${code})` : code;
}
