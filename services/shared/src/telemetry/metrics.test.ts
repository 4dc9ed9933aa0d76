import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { context, ROOT_CONTEXT, trace, TraceFlags } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  Health,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from "../gen/grpc/health/v1/health_pb.js";
import { createMetrics, createMetricsInterceptor, type Metrics } from "./metrics.js";

const SERVING = create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });

/** A Health service whose `service` field picks the behaviour, behind the metrics interceptor. */
function healthClient(metrics: Metrics) {
  const transport = createRouterTransport(
    (router) =>
      router.service(Health, {
        check(req) {
          if (req.service === "missing") throw new ConnectError("unknown service", Code.NotFound);
          if (req.service === "broken") throw new Error("bug");
          return SERVING;
        },
        async *watch() {
          for (let i = 0; i < 5; i++) yield SERVING;
        },
      }),
    { router: { interceptors: [createMetricsInterceptor(metrics)] } },
  );
  return createClient(Health, transport);
}

async function durationCount(metrics: Metrics, labels: Record<string, string>): Promise<number> {
  const { values } = await metrics.rpcDuration.get();
  const match = values.find(
    (v) =>
      v.metricName?.endsWith("_count") === true &&
      Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want),
  );
  return match?.value ?? 0;
}

describe("createMetrics", () => {
  it("creates independent registries with the prefix, the app label and process metrics", async () => {
    const a = createMetrics({ service: "ingest" });
    const b = createMetrics({ service: "routing", prefix: "test_" });
    assert.notEqual(a.registry, b.registry);
    const textA = await a.registry.metrics();
    const textB = await b.registry.metrics();
    assert.match(textA, /^# TYPE logistics_rpc_server_duration_seconds histogram$/m);
    assert.match(textA, /^# TYPE logistics_rpc_server_in_flight gauge$/m);
    assert.match(textA, /^# TYPE logistics_rpc_server_open_streams gauge$/m);
    assert.match(textB, /^# TYPE test_rpc_server_duration_seconds histogram$/m);
    assert.match(textA, /^process_resident_memory_bytes\{app="ingest"\} \d+/m);
    assert.match(textB, /^process_resident_memory_bytes\{app="routing"\} \d+/m);
  });
});

describe("createMetricsInterceptor", () => {
  it("counts a streaming call in the open-streams gauge while it runs, and unary calls never", async () => {
    const metrics = createMetrics({ service: "unit" });
    const client = healthClient(metrics);
    const open = async () => {
      const { values } = await metrics.rpcOpenStreams.get();
      return values.find((v) => v.labels["method"] === "Watch")?.value ?? 0;
    };
    await client.check({});
    assert.equal((await metrics.rpcOpenStreams.get()).values.filter((v) => v.value !== 0).length, 0);
    const stream = client.watch({})[Symbol.asyncIterator]();
    await stream.next();
    assert.equal(await open(), 1, "one Watch stream open");
    for (let r = await stream.next(); !r.done; r = await stream.next());
    assert.equal(await open(), 0, "closed again when the stream ended");
  });

  it("counts unary calls by service, method and code", async () => {
    const metrics = createMetrics({ service: "unit" });
    const client = healthClient(metrics);
    await client.check({});
    await client.check({});
    await assert.rejects(client.check({ service: "missing" }));
    await assert.rejects(client.check({ service: "broken" }));
    const base = { service: "grpc.health.v1.Health", method: "Check", stream: "false" };
    assert.equal(await durationCount(metrics, { ...base, code: "ok" }), 2);
    assert.equal(await durationCount(metrics, { ...base, code: "not_found" }), 1);
    assert.equal(await durationCount(metrics, { ...base, code: "internal" }), 1);
  });

  it("measures a stream to its end, and one abandoned by the client as canceled", async () => {
    const metrics = createMetrics({ service: "unit" });
    const client = healthClient(metrics);
    const base = { service: "grpc.health.v1.Health", method: "Watch", stream: "true" };
    let n = 0;
    for await (const _ of client.watch({})) n++;
    assert.equal(n, 5);
    assert.equal(await durationCount(metrics, { ...base, code: "ok" }), 1);

    const controller = new AbortController();
    await assert.rejects(async () => {
      for await (const _ of client.watch({}, { signal: controller.signal })) controller.abort();
    });
    const inFlight = await metrics.rpcInFlight.get();
    assert.equal(inFlight.values.find((v) => v.labels.method === "Watch")?.value, 0, "nothing left in flight");
    assert.equal(await durationCount(metrics, { ...base, code: "canceled" }), 1);
  });
});

describe("exemplars", () => {
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const spanId = "00f067aa0ba902b7";
  const inSpan = async <T>(flags: number, fn: () => Promise<T>): Promise<T> => {
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    try {
      return await context.with(trace.setSpan(ROOT_CONTEXT, trace.wrapSpanContext({ traceId, spanId, traceFlags: flags })), fn);
    } finally {
      context.disable();
    }
  };

  it("puts the active sampled span's ids on the RPC histogram bucket, served as OpenMetrics", async () => {
    const metrics = createMetrics({ service: "exemplar-test", exemplars: true });
    assert.match(metrics.registry.contentType, /^application\/openmetrics-text/);
    await inSpan(TraceFlags.SAMPLED, () => healthClient(metrics).check({}));
    const text = await metrics.registry.metrics();
    const bucket = text.split("\n").find((l) => l.startsWith("logistics_rpc_server_duration_seconds_bucket") && l.includes(" # {"));
    assert.ok(bucket, `a bucket with an exemplar:\n${text}`);
    assert.match(bucket, new RegExp(`# \\{trace_id="${traceId}",span_id="${spanId}"\\} `));
  });

  it("records no exemplar outside a sampled span, and none at all by default", async () => {
    const metrics = createMetrics({ service: "exemplar-test", exemplars: true });
    await inSpan(TraceFlags.NONE, () => healthClient(metrics).check({}));
    assert.doesNotMatch(await metrics.registry.metrics(), /trace_id=/);
    const plain = createMetrics({ service: "exemplar-test" });
    assert.match(plain.registry.contentType, /^text\/plain/);
    await inSpan(TraceFlags.SAMPLED, () => healthClient(plain).check({}));
    assert.doesNotMatch(await plain.registry.metrics(), /trace_id=/);
  });
});
