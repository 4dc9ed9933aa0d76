import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { AddressInfo } from "node:net";
import type { DescService } from "@bufbuild/protobuf";
import { createContextKey, createContextValues, type ConnectRouter, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { applyCors, type CorsOptions } from "./cors.js";
import { fixGrpcMessageHeader } from "./grpc-message.js";
import { createHealthRegistry, ServingStatus, type HealthRegistry } from "./health.js";
import { registerReflection } from "./reflection.js";

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
  log?: ServerLog;
}

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
  const drain = new AbortController();
  const health = createHealthRegistry(options.services.map((s) => s.typeName), drain.signal);
  const handler = connectNodeAdapter({
    routes(router) {
      options.routes(router);
      health.register(router);
      registerReflection(router, options.services);
    },
    interceptors: options.interceptors,
    contextValues: () => {
      const values = options.contextValues?.() ?? createContextValues();
      return values.set(drainSignalKey, drain.signal);
    },
    readMaxBytes: options.readMaxBytes ?? 4 * 1024 * 1024,
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
    inFlight++;
    res.once("close", () => {
      inFlight--;
      if (inFlight === 0) idle?.();
    });
    handler(req, res);
  };

  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.Http2Session>();
  let listening: net.Server;
  let h1: http.Server | undefined;
  let h2: http2.Http2Server | http2.Http2SecureServer;
  if (options.tls) {
    h2 = http2.createSecureServer({ allowHTTP1: true, cert: pem(options.tls.cert), key: pem(options.tls.key) }, listener);
    listening = h2;
  } else {
    h1 = http.createServer(listener);
    h2 = http2.createServer({}, listener);
    const plain = { h1, h2 };
    listening = net.createServer((socket) => routeCleartext(socket, plain));
  }
  h2.on("session", (s: http2.Http2Session) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
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

/**
 * Hands a cleartext connection to the HTTP/2 server when it opens with the HTTP/2 connection
 * preface (gRPC clients use prior knowledge), else to the HTTP/1.1 server.
 */
function routeCleartext(socket: net.Socket, servers: { h1: http.Server; h2: http2.Http2Server }): void {
  let head = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const n = Math.min(head.length, PREFACE.length);
    const isH2 = head.subarray(0, n).equals(PREFACE.subarray(0, n));
    if (isH2 && head.length < PREFACE.length) return; // need more bytes to decide
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
  socket.on("error", () => socket.destroy());
}
