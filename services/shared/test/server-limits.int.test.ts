import assert from "node:assert/strict";
import * as http from "node:http";
import * as http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Code, ConnectError, createClient, type ServiceImpl } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { EchoService } from "../src/gen/logistics/perf/v1/echo_pb.js";
import { TrackingService, WatchUpdateKind } from "../src/gen/logistics/tracking/v1/tracking_pb.js";
import { startServer, type ConnectionLimits, type ServerHandle } from "../src/server/serve.js";
import { deepUnknownField, lastClosed, slowClients } from "../src/testing/hostile-clients.js";
import { waitFor } from "../src/testing/wait-for.js";

const LIMITS: ConnectionLimits = {
  headerTimeoutMs: 1500,
  idleTimeoutMs: 1500,
  maxConcurrentStreams: 8,
  maxHeaderBytes: 8 * 1024,
  maxJsonBytes: 256 * 1024,
  maxJsonDepth: 32,
  streamResetBurst: 10_000,
  streamResetRate: 1000,
};
/** A TrackingService whose WatchShipment sends one snapshot and stays open until the call ends. */
const heldWatch: Partial<ServiceImpl<typeof TrackingService>> = {
  getShipment: () => ({}),
  async *watchShipment(_req, ctx) {
    yield { sequence: 1n, kind: WatchUpdateKind.SNAPSHOT };
    await new Promise((r) => ctx.signal.addEventListener("abort", r, { once: true }));
  },
};
/** Time past a deadline the server may take to act on it (timer and connection-check granularity, a loaded machine). */
const SLACK_MS = 4000;

/** One Connect streaming envelope holding `json`. */
function envelope(json: string, flags = 0): Buffer {
  const payload = Buffer.from(json);
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

describe("startServer limits on the shared port (real sockets)", () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({
      port: 0,
      host: "127.0.0.1",
      services: [EchoService, TrackingService],
      limits: LIMITS,
      routes: (router) => {
        router.service(EchoService, { echo: (req) => ({ payload: req.payload }) });
        router.service(TrackingService, heldWatch);
      },
    });
  });
  afterAll(() => server?.close({ graceMs: 1000 }));

  it("closes 300 connections that send nothing, half a preface or headers at a byte a time, while a normal request is served", async () => {
    const opened = Date.now();
    const conns = slowClients(server.port, 300, "/logistics.perf.v1.EchoService/Echo");
    try {
      await waitFor(() => conns.every((c) => c.socket.readyState === "open" || c.socket.destroyed), { timeoutMs: 5000 });
      // A normal request is answered while every slow connection is held: it is not queued behind
      // them (the deadline is well below the time they are allowed to stay).
      for (const transport of [
        createGrpcTransport({ baseUrl: server.url }),
        createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }),
      ]) {
        const res = await createClient(EchoService, transport).echo({ payload: new Uint8Array([7]) }, { timeoutMs: LIMITS.headerTimeoutMs });
        assert.deepEqual([...res.payload], [7]);
      }
      const latest = (await lastClosed(conns, 10_000)) - opened;
      assert.ok(latest <= LIMITS.headerTimeoutMs + SLACK_MS, `last slow connection closed after ${latest} ms`);
    } finally {
      for (const c of conns) c.socket.destroy();
    }
  });

  it("sends GOAWAY to an HTTP/2 connection that opens no stream after its preface", async () => {
    const opened = Date.now();
    const session = http2.connect(server.url);
    session.on("error", () => {});
    const closedAt = await new Promise<number>((resolve) => session.once("close", () => resolve(Date.now())));
    assert.ok(closedAt - opened <= LIMITS.headerTimeoutMs + SLACK_MS, `closed after ${closedAt - opened} ms`);
  });

  it("closes an idle HTTP/2 connection after its last stream, but never one with a stream open", async () => {
    const session = http2.connect(server.url);
    session.on("error", () => {});
    const closed = new Promise<number>((resolve) => session.once("close", () => resolve(Date.now())));
    // A server stream held open longer than the idle timeout keeps the connection.
    const stream = session.request({
      ":method": "POST",
      ":path": "/logistics.tracking.v1.TrackingService/WatchShipment",
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.end(envelope(""));
    stream.resume();
    await new Promise((r) => setTimeout(r, LIMITS.idleTimeoutMs + SLACK_MS));
    assert.equal(session.closed || session.destroyed, false, "closed with a stream open");
    const streamEnded = Date.now();
    stream.close();
    const at = await closed;
    assert.ok(at - streamEnded <= LIMITS.idleTimeoutMs + SLACK_MS, `closed ${at - streamEnded} ms after the last stream`);
  });

  it("advertises the concurrent stream bound and a header list bound in its HTTP/2 settings", async () => {
    const session = http2.connect(server.url);
    session.on("error", () => {});
    try {
      const settings = await new Promise<http2.Settings>((resolve) => session.once("remoteSettings", resolve));
      assert.equal(settings.maxConcurrentStreams, LIMITS.maxConcurrentStreams);
      assert.equal(settings.maxHeaderListSize, LIMITS.maxHeaderBytes);
    } finally {
      session.destroy();
    }
  });

  it("refuses request headers larger than the bound, over HTTP/1.1 and HTTP/2", async () => {
    const big = "x".repeat(LIMITS.maxHeaderBytes + 1024);
    const h1Status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${server.url}/logistics.perf.v1.EchoService/Echo`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-big": big },
      });
      req.on("response", (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end("{}");
    });
    assert.equal(h1Status, 431);

    const err = await createClient(EchoService, createGrpcTransport({ baseUrl: server.url }))
      .echo({}, { headers: { "x-big": big } })
      .then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    assert.equal(err?.code, Code.ResourceExhausted, "a request with oversized headers was served over HTTP/2");
    // A normal request on the same server still works.
    await createClient(EchoService, createGrpcTransport({ baseUrl: server.url })).echo({});
  });

  describe("JSON bounds, checked before parsing", () => {
    const url = () => `${server.url}/logistics.tracking.v1.TrackingService/GetShipment`;
    const post = (body: Buffer | string, headers: Record<string, string> = {}) =>
      fetch(url(), { method: "POST", headers: { "content-type": "application/json", ...headers }, body });

    it("rejects 650k levels of nesting in an unknown field with InvalidArgument, reading only the first levels", async () => {
      // 1.3 MB plain; compressed, a depth that stays within the size bound once inflated.
      for (const [label, res] of [
        ["plain", await post(deepUnknownField(650_000))],
        ["gzip", await post(gzipSync(deepUnknownField(100_000)), { "content-encoding": "gzip" })],
      ] as const) {
        assert.equal(res.status, 400, label);
        const err = (await res.json()) as { code: string; message: string };
        assert.equal(err.code, "invalid_argument", label);
        assert.match(err.message, /nested deeper than 32 levels/, label);
      }
    });

    it("accepts nesting up to the bound (the parser then judges the message)", async () => {
      const res = await post(deepUnknownField(LIMITS.maxJsonDepth - 1));
      assert.equal(res.status, 400);
      const err = (await res.json()) as { code: string; message: string };
      assert.equal(err.code, "invalid_argument");
      assert.match(err.message, /nested/);
      assert.doesNotMatch(err.message, /deeper than/);
      assert.equal((await post('{"trackingNumber":"T1"}')).status, 200);
    });

    it("rejects a JSON message larger than the bound with ResourceExhausted, also when it arrives compressed", async () => {
      const body = `{"trackingNumber":"${"a".repeat(LIMITS.maxJsonBytes)}"}`;
      for (const res of [await post(body), await post(gzipSync(body), { "content-encoding": "gzip" })]) {
        const err = (await res.json()) as { code: string; message: string };
        assert.equal(err.code, "resource_exhausted");
      }
    });

    it("checks every message of a Connect streaming JSON request and a JSON message in a GET query", async () => {
      const res = await fetch(`${server.url}/logistics.tracking.v1.TrackingService/WatchShipment`, {
        method: "POST",
        headers: { "content-type": "application/connect+json" },
        body: envelope(deepUnknownField(100_000)),
      });
      const frames = Buffer.from(await res.arrayBuffer());
      const end = JSON.parse(frames.subarray(5).toString()) as { error?: { code: string; message: string } };
      assert.equal(end.error?.code, "invalid_argument");
      assert.match(end.error?.message ?? "", /nested deeper/);

      const q = new URLSearchParams({ connect: "v1", encoding: "json", message: deepUnknownField(1000) });
      const get = await fetch(`${server.url}/logistics.tracking.v1.TrackingService/GetShipment?${q.toString()}`);
      assert.equal(get.status, 400);
      assert.equal(((await get.json()) as { code: string }).code, "invalid_argument");
    });

    it("inflates a compressed JSON message in a GET query, and a gRPC JSON message by its grpc-encoding, before checking its depth", async () => {
      // Under 1 KB of gzip that inflates to the size bound in brackets: refused before the parser
      // sees it, for its depth; 4 MB of brackets (~4 KB of gzip) for its size.
      const bomb = gzipSync("[".repeat(LIMITS.maxJsonBytes - 1));
      assert.ok(bomb.length < 1_000);
      const big = new URLSearchParams({
        connect: "v1",
        encoding: "json",
        compression: "gzip",
        base64: "1",
        message: gzipSync("[".repeat(4_000_000)).toString("base64url"),
      });
      const tooBig = await fetch(`${server.url}/logistics.tracking.v1.TrackingService/GetShipment?${big.toString()}`);
      assert.equal(((await tooBig.json()) as { code: string }).code, "resource_exhausted");
      const q = new URLSearchParams({ connect: "v1", encoding: "json", compression: "gzip", base64: "1", message: bomb.toString("base64url") });
      const get = await fetch(`${server.url}/logistics.tracking.v1.TrackingService/GetShipment?${q.toString()}`);
      assert.equal(get.status, 400);
      const getErr = (await get.json()) as { code: string; message: string };
      assert.equal(getErr.code, "invalid_argument");
      assert.match(getErr.message, /nested deeper than 32 levels/);

      // A compressed gRPC-Web JSON message with a misleading Connect header: the grpc-encoding counts.
      const deep = gzipSync(deepUnknownField(100_000));
      const frame = Buffer.concat([Buffer.from([1, 0, 0, 0, 0]), deep]);
      frame.writeUInt32BE(deep.length, 1);
      const grpcWeb = await fetch(`${server.url}/logistics.tracking.v1.TrackingService/GetShipment`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+json", "grpc-encoding": "gzip", "connect-content-encoding": "identity" },
        body: frame,
      });
      const status = grpcWeb.headers.get("grpc-status") ?? trailerStatus(Buffer.from(await grpcWeb.arrayBuffer()));
      assert.equal(status, String(Code.InvalidArgument));
    });

    it("still serves Connect JSON streams within the bounds", async () => {
      const client = createClient(TrackingService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
      for await (const u of client.watchShipment({ trackingNumber: "T1" })) {
        assert.equal(u.kind, WatchUpdateKind.SNAPSHOT);
        break;
      }
    });
  });
});

const WATCH_PATH = "/logistics.tracking.v1.TrackingService/WatchShipment";

/** Opens a gRPC WatchShipment on `session` and resolves once its response headers arrived. */
async function openWatch(session: http2.ClientHttp2Session): Promise<http2.ClientHttp2Stream> {
  const stream = session.request({ ":method": "POST", ":path": WATCH_PATH, "content-type": "application/grpc", te: "trailers" });
  stream.on("error", () => {});
  stream.end(envelope(""));
  stream.resume();
  await new Promise((resolve, reject) => {
    stream.once("response", resolve);
    stream.once("close", () => reject(new Error(`stream closed before its response (rst ${stream.rstCode})`)));
  });
  return stream;
}

/**
 * Cancels `n` watches on `session` one after another (each opened, answered, then reset with
 * CANCEL, as a client closing a call does), then round-trips a PING. The server reads frames in
 * order, so any GOAWAY those resets earned was sent before the PING's answer: the GOAWAY code, or
 * undefined when there was none.
 */
async function cancelWatches(session: http2.ClientHttp2Session, n: number): Promise<number | undefined> {
  let goaway: number | undefined;
  session.on("goaway", (code: number) => (goaway ??= code));
  for (let i = 0; i < n && goaway === undefined && !session.closed; i++) {
    const stream = await openWatch(session).catch(() => undefined);
    stream?.close(http2.constants.NGHTTP2_CANCEL);
  }
  if (goaway === undefined && !session.closed) {
    await new Promise<void>((resolve) => {
      session.once("goaway", () => resolve());
      session.once("close", () => resolve());
      if (!session.ping((err) => (err ? undefined : resolve()))) resolve();
    });
  }
  return goaway;
}

describe("startServer and stream resets (rapid-reset defence; real sockets)", async () => {
  const servers: ServerHandle[] = [];
  const serve = async (limits: Partial<ConnectionLimits>) => {
    const server = await startServer({
      port: 0,
      host: "127.0.0.1",
      services: [TrackingService],
      limits,
      routes: (router) => {
        router.service(TrackingService, heldWatch);
      },
    });
    servers.push(server);
    return server;
  };
  afterAll(() => Promise.all(servers.map((s) => s.close({ graceMs: 1000 }))));

  // Whether this runtime applies `streamResetBurst` / `streamResetRate` (Node 24 does, Node 20
  // ignores them): a server allowing 2 resets answers the fifth with GOAWAY when it does.
  const probe = http2.connect((await serve({ streamResetBurst: 2, streamResetRate: 1 })).url);
  probe.on("error", () => {});
  const honoured = (await cancelWatches(probe, 5)) !== undefined;
  probe.destroy();

  it.runIf(honoured)(
    "lets one connection cancel 2,500 calls in a burst and keeps its other streams open (Node 24; Node 20 ignores the setting)",
    async () => {
      // The defaults: nghttp2's own (1,000, then 33/s) would GOAWAY after about the 1,000th.
      const server = await serve({});
      const session = http2.connect(server.url);
      session.on("error", () => {});
      try {
        const long = await openWatch(session);
        const goaway = await cancelWatches(session, 2500);
        assert.equal(goaway, undefined, `GOAWAY ${goaway} after cancelled calls`);
        assert.equal(long.closed, false, "the watch left open was broken");
        assert.equal(session.closed, false);
        // The connection still serves new calls.
        (await openWatch(session)).close(http2.constants.NGHTTP2_CANCEL);
      } finally {
        session.destroy();
      }
    },
  );

  it.runIf(honoured)("still answers a reset flood beyond its bucket with GOAWAY (INTERNAL_ERROR), breaking that connection only", async () => {
    const server = await serve({ streamResetBurst: 100, streamResetRate: 10 });
    const flood = http2.connect(server.url);
    const other = http2.connect(server.url);
    flood.on("error", () => {});
    other.on("error", () => {});
    try {
      const otherWatch = await openWatch(other);
      const goaway = await cancelWatches(flood, 400);
      assert.equal(goaway, http2.constants.NGHTTP2_INTERNAL_ERROR);
      assert.equal(otherWatch.closed, false, "another connection's watch was broken");
    } finally {
      flood.destroy();
      other.destroy();
    }
  });

  it.skipIf(honoured)("on a runtime that ignores the setting (Node 20), the library's bucket of 1,000 still ends the connection, as the README says", async () => {
    const server = await serve({});
    const session = http2.connect(server.url);
    session.on("error", () => {});
    try {
      assert.equal(await cancelWatches(session, 1500), http2.constants.NGHTTP2_INTERNAL_ERROR);
    } finally {
      session.destroy();
    }
  });
});

/** The grpc-status of a gRPC-Web response body's trailer frame (flag 0x80). */
function trailerStatus(body: Buffer): string | undefined {
  for (let at = 0; at + 5 <= body.length; ) {
    const len = body.readUInt32BE(at + 1);
    if ((body[at]! & 0x80) !== 0) return /grpc-status:\s*(\d+)/i.exec(body.subarray(at + 5, at + 5 + len).toString())?.[1];
    at += 5 + len;
  }
  return undefined;
}
