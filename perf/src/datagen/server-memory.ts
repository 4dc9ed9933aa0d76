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
