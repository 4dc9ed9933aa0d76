/**
 * Figures per fault, from what the carriers recorded and the backlog samples: the numbers an
 * operator asks for after an incident. Pure.
 */
import type { RunRecord } from "./carriers.js";
import type { LagSample } from "./jetstream-watch.js";

/** A fault as it was injected: when it started, when it was healed, and what it did. */
export interface FaultWindow {
  readonly name: string;
  readonly detail: string;
  /** ms since the run's epoch. */
  readonly injectedAt: number;
  readonly healedAt: number;
  /** End of the observation window (the next fault's start, or the end of the load). */
  readonly windowEnd: number;
}

export interface FaultFigures {
  readonly name: string;
  readonly detail: string;
  readonly injectedAtS: number;
  readonly outageS: number;
  /**
   * Time to recover: from injection until every carrier had a scan, first sent after the
   * injection, finally acknowledged (ACCEPTED or DUPLICATE). Undefined if that never happened.
   */
  readonly recoverMs: number | undefined;
  /** Longest time without any final ack (all carriers together) inside the window. */
  readonly longestAckGapMs: number;
  /** From injection until every scan first sent before the heal was finally acknowledged. */
  readonly backlogClearedMs: number | undefined;
  /** Broken streams by code and retryable rejections by reason, as carriers saw them. */
  readonly carrierErrors: Readonly<Record<string, number>>;
  /** Highest consumer backlog (pending + ack pending, all durables) in the window. */
  readonly lagPeak: number;
  /** From the peak until the backlog was back at the baseline level; undefined if not in the window. */
  readonly drainMs: number | undefined;
}

/** The first final ack time per event id. */
function firstFinalAcks(record: RunRecord): Map<string, number> {
  const m = new Map<string, number>();
  for (const a of record.acks) if ((a.outcome === "ACCEPTED" || a.outcome === "DUPLICATE") && !m.has(a.eventId)) m.set(a.eventId, a.at);
  return m;
}

/** The backlog level counted as "drained": the 95th percentile of the baseline window's samples (at least 5). */
export function drainedLevel(samples: readonly LagSample[], from: number, to: number): number {
  const v = samples.filter((s) => s.at >= from && s.at < to).map((s) => s.total).sort((a, b) => a - b);
  const p95 = v.length ? v[Math.min(v.length - 1, Math.floor(v.length * 0.95))]! : 0;
  return Math.max(5, p95);
}

/** Figures of one window. */
export function faultFigures(record: RunRecord, samples: readonly LagSample[], w: FaultWindow, drained: number): FaultFigures {
  const acked = firstFinalAcks(record);
  const ackTimes = [...acked.values()].filter((t) => t >= w.injectedAt && t <= w.windowEnd).sort((a, b) => a - b);
  let longest = 0;
  let prev = w.injectedAt;
  for (const t of ackTimes) {
    longest = Math.max(longest, t - prev);
    prev = t;
  }
  longest = Math.max(longest, w.windowEnd - prev);

  // Recovery: per carrier, the first scan sent after the injection that got a final ack.
  const carriers = new Set([...record.sent.values()].map((s) => s.carrier));
  let recover: number | undefined = 0;
  for (const c of carriers) {
    let first: number | undefined;
    for (const s of record.sent.values()) {
      if (s.carrier !== c || s.firstSentAt < w.injectedAt) continue;
      const t = acked.get(s.eventId);
      if (t !== undefined && (first === undefined || t < first)) first = t;
    }
    if (first === undefined) {
      recover = undefined;
      break;
    }
    recover = Math.max(recover, first - w.injectedAt);
  }

  let cleared = w.injectedAt;
  let clearedOk = true;
  for (const s of record.sent.values()) {
    if (s.firstSentAt > w.healedAt) continue;
    const t = acked.get(s.eventId);
    if (t === undefined) {
      clearedOk = false;
      break;
    }
    if (t > cleared) cleared = t;
  }

  const carrierErrors: Record<string, number> = {};
  for (const e of record.streamErrors) if (e.at >= w.injectedAt && e.at <= w.windowEnd) carrierErrors[`stream ${e.code}`] = (carrierErrors[`stream ${e.code}`] ?? 0) + 1;
  for (const a of record.acks) if (a.outcome === "REJECTED" && a.at >= w.injectedAt && a.at <= w.windowEnd) carrierErrors[`REJECTED ${a.reason}`] = (carrierErrors[`REJECTED ${a.reason}`] ?? 0) + 1;
  for (const e of record.createErrors) if (e.at >= w.injectedAt && e.at <= w.windowEnd) carrierErrors[`CreateShipment code ${e.code}`] = (carrierErrors[`CreateShipment code ${e.code}`] ?? 0) + 1;

  const inWindow = samples.filter((s) => s.at >= w.injectedAt && s.at <= w.windowEnd);
  let peak: LagSample | undefined;
  for (const s of inWindow) if (!peak || s.total > peak.total) peak = s;
  const drainedAt = peak ? inWindow.find((s) => s.at >= peak!.at && s.total <= drained) : undefined;
  return {
    name: w.name,
    detail: w.detail,
    injectedAtS: round(w.injectedAt / 1000, 1),
    outageS: round((w.healedAt - w.injectedAt) / 1000, 1),
    recoverMs: recover === undefined ? undefined : Math.round(recover),
    longestAckGapMs: Math.round(longest),
    backlogClearedMs: clearedOk ? Math.round(cleared - w.injectedAt) : undefined,
    carrierErrors,
    lagPeak: peak?.total ?? 0,
    drainMs: peak && drainedAt ? Math.round(drainedAt.at - peak.at) : undefined,
  };
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
