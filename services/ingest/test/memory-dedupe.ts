import type { ScanDedupe } from "../src/scan-ingestor.js";

/** The dedupe set of ingest's own interface, in memory, with the ids it remembered. */
export function memoryDedupe(): ScanDedupe & { ids: Set<string> } {
  const ids = new Set<string>();
  return {
    ids,
    async seen(list) {
      return new Set(list.filter((i) => ids.has(i)));
    },
    async remember(list) {
      for (const i of list) ids.add(i);
    },
  };
}
