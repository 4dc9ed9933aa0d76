import type { ShipmentDoc } from "../ports.js";

/**
 * A document as this process last saw it committed: its content and the `xmin` (the id of the
 * transaction that wrote that row version) of the `shipments` row that held it.
 */
export interface CachedDoc {
  /**
   * Equal (as `JSON.parse` of the stored row would give it) to the row's `doc`; never changed in
   * place (documents are immutable: derive.ts copies before it changes one).
   */
  readonly doc: ShipmentDoc;
  /** The row version's `xmin`, as text. */
  readonly xmin: string;
}

/**
 * The documents the batch apply last wrote or read, by tracking number, least recently used
 * evicted beyond `capacity` (0: nothing is kept). A hint, never the truth: a batch that starts
 * from a cached document writes it with compare-and-set on the row's `version` and `xmin`, so a
 * document changed since (by another replica, `applyEvent`, a migration or a manual repair, which
 * may leave `version` alone but always changes `xmin`) makes the write miss and the batch take the
 * locking path, which reads the rows again (apply-batch.ts).
 */
export class DocCache {
  private readonly entries = new Map<string, CachedDoc>();

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The entry of `trackingNumber`, now the most recently used. */
  get(trackingNumber: string): CachedDoc | undefined {
    const entry = this.entries.get(trackingNumber);
    if (entry) {
      this.entries.delete(trackingNumber);
      this.entries.set(trackingNumber, entry);
    }
    return entry;
  }

  /**
   * Keeps what a committed transaction showed of a row. A lower version than the entry's is the
   * older of two writes of this process finishing out of order, and is dropped; an equal one
   * replaces it (a rewrite that left the version alone).
   */
  set(trackingNumber: string, doc: ShipmentDoc, xmin: string): void {
    if (this.capacity <= 0) return;
    const entry = this.entries.get(trackingNumber);
    if (entry && entry.doc.version > doc.version) return;
    this.entries.delete(trackingNumber);
    this.entries.set(trackingNumber, { doc, xmin });
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }

  delete(trackingNumbers: Iterable<string>): void {
    for (const tn of trackingNumbers) this.entries.delete(tn);
  }
}

/**
 * `doc` if it is exactly what `JSON.parse(json)` (its JSON, and what reading the stored row back
 * gives) would be, else that parse. A derived document shares parts of its events' proto JSON,
 * which may hold a -0 (JSON writes 0); it holds no undefined or non-finite values today, but the
 * check costs less than a parse and keeps a cached document equal to a read one whatever derive.ts
 * does.
 */
export function asStored(doc: ShipmentDoc, json: string): ShipmentDoc {
  return jsonFaithful(doc) ? doc : (JSON.parse(json) as ShipmentDoc);
}

function jsonFaithful(v: unknown): boolean {
  switch (typeof v) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(v) && !Object.is(v, -0);
    case "object": {
      if (v === null) return true;
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) if (!jsonFaithful(v[i])) return false;
        return true;
      }
      const proto: unknown = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) return false;
      for (const k in v) if (!jsonFaithful((v as Record<string, unknown>)[k])) return false;
      return true;
    }
    default:
      return false;
  }
}
