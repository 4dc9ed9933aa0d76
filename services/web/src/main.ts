import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { TrackingService } from "../../shared/src/gen/logistics/tracking/v1/tracking_pb.js";
import { loadPageConfig } from "./page-config.js";
import { renderBanner, renderShipment } from "./render.js";
import { createShipmentModel, type ShipmentModelStore } from "./shipment-model.js";
import { watchShipment, type WatchState } from "./shipment-watch.js";

const TRACKING_NUMBER = /^[A-Z0-9]{8,30}$/;

/** Upper-cases and strips spaces and dashes, as carriers print numbers in groups. */
function normalizeTrackingNumber(raw: string): string {
  return raw.toUpperCase().replace(/[\s-]+/g, "");
}

function byId<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} missing from the page`);
  return e as T;
}

async function main(): Promise<void> {
  const form = byId<HTMLFormElement>("track-form");
  const input = byId<HTMLInputElement>("tracking-number");
  const banner = byId<HTMLElement>("banner");
  const result = byId<HTMLElement>("result");
  const config = await loadPageConfig();
  const client = createClient(TrackingService, createConnectTransport({ baseUrl: config.trackingUrl }));

  let current: AbortController | undefined;
  let state: WatchState = { kind: "stopped" };
  let countdown: ReturnType<typeof setInterval> | undefined;

  function track(trackingNumber: string): void {
    current?.abort();
    const ctl = new AbortController();
    current = ctl;
    const model: ShipmentModelStore = createShipmentModel();
    const url = new URL(window.location.href);
    url.searchParams.set("t", trackingNumber);
    window.history.replaceState(null, "", url);
    document.title = `${trackingNumber} · Track a parcel`;
    result.replaceChildren();
    result.hidden = true;

    const render = () => {
      if (!ctl.signal.aborted) renderShipment(result, model.get(), config.hubs, state.kind === "live");
    };
    const loadHistory = async () => {
      try {
        let pageToken = "";
        for (let page = 0; page < 20; page++) {
          const res = await client.listShipmentEvents({ trackingNumber, pageSize: 200, pageToken }, { signal: ctl.signal });
          model.setHistory(res.events);
          pageToken = res.nextPageToken;
          if (!pageToken) break;
        }
        render();
      } catch {
        // The live stream still shows every change; the next snapshot retries the listing.
      }
    };

    void watchShipment({
      client,
      trackingNumber,
      signal: ctl.signal,
      onUpdate(update) {
        model.applyUpdate(update);
        render();
        if (!update.cause) void loadHistory();
      },
      onState(next) {
        if (ctl.signal.aborted) return;
        state = next;
        clearInterval(countdown);
        renderBanner(banner, next, trackingNumber);
        if (next.kind === "retrying") {
          countdown = setInterval(() => renderBanner(banner, next, trackingNumber), 1000);
        }
        if (next.kind === "not-found" || next.kind === "error") result.hidden = true;
        else render();
      },
    });
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const tn = normalizeTrackingNumber(input.value);
    input.value = tn;
    if (!TRACKING_NUMBER.test(tn)) {
      current?.abort();
      renderBanner(banner, { kind: "error", message: "a tracking number has 8 to 30 letters and digits" }, tn);
      result.hidden = true;
      return;
    }
    track(tn);
  });

  const fromUrl = new URL(window.location.href).searchParams.get("t");
  if (fromUrl) {
    input.value = normalizeTrackingNumber(fromUrl);
    form.requestSubmit();
  }
  document.body.dataset["ready"] = "true";
}

void main().catch((e: unknown) => {
  const banner = document.getElementById("banner");
  if (banner) {
    banner.hidden = false;
    banner.className = "banner bad";
    banner.textContent = `The page could not start: ${e instanceof Error ? e.message : String(e)}`;
  }
});
