import { setMaxListeners } from "node:events";
import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { AddressInfo } from "node:net";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, createContextValues, type ConnectRouter, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { fastBrotli, fastGzip } from "./compression.js";
import { answerConditionalGet } from "./conditional-get.js";
import { applyCors, type CorsOptions } from "./cors.js";
import { fixGrpcMessageHeader } from "./grpc-message.js";
import { createHealthRegistry, ServingStatus, type HealthRegistry } from "./health.js";
import { checkJsonMessage, envelopeEncodingHeader, guardJsonBody, jsonFramingOf, type JsonLimits } from "./json-guard.js";
import { registerReflection } from "./reflection.js";
import { answerUnparsableAsInvalid } from "./unparsable-request.js";

/** The narrow logging interface the server needs (pino loggers satisfy it). */
export interface ServerLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

/** TLS material: PEM strings/buffers or paths to PEM files. */
export interface TlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
}

export interface ServeOptions {
  /** Registers this service's handlers on the router. */
  routes: (router: ConnectRouter) => void;
  /** The services `routes` registers: listed by reflection and reported by health checks. */
  services: readonly DescService[];
  /** Listen address. Default "0.0.0.0". */
  host?: string;
  /** Listen port; 0 picks a free one (read it back from the handle). */
  port: number;
  /**
   * TLS for the edge. Without it the port speaks HTTP/2 cleartext (prior knowledge, as gRPC
   * clients use inside a cluster) and HTTP/1.1 (browsers, curl) on the same socket.
   */
  tls?: TlsOptions;
  /** Browser origins allowed to call (Connect and gRPC-Web). Default: no CORS headers. */
  cors?: CorsOptions;
  /** Interceptors applied to every RPC, outermost first. */
  interceptors?: Interceptor[];
  /** Per-request context values (e.g. the authenticated principal is set by an interceptor). */
  contextValues?: () => ContextValues;
  /** Largest accepted request message. Default 4 MiB, like gRPC's default. */
  readMaxBytes?: number;
  /**
   * Proxies in front of this port that append the address they received a connection from to
   * `x-forwarded-for` (e.g. 1 behind one ingress or gateway). The client address
   * ({@link clientAddressKey}) is then the entry that many places from the right; 0 (default)
   * takes the connection's peer address and ignores the header, which any client can write.
   */
  trustedProxyHops?: number;
  /** Timeouts and protocol bounds of the port; each defaults as {@link DEFAULT_CONNECTION_LIMITS} says. */
  limits?: Partial<ConnectionLimits>;
  log?: ServerLog;
}

/**
 * What one connection may hold or take, so that slow or idle clients cannot pile up on the shared
 * port and no request is parsed before it is known to be small and shallow enough.
 */
export interface ConnectionLimits {
  /**
   * Time from accepting a connection to its first complete request headers: the HTTP/2 preface
   * and a first stream, or HTTP/1.1 request headers (also between keep-alive requests). It runs
   * from the first byte on, before the protocol is even known: a client that sends nothing, half
   * a preface, or headers a byte at a time is cut when it runs out.
   */
  headerTimeoutMs: number;
  /**
   * A connection with no request in progress for this long is closed (HTTP/2 with GOAWAY, so
   * clients reconnect cleanly; HTTP/1.1 keep-alive connections end). Open streams keep it open.
   */
  idleTimeoutMs: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams one connection may have open at once; more are refused. */
  maxConcurrentStreams: number;
  /** Largest request header block in bytes (HTTP/1.1 request line and headers; HTTP/2 header list). */
  maxHeaderBytes: number;
  /**
   * Largest JSON request message in bytes (Connect JSON, gRPC/gRPC-Web `+json`), after
   * decompression, checked before anything parses it: beyond it, ResourceExhausted.
   */
  maxJsonBytes: number;
  /** Deepest nesting of JSON objects and arrays in a request message, checked before parsing: beyond it, InvalidArgument. */
  maxJsonDepth: number;
  /**
   * Stream resets (RST_STREAM) a client may send on one HTTP/2 connection: a token bucket of this
   * many, refilled at {@link streamResetRate} per second. A client that runs out gets a GOAWAY
   * (INTERNAL_ERROR) and every stream of its connection breaks: the defence against "rapid reset"
   * floods (CVE-2023-44487). nghttp2's own bucket is 1,000 refilled at 33/s, which a legitimate
   * client outruns by cancelling more than 33 calls a second (watchers closing as their parcels
   * arrive, deadlines expiring) on one connection, as a gateway or an ingress multiplexing many
   * callers does. Honoured by the runtimes that expose it (Node 24, the images'); Node 20 keeps
   * nghttp2's.
   */
  streamResetBurst: number;
  /** Tokens per second refilled into the {@link streamResetBurst} bucket. */
  streamResetRate: number;
}

/** The limits a server applies when its options leave them out. */
export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = Object.freeze({
  headerTimeoutMs: 10_000,
  idleTimeoutMs: 120_000,
  maxConcurrentStreams: 1000,
  maxHeaderBytes: 16 * 1024,
  maxJsonBytes: 4 * 1024 * 1024,
  maxJsonDepth: 64,
  streamResetBurst: 10_000,
  streamResetRate: 1000,
});

export interface CloseOptions {
  /** How long in-flight RPCs and streams may take to finish before connections are cut. Default 10 s. */
  graceMs?: number;
  /** Wait this long after turning NOT_SERVING before refusing connections, so load balancers notice. Default 0. */
  drainDelayMs?: number;
}

/** A running server. `close()` drains and resolves when every connection is gone. */
export interface ServerHandle {
  readonly port: number;
  /** `http://host:port` (or https) for clients on this machine. */
  readonly url: string;
  readonly health: HealthRegistry;
  /**
   * Aborted when draining starts. Long-lived stream handlers end their streams normally when it
   * fires (handlers get it through `drainSignalKey`), so clients see a clean end, not a reset.
   */
  readonly drainSignal: AbortSignal;
  close(options?: CloseOptions): Promise<void>;
}

/** Handlers read the server's drain signal with `ctx.values.get(drainSignalKey)`. */
export const drainSignalKey = createContextKey<AbortSignal>(new AbortController().signal, {
  description: "aborted when the server starts draining",
});

/**
 * The connection a request arrived on, as an identity (the HTTP/2 session or the HTTP/1.1
 * socket): per-connection limits key on it. Outside a server it is a fresh object per call.
 */
export const connectionKey = createContextKey<object>({}, { description: "the connection a request arrived on" });

/** The caller's address: the connection's peer, or the trusted proxies' `x-forwarded-for` entry (see `trustedProxyHops`). */
export const clientAddressKey = createContextKey<string>("unknown", { description: "the client address of a request" });

/**
 * Cuts a call's transport at once, without a status, for a peer the server gives up on because it
 * stopped reading: no message or trailer could reach it, as its flow-control window is full. On
 * HTTP/2 the call's stream is reset with RST_STREAM CANCEL, which clients report as Canceled: the
 * gRPC spec (PROTOCOL-HTTP2.md) reserves it for a server that must cancel a call whose response
 * bytes are incomplete, and Node raises no stream error for it (any other code fails the pending
 * write, which connect-node logs as an internal error). The connection and its other calls go on.
 * An HTTP/1.1 connection carries one call at a time, so there the connection is destroyed. Either
 * way the call's signal aborts, so every interceptor sees the call end and the stream caps give
 * its slot back. Handlers call `ctx.values.get(resetCallKey)()`; outside a server (router
 * transports in tests) it does nothing.
 */
export const resetCallKey = createContextKey<() => void>(() => {}, { description: "resets the transport of a call" });

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

function pem(v: string | Buffer): string | Buffer {
  return typeof v === "string" && !v.includes("-----BEGIN") ? readFileSync(v) : v;
}

/**
 * Serves a Connect router over gRPC, gRPC-Web and Connect, with standard health checking and
 * server reflection, on one port. Health reports SERVING once listening and NOT_SERVING as soon
 * as `close()` starts. Returns after the port is bound.
 */
export async function startServer(options: ServeOptions): Promise<ServerHandle> {
  const limits: ConnectionLimits = { ...DEFAULT_CONNECTION_LIMITS, ...options.limits };
  const jsonLimits: JsonLimits = { maxBytes: limits.maxJsonBytes, maxDepth: limits.maxJsonDepth };
  const hops = options.trustedProxyHops ?? 0;
  const drain = new AbortController();
  // Every open long-lived stream (health Watch, WatchShipment...) listens on it until it ends:
  // more than Node's default of 10 is normal load, not a leak to warn about.
  setMaxListeners(0, drain.signal);
  const health = createHealthRegistry(options.services.map((s) => s.typeName), drain.signal);
  const handler = connectNodeAdapter({
    routes(router) {
      options.routes(router);
      health.register(router);
      registerReflection(router, options.services);
    },
    interceptors: options.interceptors,
    contextValues: (req) => {
      const values = options.contextValues?.() ?? createContextValues();
      return values
        .set(drainSignalKey, drain.signal)
        .set(connectionKey, "stream" in req ? req.stream.session ?? req.socket : req.socket)
        .set(clientAddressKey, clientAddress(req, hops))
        .set(resetCallKey, () => resetCall(req));
    },
    readMaxBytes: options.readMaxBytes ?? 4 * 1024 * 1024,
    // connect-node's defaults, with gzip at level 1, brotli at quality 4 (not 11: any caller may
    // ask for it) and small messages compressed in place (see fastGzip, fastBrotli).
    acceptCompression: [fastGzip, fastBrotli],
    // Strict JSON: an unknown field or an unknown enum name is InvalidArgument. protobuf-es ties
    // both to one switch, and ignoring them (connect-es's default) silently dropped unknown
    // `statuses` from a search filter, so the filter was ignored and everything returned.
    jsonOptions: { ignoreUnknownFields: false },
  });

  let inFlight = 0;
  let idle: (() => void) | undefined;
  const listener = (
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ) => {
    if (options.cors && applyCors(options.cors, req, res)) return;
    if (isGrpcOverHttp2(req)) encodeGrpcMessageBySpec(res);
    else {
      answerConditionalGet(req, res);
      const type = req.headers["content-type"];
      answerUnparsableAsInvalid(res, typeof type === "string" ? type.trim().toLowerCase() : "");
    }
    if ("stream" in req && headerListSize(req.rawHeaders) > limits.maxHeaderBytes) {
      // Node advertises SETTINGS_MAX_HEADER_LIST_SIZE but does not enforce it on what arrives.
      rejectEarly(req, res, new ConnectError(`request headers larger than ${limits.maxHeaderBytes} bytes`, Code.ResourceExhausted), 431);
      return;
    }
    inFlight++;
    res.once("close", () => {
      inFlight--;
      if (inFlight === 0) idle?.();
    });
    try {
      guardJson(req, jsonLimits);
    } catch (e) {
      // Only a JSON message in the query string is checked here (the body is checked as it is read).
      rejectEarly(req, res, e);
      return;
    }
    handler(req, res);
  };

  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.Http2Session>();
  let listening: net.Server;
  let h1: http.Server | undefined;
  let h2: http2.Http2Server | http2.Http2SecureServer;
  const h2Options = {
    settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes },
    maxHeaderListSize: limits.maxHeaderBytes,
    streamResetBurst: limits.streamResetBurst,
    streamResetRate: limits.streamResetRate,
  };
  if (options.tls) {
    const secure = http2.createSecureServer(
      { ...h2Options, allowHTTP1: true, cert: pem(options.tls.cert), key: pem(options.tls.key), handshakeTimeout: limits.headerTimeoutMs },
      listener,
    );
    // HTTP/1.1 over TLS is served by the HTTP/2 server itself, with the HTTP/1.1 server's timeouts.
    Object.assign(secure, {
      headersTimeout: limits.headerTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      connectionsCheckingInterval: checkingInterval(limits),
    });
    h2 = secure;
    listening = h2;
  } else {
    h1 = http.createServer(
      {
        maxHeaderSize: limits.maxHeaderBytes,
        headersTimeout: limits.headerTimeoutMs,
        keepAliveTimeout: limits.idleTimeoutMs,
        connectionsCheckingInterval: checkingInterval(limits),
      },
      listener,
    );
    // This server never listens itself (connections are handed to it), and Node starts its
    // header-timeout checks and connection tracking on "listening": start them here.
    h1.emit("listening");
    h2 = http2.createServer(h2Options, listener);
    const plain = { h1, h2 };
    listening = net.createServer((socket) => routeCleartext(socket, plain, limits.headerTimeoutMs));
  }
  h2.on("session", (s: http2.Http2Session) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
    limitSession(s, limits);
  });
  listening.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    listening.once("error", reject);
    listening.listen(options.port, options.host ?? "0.0.0.0", () => {
      listening.off("error", reject);
      resolve();
    });
  });
  const port = (listening.address() as AddressInfo).port;
  health.setAll(ServingStatus.SERVING);
  options.log?.info({ port, tls: Boolean(options.tls) }, "listening");

  let closing: Promise<void> | undefined;
  const close = (opts: CloseOptions = {}) => {
    closing ??= (async () => {
      const graceMs = opts.graceMs ?? 10_000;
      health.setAll(ServingStatus.NOT_SERVING);
      if (opts.drainDelayMs) await new Promise((r) => setTimeout(r, opts.drainDelayMs));
      const closed = new Promise<void>((resolve) => listening.close(() => resolve()));
      const deadline = Date.now() + graceMs;
      const until = <T>(p: Promise<T>) =>
        Promise.race([p, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), Math.max(0, deadline - Date.now())).unref())]);
      h1?.closeIdleConnections();
      drain.abort();
      const drained = inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => (idle = r));
      if ((await until(drained)) === "timeout") {
        options.log?.warn({ inFlight }, "grace period over; closing remaining connections");
      }
      // GOAWAY goes out only once every stream has ended: grpc-js clients that get it while a
      // stream is finishing can drop that stream's trailers (seen as UNAVAILABLE "Connection
      // dropped"). Health already says NOT_SERVING, and new long-lived streams end at once.
      // A short linger lets clients read the last trailers before the connection closes.
      const sessionsGone = () =>
        Promise.all([...sessions].map((s) => new Promise((r) => (s.closed || s.destroyed ? r(null) : s.once("close", r)))));
      await Promise.race([sessionsGone(), new Promise((r) => setTimeout(r, Math.min(500, Math.max(0, deadline - Date.now()))).unref())]);
      for (const s of sessions) if (!s.closed) s.close();
      await until(sessionsGone());
      h1?.closeAllConnections();
      // A closed session may still have its last frames (trailers) queued on the socket:
      // let the sockets flush and close on their own; destroy only what outlives the grace.
      for (const s of sockets) if (!s.destroyed) s.end();
      await until(Promise.all([...sockets].map((s) => new Promise((r) => (s.destroyed ? r(null) : s.once("close", r))))));
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
      await closed;
      h1?.close();
      options.log?.info({ port }, "server closed");
    })();
    return closing;
  };

  const host = options.host && options.host !== "0.0.0.0" ? options.host : "127.0.0.1";
  return {
    port,
    url: `${options.tls ? "https" : "http"}://${host}:${port}`,
    health,
    drainSignal: drain.signal,
    close,
  };
}

/** gRPC proper (`application/grpc`, `application/grpc+proto`...), not gRPC-Web. */
function isGrpcOverHttp2(req: http.IncomingMessage | http2.Http2ServerRequest): boolean {
  const type = req.headers["content-type"];
  return typeof type === "string" && type.startsWith("application/grpc") && !type.startsWith("application/grpc-web");
}

/**
 * Makes the response write `grpc-message` as the gRPC specification says (see grpc-message.ts):
 * connect-es percent-encodes it like a URI component, which grpc-js clients show half-decoded.
 */
function encodeGrpcMessageBySpec(res: http.ServerResponse | http2.Http2ServerResponse): void {
  const r = res as unknown as { addTrailers(h: unknown): void; writeHead(...args: unknown[]): unknown };
  const addTrailers = r.addTrailers.bind(r);
  const writeHead = r.writeHead.bind(r);
  r.addTrailers = (headers) => addTrailers(fixGrpcMessageHeader(headers));
  r.writeHead = (...args) => writeHead(...args.map(fixGrpcMessageHeader));
}

/** How often Node checks HTTP/1.1 connections for expired header timeouts (its default, 30 s, would let them overstay). */
function checkingInterval(limits: ConnectionLimits): number {
  return Math.max(50, Math.min(1000, Math.floor(limits.headerTimeoutMs / 4)));
}

/** See {@link resetCallKey}. */
function resetCall(req: http.IncomingMessage | http2.Http2ServerRequest): void {
  if ("stream" in req) {
    if (!req.stream.destroyed) req.stream.close(http2.constants.NGHTTP2_CANCEL);
  } else {
    req.socket.destroy();
  }
}

/** The caller's address: the peer, or with trusted proxies the `x-forwarded-for` entry they vouch for. */
function clientAddress(req: http.IncomingMessage | http2.Http2ServerRequest, hops: number): string {
  const peer = req.socket?.remoteAddress ?? "unknown";
  if (hops <= 0) return peer;
  const header = req.headers["x-forwarded-for"];
  const entries = (Array.isArray(header) ? header.join(",") : (header ?? "")).split(",").map((e) => e.trim()).filter(Boolean);
  // Each trusted proxy appended the address it saw; fewer entries than proxies means the request
  // did not come through them all, so the header proves nothing.
  return entries.length >= hops ? entries[entries.length - hops]! : peer;
}

/**
 * Makes the RPC layer read a JSON request's body through {@link guardJsonBody}, so depth and size
 * are checked before parsing; checks a Connect GET request's JSON `message` parameter at once.
 * @throws ConnectError for a query-string message out of bounds.
 */
function guardJson(req: http.IncomingMessage | http2.Http2ServerRequest, limits: JsonLimits): void {
  const header = (name: string) => {
    const v = req.headers[name];
    return typeof v === "string" ? v.trim().toLowerCase() : undefined;
  };
  if (req.method === "GET") {
    const query = new URL(req.url ?? "/", "http://localhost").searchParams;
    const message = query.get("message");
    if (query.get("encoding") !== "json" || message === null) return;
    const bytes = query.get("base64") === "1" ? Buffer.from(message, "base64url") : Buffer.from(message, "utf8");
    // A compressed message is inflated (never past the size bound) and checked like a plain one:
    // a few KB of gzip in a URL would otherwise carry megabytes of nesting to the parser.
    checkJsonMessage(bytes, limits, query.get("compression") ?? undefined);
    return;
  }
  const framing = jsonFramingOf(header("content-type"));
  if (!framing) return;
  const encoding = framing === "unary" ? header("content-encoding") : header(envelopeEncodingHeader(header("content-type")));
  // connect-node reads the body with `for await`: this instance's iterator replaces the stream's.
  const body = { [Symbol.asyncIterator]: req[Symbol.asyncIterator].bind(req) } as AsyncIterable<Uint8Array>;
  Object.defineProperty(req, Symbol.asyncIterator, {
    configurable: true,
    value: () => guardJsonBody(body, framing, encoding, limits)[Symbol.asyncIterator](),
  });
}

/** Size of a header list as HTTP/2 counts it (RFC 9113 6.5.2): name and value octets plus 32 per field. */
function headerListSize(rawHeaders: string[]): number {
  let size = 0;
  for (const field of rawHeaders) size += Buffer.byteLength(field) + 16;
  return size;
}

/**
 * Answers a request refused before the RPC layer saw it: gRPC callers get a trailers-only
 * response with the gRPC status, others a Connect error body with `httpStatus` (default: the
 * status Connect uses for the code).
 */
function rejectEarly(
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
  e: unknown,
  httpStatus?: number,
): void {
  const err = ConnectError.from(e);
  const r = res as http.ServerResponse;
  req.resume();
  const type = req.headers["content-type"];
  if (typeof type === "string" && type.startsWith("application/grpc")) {
    r.writeHead(200, {
      "content-type": type.startsWith("application/grpc-web") ? "application/grpc-web+proto" : "application/grpc",
      "grpc-status": String(err.code),
      "grpc-message": encodeURIComponent(err.rawMessage),
    }).end();
    return;
  }
  const code = Code[err.code].replace(/[A-Z]/g, (c, i: number) => (i ? "_" : "") + c.toLowerCase());
  r.writeHead(httpStatus ?? (err.code === Code.ResourceExhausted ? 429 : 400), { "content-type": "application/json" }).end(
    JSON.stringify({ code, message: err.rawMessage }),
  );
}

/**
 * Bounds the life of an HTTP/2 session without requests: it must open its first stream within
 * the header timeout (a preface alone, or a HEADERS frame sent a byte at a time, is not enough),
 * and once its last stream ends it gets the idle timeout to open another before a GOAWAY.
 */
function limitSession(session: http2.Http2Session, limits: ConnectionLimits): void {
  let open = 0;
  // GOAWAY, so a client that is merely early or idle reconnects cleanly; a peer that does not
  // read it has its connection destroyed shortly after.
  const goAway = () => {
    if (open > 0 || session.closed || session.destroyed) return;
    session.close();
    setTimeout(() => session.destroy(), Math.min(1000, limits.headerTimeoutMs)).unref();
  };
  let timer: NodeJS.Timeout | undefined = setTimeout(goAway, limits.headerTimeoutMs);
  timer.unref();
  const arm = () => {
    timer = setTimeout(goAway, limits.idleTimeoutMs);
    timer.unref();
  };
  session.on("stream", (stream: http2.ServerHttp2Stream) => {
    open++;
    clearTimeout(timer);
    timer = undefined;
    stream.once("close", () => {
      if (--open === 0 && !session.closed && !session.destroyed) arm();
    });
  });
  session.once("close", () => clearTimeout(timer));
}

/**
 * Hands a cleartext connection to the HTTP/2 server when it opens with the HTTP/2 connection
 * preface (gRPC clients use prior knowledge), else to the HTTP/1.1 server. A connection that has
 * not shown which it speaks within `headerTimeoutMs` (nothing sent, or a preface dribbled in) is
 * destroyed.
 */
function routeCleartext(socket: net.Socket, servers: { h1: http.Server; h2: http2.Http2Server }, headerTimeoutMs: number): void {
  let head = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), headerTimeoutMs);
  timer.unref();
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const n = Math.min(head.length, PREFACE.length);
    const isH2 = head.subarray(0, n).equals(PREFACE.subarray(0, n));
    if (isH2 && head.length < PREFACE.length) return; // need more bytes to decide
    clearTimeout(timer);
    socket.off("data", onData);
    socket.pause();
    socket.unshift(head);
    if (isH2) {
      // The HTTP/2 session takes over the socket's handle and replays the buffered bytes itself.
      servers.h2.emit("connection", socket);
    } else {
      servers.h1.emit("connection", socket);
      socket.resume();
    }
  };
  socket.on("data", onData);
  socket.once("close", () => clearTimeout(timer));
  socket.on("error", () => socket.destroy());
}
