import { applyToDoc } from "./store/derive.js";
import type { ShipmentDoc, ShipmentStore, StoredEvent } from "./store/ports.js";

/**
 * Reconstructs a shipment's document at any past version. `ShipmentDoc.derivation.eventIds` lists
 * the applied events in the order they were applied (version k is the document after
 * `eventIds[k - 1]`), and derivation is a pure function (derive.ts), so folding the stored events
 * in that order reproduces every intermediate version exactly. This is what lets a watcher fill
 * gaps (a missed live notice, a resume after a disconnect) from the store alone.
 */

/** One applied change: the document after it and the event that caused it. */
export interface VersionStep {
  version: number;
  doc: ShipmentDoc;
  cause: StoredEvent;
}

/** Page size used when reading a shipment's whole history. */
const HISTORY_PAGE = 1000;

/** Every stored event of a shipment, by event id. */
export async function loadHistory(store: Pick<ShipmentStore, "listEvents">, trackingNumber: string): Promise<Map<string, StoredEvent>> {
  const byId = new Map<string, StoredEvent>();
  let cursor: string | undefined;
  do {
    const page = await store.listEvents(trackingNumber, { pageSize: HISTORY_PAGE, ...(cursor ? { cursor } : {}) });
    for (const e of page.items) byId.set(e.eventId, e);
    cursor = page.nextCursor;
  } while (cursor);
  return byId;
}

/** Raised when the history lacks an event the document says was applied. */
export class HistoryGapError extends Error {
  override readonly name = "HistoryGapError";
  constructor(trackingNumber: string, eventId: string) {
    super(`shipment ${trackingNumber}: event ${eventId} is in the document but not in the history`);
  }
}

/**
 * The steps from `from` (the document at some version, or undefined for version 0) to
 * `target.version`, replaying `target`'s applied events after `from.version`. The last step's
 * document is `target` itself (what its replay gives: {@link applyToDoc} is deterministic), so
 * whatever was rendered from `target` once serves its step too.
 */
export function stepsBetween(
  from: ShipmentDoc | undefined,
  target: ShipmentDoc,
  history: ReadonlyMap<string, StoredEvent>,
): VersionStep[] {
  return replay(from, target, history, true);
}

/** The steps to `target.version`; the last one's document is `target` when `endAtTarget`, else replayed too. */
function replay(from: ShipmentDoc | undefined, target: ShipmentDoc, history: ReadonlyMap<string, StoredEvent>, endAtTarget: boolean): VersionStep[] {
  const steps: VersionStep[] = [];
  let cur = from;
  const start = from?.version ?? 0;
  for (let v = start + 1; v <= target.version; v++) {
    const id = target.derivation.eventIds[v - 1];
    const cause = id === undefined ? undefined : history.get(id);
    if (id === undefined || !cause) throw new HistoryGapError(target.trackingNumber, id ?? `#${v}`);
    cur = endAtTarget && v === target.version ? target : applyToDoc(cur, cause.event).doc;
    steps.push({ version: v, doc: cur, cause });
  }
  return steps;
}

/** The document as it was at `version` (1..target.version), rebuilt from the history. */
export function docAtVersion(target: ShipmentDoc, version: number, history: ReadonlyMap<string, StoredEvent>): ShipmentDoc {
  if (version === target.version) return target;
  const partial = { ...target, version, derivation: { ...target.derivation, eventIds: target.derivation.eventIds.slice(0, version) } };
  // `partial` carries the newest version's fields: every step, the last too, is replayed.
  const steps = replay(undefined, partial, history, false);
  const last = steps[steps.length - 1];
  if (!last) throw new RangeError(`version ${version} out of range`);
  return last.doc;
}
