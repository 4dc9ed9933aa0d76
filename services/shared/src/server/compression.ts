import { promisify } from "node:util";
import * as zlib from "node:zlib";
import type { Compression } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";

/**
 * Largest response message gzipped synchronously, on the event loop: about 0.4 ms at level 1.
 * Beyond it, zlib's thread pool (as connect-node does for every message).
 */
export const SYNC_GZIP_MAX_BYTES = 64 * 1024;

const gzipAsync = promisify(zlib.gzip);
const brotliAsync = promisify(zlib.brotliCompress);
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
export const fastGzip: Compression = tuned(compressionGzip, zlib.gzipSync, gzipAsync, OPTIONS);

/**
 * `base`'s format with `options`: compressed in place up to {@link SYNC_GZIP_MAX_BYTES}, on
 * zlib's thread pool beyond; decompression is `base`'s (with connect-node's `readMaxBytes` bound).
 */
function tuned<O>(
  base: Compression,
  sync: (bytes: Uint8Array, options: O) => Buffer,
  pooled: (bytes: Uint8Array, options: O) => Promise<Buffer>,
  options: O,
): Compression {
  return {
    name: base.name,
    async compress(bytes) {
      const out = bytes.byteLength <= SYNC_GZIP_MAX_BYTES ? sync(bytes, options) : await pooled(bytes, options);
      // connect wants a Uint8Array over an ArrayBuffer (not a pooled or shared one).
      return out.buffer instanceof ArrayBuffer ? new Uint8Array(out.buffer, out.byteOffset, out.byteLength) : new Uint8Array(out);
    },
    decompress(bytes, readMaxBytes) {
      return base.decompress(bytes, readMaxBytes);
    },
  };
}

/** Brotli quality of responses: 4 (see {@link fastBrotli}). */
export const BROTLI_QUALITY = 4;
const BROTLI_OPTIONS: zlib.BrotliOptions = { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY } };

/**
 * brotli as the servers answer with it, at quality 4: connect-node's `compressionBrotli` uses
 * zlib's default, quality 11, which any caller can ask for (`Accept-Encoding: br`, also
 * anonymously): a 35 KB page of events took ~32 ms of CPU at quality 11 against ~0.75 ms at
 * quality 4 and ~0.9 ms for level-1 gzip, so one cheap request bought tens of milliseconds of
 * the server's thread pool. Small messages are compressed in place, as {@link fastGzip} does.
 */
export const fastBrotli: Compression = tuned(compressionBrotli, zlib.brotliCompressSync, brotliAsync, BROTLI_OPTIONS);
