import type * as http from "node:http";
import type * as http2 from "node:http2";

type Response = http.ServerResponse | http2.Http2ServerResponse;

/** The Connect error body connect-es writes for a request message that does not decode. */
const UNPARSABLE = /^\{"code":"internal","message":"parse (binary|JSON):/;

/**
 * connect-es answers a Connect request whose binary message does not decode (random bytes, a
 * truncated message) with `internal` / HTTP 500 "parse binary: …", because its parser serves
 * clients too. It is the caller's input: the answer becomes `invalid_argument` / HTTP 400, as the
 * gRPC answer does (grpc-message.ts). Only a 500 whose body is exactly that error is rewritten;
 * every other answer passes untouched.
 */
export function answerUnparsableAsInvalid(res: Response): void {
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
