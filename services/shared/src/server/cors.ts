import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { cors as connectCors } from "@connectrpc/connect";

/** Which browser origins may call the services. */
export interface CorsOptions {
  /** Allowed origins; `"*"` allows any origin (fine for public tracking reads, not for cookies). */
  allowedOrigins: readonly string[];
  /** How long browsers may cache a preflight answer, in seconds. Default 7200. */
  maxAgeSec?: number;
}

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

/**
 * Applies CORS for Connect and gRPC-Web browser clients. Returns true when the request was a
 * preflight that has been answered (the caller must not route it further).
 * Allowed methods and headers come from Connect's own lists, so they track the protocol.
 */
export function applyCors(options: CorsOptions, req: AnyRequest, res: AnyResponse): boolean {
  const origin = req.headers["origin"];
  if (typeof origin !== "string") return false;
  const any = options.allowedOrigins.includes("*");
  if (!any && !options.allowedOrigins.includes(origin)) return false;
  res.setHeader("Access-Control-Allow-Origin", any ? "*" : origin);
  if (!any) res.setHeader("Vary", "Origin");
  // ETag too: the tracking page compares a cached read's version with its live stream.
  res.setHeader("Access-Control-Expose-Headers", [...connectCors.exposedHeaders, "ETag"].join(", "));
  if (req.method !== "OPTIONS") return false;
  res.setHeader("Access-Control-Allow-Methods", connectCors.allowedMethods.join(", "));
  res.setHeader(
    "Access-Control-Allow-Headers",
    [...connectCors.allowedHeaders, "Authorization", "Traceparent", "Tracestate"].join(", "),
  );
  res.setHeader("Access-Control-Max-Age", String(options.maxAgeSec ?? 7200));
  res.statusCode = 204;
  res.end();
  return true;
}
