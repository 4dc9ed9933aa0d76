import * as assert from "node:assert/strict";
import { afterAll, afterEach, beforeAll, beforeEach, describe, it } from "vitest";
import { create, createFileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { FileDescriptorProtoSchema, file_google_protobuf_wrappers, StringValueSchema } from "@bufbuild/protobuf/wkt";
import type { StringValue } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type ConnectRouter, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { context, propagation, SpanKind, SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace";
import {
  createClientTracingInterceptor,
  createMetrics,
  createMetricsInterceptor,
  createServerTracingInterceptor,
  headersCarrier,
  injectIntoGrpcMetadata,
  startMetricsServer,
  startTelemetry,
  type Metrics,
  type TelemetryHandle,
  setSemconvStabilityOptIn,
} from "../src/telemetry/index.js";
import { waitFor } from "../src/testing/wait-for.js";
import { startTestConnectServer, type TestConnectServer } from "../src/testing/connect-server.js";

// ---- a test service built at runtime from a descriptor, with StringValue in and out ----

type Unary = { methodKind: "unary"; input: typeof StringValueSchema; output: typeof StringValueSchema };
type TestService = GenService<{
  echo: Unary;
  count: { methodKind: "server_streaming"; input: typeof StringValueSchema; output: typeof StringValueSchema };
}>;

const SERVICE_NAME = "tracetest.v1.TraceTestService";

function buildTestService(): TestService {
  const sv = ".google.protobuf.StringValue";
  const file = create(FileDescriptorProtoSchema, {
    name: "tracetest/v1/trace_test.proto",
    package: "tracetest.v1",
    syntax: "proto3",
    dependency: ["google/protobuf/wrappers.proto"],
    service: [
      {
        name: "TraceTestService",
        method: [
          { name: "Echo", inputType: sv, outputType: sv },
          { name: "Count", inputType: sv, outputType: sv, serverStreaming: true },
        ],
      },
    ],
  });
  const registry = createFileRegistry(file, (name) =>
    name === file_google_protobuf_wrappers.proto.name ? file_google_protobuf_wrappers : undefined,
  );
  const service = registry.getService(SERVICE_NAME);
  if (service === undefined) throw new Error("test service descriptor not built");
  return service as TestService;
}

const service = buildTestService();

function sv(value: string): StringValue {
  return create(StringValueSchema, { value });
}

/** "traceId/spanId" of the span active where it is called, or "none". */
function activeIds(): string {
  const sc = trace.getActiveSpan()?.spanContext();
  return sc === undefined ? "none" : `${sc.traceId}/${sc.spanId}`;
}

/** A promise the test resolves to let a streaming handler go on. */
function gate(): { readonly opened: Promise<void>; open(): void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

/** What the streaming handler observed, for the current test. */
interface StreamProbe {
  readonly beforeLast: ReturnType<typeof gate>;
  span?: Span;
  recordingWhenHandlerFinished?: boolean;
}
let probe: StreamProbe = { beforeLast: gate() };

function routes(router: ConnectRouter): void {
  router.service(service, {
    echo(req) {
      if (req.value === "not-found") throw new ConnectError("no such parcel", Code.NotFound);
      if (req.value === "boom") throw new Error("database exploded");
      return sv(activeIds());
    },
    // Yields the active ids, waits for the test, yields "last" (or fails when asked to).
    async *count(req) {
      const p = probe;
      p.span = trace.getActiveSpan();
      try {
        yield sv(activeIds());
        await p.beforeLast.opened;
        if (req.value === "fail") throw new ConnectError("hub offline", Code.Unavailable);
        yield sv("last");
      } finally {
        p.recordingWhenHandlerFinished = p.span?.isRecording();
      }
    },
  });
}

// ---- server and clients over real HTTP/2 sockets ----

type RunningServer = TestConnectServer;

function startServer(interceptors: Interceptor[]): Promise<RunningServer> {
  return startTestConnectServer(routes, interceptors);
}

type Client = ReturnType<typeof createClient<TestService>>;

interface Clients {
  /** Connect protocol, no client interceptor: the test sets trace headers itself. */
  readonly connect: Client;
  /** gRPC protocol, no client interceptor. */
  readonly grpc: Client;
  /** Connect protocol with the client tracing interceptor. */
  readonly traced: Client;
  /** gRPC protocol with the client tracing interceptor. */
  readonly tracedGrpc: Client;
  close(): void;
}

function connectClients(baseUrl: string): Clients {
  const managers = [0, 1, 2, 3].map(() => new Http2SessionManager(baseUrl));
  const transports: Transport[] = [
    createConnectTransport({ baseUrl, httpVersion: "2", sessionManager: managers[0]! }),
    createGrpcTransport({ baseUrl, sessionManager: managers[1]! }),
    createConnectTransport({
      baseUrl,
      httpVersion: "2",
      sessionManager: managers[2]!,
      interceptors: [createClientTracingInterceptor()],
    }),
    createGrpcTransport({ baseUrl, sessionManager: managers[3]!, interceptors: [createClientTracingInterceptor()] }),
  ];
  return {
    connect: createClient(service, transports[0]!),
    grpc: createClient(service, transports[1]!),
    traced: createClient(service, transports[2]!),
    tracedGrpc: createClient(service, transports[3]!),
    close: () => {
      for (const m of managers) m.abort();
    },
  };
}

async function expectCode(call: Promise<unknown>, code: Code): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    const ce = ConnectError.from(err);
    assert.equal(Code[ce.code], Code[code], `expected ${Code[code]}, got ${Code[ce.code]}: ${ce.rawMessage}`);
    return ce;
  }
  assert.fail(`expected the call to fail with ${Code[code]}`);
}

/** Trace headers carrying `span`'s context, as a client in another process would send them. */
function traceHeaders(span: Span): Headers {
  const headers = new Headers();
  propagation.inject(trace.setSpan(context.active(), span), headers, headersCarrier);
  return headers;
}

/**
 * The value of the sample `name` whose labels include `labels` in a Prometheus text exposition
 * (label order is not significant).
 */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const found = new Map([...(m[2] ?? "").matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => found.get(k) === v)) return Number(m[3]);
  }
  return undefined;
}

// ---- tests ----

const exporter = new InMemorySpanExporter();
let telemetry: TelemetryHandle;
let server: RunningServer;
let clients: Clients;
let metrics: Metrics;

function finished(name: string, kind: SpanKind): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.name === name && s.kind === kind);
}

/** Waits for exactly one finished span of that name and kind. */
async function oneSpan(method: string, kind: SpanKind = SpanKind.SERVER): Promise<ReadableSpan> {
  const name = `${SERVICE_NAME}/${method}`;
  await waitFor(() => finished(name, kind).length > 0, { timeoutMs: 5_000, message: `${SpanKind[kind]} span ${name}` });
  const spans = finished(name, kind);
  assert.equal(spans.length, 1, `one ${SpanKind[kind]} span ${name}`);
  return spans[0]!;
}

beforeAll(async () => {
  telemetry = startTelemetry({ serviceName: "telemetry-rpc-test", serviceVersion: "1.2.3", spanExporter: exporter });
  metrics = createMetrics({ service: "telemetry-rpc-test" });
  server = await startServer([createServerTracingInterceptor(), createMetricsInterceptor(metrics)]);
  clients = connectClients(server.baseUrl);
});

afterAll(async () => {
  clients?.close();
  await server?.close();
  await telemetry?.shutdown();
  // shutdown() unregisters the globals; make sure, so nothing leaks into other suites.
  trace.disable();
  context.disable();
  propagation.disable();
});

beforeEach(() => {
  exporter.reset();
  probe = { beforeLast: gate() };
});

describe("createServerTracingInterceptor", () => {
  const tracer = () => trace.getTracer("telemetry-rpc-test");

  it("continues the caller's trace on a unary call, with RPC attributes, active in the handler", async () => {
    const caller = tracer().startSpan("caller");
    const res = await clients.connect.echo(sv("hi"), { headers: traceHeaders(caller) });
    caller.end();

    const span = await oneSpan("Echo");
    assert.equal(span.spanContext().traceId, caller.spanContext().traceId);
    assert.equal(span.parentSpanContext?.spanId, caller.spanContext().spanId);
    assert.equal(span.parentSpanContext?.isRemote, true);
    const { port } = new URL(server.baseUrl);
    assert.deepEqual(span.attributes, {
      "rpc.system.name": "connectrpc",
      "rpc.method": `${SERVICE_NAME}/Echo`,
      "server.address": "127.0.0.1",
      "server.port": Number(port),
      "rpc.status_code": "ok",
    });
    assert.equal(span.status.code, SpanStatusCode.UNSET);
    assert.equal(res.value, `${span.spanContext().traceId}/${span.spanContext().spanId}`, "handler ran inside the server span");
    assert.equal(span.resource.attributes["service.name"], "telemetry-rpc-test");
    assert.equal(span.resource.attributes["service.version"], "1.2.3");
  });

  it("starts a new trace when the call carries no trace context", async () => {
    const res = await clients.connect.echo(sv("hi"));
    const span = await oneSpan("Echo");
    assert.equal(span.parentSpanContext, undefined);
    assert.match(span.spanContext().traceId, /^[0-9a-f]{32}$/);
    assert.equal(res.value, `${span.spanContext().traceId}/${span.spanContext().spanId}`);
  });

  it("ends a server-streaming span after the last message, not when the handler returns the stream", async () => {
    const caller = tracer().startSpan("caller");
    const received: string[] = [];
    for await (const m of clients.grpc.count(sv("go"), { headers: traceHeaders(caller) })) {
      received.push(m.value);
      if (received.length === 1) {
        assert.equal(probe.span?.isRecording(), true, "server span still open while the stream is");
        assert.equal(finished(`${SERVICE_NAME}/Count`, SpanKind.SERVER).length, 0);
        probe.beforeLast.open();
      }
    }
    caller.end();

    const span = await oneSpan("Count");
    assert.equal(probe.recordingWhenHandlerFinished, true, "span was open until the handler's body finished");
    assert.equal(received.at(-1), "last");
    assert.equal(received[0], `${span.spanContext().traceId}/${span.spanContext().spanId}`, "stream body ran inside the span");
    assert.equal(span.spanContext().traceId, caller.spanContext().traceId);
    assert.equal(span.parentSpanContext?.spanId, caller.spanContext().spanId);
    assert.equal(span.attributes["rpc.system.name"], "grpc");
    assert.equal(span.attributes["rpc.method"], `${SERVICE_NAME}/Count`);
    assert.equal(span.attributes["rpc.status_code"], "OK");
    assert.equal(span.attributes["error.type"], undefined);
  });

  it("marks a call failing with NotFound as an error with its code", async () => {
    await expectCode(clients.connect.echo(sv("not-found")), Code.NotFound);
    const span = await oneSpan("Echo");
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.equal(span.status.message, "no such parcel");
    assert.equal(span.attributes["rpc.status_code"], "not_found");
    assert.equal(span.attributes["error.type"], "not_found");
    assert.equal(span.attributes["rpc.connect_rpc.error_code"], undefined, "old names only with OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup");
    assert.equal(span.events.length, 0, "an expected error is not recorded as an exception");
  });

  it("records an unexpected error as Internal with an exception event", async () => {
    await expectCode(clients.grpc.echo(sv("boom")), Code.Internal);
    const span = await oneSpan("Echo");
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.equal(span.attributes["rpc.status_code"], "INTERNAL", "gRPC calls carry gRPC's status name");
    assert.equal(span.attributes["error.type"], "INTERNAL");
    const exception = span.events.find((e) => e.name === "exception");
    assert.equal(exception?.attributes?.["exception.message"], "database exploded");
  });

  it("marks a stream failing after its first message with the error's code", async () => {
    const received: string[] = [];
    const failed = expectCode(
      (async () => {
        for await (const m of clients.connect.count(sv("fail"))) {
          received.push(m.value);
          probe.beforeLast.open();
        }
      })(),
      Code.Unavailable,
    );
    await failed;
    assert.equal(received.length, 1);
    const span = await oneSpan("Count");
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.equal(span.status.message, "hub offline");
    assert.equal(span.attributes["rpc.status_code"], "unavailable");
  });
});

describe("OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup", () => {
  afterEach(() => setSemconvStabilityOptIn(undefined));

  it("adds the old RPC attribute names next to the stable ones", async () => {
    setSemconvStabilityOptIn("http, rpc/dup");
    await expectCode(clients.connect.echo(sv("not-found")), Code.NotFound);
    const span = await oneSpan("Echo");
    assert.equal(span.attributes["rpc.system.name"], "connectrpc");
    assert.equal(span.attributes["rpc.status_code"], "not_found");
    assert.equal(span.attributes["rpc.system"], "connect_rpc");
    assert.equal(span.attributes["rpc.service"], SERVICE_NAME);
    assert.equal(span.attributes["rpc.method"], `${SERVICE_NAME}/Echo`, "where old and stable names collide, the stable value wins");
    assert.equal(span.attributes["rpc.grpc.status_code"], Code.NotFound);
    assert.equal(span.attributes["rpc.connect_rpc.error_code"], "not_found");
  });
});

describe("createClientTracingInterceptor", () => {
  it("sends the client span's context so the server span is its child", async () => {
    const parent = trace.getTracer("telemetry-rpc-test").startSpan("parent");
    await context.with(trace.setSpan(context.active(), parent), () => clients.traced.echo(sv("hi")));
    parent.end();

    const clientSpan = await oneSpan("Echo", SpanKind.CLIENT);
    const serverSpan = await oneSpan("Echo", SpanKind.SERVER);
    assert.equal(clientSpan.parentSpanContext?.spanId, parent.spanContext().spanId);
    assert.equal(serverSpan.parentSpanContext?.spanId, clientSpan.spanContext().spanId);
    assert.equal(serverSpan.spanContext().traceId, parent.spanContext().traceId);
    assert.equal(clientSpan.attributes["rpc.system.name"], "connectrpc");
    assert.equal(clientSpan.attributes["rpc.method"], `${SERVICE_NAME}/Echo`);
    assert.equal(clientSpan.attributes["rpc.status_code"], "ok");
    assert.equal(clientSpan.attributes["server.address"], "127.0.0.1");
    assert.equal(clientSpan.attributes["server.port"], Number(new URL(server.baseUrl).port));
  });

  it("ends a streaming call's client span when the response stream is consumed", async () => {
    const stream = clients.tracedGrpc.count(sv("go"));
    const received: string[] = [];
    for await (const m of stream) {
      received.push(m.value);
      if (received.length === 1) {
        assert.equal(finished(`${SERVICE_NAME}/Count`, SpanKind.CLIENT).length, 0, "client span open mid-stream");
        probe.beforeLast.open();
      }
    }
    const clientSpan = await oneSpan("Count", SpanKind.CLIENT);
    const serverSpan = await oneSpan("Count", SpanKind.SERVER);
    assert.equal(serverSpan.parentSpanContext?.spanId, clientSpan.spanContext().spanId);
    assert.equal(clientSpan.attributes["rpc.system.name"], "grpc");
    assert.equal(clientSpan.attributes["rpc.status_code"], "OK");
  });

  it("marks a failed call's client span as an error with the code", async () => {
    await expectCode(clients.traced.echo(sv("not-found")), Code.NotFound);
    const clientSpan = await oneSpan("Echo", SpanKind.CLIENT);
    assert.equal(clientSpan.status.code, SpanStatusCode.ERROR);
    assert.equal(clientSpan.attributes["rpc.status_code"], "not_found");
  });
});

describe("injectIntoGrpcMetadata", () => {
  it("lets a @grpc/grpc-js client continue its trace on the server", async () => {
    const client = new grpc.Client(server.baseUrl.replace("http://", ""), grpc.credentials.createInsecure());
    try {
      const caller = trace.getTracer("telemetry-rpc-test").startSpan("gateway");
      const metadata = injectIntoGrpcMetadata(new grpc.Metadata(), trace.setSpan(context.active(), caller));
      assert.match(String(metadata.get("traceparent")[0]), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      const res = await new Promise<StringValue>((resolve, reject) => {
        client.makeUnaryRequest(
          `/${SERVICE_NAME}/Echo`,
          (v: StringValue) => Buffer.from(toBinary(StringValueSchema, v)),
          (b: Buffer) => fromBinary(StringValueSchema, b),
          sv("from grpc-js"),
          metadata,
          (err, value) => (err ? reject(err) : value ? resolve(value) : reject(new Error("no response"))),
        );
      });
      caller.end();

      const span = await oneSpan("Echo");
      assert.equal(span.parentSpanContext?.spanId, caller.spanContext().spanId);
      assert.equal(span.spanContext().traceId, caller.spanContext().traceId);
      assert.equal(span.attributes["rpc.system.name"], "grpc");
      assert.equal(res.value, `${span.spanContext().traceId}/${span.spanContext().spanId}`);
    } finally {
      client.close();
    }
  });

  it("writes nothing when no span is active", () => {
    const metadata = injectIntoGrpcMetadata(new grpc.Metadata());
    assert.deepEqual(metadata.get("traceparent"), []);
  });
});

describe("createMetricsInterceptor", () => {
  it("serves the RPC histogram on /metrics after a traced RPC", async () => {
    const metricsServer = await startMetricsServer({ registry: metrics.registry, port: 0, host: "127.0.0.1" });
    try {
      await clients.connect.echo(sv("hi"));
      await expectCode(clients.connect.echo(sv("not-found")), Code.NotFound);
      const res = await fetch(metricsServer.url);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      assert.match(text, /# TYPE logistics_rpc_server_duration_seconds histogram/);
      const echoes = { service: SERVICE_NAME, method: "Echo", stream: "false", app: "telemetry-rpc-test" };
      const count = (code: string) => sample(text, "logistics_rpc_server_duration_seconds_count", { ...echoes, code }) ?? 0;
      assert.ok(count("ok") >= 1, `an ok Echo is counted:\n${text}`);
      assert.ok(count("not_found") >= 1, "a not_found Echo is counted");
      assert.notEqual(sample(text, "process_cpu_user_seconds_total", { app: "telemetry-rpc-test" }), undefined, "process metrics");
    } finally {
      await metricsServer.close();
    }
  });

  it("measures a server stream until its end, labelled as a stream, and tracks it in flight meanwhile", async () => {
    const labels = { service: SERVICE_NAME, method: "Count" };
    const inFlight = async () =>
      (await metrics.rpcInFlight.get()).values.find((v) => v.labels.service === SERVICE_NAME && v.labels.method === "Count")
        ?.value ?? 0;
    const streamCount = async () =>
      (await metrics.rpcDuration.get()).values.find(
        (v) =>
          v.metricName === "logistics_rpc_server_duration_seconds_count" &&
          v.labels.method === labels.method &&
          v.labels.code === "ok" &&
          v.labels.stream === "true",
      )?.value ?? 0;
    const before = await streamCount();

    for await (const m of clients.grpc.count(sv("go"))) {
      if (m.value !== "last") {
        assert.equal(await inFlight(), 1, "the open stream is in flight");
        assert.equal(await streamCount(), before, "not measured before it ends");
        probe.beforeLast.open();
      }
    }
    await waitFor(async () => (await streamCount()) === before + 1, { timeoutMs: 5_000, message: "stream measured" });
    assert.equal(await inFlight(), 0);
  });
});
