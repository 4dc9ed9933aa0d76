import { create } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Validator } from "@bufbuild/protovalidate";
import { createPrecheckedValidator } from "@logistics/shared/validation";
import { ScanSchema, type Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ScanRecordedSchema, type ScanRecorded } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import {
  RejectReason,
  ScanFieldViolationSchema,
  type ScanFieldViolation,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { recordedEventId } from "./event-ids.js";
import { normalizeStatus } from "./normalize.js";

/** A scan that passed every check and may be published. */
export interface AcceptableScan {
  readonly ok: true;
  readonly scan: Scan;
  /**
   * The event to publish: its id ({@link recordedEventId}), the scan, and the normalized status and
   * kind; the ingestor sets `recorded_at` and `region` when it publishes.
   */
  readonly event: ScanRecorded;
  /** False when no table knew the carrier's status code (see {@link normalizeStatus}). */
  readonly mapped: boolean;
}

/** A scan that must be answered with a REJECTED ack. */
export interface RejectedScan {
  readonly ok: false;
  readonly scan: Scan;
  readonly reason: RejectReason;
  readonly detail: string;
  readonly violations: readonly ScanFieldViolation[];
}

/** The verdict on one scan. */
export type ScanVerdict = AcceptableScan | RejectedScan;

/** Options of {@link createScanCheck}. */
export interface ScanCheckOptions {
  /** The mesh validator (`createMeshValidator()`); compiled rules are cached inside it. */
  validator: Validator;
  /** How far event_time may lie in the past. Default 30 days. */
  maxAgeMs?: number;
  /** How far event_time may lie in the future (scanner clock skew). Default 1 hour. */
  maxAheadMs?: number;
}

/** Judges scans one by one. */
export type ScanCheck = (scan: Scan, nowMs: number) => ScanVerdict;

/**
 * Creates the per-scan check: protovalidate rules of `logistics.common.v1.Scan` (every failing
 * field reported, path in proto field names, e.g. `raw_status.code`) → REJECT_REASON_INVALID;
 * then the event-time window → REJECT_REASON_TOO_LATE. A scan passing both gets its recorded
 * event, ready to publish. Carrier authorization is not part of it: it is a request-level
 * decision (see the service). Pure apart from the validator's rule cache.
 *
 * The rules are compiled once into plain checks ({@link createPrecheckedValidator}); a scan that
 * passes them is valid without running the interpreted validator, which then only judges the
 * scans that fail them (and names their violations). That is most of the cost of a batch gone:
 * protovalidate spends over ten microseconds per scan on RE2 (the patterns) and CEL (mesh_time).
 */
export function createScanCheck(opts: ScanCheckOptions): ScanCheck {
  const maxAgeMs = opts.maxAgeMs ?? 30 * 24 * 3600_000;
  const maxAheadMs = opts.maxAheadMs ?? 3600_000;
  const validator = createPrecheckedValidator(opts.validator);
  return (scan, nowMs) => {
    const result = validator.validate(ScanSchema, scan);
    if (result.kind === "invalid") {
      const violations = result.violations.map((v) =>
        create(ScanFieldViolationSchema, { field: pathToString(v.field), rule: v.ruleId, message: v.message }),
      );
      return {
        ok: false,
        scan,
        reason: RejectReason.INVALID,
        detail: `${violations.length} field violation${violations.length === 1 ? "" : "s"}`,
        violations,
      };
    }
    if (result.kind === "error") {
      return { ok: false, scan, reason: RejectReason.INVALID, detail: `validation failed: ${result.error.message}`, violations: [] };
    }
    // Required by the rules above, so present here.
    const eventMs = scan.eventTime ? timestampMs(scan.eventTime) : Number.NaN;
    if (!(eventMs >= nowMs - maxAgeMs)) {
      return { ok: false, scan, reason: RejectReason.TOO_LATE, detail: `event_time is more than ${describeMs(maxAgeMs)} in the past`, violations: [] };
    }
    if (eventMs > nowMs + maxAheadMs) {
      return { ok: false, scan, reason: RejectReason.TOO_LATE, detail: `event_time is more than ${describeMs(maxAheadMs)} in the future`, violations: [] };
    }
    const { status, kind, mapped } = normalizeStatus(scan.carrierCode, scan.rawStatus?.code ?? "");
    return {
      ok: true,
      scan,
      event: create(ScanRecordedSchema, { eventId: recordedEventId(scan.carrierCode, scan.eventId), scan, status, kind }),
      mapped,
    };
  };
}

function describeMs(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000} days`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} hours`;
  if (ms % 60_000 === 0) return `${ms / 60_000} minutes`;
  return `${ms} ms`;
}
