import { strict as assert } from "node:assert";
import { brotliCompressSync, brotliDecompressSync, constants, gunzipSync } from "node:zlib";
import { describe, it } from "vitest";
import { BROTLI_QUALITY, fastBrotli, fastGzip, SYNC_GZIP_MAX_BYTES } from "./compression.js";

describe("fastGzip", () => {
  it("writes gzip any client reads back, in place up to the limit and on the thread pool beyond", async () => {
    for (const size of [0, 1, 6_500, SYNC_GZIP_MAX_BYTES, SYNC_GZIP_MAX_BYTES + 1, 1_000_000]) {
      const bytes = new Uint8Array(size);
      for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >> 7)) % 251;
      const packed = await fastGzip.compress(bytes);
      assert.ok(packed.buffer instanceof ArrayBuffer);
      assert.deepEqual(new Uint8Array(gunzipSync(packed)), bytes, `${size} bytes`);
      assert.deepEqual(new Uint8Array(await fastGzip.decompress(packed, 2_000_000)), bytes, `${size} bytes`);
    }
  });

  it("keeps the read limit when decompressing", async () => {
    const packed = await fastGzip.compress(new Uint8Array(10_000));
    await assert.rejects(fastGzip.decompress(packed, 1_000), /larger than configured readMaxBytes/);
  });
});

describe("fastBrotli", () => {
  it("writes brotli at quality 4 (never 11, which any caller could make the server spend tens of ms on), in place and on the thread pool", async () => {
    for (const size of [0, 1, 35_000, SYNC_GZIP_MAX_BYTES + 1, 300_000]) {
      const text = Buffer.from(Array.from({ length: size }, (_, i) => `ev-${i % 97} `).join("").slice(0, size));
      const bytes = new Uint8Array(text);
      const packed = await fastBrotli.compress(bytes);
      assert.ok(packed.buffer instanceof ArrayBuffer);
      assert.deepEqual(new Uint8Array(brotliDecompressSync(packed)), bytes, `${size} bytes`);
      // Brotli's output is deterministic for given parameters: the same bytes as quality 4.
      const q4 = brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY } });
      assert.deepEqual(Buffer.from(packed), q4, `${size} bytes at quality ${BROTLI_QUALITY}`);
    }
    assert.equal(BROTLI_QUALITY, 4);
    await assert.rejects(fastBrotli.decompress(await fastBrotli.compress(new Uint8Array(10_000)), 1_000), /larger than configured readMaxBytes/);
  });
});
