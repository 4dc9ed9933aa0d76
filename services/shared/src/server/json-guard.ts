import * as zlib from "node:zlib";
import { Code, ConnectError } from "@connectrpc/connect";

/** Bounds on a JSON request message, checked on its bytes before anything parses them. */
export interface JsonLimits {
  /** Largest JSON message (after decompression), in bytes. */
  maxBytes: number;
  /** Deepest nesting of objects and arrays; `{"a":[1]}` is 2 deep. */
  maxDepth: number;
}

/**
 * Counts the nesting depth of a JSON text as its bytes arrive, without parsing or buffering it:
 * one pass, constant memory, whatever the depth. Brackets inside strings do not count. A text
 * that is not JSON is left to the parser to reject; this only refuses what is too deep or too
 * big.
 */
export class JsonDepthScanner {
  private depth = 0;
  private bytes = 0;
  private inString = false;
  private escaped = false;

  constructor(private readonly limits: JsonLimits) {}

  /** @throws ConnectError InvalidArgument when too deep, ResourceExhausted when too big. */
  push(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limits.maxBytes) {
      throw new ConnectError(`JSON message larger than ${this.limits.maxBytes} bytes`, Code.ResourceExhausted);
    }
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (b === 0x5c) this.escaped = true; // backslash
        else if (b === 0x22) this.inString = false; // closing quote
      } else if (b === 0x22) {
        this.inString = true;
      } else if (b === 0x7b || b === 0x5b) {
        // { or [
        if (++this.depth > this.limits.maxDepth) {
          throw new ConnectError(`JSON nested deeper than ${this.limits.maxDepth} levels`, Code.InvalidArgument);
        }
      } else if (b === 0x7d || b === 0x5d) {
        this.depth--;
      }
    }
  }
}

/**
 * Checks one complete JSON message (e.g. a query parameter or an envelope's payload), compressed
 * with `encoding` when that is set and not `identity`: it is inflated first, never past the size
 * bound, so that a few kilobytes of gzip cannot carry megabytes of nesting past the check.
 */
export function checkJsonMessage(bytes: Uint8Array, limits: JsonLimits, encoding?: string): void {
  const plain = encoding && encoding !== "identity" ? decompress(bytes, encoding, limits.maxBytes) : bytes;
  new JsonDepthScanner(limits).push(plain);
}

/**
 * The header that names the compression of a streaming JSON request's messages: gRPC and gRPC-Web
 * read `grpc-encoding`, Connect streaming `connect-content-encoding` (each protocol's server reads
 * only its own, so the check must too: a Connect header on a gRPC request would otherwise make
 * it inspect compressed bytes as if they were JSON).
 */
export function envelopeEncodingHeader(contentType: string | undefined): "grpc-encoding" | "connect-content-encoding" {
  const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  return type.startsWith("application/grpc") ? "grpc-encoding" : "connect-content-encoding";
}

/**
 * Decompresses one message as a Connect/gRPC server would (gzip or br), never past
 * `maxBytes`. Unknown encodings are returned as they are: the RPC layer rejects them.
 */
function decompress(bytes: Uint8Array, encoding: string | undefined, maxBytes: number): Uint8Array {
  const options = { maxOutputLength: maxBytes + 1 };
  try {
    switch (encoding) {
      case "gzip":
        return zlib.gunzipSync(bytes, options);
      case "br":
        return zlib.brotliDecompressSync(bytes, options);
      default:
        return bytes;
    }
  } catch (e) {
    if (e instanceof RangeError || (e as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new ConnectError(`JSON message larger than ${maxBytes} bytes`, Code.ResourceExhausted);
    }
    throw new ConnectError(`request is not valid ${encoding ?? ""} data`, Code.InvalidArgument);
  }
}

/** How a request carries JSON, read from its content type (undefined: not JSON). */
export type JsonFraming = "unary" | "enveloped";

/**
 * The JSON framing of a request: Connect unary (`application/json`) carries one JSON document,
 * Connect streaming and gRPC / gRPC-Web with `+json` carry length-prefixed messages.
 */
export function jsonFramingOf(contentType: string | undefined): JsonFraming | undefined {
  if (!contentType) return undefined;
  const type = contentType.split(";")[0]!.trim().toLowerCase();
  if (type === "application/json") return "unary";
  if (type === "application/connect+json" || type === "application/grpc+json" || type === "application/grpc-web+json") {
    return "enveloped";
  }
  return undefined;
}

/**
 * Wraps a request body (an async iterable of chunks, as the RPC layer reads it) so that every
 * JSON message in it is checked against `limits` as it arrives; the iteration throws a
 * ConnectError as soon as one is too deep or too big, before the RPC layer parses anything.
 *
 * - `unary`: the body is one JSON document, compressed as a whole when `encoding` is set (then it
 *   is buffered up to the size bound and decompressed once here, before the RPC layer does it).
 * - `enveloped`: 5-byte headers (flags, big-endian length) each followed by one message; a message
 *   with the compressed flag is decompressed with `encoding`.
 */
export async function* guardJsonBody(
  body: AsyncIterable<Uint8Array>,
  framing: JsonFraming,
  encoding: string | undefined,
  limits: JsonLimits,
): AsyncGenerator<Uint8Array> {
  if (framing === "unary") {
    if (encoding && encoding !== "identity") {
      const chunks: Uint8Array[] = [];
      let size = 0;
      for await (const chunk of body) {
        size += chunk.length;
        if (size > limits.maxBytes) throw new ConnectError(`JSON message larger than ${limits.maxBytes} bytes`, Code.ResourceExhausted);
        chunks.push(chunk);
      }
      const whole = Buffer.concat(chunks);
      checkJsonMessage(decompress(whole, encoding, limits.maxBytes), limits);
      yield whole;
      return;
    }
    const scanner = new JsonDepthScanner(limits);
    for await (const chunk of body) {
      scanner.push(chunk);
      yield chunk;
    }
    return;
  }

  let pending = Buffer.alloc(0);
  for await (const chunk of body) {
    pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, chunk]);
    // Check every complete envelope; hold back nothing from the RPC layer but unchecked messages.
    let checked = 0;
    while (pending.length - checked >= 5) {
      const flags = pending[checked]!;
      const length = pending.readUInt32BE(checked + 1);
      if (length > limits.maxBytes) throw new ConnectError(`JSON message larger than ${limits.maxBytes} bytes`, Code.ResourceExhausted);
      if (pending.length - checked - 5 < length) break;
      const payload = pending.subarray(checked + 5, checked + 5 + length);
      // Flag 0x02 marks an end-of-stream or trailer frame (not a request message).
      if ((flags & 0x02) === 0) checkJsonMessage((flags & 0x01) !== 0 ? decompress(payload, encoding, limits.maxBytes) : payload, limits);
      checked += 5 + length;
    }
    if (checked > 0) {
      yield pending.subarray(0, checked);
      pending = pending.subarray(checked);
    }
  }
  if (pending.length > 0) yield pending;
}
