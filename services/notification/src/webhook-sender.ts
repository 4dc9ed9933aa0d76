import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import type { ResolvedTarget } from "./webhook-target.js";

/** Bytes of a response body kept for diagnosis. */
export const RESPONSE_EXCERPT_BYTES = 1024;

/** One webhook POST. */
export interface WebhookRequest {
  readonly target: ResolvedTarget;
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Limit for connecting, receiving the headers and the body excerpt. */
  readonly timeoutMs: number;
}

/** What came back. */
export interface WebhookResult {
  /** HTTP status; 0 when no response arrived. */
  readonly status: number;
  /** Transport error, or empty when a response arrived. */
  readonly error: string;
  /** From sending to the response headers (or to the failure). */
  readonly durationMs: number;
  /** The first {@link RESPONSE_EXCERPT_BYTES} bytes of the body, UTF-8 with invalid bytes replaced. */
  readonly excerpt: string;
  /** The `Retry-After` header, if any. */
  readonly retryAfter: string | undefined;
}

/**
 * POSTs `body` to the target: redirects are not followed (the 3xx is the result), the connection
 * goes to the address the target was checked with (no second DNS lookup), only the first 1 KiB of
 * the response body is read before the connection is dropped, and the whole exchange is bounded
 * by `timeoutMs`. Never rejects: failures are described in the result.
 */
export function sendWebhook(req: WebhookRequest): Promise<WebhookResult> {
  const { target } = req;
  const started = performance.now();
  const mod = target.url.protocol === "https:" ? https : http;
  const pinned: LookupFunction | undefined =
    target.address === undefined
      ? undefined
      : (_host, options, callback) => {
          const family = target.family ?? 4;
          if (options.all) callback(null, [{ address: target.address as string, family }]);
          else callback(null, target.address as string, family);
        };
  return new Promise<WebhookResult>((resolve) => {
    let settled = false;
    let headersAt: number | undefined;
    let status = 0;
    let retryAfter: string | undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (error: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      const excerpt = Buffer.concat(chunks).subarray(0, RESPONSE_EXCERPT_BYTES).toString("utf8");
      resolve({
        status,
        error,
        durationMs: Math.round((headersAt ?? performance.now()) - started),
        excerpt,
        retryAfter,
      });
    };
    const request = mod.request(target.url, {
      method: "POST",
      headers: { ...req.headers, "Content-Length": String(Buffer.byteLength(req.body)) },
      agent: false,
      ...(pinned ? { lookup: pinned } : {}),
    });
    const timer = setTimeout(
      () => finish(status ? "" : `timed out after ${req.timeoutMs} ms`),
      req.timeoutMs,
    );
    request.on("response", (res) => {
      headersAt = performance.now();
      status = res.statusCode ?? 0;
      const ra = res.headers["retry-after"];
      retryAfter = Array.isArray(ra) ? ra[0] : ra;
      res.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= RESPONSE_EXCERPT_BYTES) finish("");
      });
      res.on("end", () => finish(""));
      res.on("error", () => finish(""));
    });
    request.on("error", (err) => finish(status ? "" : describe(err)));
    request.end(req.body);
  });
}

function describe(err: Error): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? `${code}: ${err.message}` : err.message;
}
