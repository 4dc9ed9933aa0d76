import http from "node:http";
import https from "node:https";
import type { LookupFunction, Socket } from "node:net";
import { timeoutClass, TransportError, transportErrorClass, type ConnectionPhase } from "./transport-error.js";
import type { ResolvedTarget } from "./webhook-target.js";

/** Bytes of a response body kept for diagnosis. */
export const RESPONSE_EXCERPT_BYTES = 1024;

/** Default {@link WebhookSenderOptions.keepAliveIdleMs}: below the 5 s idle timeout of Node's and Apache's servers. */
export const DEFAULT_KEEPALIVE_IDLE_MS = 4000;

/** Default {@link WebhookSenderOptions.maxEndpoints}. */
export const DEFAULT_MAX_POOLED_ENDPOINTS = 256;

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
  /**
   * Why no response arrived, as a class the subscriber may be shown (transport-error.ts:
   * `connection failed`, `TLS error`, `timed out after <n> ms`...), or empty when one did.
   */
  readonly error: string;
  /** The same failure as the system described it (error code, message, addresses): for the operator only. Default `error`. */
  readonly errorDetail?: string;
  /** From sending to the response headers (or to the failure). */
  readonly durationMs: number;
  /** The first {@link RESPONSE_EXCERPT_BYTES} bytes of the body, UTF-8 with invalid bytes replaced. */
  readonly excerpt: string;
  /** The `Retry-After` header, if any. */
  readonly retryAfter: string | undefined;
}

/** Options of {@link createWebhookSender}. */
export interface WebhookSenderOptions {
  /**
   * Connections per endpoint and address. Set it to the worker's per-endpoint concurrency
   * (`NOTIFICATION_ENDPOINT_CONCURRENCY`): requests then never wait for a socket, and idle
   * connections kept for an endpoint never exceed what it was sent concurrently.
   */
  maxSocketsPerEndpoint: number;
  /**
   * How long an idle connection is kept for the next request, in ms. Default
   * {@link DEFAULT_KEEPALIVE_IDLE_MS}; a server's `Keep-Alive: timeout=<s>` shortens it to a second
   * less than that. 0: a new connection per request, closed after it.
   */
  keepAliveIdleMs?: number;
  /**
   * Endpoints (origin and pinned address) whose connection pools are kept; beyond it the least
   * recently used pool is closed (at once when idle, else when its last request ends).
   * Default {@link DEFAULT_MAX_POOLED_ENDPOINTS}.
   */
  maxEndpoints?: number;
  /** Certificates trusted for https endpoints instead of the system's (a self-signed test receiver). */
  ca?: string | Buffer | Array<string | Buffer>;
}

/** The HTTP client of the delivery worker. */
export interface WebhookSender {
  /**
   * POSTs `body` to the target: redirects are not followed (the 3xx is the result), the
   * connection goes to the address the target was checked with (no second DNS lookup), the
   * response body is read up to {@link RESPONSE_EXCERPT_BYTES} and the whole exchange is bounded
   * by `timeoutMs`. Connections are kept alive per endpoint and pinned address; one is reused only
   * after a response read to its end within the excerpt size and the time limit (otherwise it is
   * closed). A request on a reused connection that the server reset before any response byte
   * (it closed the idle connection as ours was sent) is sent once more on a new connection,
   * byte for byte: receivers deduplicate by `Logistics-Event-Id`. Never rejects: failures are
   * described in the result, by class in `error` and in full in `errorDetail`.
   */
  send(req: WebhookRequest): Promise<WebhookResult>;
  /** Endpoints with a connection pool (at most `maxEndpoints`). */
  pooledEndpoints(): number;
  /** Closes every connection; later sends fail without a request. Idempotent. */
  close(): void;
}

interface Pool {
  readonly agent: http.Agent;
  /** Options of a request on a new connection outside the pool (the retry after a reset). */
  readonly unpooled: https.RequestOptions;
  inFlight: number;
  /** Evicted or closed: destroyed once no request uses it. */
  retired: boolean;
}

/** Creates a webhook sender with keep-alive connection pools per endpoint and pinned address. */
export function createWebhookSender(opts: WebhookSenderOptions): WebhookSender {
  const idleMs = Math.max(0, opts.keepAliveIdleMs ?? DEFAULT_KEEPALIVE_IDLE_MS);
  const maxEndpoints = Math.max(1, opts.maxEndpoints ?? DEFAULT_MAX_POOLED_ENDPOINTS);
  // Least recently used first (a Map iterates in insertion order; a used pool is re-inserted).
  const pools = new Map<string, Pool>();
  let closed = false;

  const retire = (pool: Pool) => {
    pool.retired = true;
    if (pool.inFlight === 0) pool.agent.destroy();
  };

  const createPool = (target: ResolvedTarget): Pool => {
    // The pin lives in the agent's options, which override a request's: every connection of this
    // pool goes to the checked address, and a pool is never shared by two addresses (the key).
    const pinned = pinnedLookup(target);
    const tls = target.url.protocol === "https:" && opts.ca !== undefined ? { ca: opts.ca } : {};
    const connection = { ...(pinned ? { lookup: pinned } : {}), ...tls };
    const agentOptions: https.AgentOptions = {
      ...connection,
      keepAlive: idleMs > 0,
      maxSockets: opts.maxSocketsPerEndpoint,
      maxFreeSockets: opts.maxSocketsPerEndpoint,
      // Applies to idle sockets only: the agent destroys a free socket when it fires.
      ...(idleMs > 0 ? { timeout: idleMs } : {}),
    };
    const agent = target.url.protocol === "https:" ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    return { agent, unpooled: { ...connection, agent: false }, inFlight: 0, retired: false };
  };

  const acquire = (target: ResolvedTarget): Pool => {
    const key = `${target.url.origin} ${target.address ?? ""}`;
    const pool = pools.get(key) ?? createPool(target);
    pools.delete(key);
    pools.set(key, pool);
    for (const [k, lru] of pools) {
      if (pools.size <= maxEndpoints) break;
      pools.delete(k);
      retire(lru);
    }
    pool.inFlight++;
    return pool;
  };

  const release = (pool: Pool) => {
    pool.inFlight--;
    if (pool.retired && pool.inFlight === 0) pool.agent.destroy();
  };

  return {
    send: async (req) => {
      if (closed) return { status: 0, error: "webhook sender closed", durationMs: 0, excerpt: "", retryAfter: undefined };
      const pool = acquire(req.target);
      try {
        return await exchange(req, pool);
      } finally {
        release(pool);
      }
    },
    pooledEndpoints: () => pools.size,
    close() {
      closed = true;
      for (const pool of pools.values()) retire(pool);
      pools.clear();
    },
  };
}

/** A lookup answering with the target's checked address, or undefined for allow-listed hosts. */
function pinnedLookup(target: ResolvedTarget): LookupFunction | undefined {
  const { address } = target;
  if (address === undefined) return undefined;
  const family = target.family ?? 4;
  return (_host, options, callback) => {
    if (options.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };
}

/** One POST on the pool's connections, and once more on a new connection after a reset reused one. */
function exchange(req: WebhookRequest, pool: Pool): Promise<WebhookResult> {
  const { target } = req;
  const started = performance.now();
  const mod = target.url.protocol === "https:" ? https : http;
  const headers = { ...req.headers, "Content-Length": String(Buffer.byteLength(req.body)) };
  return new Promise<WebhookResult>((resolve) => {
    let settled = false;
    let retried = false;
    let current: http.ClientRequest | undefined;
    /** How far the current request's connection got, for the class of its failure. */
    let phase: ConnectionPhase = "connecting";
    let headersAt: number | undefined;
    let status = 0;
    let retryAfter: string | undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    /**
     * `reusable`: the response was read to its end, so the connection may serve the next request.
     * `failure`: why no response arrived (ignored once one did).
     */
    const finish = (reusable: boolean, failure?: { error: string; detail: string }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!reusable) current?.destroy();
      const excerpt = Buffer.concat(chunks).subarray(0, RESPONSE_EXCERPT_BYTES).toString("utf8");
      resolve({
        status,
        error: status || !failure ? "" : failure.error,
        ...(status || !failure ? {} : { errorDetail: failure.detail }),
        durationMs: Math.round((headersAt ?? performance.now()) - started),
        excerpt,
        retryAfter,
      });
    };
    const timer = setTimeout(
      () => finish(false, { error: timeoutClass(phase, req.timeoutMs), detail: `timed out after ${req.timeoutMs} ms ${WAITING_FOR[phase]}` }),
      req.timeoutMs,
    );
    const post = (options: https.RequestOptions) => {
      let request: http.ClientRequest;
      phase = "connecting";
      try {
        request = mod.request(target.url, { method: "POST", headers, ...options });
      } catch (err) {
        // A header value Node refuses: no request was made.
        finish(false, { error: TransportError.other, detail: describe(err as Error) });
        return;
      }
      current = request;
      request.on("socket", (socket: Socket) => {
        // A kept-alive socket is connected (and secured) already.
        if (!socket.connecting) {
          phase = "connected";
          return;
        }
        const secure = mod === https;
        socket.once("connect", () => {
          if (current === request) phase = secure ? "handshaking" : "connected";
        });
        if (secure) {
          socket.once("secureConnect", () => {
            if (current === request) phase = "connected";
          });
        }
      });
      request.on("response", (res) => {
        headersAt = performance.now();
        status = res.statusCode ?? 0;
        const ra = res.headers["retry-after"];
        retryAfter = Array.isArray(ra) ? ra[0] : ra;
        res.on("data", (chunk: Buffer) => {
          if (size < RESPONSE_EXCERPT_BYTES) chunks.push(chunk);
          size += chunk.length;
          // Reading on would be unbounded: drop the connection instead of reusing it.
          if (size > RESPONSE_EXCERPT_BYTES) finish(false);
        });
        res.on("end", () => finish(true));
        res.on("error", () => finish(false));
        // Closed before its end (the receiver went away mid-body): what arrived is the result.
        res.on("close", () => finish(false));
      });
      request.on("error", (err) => {
        if (settled) return;
        // The race of keep-alive: the server closed the idle connection while this request went
        // out on it. Nothing was answered; the same request goes once more on a new connection.
        if (!status && !retried && request.reusedSocket && isReset(err)) {
          retried = true;
          post(pool.unpooled);
          return;
        }
        const code = (err as { code?: unknown }).code;
        finish(false, { error: transportErrorClass(typeof code === "string" ? code : undefined, phase), detail: describe(err) });
      });
      request.end(req.body);
    };
    post({ agent: pool.agent });
  });
}

const WAITING_FOR: Readonly<Record<ConnectionPhase, string>> = {
  connecting: "while connecting",
  handshaking: "during the TLS handshake",
  connected: "waiting for the response",
};

function isReset(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  return code === "ECONNRESET" || code === "EPIPE";
}

function describe(err: Error): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? `${code}: ${err.message}` : err.message;
}
