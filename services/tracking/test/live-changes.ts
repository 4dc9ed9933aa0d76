import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { appliedResult, applyToDoc } from "../src/store/derive.js";
import { checkStoredEvent, storedEvent } from "../src/store/events.js";
import type { ApplyResult, ProjectedEvent, ShipmentDoc, StoredEvent } from "../src/store/ports.js";
import { fitDocument } from "../src/store/trim-document.js";
import type { LiveNotice } from "../src/live-notice.js";
import type { LiveHub } from "../src/live-updates.js";
import { created, scan } from "./store/event-builders.js";

/** One committed store call of a shipment: its applied events with their results, and the document after it. */
export interface Commit {
  doc: ShipmentDoc;
  applied: Array<{ event: ProjectedEvent; result: ApplyResult }>;
}

/** A shipment's creation and `scans` scans, an hour apart, for unit tests of notices and feeds. */
export function journey(tn: string, scans: number): ProjectedEvent[] {
  const t0 = Date.UTC(2026, 10, 20, 8);
  const kinds = [ScanKind.PICKUP, ScanKind.HUB_ARRIVAL, ScanKind.HUB_DEPARTURE];
  return [
    created(tn, `${tn}-c`, t0, "cust-1"),
    ...Array.from({ length: scans }, (_, i) => scan(tn, `${tn}-${i}`, t0 + (i + 1) * 3_600_000, kinds[i % kinds.length] as ScanKind, { hubCode: "FRA" })),
  ];
}

/**
 * `groups` applied as PostgreSQL's `applyEvents` calls apply them, one call per group: each
 * result reports what the call wrote (`stored`, the document's JSON on the last one). With
 * `maxBytes`, each call's document is fitted within it as the store fits what it writes (trimmed,
 * keeping the ids of the call's events).
 */
export function commitAll(groups: readonly (readonly ProjectedEvent[])[], opts: { maxBytes?: number } = {}): Commit[] {
  let doc: ShipmentDoc | undefined;
  let at = Date.UTC(2026, 10, 21);
  return groups.map((events) => {
    const appliedAt = new Date((at += 1000));
    const applied = events.map((event) => {
      const before = doc;
      const derived = applyToDoc(before, event);
      doc = derived.doc;
      const result = appliedResult(before, derived);
      const { json, stored } = checkStoredEvent(event);
      result.stored = { eventJson: json, event: stored, appliedAt };
      return { event, result };
    });
    const last = applied[applied.length - 1]?.result;
    if (!last || !doc) throw new Error("an empty group");
    let docJson = JSON.stringify(doc);
    if (opts.maxBytes !== undefined) {
      ({ doc, json: docJson } = fitDocument(doc, docJson, opts.maxBytes, applied.length));
      last.after = doc;
    }
    last.stored = { ...last.stored!, docJson };
    return { doc, applied };
  });
}

/** The history entries of `commits` as `listEvents` reads them back. */
export function historyOf(commits: readonly Commit[]): StoredEvent[] {
  return commits.flatMap((c) =>
    c.applied.map(({ event, result }) => storedEvent(event.type, JSON.parse(result.stored!.eventJson), result.late, result.stored!.appliedAt)),
  );
}

/**
 * A LiveHub in memory for tests of watchers, whatever the tracking number: `deliver` hands a
 * notice to every listener as the projector's own process would, `announce` as one from NATS;
 * `listening` counts the listeners.
 */
export function memoryLiveHub(): LiveHub & { announce(notice: LiveNotice): void; listening(): number } {
  const listeners = new Set<(n: LiveNotice) => void>();
  return {
    listen: (_tn, l) => (listeners.add(l), () => listeners.delete(l)),
    deliver: (_tn, n) => listeners.forEach((l) => l(n())),
    announce: (n) => listeners.forEach((l) => l(n)),
    listening: () => listeners.size,
    origin: "test",
    close: () => {},
  };
}
