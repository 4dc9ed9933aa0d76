/**
 * Runs work on sets of keys so that two runs sharing a key never overlap in this process, and
 * runs on disjoint keys go on in parallel. The projector's three consumers (scans, shipment
 * events, route revisions) each keep a shipment's events in one batch at a time, but between
 * consumers two batches of the same shipment could meet in the store: the second one's
 * compare-and-set misses, its statement is wasted and it retries in a locking transaction that
 * waits for the first. Waiting here instead costs nothing on the database. Replicas can still
 * meet in the store; the store's own conflict handling covers that.
 *
 * Fair: a run waits while any earlier waiting run shares one of its keys, so a batch of many
 * shipments is not starved by a stream of small ones.
 */
export interface KeyGate {
  run<T>(keys: Iterable<string>, work: () => Promise<T>): Promise<T>;
  /** Keys held now (for tests and metrics). */
  held(): number;
}

export function createKeyGate(): KeyGate {
  const held = new Set<string>();
  const waiting: Array<{ keys: readonly string[]; go: () => void }> = [];
  const free = (keys: readonly string[], ahead: number) =>
    keys.every((k) => !held.has(k)) && !waiting.slice(0, ahead).some((w) => w.keys.some((k) => keys.includes(k)));

  const release = (keys: readonly string[]) => {
    for (const k of keys) held.delete(k);
    for (let i = 0; i < waiting.length; ) {
      const w = waiting[i] as (typeof waiting)[number];
      if (free(w.keys, i)) {
        waiting.splice(i, 1);
        for (const k of w.keys) held.add(k);
        w.go();
      } else i++;
    }
  };

  return {
    async run(keys, work) {
      const ks = [...new Set(keys)];
      if (free(ks, waiting.length)) for (const k of ks) held.add(k);
      else await new Promise<void>((go) => waiting.push({ keys: ks, go }));
      try {
        return await work();
      } finally {
        release(ks);
      }
    },
    held: () => held.size,
  };
}
