import type { ScanRecorded } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";

/*
 * How much scan data one shipment may accumulate. Tracking keeps each shipment in one document
 * whose derivation lists every applied event (its timeline entry with the carrier's status text,
 * its event id), and a document is bounded (tracking's MAX_DOCUMENT_BYTES, 256 KiB). A carrier
 * that keeps scanning one parcel (a loop, a bug, an attack: 2,000 short scans, or 150 with
 * 512-character texts) would take it past the bound; tracking then trims the document's oldest
 * timeline entries (before, it dead-lettered every later event and the shipment froze). Ingest
 * is where that is kept from happening: each accepted scan is charged what it adds to the
 * document, and a scan that would take its shipment past the budget is rejected
 * (REJECT_REASON_SHIPMENT_FULL), so that what ingest accepts, tracking holds whole. The accounts
 * live in Redis beside the dedupe set (redis-scan-admission.ts). The budget fails open (Redis
 * down) and forgets a shipment after its TTL; what gets past it is trimmed, not lost.
 */

/** Fixed part of a scan's cost: the timeline entry's keys, time, kind and status, and a route revision's event id it may cause. */
const SCAN_COST_BASE = 200;

const utf8 = (s: string) => Buffer.byteLength(s, "utf8");
/** Bytes of `s` as a JSON string (escapes included: a control character is six). */
const jsonBytes = (s: string) => utf8(JSON.stringify(s));

/**
 * What a scan adds to its shipment's tracking document, in bytes (an upper estimate): its event id
 * twice (timeline entry and event list), the carrier's status code and text as JSON, the hub.
 */
export function scanDocumentCost(event: ScanRecorded): number {
  const scan = event.scan;
  return (
    SCAN_COST_BASE +
    2 * utf8(event.eventId) +
    jsonBytes(scan?.rawStatus?.code ?? "") +
    jsonBytes(scan?.rawStatus?.text ?? "") +
    utf8(scan?.hubCode ?? "")
  );
}

/** One charge against a shipment's budget. */
export interface BudgetCharge {
  readonly shipment: string;
  readonly cost: number;
}
