import { timestampDate, timestampMs } from "@bufbuild/protobuf/wkt";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel, ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  ShipmentEventKind,
  type Shipment,
  type ShipmentEvent,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import type { Localizer } from "./i18n.js";
import { legsOf, mapModelOf, type LegTime, type LegView } from "./journey.js";
import type { ServiceId } from "./messages.js";
import type { HubInfo } from "./page-config.js";
import { currentEta, etaPassed, etaReasonOf, progressOf, STEPS, type Progress } from "./progress.js";
import { eventTimeMs, type ShipmentModel } from "./shipment-model.js";
import type { WatchState } from "./shipment-watch.js";
import type { RouteMapView } from "./world-map.js";

/** Creates an element with a class and optional text. */
function h<K extends keyof HTMLElementTagNameMap>(tag: K, cls = "", text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A `<time>` element with a machine-readable instant. */
function time(ms: number, text: string, attrs: Record<string, string> = {}): HTMLTimeElement {
  const t = h("time", "", text);
  t.dateTime = new Date(ms).toISOString();
  for (const [k, v] of Object.entries(attrs)) t.setAttribute(k, v);
  return t;
}

/** The banner for a watch state; hidden while live. Invalid input is not a banner (see main.ts). */
export function renderBanner(target: HTMLElement, state: WatchState, trackingNumber: string, l: Localizer): void {
  target.hidden = false;
  target.className = "banner";
  target.dataset["state"] = state.kind;
  switch (state.kind) {
    case "connecting":
      target.classList.add("info");
      target.textContent = l.m.lookingUp(trackingNumber);
      return;
    case "live":
    case "stopped":
      target.hidden = true;
      target.textContent = "";
      return;
    case "retrying": {
      const s = Math.ceil((state.retryAt - Date.now()) / 1000);
      target.classList.add("warn");
      target.textContent = l.m.reconnecting(s > 0 ? s : undefined);
      return;
    }
    case "not-found":
      target.classList.add("bad");
      target.textContent = l.m.notFound(trackingNumber);
      return;
    case "error":
      target.classList.add("bad");
      target.textContent = l.m.loadFailed;
      return;
  }
}

/** Everything {@link renderShipment} needs besides the model. */
export interface RenderContext {
  readonly l: Localizer;
  readonly hubs: ReadonlyMap<string, HubInfo>;
  readonly live: boolean;
  readonly map: RouteMapView;
  readonly now: number;
}

/** "Tokyo, Japan" for a hub, the code when the hub is unknown. */
function hubPlace(code: string, c: RenderContext): string {
  const hub = c.hubs.get(code);
  if (!hub) return code;
  const country = c.l.country(hub.countryCode);
  return [hub.city || hub.name, country].filter(Boolean).join(", ");
}

function hubCity(code: string, c: RenderContext): string {
  const hub = c.hubs.get(code);
  return hub?.city || hub?.name || code;
}

/** The headline status in plain words: the exception when there is one, else the current step. */
export function statusText(p: Progress, l: Localizer): string {
  return p.exception ? l.m.exceptions[p.exception] : l.m.steps[STEPS[p.step]!];
}

/** Renders the whole shipment view into `target` (replacing what was there, except the map, which is reused). */
export function renderShipment(target: HTMLElement, model: ShipmentModel, c: RenderContext): void {
  const s = model.shipment;
  if (!s) {
    target.replaceChildren();
    target.hidden = true;
    return;
  }
  const progress = progressOf(s, model.events, c.now);
  target.hidden = false;
  target.replaceChildren(
    h("p", "tz-note muted small", c.l.m.timesInZone(c.l.zoneName())),
    summary(s, progress, c),
    eta(s, c),
    journey(s, model.events, c),
    history(model.events, c),
  );
}

function summary(s: Shipment, p: Progress, c: RenderContext): HTMLElement {
  const { l } = c;
  const sec = h("section", "card summary");
  sec.setAttribute("aria-labelledby", "summary-tn");
  const top = h("div", "summary-top");
  const tn = h("h2", "tn", s.trackingNumber);
  tn.id = "summary-tn";
  const liveTag = h("span", `live ${c.live ? "on" : "off"}`, c.live ? l.m.live : l.m.offline);
  liveTag.dataset["testid"] = "live";
  top.append(tn, liveTag);
  const tone = p.complete ? "ok" : p.exception === "delayed" || p.exception === "attempted" || p.exception === "readyForPickup" ? "warn" : p.exception ? "bad" : "info";
  const badge = h("p", `status ${tone}`, statusText(p, l));
  badge.dataset["testid"] = "status";
  badge.dataset["status"] = String(s.status);
  if (p.exception) badge.dataset["exception"] = p.exception;
  sec.append(top, badge, stepper(p, c));
  if (p.exception) sec.append(h("p", `exception-help ${tone}`, l.m.exceptionHelp[p.exception]));
  const facts = h("dl", "facts");
  const fact = (k: string, v: string) => {
    if (v) facts.append(h("dt", "", k), h("dd", "", v));
  };
  const place = (pl: Shipment["origin"]) => (pl ? [pl.city, l.country(pl.countryCode)].filter(Boolean).join(", ") : "");
  fact(l.m.from, place(s.origin));
  fact(l.m.to, place(s.destination));
  const service = serviceId(s.serviceLevel);
  if (service) fact(l.m.service, l.m.services[service]);
  sec.append(facts);
  return sec;
}

function serviceId(level: ServiceLevel): ServiceId | undefined {
  switch (level) {
    case ServiceLevel.ECONOMY:
      return "economy";
    case ServiceLevel.STANDARD:
      return "standard";
    case ServiceLevel.EXPRESS:
      return "express";
    case ServiceLevel.OVERNIGHT:
      return "overnight";
    default:
      return undefined;
  }
}

function stepper(p: Progress, c: RenderContext): HTMLElement {
  const { l } = c;
  const ol = h("ol", "stepper");
  ol.setAttribute("aria-label", l.m.progressLabel);
  ol.dataset["testid"] = "stepper";
  STEPS.forEach((id, i) => {
    const state = p.complete || i < p.step ? "done" : i === p.step ? "current" : "upcoming";
    const li = h("li", `step ${state}${state === "current" && p.exception ? ` exception ${p.exception}` : ""}`);
    li.dataset["step"] = id;
    if (state === "current") li.setAttribute("aria-current", "step");
    li.append(h("span", "dot"), h("span", "step-label", l.m.steps[id]));
    if (state === "current" && p.exception) li.append(h("span", "step-exception", l.m.exceptions[p.exception]));
    const sr = state === "done" ? l.m.stepDone : state === "current" ? l.m.stepCurrent : l.m.stepUpcoming;
    li.append(h("span", "visually-hidden", ` (${sr})`));
    ol.append(li);
  });
  return ol;
}

function eta(s: Shipment, c: RenderContext): HTMLElement {
  const { l } = c;
  const sec = h("section", "card eta");
  sec.dataset["testid"] = "eta";
  sec.append(h("h3", "", l.m.etaHeading));
  const e = currentEta(s);
  if (s.deliveredAt) {
    const ms = timestampMs(s.deliveredAt);
    const main = h("p", "eta-main");
    main.append(time(ms, l.m.deliveredOn(l.date(ms), l.time(ms)), { "data-testid": "delivered-time" }));
    sec.append(main);
    return sec;
  }
  if (!e?.estimatedArrival) {
    sec.append(h("p", "muted", l.m.etaNotYet));
    return sec;
  }
  const ms = timestampMs(e.estimatedArrival);
  const main = h("p", "eta-main");
  main.append(time(ms, l.m.arriving(l.date(ms)), { "data-testid": "eta-time" }));
  sec.append(main, h("p", "eta-sub", l.m.etaAround(l.time(ms), l.relative(ms, c.now))));
  if (e.earliest && e.latest) {
    const from = timestampMs(e.earliest);
    const to = timestampMs(e.latest);
    const w = h("p", "muted", l.m.etaWindow(l.dateTime(from), l.dateTime(to)));
    w.dataset["testid"] = "eta-window";
    w.dataset["earliest"] = timestampDate(e.earliest).toISOString();
    w.dataset["latest"] = timestampDate(e.latest).toISOString();
    sec.append(w);
  }
  if (etaPassed(e, c.now)) {
    sec.append(h("p", "eta-reason warn", l.m.etaPassed));
  } else {
    const reason = etaReasonOf(s.etaChangeReason);
    if (reason) {
      const r = h("p", `eta-reason ${reason === "early" ? "ok" : reason === "late" || reason === "disruption" ? "warn" : "info"}`, l.m.etaReasons[reason]);
      r.dataset["testid"] = "eta-reason";
      r.dataset["reason"] = reason;
      sec.append(r);
    }
  }
  if (s.route?.plannedAt) sec.append(h("p", "muted small", l.m.etaUpdated(l.relative(timestampMs(s.route.plannedAt), c.now))));
  return sec;
}

function legTimeLine(kind: "departure" | "arrival", t: LegTime, c: RenderContext): HTMLElement {
  const { l } = c;
  const line = h("span", `leg-time ${t.actual ? "actual" : "planned"}`);
  const text = l.dateTime(t.ms);
  const label = kind === "departure" ? (t.actual ? l.m.departed(text) : l.m.departs(text)) : t.actual ? l.m.arrived(text) : l.m.arrives(text);
  line.append(time(t.ms, label, { "data-kind": t.actual ? "actual" : "planned", "data-field": kind }));
  if (t.actual && t.deltaMs !== undefined && Math.abs(t.deltaMs) >= 30 * 60_000) {
    const early = t.deltaMs < 0;
    line.append(" · ", h("span", early ? "early" : "late", early ? l.m.early(l.duration(t.deltaMs)) : l.m.late(l.duration(t.deltaMs))));
  }
  return line;
}

/** "São Paulo → Tokyo"; hub names when both ends are in one city ("Narita International Airport → Port of Tokyo"). */
function legName(leg: LegView, c: RenderContext): string {
  const a = hubCity(leg.from, c);
  const b = hubCity(leg.to, c);
  if (a !== b) return `${a} → ${b}`;
  return `${c.hubs.get(leg.from)?.name || leg.from} → ${c.hubs.get(leg.to)?.name || leg.to}`;
}

function legItem(leg: LegView, c: RenderContext): HTMLElement {
  const { l } = c;
  const li = h("li", `leg-item ${leg.state}`);
  li.dataset["state"] = leg.state;
  li.dataset["from"] = leg.from;
  li.dataset["to"] = leg.to;
  const title = h("div", "leg-title");
  title.append(
    h("strong", "", legName(leg, c)),
    " ",
    h("span", "mode", l.m.modes[leg.mode]),
    " ",
    h("span", `pill ${leg.state}`, leg.state === "done" ? l.m.legDone : leg.state === "current" ? l.m.legCurrent : l.m.legUpcoming),
  );
  const times = h("div", "leg-times");
  if (leg.departure) times.append(legTimeLine("departure", leg.departure, c));
  if (leg.arrival) times.append(legTimeLine("arrival", leg.arrival, c));
  li.append(title, times);
  return li;
}

function journey(s: Shipment, events: readonly ShipmentEvent[], c: RenderContext): HTMLElement {
  const { l } = c;
  const sec = h("section", "card journey");
  sec.append(h("h3", "", l.m.journeyHeading));
  const model = mapModelOf(s, events, c.hubs);
  const placeOf = (pl: Shipment["origin"]) => (pl?.city ? pl.city : "");
  const at = s.currentHubCode ? hubCity(s.currentHubCode, c) : undefined;
  c.map.update(model, {
    summary: l.m.mapSummary(placeOf(s.origin) || "?", placeOf(s.destination) || "?", at),
    youAreHere: l.m.youAreHere,
  });
  sec.append(c.map.element);
  const legs = legsOf(s.route);
  if (legs.length) {
    const ol = h("ol", "legs");
    ol.dataset["testid"] = "legs";
    for (const leg of legs) ol.append(legItem(leg, c));
    sec.append(ol);
  } else {
    sec.append(h("p", "muted", model.lines.length ? l.m.scannedPathOnly : l.m.noRoute));
  }
  return sec;
}

/** The plain-words line for a history event. */
export function eventText(e: ShipmentEvent, c: RenderContext): string {
  const ev = c.l.m.events;
  const place = e.hubCode ? hubPlace(e.hubCode, c) : "";
  if (e.kind === ShipmentEventKind.CREATED) return ev.created;
  if (e.kind === ShipmentEventKind.STATUS_CORRECTED) return ev.corrected;
  // The partner's code only reaches readers who may see it (never the anonymous page).
  if (e.kind === ShipmentEventKind.HANDED_OVER) return ev.handedOver(e.partnerCarrierCode, place);
  switch (e.scanKind) {
    case ScanKind.INFO:
      return ev.info;
    case ScanKind.PICKUP:
      return ev.pickedUp;
    case ScanKind.HUB_ARRIVAL:
      return place ? ev.arrivedAt(place) : ev.carrierUpdate;
    case ScanKind.HUB_DEPARTURE:
      return place ? ev.leftFrom(place) : ev.carrierUpdate;
    case ScanKind.CUSTOMS:
      return e.status === ShipmentStatus.EXCEPTION ? ev.customsHold(place || "—") : ev.customs(place || "—");
    case ScanKind.OUT_FOR_DELIVERY:
      return ev.outForDelivery;
    case ScanKind.DELIVERY_ATTEMPT:
      return ev.attempted;
    case ScanKind.DELIVERED:
      return ev.delivered;
    case ScanKind.PICKUP_POINT_ARRIVAL:
      return ev.readyForPickup(place || "—");
    case ScanKind.EXCEPTION:
      return ev.problem;
    case ScanKind.RETURN_TO_SENDER:
      return e.status === ShipmentStatus.RETURNED_TO_SENDER ? ev.returned : ev.returning;
    case ScanKind.CORRECTION:
      return ev.corrected;
    default:
      return ev.carrierUpdate;
  }
}

/** Kinds whose carrier text adds something a customer needs (what the problem is). */
const NOTE_KINDS: ReadonlySet<ScanKind> = new Set([ScanKind.EXCEPTION, ScanKind.DELIVERY_ATTEMPT, ScanKind.UNSPECIFIED, ScanKind.CORRECTION, ScanKind.CUSTOMS]);

function tone(e: ShipmentEvent): string {
  switch (e.status) {
    case ShipmentStatus.DELIVERED:
      return "ok";
    case ShipmentStatus.FAILED_ATTEMPT:
    case ShipmentStatus.AVAILABLE_FOR_PICKUP:
      return "warn";
    case ShipmentStatus.EXCEPTION:
    case ShipmentStatus.RETURNED_TO_SENDER:
    case ShipmentStatus.EXPIRED:
      return "bad";
    default:
      return "info";
  }
}

function history(events: readonly ShipmentEvent[], c: RenderContext): HTMLElement {
  const sec = h("section", "card history");
  sec.append(h("h3", "", c.l.m.historyHeading));
  if (!events.length) {
    sec.append(h("p", "muted", c.l.m.noEvents));
    return sec;
  }
  const ol = h("ol", "events");
  ol.dataset["testid"] = "timeline";
  for (const e of [...events].reverse()) {
    const li = h("li", `ev ${tone(e)}`);
    const ms = eventTimeMs(e);
    const when = h("div", "when");
    if (ms) when.append(time(ms, c.l.dateTime(ms)));
    const what = h("div", "what");
    what.append(h("strong", "", eventText(e, c)));
    const note = e.carrierStatus?.text;
    if (note && NOTE_KINDS.has(e.scanKind) && e.status !== ShipmentStatus.IN_TRANSIT) what.append(h("span", "muted", c.l.m.carrierNote(note)));
    li.append(when, what);
    ol.append(li);
  }
  sec.append(ol);
  return sec;
}
