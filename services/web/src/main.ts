import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { TrackingService, WatchUpdateKind } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { CATALOGS, catalogFor, createLocalizer, pickLocale, type Localizer } from "./i18n.js";
import { loadPageConfig } from "./page-config.js";
import { currentEta, progressOf } from "./progress.js";
import { eventText, renderBanner, renderShipment, statusText } from "./render.js";
import { createShipmentModel, type ShipmentModelStore } from "./shipment-model.js";
import { watchShipment, type WatchState } from "./shipment-watch.js";
import { EXAMPLE_TRACKING_NUMBER, isTrackingNumber, normalizeTrackingNumber } from "./tracking-number.js";
import { createRouteMap } from "./world-map.js";

const LANG_KEY = "lang";

function byId<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} missing from the page`);
  return e as T;
}

/** `?lang=` first, then the reader's earlier choice, then the browser's languages. */
function initialLocale(): string {
  const available = CATALOGS.map((c) => c.locale);
  const fromUrl = new URL(window.location.href).searchParams.get("lang");
  let saved: string | null = null;
  try {
    saved = window.localStorage.getItem(LANG_KEY);
  } catch {
    // Storage disabled: the browser's languages decide.
  }
  return pickLocale([...(fromUrl ? [fromUrl] : []), ...(saved ? [saved] : []), ...navigator.languages], available);
}

async function main(): Promise<void> {
  const form = byId<HTMLFormElement>("track-form");
  const input = byId<HTMLInputElement>("tracking-number");
  const fieldError = byId<HTMLElement>("tn-error");
  const banner = byId<HTMLElement>("banner");
  const announcer = byId<HTMLElement>("announcer");
  const result = byId<HTMLElement>("result");
  const langSelect = byId<HTMLSelectElement>("lang-select");
  const config = await loadPageConfig();
  const client = createClient(TrackingService, createConnectTransport({ baseUrl: config.trackingUrl }));
  // ListShipmentEvents is side-effect free: as a GET, a CDN in front of tracking can answer a
  // popular parcel's history from its cache (the answer says for how long, and its ETag names the
  // shipment version it shows).
  const cachedReads = createClient(TrackingService, createConnectTransport({ baseUrl: config.trackingUrl, useHttpGet: true }));
  const map = createRouteMap();

  let l: Localizer = createLocalizer(catalogFor(initialLocale()));
  let current: AbortController | undefined;
  let trackingNumber = "";
  let model: ShipmentModelStore | undefined;
  let state: WatchState = { kind: "stopped" };
  let countdown: ReturnType<typeof setInterval> | undefined;
  let invalidInput: string | undefined;
  let announced: { status: string; eta: number } | undefined;

  for (const c of CATALOGS) {
    const option = document.createElement("option");
    option.value = c.locale;
    option.lang = c.locale;
    option.textContent = c.name;
    langSelect.append(option);
  }

  /** Texts of the static part of the page, in the current language. */
  const applyStatic = () => {
    document.documentElement.lang = l.locale;
    byId("page-title").textContent = l.m.pageTitle;
    byId("lang-label").textContent = l.m.languageLabel;
    byId("tn-label").textContent = l.m.trackingNumberLabel;
    byId("track-button").textContent = l.m.trackButton;
    input.placeholder = l.m.trackingNumberPlaceholder(EXAMPLE_TRACKING_NUMBER);
    langSelect.value = l.locale;
    document.title = trackingNumber ? l.m.documentTitle(trackingNumber) : l.m.pageTitle;
    if (invalidInput !== undefined) fieldError.textContent = l.m.invalidTrackingNumber(invalidInput, EXAMPLE_TRACKING_NUMBER);
  };

  const render = () => {
    if (!model || current?.signal.aborted) return;
    if (state.kind === "not-found" || state.kind === "error") {
      result.hidden = true;
      return;
    }
    const m = model.get();
    const now = Date.now();
    renderShipment(result, m, { l, hubs: config.hubs, live: state.kind === "live", map, now });
    const s = m.shipment;
    if (!s) return;
    // Tell screen readers what changed, once per change (not on every redraw).
    const status = statusText(progressOf(s, m.events, now), l);
    const eta = currentEta(s)?.estimatedArrival;
    const etaMs = eta ? timestampMs(eta) : 0;
    if (announced && announced.status !== status) {
      const latest = m.events[m.events.length - 1];
      const hubs = config.hubs;
      announcer.textContent = l.m.announceStatus(status, latest ? eventText(latest, { l, hubs, live: true, map, now }) : "");
    } else if (announced && etaMs && announced.eta !== etaMs) {
      announcer.textContent = l.m.announceEta(l.date(etaMs));
    }
    announced = { status, eta: etaMs };
  };

  const showBanner = () => {
    if (trackingNumber && invalidInput === undefined) renderBanner(banner, state, trackingNumber, l);
  };

  const setInvalid = (raw: string | undefined) => {
    invalidInput = raw;
    fieldError.hidden = raw === undefined;
    fieldError.textContent = raw === undefined ? "" : l.m.invalidTrackingNumber(raw, EXAMPLE_TRACKING_NUMBER);
    if (raw === undefined) input.removeAttribute("aria-invalid");
    else input.setAttribute("aria-invalid", "true");
  };

  function track(tn: string): void {
    current?.abort();
    const ctl = new AbortController();
    current = ctl;
    trackingNumber = tn;
    model = createShipmentModel();
    announced = undefined;
    const store = model;
    const url = new URL(window.location.href);
    url.searchParams.set("t", tn);
    window.history.replaceState(null, "", url);
    document.title = l.m.documentTitle(tn);
    result.replaceChildren();
    result.hidden = true;

    /** Every page of the history through `c`; resolves to the oldest shipment version a page showed. */
    const listHistory = async (c: typeof client): Promise<bigint> => {
      let oldest: bigint | undefined;
      let pageToken = "";
      for (let page = 0; page < 20; page++) {
        const res = await c.listShipmentEvents(
          { trackingNumber: tn, pageSize: 200, pageToken },
          { signal: ctl.signal, onHeader: (h) => (oldest = minVersion(oldest, versionOfEtag(h.get("etag")))) },
        );
        store.setHistory(res.events);
        pageToken = res.nextPageToken;
        if (!pageToken) break;
      }
      return oldest ?? 0n;
    };
    // The history comes from the cache first; when the cached copy is older than the snapshot the
    // live stream just sent (a change within the cache's max-age), once more from tracking itself.
    const loadHistory = async (snapshotVersion: bigint) => {
      try {
        if ((await listHistory(cachedReads)) < snapshotVersion) await listHistory(client);
        render();
      } catch {
        // The live stream still shows every change; the next snapshot lists the history again.
      }
    };

    void watchShipment({
      client,
      trackingNumber: tn,
      signal: ctl.signal,
      onUpdate(update) {
        store.applyUpdate(update);
        render();
        if (update.kind === WatchUpdateKind.SNAPSHOT) void loadHistory(update.shipment?.version ?? 0n);
      },
      onState(next) {
        if (ctl.signal.aborted) return;
        state = next;
        clearInterval(countdown);
        showBanner();
        if (next.kind === "retrying") countdown = setInterval(showBanner, 1000);
        render();
      },
    });
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const raw = input.value.trim();
    const tn = normalizeTrackingNumber(raw);
    if (!isTrackingNumber(tn)) {
      current?.abort();
      trackingNumber = "";
      banner.hidden = true;
      result.hidden = true;
      setInvalid(raw);
      input.focus();
      return;
    }
    setInvalid(undefined);
    input.value = tn;
    track(tn);
  });
  input.addEventListener("input", () => {
    if (invalidInput !== undefined) setInvalid(undefined);
  });

  langSelect.addEventListener("change", () => {
    l = createLocalizer(catalogFor(langSelect.value));
    try {
      window.localStorage.setItem(LANG_KEY, l.locale);
    } catch {
      // Not remembered; the choice still holds for this page.
    }
    const url = new URL(window.location.href);
    if (url.searchParams.has("lang")) {
      url.searchParams.set("lang", l.locale);
      window.history.replaceState(null, "", url);
    }
    applyStatic();
    showBanner();
    announced = undefined;
    render();
  });

  // Relative times ("in 2 days", "updated 5 minutes ago") stay true without updates.
  setInterval(() => {
    if (!result.hidden) render();
  }, 60_000);

  applyStatic();
  const fromUrl = new URL(window.location.href).searchParams.get("t");
  if (fromUrl) {
    input.value = fromUrl;
    form.requestSubmit();
  }
  document.body.dataset["ready"] = "true";
}

void main().catch((e: unknown) => {
  const banner = document.getElementById("banner");
  if (banner) {
    banner.hidden = false;
    banner.className = "banner bad";
    const detail = e instanceof Error ? e.message : String(e);
    banner.textContent = createLocalizer(catalogFor(initialLocale())).m.pageFailed(detail);
  }
});

/** The shipment version in tracking's ETag (`"<version>.<digest>"`); 0 when absent or unreadable. */
function versionOfEtag(etag: string | null): bigint {
  const m = /^(?:W\/)?"(\d+)\./.exec(etag ?? "");
  return m ? BigInt(m[1]!) : 0n;
}

function minVersion(a: bigint | undefined, b: bigint): bigint {
  return a === undefined || b < a ? b : a;
}
