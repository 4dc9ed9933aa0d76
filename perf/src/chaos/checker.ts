/**
 * The chaos checker, independent of the code under test: it knows only what the carriers recorded
 * (every scan sent, every ack) and what the public RPCs and the webhook receiver show at the end,
 * and compares them with a sequential model of its own (not the mesh's derivation code).
 *
 * - lost: a scan acknowledged ACCEPTED or DUPLICATE that is not in its shipment's history (must be 0);
 * - applied twice: a sent scan that appears more than once in the history (must be 0);
 * - visible but never acked: in the history although no ack ever said ACCEPTED or DUPLICATE (must
 *   be 0). A scan whose only acks were DUPLICATE (its ACCEPTED ack was lost with a broken stream)
 *   is the allowed case, counted apart;
 * - unknown: a scan event in a history that no carrier sent (must be 0);
 * - status: each shipment's status equals the model's fold of its acknowledged scans in
 *   event-time order;
 * - webhooks (at least once): per shipment the distinct status_changed events must chain
 *   (each one's previous_status is the status of the one before, by shipment_version) up to the
 *   final status; a gap is a missing webhook, two distinct events for one shipment_version a
 *   duplicate beyond at-least-once. Redeliveries of one event id are allowed and counted.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ShipmentEventKind, TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import type { RunRecord, SentScan } from "./carriers.js";

/** A scan event of a shipment's history, as ListShipmentEvents shows it. */
export interface HistoryScan {
  readonly eventId: string;
  readonly code: string;
  readonly hubCode: string;
  readonly eventTimeMs: number;
}

/** A webhook the receiver got (each delivery attempt answered 2xx). */
export interface WebhookSeen {
  readonly id: string;
  readonly trackingNumber: string;
  readonly version: number;
  readonly previousStatus: string | null;
  readonly status: string;
}

/** What the checker reads at the end. */
export interface FinalState {
  /** Scan events per tracking number. */
  readonly history: ReadonlyMap<string, readonly HistoryScan[]>;
  /** Status per tracking number, lowercase proto name without prefix (`in_transit`). */
  readonly status: ReadonlyMap<string, string>;
  readonly webhooks: readonly WebhookSeen[];
  readonly deadLetters: number;
}

export interface CheckerReport {
  readonly ok: boolean;
  readonly scansSent: number;
  readonly scansAcked: number;
  readonly ackedOnlyAsDuplicate: number;
  readonly unackedAtEnd: number;
  readonly lost: readonly string[];
  readonly appliedTwice: readonly string[];
  readonly visibleNeverAcked: readonly string[];
  readonly visibleAckedOnlyAsDuplicate: number;
  readonly unknownVisible: number;
  readonly shipments: number;
  readonly statusMismatches: ReadonlyArray<{ trackingNumber: string; model: string; actual: string }>;
  readonly webhooks: {
    readonly deliveries: number;
    readonly distinctEvents: number;
    readonly redeliveries: number;
    readonly missing: ReadonlyArray<{ trackingNumber: string; what: string }>;
    readonly duplicated: ReadonlyArray<{ trackingNumber: string; version: number }>;
  };
  readonly finalRejections: number;
  readonly deadLetters: number;
}

/** The model's status for a generic-table raw code; the terminal ones stop the fold. */
const MODEL_STATUS: Readonly<Record<string, string>> = {
  PU: "in_transit",
  AR: "in_transit",
  DP: "in_transit",
  CU: "in_transit",
  CH: "exception",
  OD: "out_for_delivery",
  DL: "delivered",
};
const TERMINAL = new Set(["delivered", "returned_to_sender", "expired"]);

/** The sequential model: a new shipment is info_received; scans in event-time order set the status until a terminal one. */
export function modelStatus(scans: readonly Pick<SentScan, "code" | "eventTimeMs" | "eventId">[]): string {
  const ordered = [...scans].sort((a, b) => a.eventTimeMs - b.eventTimeMs || (a.eventId < b.eventId ? -1 : 1));
  let status = "info_received";
  for (const s of ordered) {
    if (TERMINAL.has(status)) break;
    const next = MODEL_STATUS[s.code];
    if (next) status = next;
  }
  return status;
}

const keyOf = (tn: string, s: { code: string; hubCode: string; eventTimeMs: number }) => `${tn}|${s.eventTimeMs}|${s.code}|${s.hubCode}`;

/** Compares the record with the final state. Pure. */
export function check(record: RunRecord, state: FinalState, unackedAtEnd: number): CheckerReport {
  const finallyAcked = new Set<string>();
  const accepted = new Set<string>();
  for (const a of record.acks) {
    if (a.outcome === "ACCEPTED") accepted.add(a.eventId);
    if (a.outcome === "ACCEPTED" || a.outcome === "DUPLICATE") finallyAcked.add(a.eventId);
  }
  const byKey = new Map<string, SentScan>();
  const sentByShipment = new Map<string, SentScan[]>();
  for (const s of record.sent.values()) {
    byKey.set(keyOf(s.trackingNumber, s), s);
    (sentByShipment.get(s.trackingNumber) ?? sentByShipment.set(s.trackingNumber, []).get(s.trackingNumber)!).push(s);
  }
  const seen = new Map<string, number>();
  let unknownVisible = 0;
  for (const [tn, scans] of state.history) {
    for (const h of scans) {
      const s = byKey.get(keyOf(tn, h));
      if (!s) {
        unknownVisible++;
        continue;
      }
      seen.set(s.eventId, (seen.get(s.eventId) ?? 0) + 1);
    }
  }
  const lost: string[] = [];
  for (const id of finallyAcked) if (!seen.has(id)) lost.push(id);
  const appliedTwice = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
  const visibleNeverAcked = [...seen.keys()].filter((id) => !finallyAcked.has(id));
  const visibleAckedOnlyAsDuplicate = [...seen.keys()].filter((id) => finallyAcked.has(id) && !accepted.has(id)).length;
  const ackedOnlyAsDuplicate = [...finallyAcked].filter((id) => !accepted.has(id)).length;

  const statusMismatches: Array<{ trackingNumber: string; model: string; actual: string }> = [];
  const modelOf = new Map<string, string>();
  for (const tn of record.shipments.keys()) {
    const model = modelStatus((sentByShipment.get(tn) ?? []).filter((s) => finallyAcked.has(s.eventId)));
    modelOf.set(tn, model);
    const actual = state.status.get(tn) ?? "missing";
    if (actual !== model) statusMismatches.push({ trackingNumber: tn, model, actual });
  }

  // Webhooks: redeliveries of one id are at-least-once; the distinct events must chain.
  const distinct = new Map<string, WebhookSeen>();
  for (const w of state.webhooks) if (!distinct.has(w.id)) distinct.set(w.id, w);
  const perShipment = new Map<string, WebhookSeen[]>();
  for (const w of distinct.values()) (perShipment.get(w.trackingNumber) ?? perShipment.set(w.trackingNumber, []).get(w.trackingNumber)!).push(w);
  const missing: Array<{ trackingNumber: string; what: string }> = [];
  const duplicated: Array<{ trackingNumber: string; version: number }> = [];
  for (const tn of record.shipments.keys()) {
    const events = (perShipment.get(tn) ?? []).sort((a, b) => a.version - b.version);
    let status: string | null = null;
    let lastVersion = -1;
    for (const e of events) {
      if (e.version === lastVersion) {
        duplicated.push({ trackingNumber: tn, version: e.version });
        continue;
      }
      lastVersion = e.version;
      const prev = e.previousStatus ?? null;
      const chained = status === null ? prev === null || prev === "info_received" || prev === "unspecified" : prev === status;
      if (!chained) missing.push({ trackingNumber: tn, what: `${status ?? "start"} → ${prev ?? "null"} (before version ${e.version})` });
      status = e.status;
    }
    const final = state.status.get(tn);
    const last = status ?? "info_received";
    if (final && final !== last && !(status === null && final === "info_received")) missing.push({ trackingNumber: tn, what: `${last} → ${final} (last)` });
  }

  const report = {
    scansSent: record.sent.size,
    scansAcked: finallyAcked.size,
    ackedOnlyAsDuplicate,
    unackedAtEnd,
    lost,
    appliedTwice,
    visibleNeverAcked,
    visibleAckedOnlyAsDuplicate,
    unknownVisible,
    shipments: record.shipments.size,
    statusMismatches,
    webhooks: {
      deliveries: state.webhooks.length,
      distinctEvents: distinct.size,
      redeliveries: state.webhooks.length - distinct.size,
      missing,
      duplicated,
    },
    finalRejections: record.finalRejections.length,
    deadLetters: state.deadLetters,
  };
  const ok =
    lost.length === 0 &&
    appliedTwice.length === 0 &&
    visibleNeverAcked.length === 0 &&
    unknownVisible === 0 &&
    statusMismatches.length === 0 &&
    missing.length === 0 &&
    duplicated.length === 0 &&
    report.finalRejections === 0 &&
    unackedAtEnd === 0 &&
    state.deadLetters === 0;
  return { ok, ...report };
}

/** The lowercase proto name of a status, without its prefix, as webhooks spell it. */
export function statusName(s: ShipmentStatus): string {
  return (ShipmentStatus[s] ?? "unspecified").toLowerCase();
}

/** Reads every shipment's scan history and status through TrackingService (an operator's token). */
export async function readTracking(
  trackingAddress: string,
  token: string,
  trackingNumbers: Iterable<string>,
): Promise<{ history: Map<string, HistoryScan[]>; status: Map<string, string> }> {
  const tracking = createClient(TrackingService, createGrpcTransport({ baseUrl: `http://${trackingAddress}` }));
  const headers = { authorization: `Bearer ${token}` };
  const history = new Map<string, HistoryScan[]>();
  const status = new Map<string, string>();
  const all = [...trackingNumbers];
  // A few shipments at a time: enough to finish quickly, gentle on a two-core machine.
  for (let i = 0; i < all.length; i += 8) {
    await Promise.all(
      all.slice(i, i + 8).map(async (tn) => {
        const scans: HistoryScan[] = [];
        let pageToken = "";
        do {
          const page = await tracking.listShipmentEvents({ trackingNumber: tn, pageSize: 500, pageToken }, { headers, timeoutMs: 10_000 });
          for (const e of page.events) {
            if (e.kind !== ShipmentEventKind.SCAN) continue;
            scans.push({
              eventId: e.eventId,
              code: e.carrierStatus?.code ?? "",
              hubCode: e.hubCode,
              eventTimeMs: e.eventTime ? timestampMs(e.eventTime) : 0,
            });
          }
          pageToken = page.nextPageToken;
        } while (pageToken);
        history.set(tn, scans);
        const res = await tracking.getShipment({ trackingNumber: tn }, { headers, timeoutMs: 10_000 });
        status.set(tn, statusName(res.shipment?.status ?? ShipmentStatus.UNSPECIFIED).replace(/^shipment_status_/, ""));
      }),
    );
  }
  return { history, status };
}
