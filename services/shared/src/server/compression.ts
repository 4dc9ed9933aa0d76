import { promisify } from "node:util";
import * as zlib from "node:zlib";
import type { Compression } from "@connectrpc/connect/protocol";
import { compressionGzip } from "@connectrpc/connect-node";

/**
 * Largest response message gzipped synchronously, on the event loop: about 0.4 ms at level 1.
 * Beyond it, zlib's thread pool (as connect-node does for every message).
 */
export const SYNC_GZIP_MAX_BYTES = 64 * 1024;

const gzipAsync = promisify(zlib.gzip);
const OPTIONS: zlib.ZlibOptions = { level: zlib.constants.Z_BEST_SPEED };

/**
 * gzip as the servers answer with it: connect-node's `compressionGzip` runs every message
 * through zlib's asynchronous stream at the default level, which for a StreamScans response (a
 * hundred acks, 6.5 KiB) cost ~150 us of CPU (stream objects, a thread-pool hop, level 6) where
 * a synchronous level-1 gzip of the same bytes costs ~45 us, with an output within 1% of the
 * size (acks compress about 3:1 either way). On a 2-core machine that thread-pool work also
 * took a core from nats-server and Redis. Decompression (requests a client compressed) is
 * connect-node's, with its `readMaxBytes` bound.
 */
export const fastGzip: Compression = {
  name: compressionGzip.name,
  async compress(bytes) {
    const out = bytes.byteLength <= SYNC_GZIP_MAX_BYTES ? zlib.gzipSync(bytes, OPTIONS) : await gzipAsync(bytes, OPTIONS);
    // connect wants a Uint8Array over an ArrayBuffer (not a pooled or shared one).
    return out.buffer instanceof ArrayBuffer ? new Uint8Array(out.buffer, out.byteOffset, out.byteLength) : new Uint8Array(out);
  },
  decompress(bytes, readMaxBytes) {
    return compressionGzip.decompress(bytes, readMaxBytes);
  },
};
