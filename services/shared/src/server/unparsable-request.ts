import type * as http from "node:http";
import type * as http2 from "node:http2";

import { isUnparsableRequestStatus, unparsableAsInvalid } from "./grpc-message.js";

type Response = http.ServerResponse | http2.Http2ServerResponse;

/** The Connect error body connect-es writes for a request message that does not decode. */
const UNPARSABLE = /^\{"code":"internal","message":"parse (binary|JSON):/;

/**
 * connect-es answers a request whose message does not decode (random bytes, a truncated message)
 * with Internal "parse binary: …", because its parser serves clients too. It is the caller's
 * input: the answer becomes InvalidArgument, as the gRPC answer does (grpc-message.ts), in the
 * form of the request's protocol (its `contentType`, lower case), and every other answer passes
 * untouched:
 * - Connect unary: a 500 whose body is exactly that error becomes a 400 `invalid_argument`;
 * - Connect streaming and gRPC-Web: see {@link answerStreamEndAsInvalid}.
 * gRPC over HTTP/2 is not for this function (its trailers are fixed by grpc-message.ts).
 */
export function answerUnparsableAsInvalid(res: Response, contentType: string): void {
  if (contentType.startsWith("application/grpc-web")) answerStreamEndAsInvalid(res, true);
  else if (contentType.startsWith("application/connect+")) answerStreamEndAsInvalid(res, false);
  else answerUnaryAsInvalid(res);
}

/** Connect unary: a held 500 head, released as a 400 when its body is the unparsable-request error. */
function answerUnaryAsInvalid(res: Response): void {
  const r = res as unknown as {
    writeHead(status: number, headers?: unknown): unknown;
    write(chunk: unknown, ...rest: unknown[]): boolean;
    end(...args: unknown[]): unknown;
  };
  const writeHead = r.writeHead.bind(r);
  const write = r.write.bind(r);
  const end = r.end.bind(r);
  let held: { status: number; headers?: unknown } | undefined;
  r.writeHead = (status: number, headers?: unknown) => {
    if (status !== 500) return writeHead(status, headers);
    held = { status, headers };
    return r;
  };
  /** Writes the held head, rewritten when `chunk` is the unparsable-request error; returns the chunk to send. */
  const release = (chunk: unknown): unknown => {
    if (held === undefined) return chunk;
    const { status, headers } = held;
    held = undefined;
    const text = typeof chunk === "string" ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk).toString("utf8") : undefined;
    if (text === undefined || !UNPARSABLE.test(text)) {
      writeHead(status, headers);
      return chunk;
    }
    const body = Buffer.from(text.replace('"code":"internal"', '"code":"invalid_argument"'));
    writeHead(400, { ...withoutLength(headers), "content-length": String(body.length) });
    return body;
  };
  r.write = (chunk: unknown, ...rest: unknown[]) => write(release(chunk), ...rest);
  r.end = (...args: unknown[]) => {
    if (held !== undefined) {
      const chunk = typeof args[0] === "function" ? undefined : args[0];
      if (chunk === undefined) release(undefined);
      else args[0] = release(chunk);
    }
    return end(...args);
  };
}

function withoutLength(headers: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (headers !== null && typeof headers === "object") {
    for (const [k, v] of Object.entries(headers as Record<string, unknown>)) if (k.toLowerCase() !== "content-length") out[k] = v;
  }
  return out;
}

/** A Connect streaming end-stream message (flag 0x02) with the unparsable-request error. */
const UNPARSABLE_END_STREAM = /^\{"error":\{"code":"internal","message":"parse (binary|JSON):/;

/**
 * The rewrite for the protocols whose status is not an HTTP status:
 * - Connect streaming (`application/connect+…`): the end-stream message's error code;
 * - gRPC-Web: `grpc-status` in the head (a trailers-only answer) or in the trailer frame (0x80).
 * A body chunk is rewritten only when it is exactly one such frame (its length prefix covering
 * the rest of the chunk), as connect-es writes them; the prefix is rewritten with it.
 */
function answerStreamEndAsInvalid(res: Response, grpcWeb: boolean): void {
  const r = res as unknown as {
    writeHead(...args: unknown[]): unknown;
    write(chunk: unknown, ...rest: unknown[]): boolean;
    end(...args: unknown[]): unknown;
  };
  const writeHead = r.writeHead.bind(r);
  const write = r.write.bind(r);
  const end = r.end.bind(r);
  if (grpcWeb) r.writeHead = (...args: unknown[]) => writeHead(...args.map(unparsableAsInvalid));
  const fix = (chunk: unknown): unknown => {
    if (!(chunk instanceof Uint8Array) || chunk.length < 6 || new DataView(chunk.buffer, chunk.byteOffset).getUint32(1) !== chunk.length - 5) {
      return chunk;
    }
    const flags = chunk[0]!;
    // Only the end of a stream can carry the error: messages (flag 0) pass without being read.
    if (grpcWeb ? (flags & 0x80) === 0 : flags !== 0x02) return chunk;
    const text = Buffer.from(chunk.buffer, chunk.byteOffset + 5, chunk.length - 5).toString("utf8");
    let fixed: string | undefined;
    if (!grpcWeb && UNPARSABLE_END_STREAM.test(text)) {
      fixed = text.replace('"code":"internal"', '"code":"invalid_argument"');
    } else if (grpcWeb) {
      const status = /^grpc-status:(.*)$/im.exec(text)?.[1];
      const message = /^grpc-message:(.*)$/im.exec(text)?.[1];
      if (status !== undefined && message !== undefined && isUnparsableRequestStatus(status, message)) {
        fixed = text.replace(/^(grpc-status:\s*)13/im, (_all, name: string) => `${name}3`);
      }
    }
    if (fixed === undefined) return chunk;
    const payload = Buffer.from(fixed, "utf8");
    const framed = Buffer.alloc(5 + payload.length);
    framed[0] = flags;
    framed.writeUInt32BE(payload.length, 1);
    payload.copy(framed, 5);
    return framed;
  };
  r.write = (chunk: unknown, ...rest: unknown[]) => write(fix(chunk), ...rest);
  r.end = (...args: unknown[]) => {
    if (args.length > 0 && typeof args[0] !== "function") args[0] = fix(args[0]);
    return end(...args);
  };
}
