import * as assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import {
  TrackingService,
  WatchShipmentResponseSchema,
  WatchUpdateKind,
} from "../src/gen/logistics/tracking/v1/tracking_pb.js";
import { createDatabaseUnavailableInterceptor } from "../src/server/database-unavailable.js";
import { resetCallKey, startServer, type ServerHandle } from "../src/server/serve.js";
import { createStreamLimitInterceptor, type StreamLimitInterceptor } from "../src/server/stream-limits.js";
import { createServerTracingInterceptor } from "../src/telemetry/connect-tracing.js";
import { createErrorLogInterceptor } from "../src/telemetry/error-log.js";
import { createMetrics, createMetricsInterceptor } from "../src/telemetry/metrics.js";
import { waitFor } from "../src/testing/wait-for.js";

const HEARTBEAT = create(WatchShipmentResponseSchema, { kind: WatchUpdateKind.HEARTBEAT });

/**
 * A WatchShipment of our own, capped at one open call per connection and caller, behind the
 * interceptors a service stacks around its handlers (in start-service's order), on a real server.
 * The tracking number picks what the stream does: `n:<count>` ends after that many messages,
 * `fail` fails after one with a lost database connection, `open` stays open until the caller goes,
 * `reset` resets its transport after one (as a handler giving up on a peer that stopped reading).
 */
async function setup() {
  const limits = createStreamLimitInterceptor([{ method: TrackingService.method.watchShipment, perConnection: 1, perPrincipal: 1 }]);
  const metrics = createMetrics({ service: "test" });
  const errors: unknown[] = [];
  const interceptors: Interceptor[] = [
    createServerTracingInterceptor(),
    createMetricsInterceptor(metrics),
    createErrorLogInterceptor({ error: (obj) => errors.push(obj) }),
    createDatabaseUnavailableInterceptor({ log: { warn: () => {} } }),
    limits,
  ];
  const server = await startServer({
    port: 0,
    host: "127.0.0.1",
    services: [TrackingService],
    interceptors,
    routes: (router) =>
      router.service(TrackingService, {
        async *watchShipment(req, ctx) {
          const what = req.trackingNumber;
          if (what.startsWith("n:")) {
            for (let i = 0; i < Number(what.slice(2)); i++) yield HEARTBEAT;
            return;
          }
          yield HEARTBEAT;
          if (what === "fail") throw new Error("Connection terminated unexpectedly");
          if (what === "reset") ctx.values.get(resetCallKey)();
          await new Promise((r) => ctx.signal.addEventListener("abort", r, { once: true }));
        },
      }),
  });
  const inFlight = async () => (await metrics.rpcInFlight.get()).values.reduce((n, v) => n + v.value, 0);
  return { server, limits, inFlight, errors };
}

const codeOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => ConnectError.from(e).code);

async function readAll(it: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of it) n++;
  return n;
}

describe("stream limits behind the other interceptors", () => {
  let server: ServerHandle;
  let limits: StreamLimitInterceptor;
  let inFlight: () => Promise<number>;
  let errors: unknown[];
  beforeAll(async () => {
    ({ server, limits, inFlight, errors } = await setup());
  });
  afterAll(() => server.close({ graceMs: 1000 }));

  /** A client on a connection of its own (HTTP/2 gRPC, or Connect over HTTP/1.1). */
  const clientOf = (protocol: "grpc" | "connect") => {
    const transport =
      protocol === "grpc"
        ? createGrpcTransport({ baseUrl: server.url })
        : createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" });
    const client = createClient(TrackingService, transport);
    return { watch: (what: string, signal?: AbortSignal) => client.watchShipment({ trackingNumber: what }, signal ? { signal } : {}) };
  };

  it.each(["grpc", "connect"] as const)("gives the slot back once when the stream ends, fails, or the caller goes away (%s)", async (protocol) => {
    const client = clientOf(protocol);
    assert.equal(await readAll(client.watch("n:3")), 3);
    assert.deepEqual(limits.held(), { connections: 0, principals: 0 });

    assert.equal(await codeOf(readAll(client.watch("fail"))), Code.Unavailable, "mapped by the database interceptor");
    assert.deepEqual(limits.held(), { connections: 0, principals: 0 });

    // A client stops a stream by aborting the call (leaving the loop does not cancel it).
    const gone = new AbortController();
    const open = client.watch("open", gone.signal)[Symbol.asyncIterator]();
    await open.next();
    assert.deepEqual(limits.held(), { connections: 1, principals: 1 });
    assert.equal(await codeOf(readAll(client.watch("n:1"))), Code.ResourceExhausted, "the cap of one holds while it is open");
    gone.abort();
    assert.equal(await codeOf(open.next()), Code.Canceled);
    await waitFor(() => limits.held().principals === 0, { message: "the slot of the stream the caller left" });
    assert.deepEqual(limits.held(), { connections: 0, principals: 0 });

    // Given back exactly once each time: the cap still admits one call, and only one.
    const again = new AbortController();
    const next = client.watch("open", again.signal)[Symbol.asyncIterator]();
    await next.next();
    assert.equal(await codeOf(readAll(client.watch("n:1"))), Code.ResourceExhausted);
    again.abort();
    await waitFor(() => limits.held().principals === 0, { message: "the slot of the second stream" });
    assert.equal(await readAll(client.watch("n:2")), 2);
    await waitFor(async () => (await inFlight()) === 0, { message: "no call in flight" });
    assert.deepEqual(errors, [], "none of these is an internal error");
  });

  it.each([
    // RST_STREAM CANCEL (ingest's stream-stall.int.test.ts also reads the code off the wire).
    ["grpc", Code.Canceled, /error code CANCEL \(0x8\)/],
    // HTTP/1.1 carries one call per connection: the connection goes.
    ["connect", Code.Aborted, /socket hang up/],
  ] as const)("resets a stream the handler gives up on, and every interceptor sees it end (%s)", async (protocol, code, reason) => {
    const client = clientOf(protocol);
    const reset = client.watch("reset")[Symbol.asyncIterator]();
    // The message yielded before the reset may or may not arrive before it.
    const err = await reset.next().then(
      (first) => (first.done === true ? undefined : reset.next().then(() => undefined, (e: unknown) => ConnectError.from(e))),
      (e: unknown) => ConnectError.from(e),
    );
    assert.match(err?.rawMessage ?? "the stream ended without an error", reason);
    assert.equal(err?.code, code);
    await waitFor(() => limits.held().principals === 0, { message: "the slot of the reset stream" });
    assert.deepEqual(limits.held(), { connections: 0, principals: 0 });
    await waitFor(async () => (await inFlight()) === 0, { message: "no call in flight" });
    assert.equal(await readAll(clientOf(protocol).watch("n:2")), 2, "the next call is served");
    assert.deepEqual(errors, [], "a reset is not an internal error");
  });
});
