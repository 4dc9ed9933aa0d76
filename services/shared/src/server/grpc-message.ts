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

/** Longest `grpc-message` written (encoded); longer ones are cut, so trailers fit any client's header limits. */
export const MAX_GRPC_MESSAGE_LENGTH = 4096;
/** Largest `grpc-status-details-bin` written (base64); a larger one is left out (the message still says what was wrong). */
export const MAX_GRPC_DETAILS_LENGTH = 16 * 1024;

/**
 * connect-es answers a request message that does not decode (random bytes, a truncated
 * message) with Internal "parse binary: …"; it is the caller's input, so InvalidArgument.
 */
const UNPARSABLE_REQUEST = /^parse(%20| )(binary|JSON)(%3A|:)/;

/** True for connect-es's Internal status of a request message that did not decode (`grpc-message` as written, percent-encoded or not). */
export function isUnparsableRequestStatus(grpcStatus: string, grpcMessage: string): boolean {
  return grpcStatus.trim() === "13" && UNPARSABLE_REQUEST.test(grpcMessage.trim());
}

/**
 * Turns a gRPC-Web response head's Internal for an unparsable request into InvalidArgument (in
 * place), leaving everything else, the message's encoding included, as connect-es wrote it.
 */
export function unparsableAsInvalid<T>(headers: T): T {
  if (headers && typeof headers === "object" && !Array.isArray(headers)) {
    const bag = headers as HeaderBag;
    const keys = Object.keys(bag);
    const statusKey = keys.find((k) => k.toLowerCase() === "grpc-status");
    const messageKey = keys.find((k) => k.toLowerCase() === "grpc-message");
    const message = messageKey === undefined ? undefined : bag[messageKey];
    if (statusKey && typeof message === "string" && isUnparsableRequestStatus(String(bag[statusKey]), message)) bag[statusKey] = "3";
  }
  return headers;
}

/**
 * Rewrites the gRPC status entries of a Node.js header object in place: `grpc-message` encoded
 * by the specification and cut to {@link MAX_GRPC_MESSAGE_LENGTH}; status details beyond
 * {@link MAX_GRPC_DETAILS_LENGTH} dropped (a request with thousands of bad fields would otherwise
 * produce trailers clients refuse, seen as Internal); Internal for an unparsable request message
 * turned into InvalidArgument.
 */
export function fixGrpcMessageHeader<T>(headers: T): T {
  if (headers && typeof headers === "object" && !Array.isArray(headers)) {
    const bag = headers as HeaderBag;
    const keys = Object.keys(bag);
    const statusKey = keys.find((k) => k.toLowerCase() === "grpc-status");
    for (const key of keys) {
      const value = bag[key];
      const name = key.toLowerCase();
      if (name === "grpc-message" && typeof value === "string") {
        if (statusKey && isUnparsableRequestStatus(String(bag[statusKey]), value)) bag[statusKey] = "3";
        const encoded = reencodeGrpcMessage(value);
        bag[key] = encoded.length > MAX_GRPC_MESSAGE_LENGTH ? shortened(value) : encoded;
      } else if (name === "grpc-status-details-bin" && typeof value === "string" && value.length > MAX_GRPC_DETAILS_LENGTH) {
        delete bag[key];
      }
    }
  }
  return headers;
}

/** The message of an encodeURIComponent-encoded value, cut (at a character boundary) until its encoding fits. */
function shortened(uriComponentEncoded: string): string {
  let chars: string[];
  try {
    chars = Array.from(decodeURIComponent(uriComponentEncoded));
  } catch {
    chars = Array.from(uriComponentEncoded);
  }
  let encoded = specEncodeGrpcMessage(chars.join(""));
  while (encoded.length > MAX_GRPC_MESSAGE_LENGTH - 3) {
    chars = chars.slice(0, Math.floor(chars.length * 0.75));
    encoded = specEncodeGrpcMessage(chars.join(""));
  }
  return `${encoded}...`;
}
