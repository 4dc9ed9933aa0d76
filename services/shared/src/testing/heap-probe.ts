/**
 * Preload for a service started by a memory test: `node --expose-gc --import <dist/testing/heap-probe.js>
 * <service main.js>`. The service runs exactly as deployed; on SIGUSR2 this runs full garbage
 * collections and prints one line `heap-probe {"heapUsed":…,"rss":…}` on stdout. Never loaded
 * by a service itself.
 */
const gc = (globalThis as { gc?: () => void }).gc;

process.on("SIGUSR2", () => {
  // Twice: the first pass can leave objects whose finalizers only the second one frees.
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  process.stdout.write(`heap-probe ${JSON.stringify({ gc: Boolean(gc), heapUsed: m.heapUsed, rss: m.rss })}\n`);
});

export {};
