import { applyToDoc, eventIdOfVersion, trimmedIds } from "./store/derive.js";
import type { ShipmentDoc, ShipmentStore, StoredEvent } from "./store/ports.js";

/**
 * Reconstructs a shipment's document at any past version. `ShipmentDoc.derivation.eventIds` lists
 * the applied events in the order they were applied (version k is the document after
 * `eventIds[k - 1]`), and derivation is a pure function (derive.ts), so folding the stored events
 * in that order reproduces every intermediate version exactly. This is what lets a watcher fill
 * gaps (a missed live notice, a resume after a disconnect) from the store alone.
 *
 * A document trimmed to stay within the store's size limit (store/trim-document.ts) may no longer
 * list its oldest event ids: the versions before the ones it lists cannot be rebuilt, and asking
 * for them throws {@link VersionsTrimmedError}. One that only dropped timeline entries replays as
 * before, except that a replayed version carries the trim of the document the replay started from
 * (none from version 1), not the one the store may have made at it (the store trims what it
 * writes; a replay does not): the same status, ETA, location and version, more timeline entries.
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
 * Raised when a version asked for is older than the event ids a trimmed document still lists
 * (`derivation.trimmed.ids`): it can no longer be rebuilt. A watcher gets the current document as
 * a snapshot instead.
 */
export class VersionsTrimmedError extends Error {
  override readonly name = "VersionsTrimmedError";
  constructor(trackingNumber: string, version: number, firstKept: number) {
    super(`shipment ${trackingNumber}: version ${version} can no longer be rebuilt (its document lists the events from version ${firstKept} on)`);
  }
}

/**
 * Throws {@link VersionsTrimmedError} when the versions after `from` up to `target` cannot be
 * rebuilt: `from` is a document the replay starts from, or a version to rebuild from version 1
 * first ({@link docAtVersion}). Known from `target` alone, so a caller can ask before loading the
 * history.
 */
export function assertReplayable(from: ShipmentDoc | number, target: ShipmentDoc): void {
  const dropped = trimmedIds(target);
  if (dropped === 0) return;
  const start = typeof from === "number" ? (from < target.version ? 0 : from) : from.version;
  if (start < dropped) throw new VersionsTrimmedError(target.trackingNumber, start + 1, dropped + 1);
}

/**
 * The steps from `from` (the document at some version, or undefined for version 0) to
 * `target.version`, replaying `target`'s applied events after `from.version`. The last step's
 * document is `target` itself (what its replay gives: {@link applyToDoc} is deterministic), so
 * whatever was rendered from `target` once serves its step too. All of them at once: for the few
 * versions of a notice or a gap; a watcher's replay takes them one at a time ({@link replaySteps}).
 */
export function stepsBetween(
  from: ShipmentDoc | undefined,
  target: ShipmentDoc,
  history: ReadonlyMap<string, StoredEvent>,
): VersionStep[] {
  return [...replaySteps(from, target, history)];
}

/**
 * The steps of {@link stepsBetween}, each derived only when the iteration reaches it, from the
 * step before. Every replayed document copies the arrays of the one before (timeline, event ids),
 * so a document grows with its version and the steps of a replay from version 1 to N, held at
 * once, take O(N²) memory (~50 MB at 2,000 versions); taken one at a time, a replay holds one
 * step's document whatever its length. Checks {@link assertReplayable} at once, before the
 * iteration; throws {@link HistoryGapError} from the iteration, at the version whose event is missing.
 */
export function replaySteps(
  from: ShipmentDoc | undefined,
  target: ShipmentDoc,
  history: ReadonlyMap<string, StoredEvent>,
): Generator<VersionStep, void, undefined> {
  assertReplayable(from ?? 0, target);
  return replay(from, target, history, true);
}

/** The steps to `target.version`, one at a time; the last one's document is `target` when `endAtTarget`, else replayed too. */
function* replay(
  from: ShipmentDoc | undefined,
  target: ShipmentDoc,
  history: ReadonlyMap<string, StoredEvent>,
  endAtTarget: boolean,
): Generator<VersionStep, void, undefined> {
  let cur = from;
  const start = from?.version ?? 0;
  for (let v = start + 1; v <= target.version; v++) {
    const id = eventIdOfVersion(target, v);
    const cause = id === undefined ? undefined : history.get(id);
    if (id === undefined || !cause) throw new HistoryGapError(target.trackingNumber, id ?? `#${v}`);
    cur = endAtTarget && v === target.version ? target : applyToDoc(cur, cause.event).doc;
    yield { version: v, doc: cur, cause };
  }
}

/**
 * The document as it was at `version` (1..target.version), rebuilt from the history, holding one
 * replayed document at a time. Throws
 * {@link VersionsTrimmedError} for any older version of a document that dropped event ids: the
 * rebuild starts from version 1.
 */
export function docAtVersion(target: ShipmentDoc, version: number, history: ReadonlyMap<string, StoredEvent>): ShipmentDoc {
  if (version === target.version) return target;
  assertReplayable(version, target);
  const partial = { ...target, version, derivation: { ...target.derivation, eventIds: target.derivation.eventIds.slice(0, version) } };
  // `partial` carries the newest version's fields: every step, the last too, is replayed. Only
  // the newest step is held: the fold to a late version of a long history stays one document.
  let last: VersionStep | undefined;
  for (const step of replay(undefined, partial, history, false)) last = step;
  if (!last) throw new RangeError(`version ${version} out of range`);
  return last.doc;
}
