import { hubNetworkData } from "@logistics/routing";
import type { WebHub } from "./web-server.js";

/**
 * The routing network's hubs reduced to what the tracking page shows (position, city, time
 * zone). The page cannot call routing itself (its RPCs need a `routes:read` token), so the
 * local runner publishes this list next to the page.
 */
export function listWebHubs(): WebHub[] {
  return hubNetworkData.hubs.map((h) => ({
    code: h.code,
    name: h.name,
    city: h.city,
    countryCode: h.country,
    latitude: h.lat,
    longitude: h.lon,
    timeZone: h.timeZone,
  }));
}
