import { ShipmentStatus } from "../../shared/src/gen/logistics/common/v1/shipment_pb.js";
import { TransportMode } from "../../shared/src/gen/logistics/common/v1/route_pb.js";
import { ShipmentEventKind } from "../../shared/src/gen/logistics/tracking/v1/tracking_pb.js";

const STATUS_LABELS: Record<ShipmentStatus, string> = {
  [ShipmentStatus.UNSPECIFIED]: "Unknown",
  [ShipmentStatus.INFO_RECEIVED]: "Information received",
  [ShipmentStatus.IN_TRANSIT]: "In transit",
  [ShipmentStatus.OUT_FOR_DELIVERY]: "Out for delivery",
  [ShipmentStatus.FAILED_ATTEMPT]: "Delivery attempted",
  [ShipmentStatus.AVAILABLE_FOR_PICKUP]: "Ready for pickup",
  [ShipmentStatus.DELIVERED]: "Delivered",
  [ShipmentStatus.EXCEPTION]: "Exception",
  [ShipmentStatus.RETURNED_TO_SENDER]: "Returned to sender",
  [ShipmentStatus.EXPIRED]: "Expired",
};

/** Human label of a normalized status. */
export function statusLabel(s: ShipmentStatus): string {
  return STATUS_LABELS[s] ?? "Unknown";
}

/** CSS modifier for a status badge: "ok", "warn", "bad" or "info". */
export function statusTone(s: ShipmentStatus): "ok" | "warn" | "bad" | "info" {
  switch (s) {
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

/** Short label of a history event's kind when it has no description. */
export function eventKindLabel(k: ShipmentEventKind): string {
  switch (k) {
    case ShipmentEventKind.CREATED:
      return "Shipment created";
    case ShipmentEventKind.ROUTE_PLANNED:
      return "Route planned";
    case ShipmentEventKind.ROUTE_UPDATED:
      return "Route updated";
    case ShipmentEventKind.STATUS_CORRECTED:
      return "Status corrected";
    default:
      return "Scan";
  }
}

/** Transport mode as a word. */
export function modeLabel(m: TransportMode): string {
  switch (m) {
    case TransportMode.AIR:
      return "air";
    case TransportMode.SEA:
      return "sea";
    case TransportMode.ROAD:
      return "road";
    case TransportMode.RAIL:
      return "rail";
    default:
      return "";
  }
}

/** The viewer's time zone (IANA name), as the browser reports it. */
export function viewerTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/** Date and time in the viewer's zone, e.g. "Tue 25 Nov, 14:05 CET". */
export function formatLocal(ms: number): string {
  return new Intl.DateTimeFormat(undefined, {
    weekday: "short",
    day: "numeric",
    month: "short",
    hour: "2-digit",
    minute: "2-digit",
    timeZoneName: "short",
  }).format(ms);
}

/** Time in an IANA zone, e.g. "09:05 GMT-5"; undefined when the zone is unknown to the browser. */
export function formatInZone(ms: number, timeZone: string): string | undefined {
  try {
    return new Intl.DateTimeFormat(undefined, {
      day: "numeric",
      month: "short",
      hour: "2-digit",
      minute: "2-digit",
      timeZone,
      timeZoneName: "short",
    }).format(ms);
  } catch {
    return undefined;
  }
}

/**
 * Approximate local time at a longitude when no hub time zone is known: mean solar offset,
 * rounded to the hour and labelled as such (e.g. "≈ 15:05 UTC+1").
 */
export function formatAtLongitude(ms: number, longitude: number): string {
  const offsetH = Math.max(-12, Math.min(14, Math.round(longitude / 15)));
  const d = new Date(ms + offsetH * 3_600_000);
  const hh = String(d.getUTCHours()).padStart(2, "0");
  const mm = String(d.getUTCMinutes()).padStart(2, "0");
  const sign = offsetH < 0 ? "−" : "+";
  return `≈ ${hh}:${mm} UTC${offsetH === 0 ? "" : sign + Math.abs(offsetH)}`;
}

/** "in 2 days", "3 hours ago"… relative to now. */
export function formatRelative(ms: number, now = Date.now()): string {
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const diff = ms - now;
  const abs = Math.abs(diff);
  if (abs < 60_000) return rtf.format(Math.round(diff / 1000), "second");
  if (abs < 3_600_000) return rtf.format(Math.round(diff / 60_000), "minute");
  if (abs < 86_400_000) return rtf.format(Math.round(diff / 3_600_000), "hour");
  return rtf.format(Math.round(diff / 86_400_000), "day");
}
