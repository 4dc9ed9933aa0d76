import type * as http from "node:http";
import type * as http2 from "node:http2";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

/**
 * Answers a conditional GET with `304 Not Modified` when the handler's answer carries an ETag that
 * the request's `If-None-Match` names (RFC 9110 §13.1.2, weak comparison). Handlers set the ETag
 * (e.g. from a shipment version) and know nothing of this: the body they produce is dropped and
 * only the headers a 304 may carry (ETag, Cache-Control, Vary, Date) are sent, so a cache or
 * browser revalidating a copy gets an empty answer. Only GET (Connect's side-effect-free calls)
 * is affected; every other request passes untouched.
 */
export function answerConditionalGet(req: Request, res: Response): void {
  if (req.method !== "GET" && req.method !== "HEAD") return;
  const ifNoneMatch = req.headers["if-none-match"];
  if (typeof ifNoneMatch !== "string" || ifNoneMatch === "") return;
  const r = res as unknown as {
    writeHead(status: number, headers?: unknown): unknown;
    write(chunk: unknown, ...rest: unknown[]): boolean;
  };
  const writeHead = r.writeHead.bind(r);
  r.writeHead = (status: number, headers?: unknown) => {
    const etag = status === 200 ? headerOf(headers, "etag") : undefined;
    if (etag === undefined || !etagMatches(ifNoneMatch, etag)) return writeHead(status, headers);
    // The body that follows is not sent: a 304 has none.
    r.write = (_chunk: unknown, ...rest: unknown[]) => {
      const done = rest.find((x): x is () => void => typeof x === "function");
      if (done) queueMicrotask(done);
      return true;
    };
    return writeHead(304, notModifiedHeaders(headers));
  };
}

/** True when `If-None-Match` (a list of entity tags, or `*`) names `etag`; W/ prefixes ignored. */
export function etagMatches(ifNoneMatch: string, etag: string): boolean {
  const opaque = (t: string) => t.trim().replace(/^W\//, "");
  if (ifNoneMatch.trim() === "*") return true;
  const want = opaque(etag);
  return ifNoneMatch.split(",").some((t) => opaque(t) === want);
}

const keptOn304 = new Set(["etag", "cache-control", "vary", "date", "expires", "content-location"]);

function notModifiedHeaders(headers: unknown): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(asRecord(headers))) if (keptOn304.has(k.toLowerCase())) out[k] = v;
  return out;
}

function headerOf(headers: unknown, name: string): string | undefined {
  for (const [k, v] of Object.entries(asRecord(headers))) {
    if (k.toLowerCase() === name) return Array.isArray(v) ? v[0] : v;
  }
  return undefined;
}

function asRecord(headers: unknown): Record<string, string | string[]> {
  return headers !== null && typeof headers === "object" ? (headers as Record<string, string | string[]>) : {};
}
