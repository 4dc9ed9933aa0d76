/**
 * The `grpc-message` header as the gRPC over HTTP/2 specification writes it: the UTF-8 bytes of the
 * message, each byte outside 0x20-0x7E and `%` itself percent-encoded (`%XX`), every other
 * printable ASCII character as is.
 *
 * connect-es writes the header with `encodeURIComponent`, which also encodes printable ASCII
 * (`:`, `/`, `,`, `=`, ...). Decoders that follow the specification (grpc-js uses `decodeURI`,
 * which leaves escapes of URI-reserved characters alone) then show `idempotency_key%3A must be`.
 * What this function writes decodes to the original message with `decodeURI`,
 * `decodeURIComponent` and every spec-conforming decoder alike.
 */
export function specEncodeGrpcMessage(message: string): string {
  let out = "";
  for (const b of Buffer.from(message, "utf8")) {
    out += b < 0x20 || b > 0x7e || b === 0x25 ? `%${b.toString(16).toUpperCase().padStart(2, "0")}` : String.fromCharCode(b);
  }
  return out;
}

/** Re-encodes a `grpc-message` value written with `encodeURIComponent` (see {@link specEncodeGrpcMessage}). */
export function reencodeGrpcMessage(uriComponentEncoded: string): string {
  let message: string;
  try {
    message = decodeURIComponent(uriComponentEncoded);
  } catch {
    // Not something encodeURIComponent wrote: make sure it is at least a valid header value.
    message = uriComponentEncoded;
  }
  return specEncodeGrpcMessage(message);
}

type HeaderBag = Record<string, string | string[] | number | undefined>;

/** Rewrites the `grpc-message` entry of a Node.js header object in place. */
export function fixGrpcMessageHeader<T>(headers: T): T {
  if (headers && typeof headers === "object" && !Array.isArray(headers)) {
    const bag = headers as HeaderBag;
    for (const key of Object.keys(bag)) {
      const value = bag[key];
      if (key.toLowerCase() === "grpc-message" && typeof value === "string") bag[key] = reencodeGrpcMessage(value);
    }
  }
  return headers;
}
