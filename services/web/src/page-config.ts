/** A hub as the page needs it: where it is and which time zone its clocks show. */
export interface HubInfo {
  readonly code: string;
  readonly name: string;
  readonly city: string;
  readonly countryCode: string;
  readonly latitude: number;
  readonly longitude: number;
  /** IANA time zone, e.g. "Europe/Berlin"; empty when unknown. */
  readonly timeZone: string;
}

/** What the server hosting the page tells it at start (`config.json` next to `index.html`). */
export interface PageConfig {
  /** Base URL of the tracking service's Connect endpoint, e.g. "http://127.0.0.1:8083". */
  readonly trackingUrl: string;
  /** Hubs by code; empty when the host publishes no hub list (the map then shows scan positions only). */
  readonly hubs: ReadonlyMap<string, HubInfo>;
}

/**
 * Loads `config.json` (and the hub list it points to, if any) relative to the page. When no
 * config is served, tracking is assumed on the page's own origin. A hub list that fails to load
 * only degrades the map; it never blocks tracking.
 */
export async function loadPageConfig(fetchFn: typeof fetch = fetch): Promise<PageConfig> {
  let trackingUrl = window.location.origin;
  let hubsUrl = "";
  try {
    const res = await fetchFn("config.json", { cache: "no-store" });
    if (res.ok) {
      const raw: unknown = await res.json();
      if (isRecord(raw)) {
        if (typeof raw["trackingUrl"] === "string" && raw["trackingUrl"] !== "") trackingUrl = raw["trackingUrl"];
        if (typeof raw["hubsUrl"] === "string") hubsUrl = raw["hubsUrl"];
      }
    }
  } catch {
    // No config: same-origin tracking.
  }
  const hubs = new Map<string, HubInfo>();
  if (hubsUrl) {
    try {
      const res = await fetchFn(hubsUrl);
      const raw: unknown = res.ok ? await res.json() : [];
      if (Array.isArray(raw)) {
        for (const h of raw as unknown[]) {
          const hub = parseHub(h);
          if (hub) hubs.set(hub.code, hub);
        }
      }
    } catch {
      // Map without hub positions.
    }
  }
  return { trackingUrl: trackingUrl.replace(/\/+$/, ""), hubs };
}

function parseHub(v: unknown): HubInfo | undefined {
  if (!isRecord(v)) return undefined;
  const { code, latitude, longitude } = v;
  if (typeof code !== "string" || typeof latitude !== "number" || typeof longitude !== "number") return undefined;
  const s = (k: string) => (typeof v[k] === "string" ? (v[k] as string) : "");
  return { code, latitude, longitude, name: s("name"), city: s("city"), countryCode: s("countryCode"), timeZone: s("timeZone") };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
