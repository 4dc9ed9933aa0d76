import { strict as assert } from "node:assert";
import { gunzipSync } from "node:zlib";
import { describe, it } from "vitest";
import { fastGzip, SYNC_GZIP_MAX_BYTES } from "./compression.js";

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
