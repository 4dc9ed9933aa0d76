/**
 * Memory settings of the private PostgreSQL the datagen run starts, sized as an operator sizes
 * a database server: `shared_buffers` a quarter of RAM, capped at 4 GiB (the machine is shared
 * with other work: a quarter of its RAM is what it can give), and `effective_cache_size` twice
 * that (the server's buffers plus about as much OS page cache; half of RAM at most), so the planner
 * knows an index probe into the store's hot set is mostly a cache hit. `work_mem` stays at the
 * default 4 MB: the store's searches sort at most page-size rows per key (charts/README.md,
 * "Memory of the tracking store").
 *
 * The small and the large store live in the same cluster with these settings, so every ratio of
 * the report compares them under the same memory.
 */
export interface ServerMemory {
  sharedBuffersMiB: number;
  effectiveCacheSizeMiB: number;
}

const MiB = 2 ** 20;
/** The most shared_buffers this (shared) machine gives the cluster. */
export const MAX_SHARED_BUFFERS_MIB = 4096;

export function serverMemory(totalBytes: number): ServerMemory {
  const ram = totalBytes / MiB;
  const down = (mib: number) => Math.max(128, Math.floor(mib / 128) * 128);
  const sharedBuffersMiB = Math.min(MAX_SHARED_BUFFERS_MIB, down(ram / 4));
  const effectiveCacheSizeMiB = Math.max(sharedBuffersMiB, Math.min(2 * sharedBuffersMiB, down(ram / 2)));
  return { sharedBuffersMiB, effectiveCacheSizeMiB };
}

/** The settings in postgresql.conf syntax. */
export function memorySettings(m: ServerMemory): Record<string, string> {
  return { shared_buffers: `'${m.sharedBuffersMiB}MB'`, effective_cache_size: `'${m.effectiveCacheSizeMiB}MB'` };
}

/** What the machine's huge pages allow the cluster (from /proc/meminfo). */
export interface HugePages {
  /** `huge_pages` for postgresql.conf: "on" when the free huge pages hold shared_buffers with room to spare, else "off". */
  setting: "on" | "off";
  /** Why, for the report. */
  note: string;
}

/**
 * Huge pages for the cluster's shared memory when the machine has enough reserved
 * (`vm.nr_hugepages`): with 4 KB pages every backend maps shared_buffers one page at a time as
 * it first touches it (a minor fault per 4 KB), which on this machine's virtual CPUs put about
 * 1 ms on a 50-row search's median and more on its tail from a fresh connection (measured on the
 * 1-day store: customer+status p50 3.1 → 2.1–2.9 ms, p99 8–11 → 5.3 ms with huge pages, no other
 * change). A serving database sized like this one runs with huge pages; the datagen uses them
 * when it can and says which in the report. `meminfo` is the text of /proc/meminfo.
 */
export function hugePagesFor(meminfo: string, sharedBuffersMiB: number): HugePages {
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(meminfo)?.[1] ?? NaN);
  const free = field("HugePages_Free");
  const sizeKiB = field("Hugepagesize");
  if (!(free > 0) || !(sizeKiB > 0)) {
    return { setting: "off", note: "huge_pages off (the machine has no huge pages reserved: vm.nr_hugepages)" };
  }
  const freeMiB = (free * sizeKiB) / 1024;
  // shared_buffers plus the rest of the shared memory segment (WAL buffers, locks, ...): ~10%.
  const needMiB = Math.ceil(sharedBuffersMiB * 1.1);
  return freeMiB >= needMiB
    ? { setting: "on", note: `huge_pages on (${free} free huge pages of ${sizeKiB / 1024} MB)` }
    : { setting: "off", note: `huge_pages off (${Math.floor(freeMiB)} MB of free huge pages, ${needMiB} MB needed: raise vm.nr_hugepages)` };
}
