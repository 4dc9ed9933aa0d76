import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { SpanKind } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace";
import { ScanOutcome } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { startTelemetry, type TelemetryHandle } from "@logistics/shared/telemetry";
import { waitFor } from "@logistics/shared/testing";
import { STREAM_MESSAGE_SPAN } from "../src/ingest-handlers.js";
import { bearer, openScanCall, scanMessage, startIngestHarness, streamAll, submitScans, validScan, type IngestHarness } from "./ingest-harness.js";

const MESSAGES = 20;

describe("tracing of StreamScans messages of one scan each (real nats-server, spans in memory)", () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: TelemetryHandle;
  let h: IngestHarness;

  beforeAll(async () => {
    telemetry = startTelemetry({ serviceName: "ingest", spanExporter: exporter });
    h = await startIngestHarness({ INGEST_RATE_PER_SEC: "1000000", INGEST_RATE_BURST: "1000000" });
    await h.createShipments("acme");
  });
  afterAll(async () => {
    await h?.close();
    await telemetry?.shutdown();
  });

  it("records each message's batch on the message span, publishes under it, and puts that publish's context in the stored event", async () => {
    exporter.reset();
    const scans = Array.from({ length: MESSAGES }, (_, i) => validScan("acme", `trace-${i}`));
    const run = await streamAll(openScanCall(h.grpcClient(), bearer(await h.token({ carrier: "acme" }))), scans.map((s) => scanMessage([s])), MESSAGES);
    assert.ok(run.responses.flatMap((r) => r.acks).every((a) => a.outcome === ScanOutcome.ACCEPTED));

    const spans = await waitFor(
      () => {
        const all = exporter.getFinishedSpans();
        return all.filter((s) => s.name === STREAM_MESSAGE_SPAN).length === MESSAGES ? all : undefined;
      },
      { timeoutMs: 10_000, message: "every message span ended" },
    );
    const messages = spans.filter((s) => s.name === STREAM_MESSAGE_SPAN);
    // Each message span is handled in the call's context, so it links to the call's span (which
    // ends with the stream, OK).
    const call = await waitFor(
      () => exporter.getFinishedSpans().find((s) => s.kind === SpanKind.SERVER && s.name === "logistics.ingest.v1.IngestService/StreamScans"),
      { timeoutMs: 10_000, message: "the call's span ended" },
    );
    assert.equal(call.attributes["rpc.status_code"], "OK");
    for (const m of messages) {
      assert.ok(m.links.some((l) => l.context.spanId === call.spanContext().spanId), "a message span links to the call's span");
    }
    const producers = new Map<string, ReadableSpan>();
    for (const m of messages) {
      assert.equal(m.attributes["logistics.scan.count"], 1);
      assert.equal(m.attributes["logistics.scan.accepted"], 1, "the message span carries the batch's outcome");
      const inTrace = spans.filter((s) => s.spanContext().traceId === m.spanContext().traceId);
      assert.deepEqual(inTrace.filter((s) => s.name === "ingest scans"), [], "no child span repeats the message's batch");
      const publish = inTrace.find((s) => s.kind === SpanKind.PRODUCER);
      assert.ok(publish, "the publish is in the message's trace");
      assert.equal(publish.parentSpanContext?.spanId, m.spanContext().spanId, "the publish is a child of the message span");
      producers.set(publish.spanContext().traceId, publish);
    }

    // The stored events carry their own message's publish context (what consumers continue).
    const nc = await connect({ servers: h.nats.url });
    try {
      const consumer = await jetstream(nc).consumers.get(h.subjects.streams.scans.name);
      const messages = await consumer.consume({ max_messages: MESSAGES });
      let seen = 0;
      for await (const msg of messages) {
        const [, traceId, spanId] = (msg.headers?.get("traceparent") ?? "").split("-");
        const publish = producers.get(traceId ?? "");
        assert.ok(publish, `the event's trace ${traceId} is one message's trace`);
        assert.equal(spanId, publish.spanContext().spanId, "its parent is that message's publish span");
        if (++seen === MESSAGES) break;
      }
    } finally {
      await nc.close();
    }
  });

  it("keeps a span 'ingest scans' per SubmitScans batch, under the RPC's span", async () => {
    exporter.reset();
    const res = await submitScans(h.grpcClient(), bearer(await h.token({ carrier: "acme" })), [validScan("acme", "trace-submit")]);
    assert.equal(res.acks[0]?.outcome, ScanOutcome.ACCEPTED);
    const batch = await waitFor(() => exporter.getFinishedSpans().find((s) => s.name === "ingest scans"), {
      timeoutMs: 10_000,
      message: "the batch span ended",
    });
    assert.equal(batch.attributes["logistics.scan.accepted"], 1);
    const publish = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.PRODUCER && s.spanContext().traceId === batch.spanContext().traceId);
    assert.equal(publish?.parentSpanContext?.spanId, batch.spanContext().spanId);
  });
});
