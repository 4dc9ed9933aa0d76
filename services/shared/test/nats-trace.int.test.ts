import { strict as assert } from "node:assert";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { StringValueSchema } from "@bufbuild/protobuf/wkt";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { context, propagation, SpanKind, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { connectNats, jetstreamFor } from "../src/nats/connect.js";
import { startConsumer, type ConsumerHandle } from "../src/nats/consumer.js";
import { createEventPublisher } from "../src/nats/publisher.js";
import { ensureConsumer, ensureStreams } from "../src/nats/streams.js";
import { createSubjects, subjectFamily } from "../src/nats/subjects.js";
import { extractTraceContext, injectTraceContext } from "../src/nats/trace-headers.js";
import { createLogger } from "../src/telemetry/logger.js";
import { startNatsServer, type NatsServerHandle } from "../src/testing/nats-server.js";
import { uniqueName } from "../src/testing/unique.js";
import { waitFor } from "../src/testing/wait-for.js";

describe("trace context over NATS headers", () => {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let consumer: ConsumerHandle | undefined;

  beforeAll(async () => {
    assert.ok(trace.setGlobalTracerProvider(provider), "no other tracer provider registered");
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    server = await startNatsServer();
    nc = await connectNats({ servers: server.url, name: "nats-trace-test" });
    ({ js, jsm } = await jetstreamFor(nc));
  });
  afterAll(async () => {
    await consumer?.close();
    await nc?.drain();
    await server?.stop();
    await provider.shutdown();
    trace.disable();
    propagation.disable();
    context.disable();
  });

  it("round-trips a span context through NATS headers", () => {
    const tracer = trace.getTracer("test");
    const span = tracer.startSpan("outer");
    const h = headers();
    injectTraceContext(h, trace.setSpan(context.active(), span));
    assert.match(h.get("traceparent"), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const extracted = trace.getSpanContext(extractTraceContext(h));
    assert.equal(extracted?.traceId, span.spanContext().traceId);
    assert.equal(extracted?.spanId, span.spanContext().spanId);
    assert.equal(extracted?.isRemote, true);
    assert.equal(trace.getSpanContext(extractTraceContext(undefined)), undefined);
    span.end();
  });

  it("puts the consumer span in the publisher's trace, linked to the producer span", async () => {
    exporter.reset();
    const s = createSubjects(uniqueName("t"));
    await ensureStreams(jsm, [s.streams.scans]);
    await ensureConsumer(jsm, s.streams.scans.name, { durable: "tracking" });
    const publisher = createEventPublisher({ js });
    const subject = s.scanRecorded("eu", "DHL");

    const seenInHandler: Array<{ traceId?: string; spanId?: string }> = [];
    consumer = await startConsumer({
      js,
      stream: s.streams.scans.name,
      durable: "tracking",
      schema: StringValueSchema,
      handler: async () => {
        const active = trace.getActiveSpan()?.spanContext();
        seenInHandler.push({ traceId: active?.traceId, spanId: active?.spanId });
      },
    });

    const tracer = trace.getTracer("test");
    const rootTraceId = await tracer.startActiveSpan("ingest request", async (root) => {
      await publisher.publish(subject, StringValueSchema, create(StringValueSchema, { value: "scan" }), { msgId: "e1" });
      root.end();
      return root.spanContext().traceId;
    });

    const family = subjectFamily(subject);
    const spans = await waitFor(() => {
      const all = exporter.getFinishedSpans();
      const producer = all.find((x) => x.name === `publish ${family}`);
      const consumerSpan = all.find((x) => x.name === `process ${family}`);
      return producer && consumerSpan ? { producer, consumerSpan } : undefined;
    }, { message: "producer and consumer spans exported" });

    const { producer, consumerSpan } = spans;
    assert.equal(producer.kind, SpanKind.PRODUCER);
    assert.equal(producer.spanContext().traceId, rootTraceId);
    assert.equal(producer.attributes["messaging.system.name"], "nats");
    assert.equal(producer.attributes["messaging.system"], undefined, "the old name only with OTEL_SEMCONV_STABILITY_OPT_IN=messaging/dup");
    assert.equal(producer.attributes["messaging.destination.name"], subject);
    assert.equal(producer.attributes["messaging.message.id"], "e1");

    assert.equal(consumerSpan.kind, SpanKind.CONSUMER);
    assert.equal(consumerSpan.spanContext().traceId, rootTraceId);
    assert.equal(consumerSpan.parentSpanContext?.spanId, producer.spanContext().spanId);
    assert.deepEqual(
      consumerSpan.links.map((l) => l.context.spanId),
      [producer.spanContext().spanId],
    );
    assert.equal(consumerSpan.attributes["messaging.destination.subscription.name"], "tracking");
    assert.equal(consumerSpan.attributes["logistics.outcome"], "ack");

    assert.deepEqual(seenInHandler, [{ traceId: rootTraceId, spanId: consumerSpan.spanContext().spanId }]);
  });

  it("writes the retry and dead-letter log lines inside the message's spans", async () => {
    exporter.reset();
    await consumer?.close();
    consumer = undefined;
    const s = createSubjects(uniqueName("t"));
    await ensureStreams(jsm, [s.streams.scans, s.streams.deadLetters]);
    await ensureConsumer(jsm, s.streams.scans.name, { durable: "tracking", maxDeliver: 2 });
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger({ service: "nats-trace-test", level: "warn", destination: { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) } });
    const failing = await startConsumer({
      js,
      stream: s.streams.scans.name,
      durable: "tracking",
      schema: StringValueSchema,
      deadLetter: { subject: s.deadLetter("tracking") },
      retryDelayMs: () => 10,
      logger: log,
      handler: async () => {
        throw new Error("store down");
      },
    });
    try {
      const rootTraceId = await trace.getTracer("test").startActiveSpan("ingest request", async (root) => {
        await createEventPublisher({ js }).publish(s.scanRecorded("eu", "DHL"), StringValueSchema, create(StringValueSchema, { value: "scan" }), { msgId: "r1" });
        root.end();
        return root.spanContext().traceId;
      });
      const dead = await waitFor(() => lines.find((l) => l["msg"] === "message dead-lettered"), { message: "dead-letter log line" });
      const retry = lines.find((l) => l["msg"] === "handler failed; will retry");
      assert.ok(retry, "the first failure is logged as a retry");
      const spans = exporter.getFinishedSpans();
      const processSpans = spans.filter((x) => x.kind === SpanKind.CONSUMER);
      assert.equal(retry["trace_id"], rootTraceId, "the retry line is in the publisher's trace");
      assert.ok(processSpans.some((x) => x.spanContext().spanId === retry["span_id"]), "on the delivery's process span");
      assert.equal(dead["trace_id"], rootTraceId);
      const dlq = await waitFor(() => exporter.getFinishedSpans().find((x) => x.spanContext().spanId === dead["span_id"]), { message: "the dead-letter span" });
      assert.equal(dlq.kind, SpanKind.PRODUCER);
      assert.equal(dlq.name, `publish ${subjectFamily(s.deadLetter("tracking"))}`);
      assert.ok(processSpans.some((x) => x.spanContext().spanId === dlq.parentSpanContext?.spanId), "published inside the last delivery's process span");
    } finally {
      await failing.close();
    }
  });
});
