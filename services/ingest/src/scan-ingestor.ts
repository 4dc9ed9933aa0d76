import { create } from "@bufbuild/protobuf";
import { timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import { setTimeout as delay } from "node:timers/promises";
import type { Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import {
  RejectReason,
  ScanAckSchema,
  ScanOutcome,
  type ScanAck,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { publication, type CatalogEvents, type CatalogPublisher, type Publication } from "@logistics/shared/events";
import type { PublishEventResult } from "@logistics/shared/nats";
import { observeWithExemplar } from "@logistics/shared/telemetry";
import type { IngestMetrics } from "./ingest-metrics.js";
import type { AcceptableScan, ScanCheck, ScanVerdict } from "./scan-check.js";
import { checkCallerCarrier, judgeScanOwnership, type OwnershipVerdict, type PartiesLookup } from "./scan-ownership.js";
import { encodeScanEvents } from "./scan-event-encoding.js";
import type { Semaphore } from "./semaphore.js";
import { DirectoryUnavailableError, type ShipmentDirectory } from "./shipment-directory.js";
import { scanDocumentCost, type BudgetCharge } from "./shipment-budget.js";

/** What {@link ScanAdmission.admit} decided for one scan about to be published. */
export type Admission =
  /** Its id was stored before (the longer-lived dedupe set): answered DUPLICATE, not published. */
  | "seen"
  /** New, and charged to its shipment's budget (given back through `settle` if not stored after all). */
  | "charged"
  /** New, admitted without a charge (no budgets, or the store failed open). */
  | "free"
  /** New, but it would take its shipment past its budget: rejected SHIPMENT_FULL, not published. */
  | "full";

/** One scan about to be published, as {@link ScanAdmission} sees it. */
export interface AdmissionItem {
  /** Its recorded event id (the dedupe key). */
  readonly id: string;
  /** Its tracking number (the budget's account). */
  readonly shipment: string;
  /** What it adds to its shipment's document (scanDocumentCost). */
  readonly cost: number;
}

/**
 * The longer-lived scan dedupe set (beyond JetStream's duplicate window) and the per-shipment
 * budgets of scan data (shipment-budget.ts), decided together: one round trip per batch.
 * Implementations fail open: when the store is unreachable every item is "free" and settlements
 * are dropped, leaving dedupe to JetStream's window.
 */
export interface ScanAdmission {
  /** One verdict per item, in order; items are charged in order, as separate calls would be. */
  admit(items: readonly AdmissionItem[]): Promise<Admission[]>;
  /**
   * After the PubAcks: records `stored` ids in the dedupe set and gives back `refunds` (charges of
   * scans not stored after all). Never rejects; may be carried by a later round.
   */
  settle(stored: readonly string[], refunds: readonly BudgetCharge[]): void;
}

/** The narrow logger the ingestor reports to (pino satisfies it). */
export interface IngestLog {
  warn(obj: object, msg?: string): void;
}

/** Dependencies of {@link createScanIngestor}. */
export interface ScanIngestorOptions {
  /** Publishes scan events (a batch at a time, pipelined). */
  publisher: Pick<CatalogPublisher, "publishAll">;
  /** The catalog's scan event (`catalog.events.scanRecorded`): schema, subject, id. */
  scanEvent: CatalogEvents["scanRecorded"];
  /** Region token of this deployment, e.g. "eu-west" (INGEST_REGION). */
  region: string;
  check: ScanCheck;
  /** Who carries each shipment: decides ownership (see scan-ownership.ts). */
  directory: Pick<ShipmentDirectory, "lookup">;
  /**
   * The dedupe set and the per-shipment budgets (a scan that would take its shipment past its
   * budget is rejected with SHIPMENT_FULL).
   */
  admission: ScanAdmission;
  /** Bounds scans being processed in the whole process (INGEST_MAX_INFLIGHT). */
  inflight: Semaphore;
  metrics: IngestMetrics;
  log: IngestLog;
  /** Time budget per scan for a durable PubAck, retries included. Default 5 000 ms. */
  publishDeadlineMs?: number;
  /** Clock in epoch ms. Default Date.now. */
  now?: () => number;
}

/** Who sent a batch, as far as ownership is concerned. */
export interface ScanCaller {
  /** The carrier claim of a carrier-gateway token; undefined for internal callers. */
  readonly carrier?: string;
}

/** Turns batches of scans into acks. */
export interface ScanIngestor {
  /**
   * Validates, authorizes, deduplicates and publishes `scans` and resolves with exactly one ack
   * per scan, in order. Never rejects for a single scan's problem: invalid scans get
   * REJECTED/INVALID or TOO_LATE, scans the caller or the shipment does not own WRONG_CARRIER or
   * UNKNOWN_SHIPMENT, scans whose ownership could not be read or whose PubAck did not arrive
   * within the deadline REJECTED/UNAVAILABLE. An ACCEPTED ack is produced only after the event's
   * PubAck. Rejects only if `signal` aborts while waiting for in-flight capacity (nothing was
   * published then).
   *
   * `span`: a span the caller opened for exactly this batch and made active (StreamScans' span of
   * one request message); the batch is recorded on it instead of in a child span `ingest scans`,
   * which would only repeat it (one span fewer per message where each message is one scan).
   */
  ingest(scans: readonly Scan[], caller: ScanCaller, signal?: AbortSignal, span?: Span): Promise<ScanAck[]>;
}

type Slot =
  | { kind: "reject"; ack: ScanAck }
  | { kind: "publish"; scan: AcceptableScan }
  | { kind: "copy"; of: number; scan: AcceptableScan };

const tracer = () => trace.getTracer("logistics.ingest");

/**
 * Creates the scan pipeline shared by SubmitScans and StreamScans:
 * 1. check every scan (validation, event-time window);
 * 2. ownership (scan-ownership.ts): the caller's carrier claim, then the shipment's carriers from
 *    the directory (one cached lookup per distinct tracking number). A cached entry decides the
 *    scans of the shipment's own carrier, which never changes; a rejection and a partner's scan
 *    are confirmed with one fresh read of their shipments, since a cached entry may predate a
 *    handover (a partner missing) or a partner's removal (a partner still listed);
 * 3. a scan repeated inside the batch is published once; its copies get DUPLICATE;
 * 4. one admission round (ScanAdmission): ids already in the dedupe set get DUPLICATE without
 *    publishing, and each new scan is charged to its shipment's budget (SHIPMENT_FULL past it);
 * 5. the rest are published as one pipelined batch (holding one in-flight permit per scan: every
 *    publish is sent before any PubAck is awaited), the failed ones retried until the publish
 *    deadline; PubAck `duplicate` → DUPLICATE, else ACCEPTED with the stream sequence; no PubAck
 *    in time → REJECTED/UNAVAILABLE (safe to resend: a stored one comes back as DUPLICATE);
 * 6. stored ids are added to the dedupe set and the charges of scans not stored are given back
 *    (settled with a later round).
 * The batch runs in one span `ingest scans` (or the caller's span of the batch); each publish round
 * makes one producer span under it (the catalog publisher's `publishAll`).
 */
export function createScanIngestor(opts: ScanIngestorOptions): ScanIngestor {
  const deadlineMs = opts.publishDeadlineMs ?? 5000;
  const now = opts.now ?? Date.now;
  const { metrics } = opts;

  /**
   * Publishes every scan of `batch` and returns its PubAck or the last error, index by index. All
   * publishes of a round are sent before any PubAck is awaited (one pipelined round trip for the
   * batch, not one per scan); the scans that failed are sent again in the next round, after a
   * short backoff, until the deadline.
   */
  const publishDurably = async (batch: readonly AcceptableScan[], recordedAt: Timestamp): Promise<Array<PublishEventResult | Error>> => {
    const started = performance.now();
    const deadline = started + deadlineMs;
    for (const a of batch) {
      a.event.recordedAt = recordedAt;
      a.event.region = opts.region;
    }
    // Encoded once for every round (a retry sends the same bytes).
    const payloads = encodeScanEvents(batch.map((a) => a.event));
    const items = batch.map((a, i) => publication(opts.scanEvent, a.event, { region: opts.region, carrier: a.scan.carrierCode }, payloads[i]));
    const results = new Array<PublishEventResult | Error | undefined>(batch.length);
    let pending = batch.map((_, i) => i);
    let backoff = 25;
    for (;;) {
      const remaining = Math.floor(deadline - performance.now());
      if (remaining <= 0) break;
      const settled = await opts.publisher.publishAll(
        pending.map((i) => items[i] as Publication),
        { timeoutMs: remaining },
      );
      const failed: number[] = [];
      settled.forEach((r, k) => {
        const i = pending[k] as number;
        if (r.status === "fulfilled") {
          results[i] = r.value;
        } else {
          results[i] = r.reason instanceof Error ? r.reason : new Error(String(r.reason));
          failed.push(i);
        }
      });
      const okCount = pending.length - failed.length;
      const took = (performance.now() - started) / 1000;
      if (okCount > 0) observeWithExemplar(metrics.publishDuration, { result: "ok" }, took, okCount);
      pending = failed;
      if (pending.length === 0) return results as Array<PublishEventResult | Error>;
      const left = deadline - performance.now();
      if (left <= 0) break;
      // No responders (JetStream restarting) or a broken connection: wait a little, then retry.
      await delay(Math.min(backoff, left));
      backoff = Math.min(backoff * 2, 500);
    }
    const took = (performance.now() - started) / 1000;
    if (pending.length > 0) observeWithExemplar(metrics.publishDuration, { result: "unavailable" }, took, pending.length);
    // One error for every scan the deadline left without an outcome (not one allocation per scan).
    let elapsed: Error | undefined;
    for (let i = 0; i < results.length; i++) results[i] ??= elapsed ??= new Error("publish deadline elapsed");
    return results as Array<PublishEventResult | Error>;
  };

  /** Ownership of every checked scan (undefined where `checked` is not acceptable). */
  const ownership = async (checked: ReturnType<ScanCheck>[], caller: ScanCaller): Promise<Array<OwnershipVerdict | undefined>> => {
    const verdicts: Array<OwnershipVerdict | undefined> = checked.map((v) =>
      v.ok ? checkCallerCarrier(caller.carrier, v.scan.carrierCode) : undefined,
    );
    const pending: number[] = [];
    for (let i = 0; i < checked.length; i++) if ((checked[i] as ScanVerdict).ok && verdicts[i] === undefined) pending.push(i);
    if (pending.length === 0) return verdicts;
    const tnOf = (i: number) => (checked[i] as AcceptableScan).scan.trackingNumber;
    const lookups = new Map<string, PartiesLookup>();
    const read = async (tns: string[], fresh: boolean) => {
      try {
        const found = await opts.directory.lookup(tns, fresh);
        for (const tn of tns) lookups.set(tn, found.get(tn) ?? "unknown");
      } catch (err) {
        if (!(err instanceof DirectoryUnavailableError)) throw err;
        opts.log.warn({ err }, "scans rejected as unavailable: the shipment directory could not be read");
        for (const tn of tns) lookups.set(tn, "unavailable");
      }
    };
    const judge = (indices: readonly number[]) => {
      for (const i of indices) {
        const a = checked[i] as AcceptableScan;
        verdicts[i] = judgeScanOwnership(a.scan.trackingNumber, a.scan.carrierCode, lookups.get(tnOf(i)) ?? "unknown");
      }
    };
    await read([...new Set(pending.map(tnOf))], false);
    judge(pending);
    // A cached entry may predate a handover or a removal on another replica: confirm every
    // WRONG_CARRIER, and every scan accepted for a partner rather than the shipment's own
    // carrier, against the store. The own carrier's scans keep their verdict (it never changes).
    const doubtful: number[] = [];
    for (const i of pending) {
      const v = verdicts[i];
      const parties = lookups.get(tnOf(i));
      const partnerScan = v?.ok === true && typeof parties === "object" && parties.carrier !== (checked[i] as AcceptableScan).scan.carrierCode;
      if (partnerScan || (v?.ok === false && v.reason === RejectReason.WRONG_CARRIER)) doubtful.push(i);
    }
    if (doubtful.length > 0) {
      await read([...new Set(doubtful.map(tnOf))], true);
      judge(doubtful);
    }
    return verdicts;
  };

  const ingestBatch = async (scans: readonly Scan[], caller: ScanCaller, signal?: AbortSignal): Promise<ScanAck[]> => {
    const started = performance.now();
    const nowMs = now();
    const checked = scans.map((s) => opts.check(s, nowMs));
    const owned = await ownership(checked, caller);
    const slots: Slot[] = [];
    const firstIndex = new Map<string, number>();
    for (let i = 0; i < scans.length; i++) {
      const verdict = checked[i] as ReturnType<ScanCheck>;
      if (!verdict.ok) {
        slots.push({ kind: "reject", ack: rejectAck(verdict.scan, verdict.reason, verdict.detail, verdict.violations) });
        continue;
      }
      const own = owned[i];
      if (own && !own.ok) {
        slots.push({ kind: "reject", ack: rejectAck(verdict.scan, own.reason, own.detail, []) });
        continue;
      }
      if (!verdict.mapped) metrics.unmappedStatus.inc({ carrier: verdict.scan.carrierCode });
      const first = firstIndex.get(verdict.event.eventId);
      if (first === undefined) {
        firstIndex.set(verdict.event.eventId, i);
        slots.push({ kind: "publish", scan: verdict });
      } else {
        slots.push({ kind: "copy", of: first, scan: verdict });
      }
    }

    // Index by index (plain arrays: this runs for every scan).
    const toPublish: number[] = [];
    for (let i = 0; i < slots.length; i++) if ((slots[i] as Slot).kind === "publish") toPublish.push(i);
    const publishedAt = (i: number) => (slots[i] as { scan: AcceptableScan }).scan;
    const results = new Array<{ seq: number; duplicate: boolean } | Error | "seen" | "full" | undefined>(slots.length);
    if (toPublish.length > 0) {
      const release = await opts.inflight.acquire(toPublish.length, signal);
      metrics.inflight.inc(toPublish.length);
      try {
        // One round trip decides both: ids stored before are DUPLICATE, and what ingest accepts
        // tracking must be able to hold, so each new scan is charged to its shipment's budget
        // first and one that would take the shipment past it is not published.
        const items = toPublish.map((i): AdmissionItem => {
          const a = publishedAt(i);
          return { id: a.event.eventId, shipment: a.scan.trackingNumber, cost: scanDocumentCost(a.event) };
        });
        const verdicts = await opts.admission.admit(items);
        const fresh: number[] = [];
        for (let k = 0; k < toPublish.length; k++) {
          const i = toPublish[k] as number;
          const v = verdicts[k];
          if (v === "seen") results[i] = "seen";
          else if (v === "full") results[i] = "full";
          else fresh.push(i);
        }
        try {
          if (fresh.length > 0) {
            const acks = await publishDurably(fresh.map(publishedAt), timestampFromMs(now()));
            for (let k = 0; k < fresh.length; k++) results[fresh[k] as number] = acks[k] as PublishEventResult | Error;
          }
        } finally {
          const stored: string[] = [];
          // Not stored after all (no PubAck), or stored before (JetStream's duplicate window): give the charge back.
          const refunds: BudgetCharge[] = [];
          for (let k = 0; k < toPublish.length; k++) {
            const i = toPublish[k] as number;
            const r = results[i];
            if (r === "seen" || r === "full") continue;
            const ok = r !== undefined && !(r instanceof Error);
            if (ok) stored.push((items[k] as AdmissionItem).id);
            if (verdicts[k] === "charged" && (!ok || r.duplicate)) refunds.push(items[k] as AdmissionItem);
          }
          // Not awaited: the ack does not depend on it (a resend racing it is caught by JetStream's
          // window), and the adapter never rejects (it fails open).
          opts.admission.settle(stored, refunds);
        }
      } finally {
        metrics.inflight.dec(toPublish.length);
        release();
      }
    }

    let unavailable: Error | undefined;
    const acks = slots.map((slot, i): ScanAck => {
      if (slot.kind === "reject") return slot.ack;
      const r = results[slot.kind === "copy" ? slot.of : i];
      const scan = slot.scan.scan;
      if (r === "full") {
        return rejectAck(
          scan,
          RejectReason.SHIPMENT_FULL,
          "the shipment holds as much scan data as the mesh keeps for one shipment; further scans of it are not accepted",
          [],
        );
      }
      if (r instanceof Error || r === undefined) {
        unavailable ??= r;
        return rejectAck(scan, RejectReason.UNAVAILABLE, "the event stream did not confirm storage in time; resend the scan", []);
      }
      if (slot.kind === "copy" || r === "seen" || r.duplicate) {
        return create(ScanAckSchema, {
          eventId: scan.eventId,
          trackingNumber: scan.trackingNumber,
          outcome: ScanOutcome.DUPLICATE,
          recordedEventId: slot.scan.event.eventId,
        });
      }
      return create(ScanAckSchema, {
        eventId: scan.eventId,
        trackingNumber: scan.trackingNumber,
        outcome: ScanOutcome.ACCEPTED,
        recordedEventId: slot.scan.event.eventId,
        streamSequence: BigInt(r.seq),
      });
    });
    if (unavailable) opts.log.warn({ err: unavailable }, "scans rejected as unavailable: no PubAck within the publish deadline");
    const callerCarrier = caller.carrier;
    countAcks(
      metrics,
      acks,
      // A carrier's scans all count under its carrier (see carrierLabel): no verdict to look at per scan.
      callerCarrier !== undefined
        ? () => callerCarrier
        : (i) => {
            const v = checked[i] as ScanVerdict;
            return carrierLabel(caller, v.scan, { valid: v.ok || v.reason !== RejectReason.INVALID, ownerConfirmed: owned[i]?.ok === true });
          },
    );
    const seconds = (performance.now() - started) / 1000;
    let unavailableAcks = 0;
    for (const ack of acks) if (ack.outcome === ScanOutcome.REJECTED && ack.rejectReason === RejectReason.UNAVAILABLE) unavailableAcks++;
    if (acks.length > unavailableAcks) observeWithExemplar(metrics.scanAck, { result: "ok" }, seconds, acks.length - unavailableAcks);
    if (unavailableAcks > 0) observeWithExemplar(metrics.scanAck, { result: "unavailable" }, seconds, unavailableAcks);
    return acks;
  };

  const accepted = (acks: readonly ScanAck[]) => {
    let n = 0;
    for (const a of acks) if (a.outcome === ScanOutcome.ACCEPTED) n++;
    return n;
  };

  return {
    async ingest(scans, caller, signal, span) {
      if (span) {
        const acks = await ingestBatch(scans, caller, signal);
        span.setAttribute("logistics.scan.accepted", accepted(acks));
        return acks;
      }
      return tracer().startActiveSpan("ingest scans", { attributes: { "logistics.scan.count": scans.length } }, async (own) => {
        try {
          const acks = await ingestBatch(scans, caller, signal);
          own.setAttribute("logistics.scan.accepted", accepted(acks));
          return acks;
        } catch (err) {
          own.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
          throw err;
        } finally {
          own.end();
        }
      });
    },
  };
}

/** A REJECTED ack for `scan`. */
export function rejectAck(
  scan: Scan,
  reason: RejectReason,
  detail: string,
  violations: readonly ScanAck["violations"][number][],
): ScanAck {
  return create(ScanAckSchema, {
    eventId: scan.eventId,
    trackingNumber: scan.trackingNumber,
    outcome: ScanOutcome.REJECTED,
    rejectReason: reason,
    detail,
    violations: [...violations],
  });
}

const OUTCOME_LABEL: Partial<Record<ScanOutcome, string>> = {
  [ScanOutcome.ACCEPTED]: "accepted",
  [ScanOutcome.DUPLICATE]: "duplicate",
  [ScanOutcome.REJECTED]: "rejected",
};

/** `carrier` label of scans that failed validation and came from an internal caller. */
export const INVALID_CARRIER_LABEL = "_invalid";
/** `carrier` label of scans from an internal caller whose carrier the shipment directory did not confirm. */
export const UNVERIFIED_CARRIER_LABEL = "_unverified";

/**
 * The `carrier` label of one scan's ack, from carriers the mesh vouches for only, so the label's
 * values stay bounded whatever callers send: a carrier gateway's scans (any outcome, a too-late
 * or invalid scan included) count under the carrier of its token; an internal caller's scans
 * under their `carrier_code` when the shipment directory confirmed it is a carrier of the
 * shipment, else {@link INVALID_CARRIER_LABEL} (failed validation) or
 * {@link UNVERIFIED_CARRIER_LABEL} (too late, unknown shipment, wrong carrier, rate limited).
 */
export function carrierLabel(caller: ScanCaller, scan: Scan, verdict: { valid: boolean; ownerConfirmed: boolean }): string {
  if (caller.carrier) return caller.carrier;
  if (!verdict.valid) return INVALID_CARRIER_LABEL;
  return verdict.ownerConfirmed ? scan.carrierCode : UNVERIFIED_CARRIER_LABEL;
}

/**
 * Counts acks in `logistics_ingest_scans_total`, one increment per label set (not per scan);
 * `carrierOf(i)` is the carrier label of the i-th ack (see {@link carrierLabel}).
 */
export function countAcks(metrics: IngestMetrics, acks: readonly ScanAck[], carrierOf: (index: number) => string): void {
  const counts = new Map<string, { carrier: string; outcome: string; reason: string; n: number }>();
  for (let i = 0; i < acks.length; i++) {
    const ack = acks[i] as ScanAck;
    const carrier = carrierOf(i);
    const outcome = OUTCOME_LABEL[ack.outcome] ?? "unknown";
    const reason = ack.outcome === ScanOutcome.REJECTED ? (RejectReason[ack.rejectReason] ?? "UNKNOWN").toLowerCase() : "";
    const key = `${carrier}\n${outcome}\n${reason}`;
    const c = counts.get(key);
    if (c) c.n++;
    else counts.set(key, { carrier, outcome, reason, n: 1 });
  }
  for (const { n, ...labels } of counts.values()) metrics.scans.inc(labels, n);
}
