import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { connect, headers as natsHeaders } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { context, propagation, ROOT_CONTEXT, trace, TraceFlags } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { Scope } from "@logistics/shared/auth";
import { createEventCatalog } from "@logistics/shared/events";
import { IngestService, ScanOutcome } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import {
  OtlpSpanKind,
  repoRoot,
  spawnManagedProcess,
  startOtlpReceiver,
  uniqueName,
  waitFor,
  type ManagedProcess,
  type OtlpReceiver,
  type OtlpSpan,
} from "@logistics/shared/testing";
import { openScanStream } from "@logistics/ingest/client";
import { STREAM_MESSAGE_SPAN } from "@logistics/ingest";
import { createMeshEnvironment, type MeshEnvironment, type MeshServiceName } from "../src/index.js";
import { shipmentRequest } from "./e2e-mesh.js";

/*
 * What an OpenTelemetry backend gets from the services run as the container image runs them
 * (`node services/<name>/dist/main.js`, no npm in between): spans decoded by an independent
 * OTLP/HTTP receiver (ingest exports protobuf, tracking JSON), and the services' log lines.
 */

const CARRIER = "acme";
const MESSAGES = 40;

/** A W3C span context of a test "gateway" (no SDK in this process: ids are made by hand). */
function gatewaySpan(): { traceId: string; spanId: string; traceparent: string } {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

/** The JSON log lines of a process that carry `msg`. */
function logLines(p: ManagedProcess, msg: string): Array<Record<string, unknown>> {
  return p
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{") && l.includes(msg))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l["msg"] === msg);
}

describe("telemetry as an OTLP backend receives it (services started as the image starts them)", () => {
  let receiver: OtlpReceiver;
  let mesh: MeshEnvironment;
  const procs = new Map<MeshServiceName, ManagedProcess>();
  const urls = new Map<MeshServiceName, string>();
  const metricsUrls = new Map<MeshServiceName, string>();

  const start = async (name: MeshServiceName, extra: Record<string, string>) => {
    const env = await mesh.envFor(name, extra);
    // Only what the container would have: no npm_package_* variables.
    const p = spawnManagedProcess(process.execPath, [`services/${name}/dist/main.js`], { cwd: repoRoot, env: { PATH: process.env["PATH"] ?? "", ...env } });
    procs.set(name, p);
    const url = await waitFor(
      () => {
        const ready = logLines(p, `${name} ready`)[0];
        if (typeof ready?.["metrics"] === "string") metricsUrls.set(name, ready["metrics"]);
        return typeof ready?.["url"] === "string" ? ready["url"] : undefined;
      },
      { timeoutMs: 30_000, signal: p.exitSignal, message: `${name} ready` },
    ).catch((e: unknown) => {
      throw new Error(`${name} did not start:\n${p.output()}`, { cause: e });
    });
    urls.set(name, url);
  };

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    mesh = await createMeshEnvironment({
      idPrefix: "otlp",
      base: {
        LOG_LEVEL: "info",
        SHUTDOWN_GRACE_MS: "2000",
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=test",
      },
    });
    await start("ingest", { OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf", METRICS_EXEMPLARS: "true" });
    await start("tracking", { OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" });
  });

  afterAll(async () => {
    for (const p of procs.values()) await p.stop("SIGTERM", 10_000);
    await mesh?.close();
    await receiver?.close();
    propagation.disable();
    context.disable();
  });

  it("bounds traces per stream message, follows the conventions, names the build, logs dead letters in their trace and links latency buckets to traces", async () => {
    const ingestUrl = urls.get("ingest")!;
    const ingest = createClient(IngestService, createGrpcTransport({ baseUrl: ingestUrl }));
    const { trackingNumber } = await ingest.createShipment(
      shipmentRequest(CARRIER, "otlp-shop"),
      { headers: { authorization: `Bearer ${await mesh.token([Scope.ShipmentsWrite])}` } },
    );

    // A long stream: the call carries the gateway's context; one message carries its own.
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    const call = gatewaySpan();
    const perMessage = gatewaySpan();
    const tracedIndex = 7;
    const stream = openScanStream({
      address: new URL(ingestUrl).host,
      token: await mesh.token([Scope.ScansWrite], { carrier: CARRIER }),
      metadata: { traceparent: call.traceparent },
    });
    const t0 = Date.now() - 60_000;
    try {
      for (let i = 0; i < MESSAGES; i++) {
        const scans = [{ eventId: uniqueName(`otlp-scan-${i}`), trackingNumber, carrierCode: CARRIER, rawStatus: { code: "IT", text: "In transit" }, eventTime: timestampFromDate(new Date(t0 + i * 1000)) }];
        const send = () => stream.send(scans);
        const ctx = trace.setSpanContext(ROOT_CONTEXT, { traceId: perMessage.traceId, spanId: perMessage.spanId, traceFlags: TraceFlags.SAMPLED, isRemote: true });
        const [ack] = i === tracedIndex ? await context.with(ctx, send) : await send();
        assert.equal(ack?.outcome, ScanOutcome.ACCEPTED, ack?.detail);
      }
    } finally {
      await stream.close();
    }

    // A message no consumer can decode, published with a producer's trace context.
    const poison = gatewaySpan();
    const nc = await connect({ servers: mesh.base["NATS_URL"] });
    try {
      const h = natsHeaders();
      h.set("traceparent", poison.traceparent);
      const subject = createEventCatalog(mesh.id).subjects.scanRecorded("global", CARRIER);
      await jetstream(nc).publish(subject, new Uint8Array([0xff, 0xff, 0xff]), { headers: h, msgID: uniqueName("otlp-poison") });
    } finally {
      await nc.close();
    }
    const deadLettered = await waitFor(() => logLines(procs.get("tracking")!, "message dead-lettered")[0], {
      timeoutMs: 20_000,
      message: "tracking dead-letters the poison message",
    });

    // Ingest's latency histograms carry exemplars (METRICS_EXEMPLARS=true), in OpenMetrics.
    const scrape = await fetch(metricsUrls.get("ingest")!);
    assert.match(scrape.headers.get("content-type") ?? "", /^application\/openmetrics-text/);
    const exemplarTraces = [...(await scrape.text()).matchAll(/^logistics_ingest_scan_ack_seconds_bucket\{[^}]*\} \d+ # \{trace_id="([0-9a-f]{32})",span_id="[0-9a-f]{16}"\}/gm)].map((m) => m[1]!);
    assert.ok(exemplarTraces.length > 0, "the scan-ack histogram has exemplars");

    // Stopping the services flushes their span queues.
    await procs.get("ingest")!.stop("SIGTERM", 15_000);
    await procs.get("tracking")!.stop("SIGTERM", 15_000);
    assert.deepEqual(receiver.rejected, [], "every export decodes");
    assert.ok(receiver.requests.protobuf > 0, "ingest exported OTLP/protobuf");
    assert.ok(receiver.requests.json > 0, "tracking exported OTLP/JSON");
    const spans = receiver.spans;
    const inTrace = (traceId: string) => spans.filter((s) => s.traceId === traceId);

    // The call's span: in the gateway's trace, RPC conventions, the build's resource.
    const server = spans.find((s) => s.traceId === call.traceId && s.kind === OtlpSpanKind.SERVER && s.name === "logistics.ingest.v1.IngestService/StreamScans");
    assert.ok(server, `the StreamScans span in the gateway's trace; got ${spans.length} spans`);
    assert.equal(server.parentSpanId, call.spanId);
    assert.equal(server.encoding, "protobuf");
    assert.equal(server.attributes["rpc.system.name"], "grpc");
    assert.equal(server.attributes["rpc.method"], "logistics.ingest.v1.IngestService/StreamScans");
    assert.equal(server.attributes["rpc.status_code"], "OK");
    assert.equal(server.attributes["server.address"], "127.0.0.1");
    assert.equal(server.attributes["server.port"], Number(new URL(ingestUrl).port));
    for (const old of ["rpc.system", "rpc.service", "rpc.grpc.status_code"]) assert.equal(server.attributes[old], undefined, `no ${old}`);
    const ingestVersion = (JSON.parse(readFileSync(join(repoRoot, "services", "ingest", "package.json"), "utf8")) as { version: string }).version;
    assert.equal(server.resource["service.name"], "ingest");
    assert.equal(server.resource["service.version"], ingestVersion, "service.version from the service's package.json, without npm");
    assert.match(String(server.resource["service.instance.id"] ?? ""), /^[0-9a-f-]{36}$/);
    assert.equal(server.resource["deployment.environment.name"], "test");
    assert.deepEqual(
      inTrace(call.traceId).map((s) => s.name),
      ["logistics.ingest.v1.IngestService/StreamScans"],
      "the stream's trace stays one span however many messages it carries",
    );

    // One bounded trace per message, each linked to the call's span.
    const messages = spans.filter((s) => s.name === STREAM_MESSAGE_SPAN);
    assert.equal(messages.length, MESSAGES);
    assert.equal(new Set(messages.map((m) => m.traceId)).size, MESSAGES, "every message has a trace of its own");
    for (const m of messages) {
      assert.ok(m.links.some((l) => l.spanId === server.spanId && l.traceId === call.traceId), "linked to the stream's span");
    }
    const continued = messages.filter((m) => m.traceId === perMessage.traceId);
    assert.equal(continued.length, 1, "the message with its own traceparent continues the gateway's trace of it");
    assert.equal(continued[0]!.parentSpanId, perMessage.spanId);
    assert.equal(messages.filter((m) => m.parentSpanId === "").length, MESSAGES - 1, "the others are roots");
    const messageTraces = new Set(messages.map((m) => m.traceId));
    for (const t of exemplarTraces) assert.ok(messageTraces.has(t), `exemplar trace ${t} is one of the messages' traces`);
    const biggest = Math.max(...messages.map((m) => inTrace(m.traceId).length));
    assert.ok(biggest <= 12, `message traces stay small (largest: ${biggest} spans)`);

    // Each message's publish follows the messaging conventions; tracking's processing joins it.
    const family = `${mesh.id}.scan.recorded`;
    for (const m of messages) {
      const publish = inTrace(m.traceId).find((s) => s.kind === OtlpSpanKind.PRODUCER);
      assert.ok(publish, `a publish in the trace of message ${String(m.attributes["logistics.stream.message"])}`);
      assert.equal(publish.name, `publish ${family}`);
      assert.equal(publish.attributes["messaging.system.name"], "nats");
      assert.equal(publish.attributes["messaging.operation.type"], "send");
      assert.equal(publish.attributes["messaging.system"], undefined);
    }
    const processes = spans.filter((s): s is OtlpSpan => s.kind === OtlpSpanKind.CONSUMER && s.name === `process ${family}`);
    assert.ok(processes.length > 0, "tracking's batch spans");
    assert.equal(processes[0]!.encoding, "json");
    assert.equal(processes[0]!.attributes["messaging.operation.type"], "process");
    const publishIds = new Set(messages.flatMap((m) => inTrace(m.traceId).filter((s) => s.kind === OtlpSpanKind.PRODUCER).map((s) => s.spanId)));
    const reached = new Set(processes.flatMap((p) => [p.parentSpanId, ...p.links.map((l) => l.spanId)]).filter((id) => publishIds.has(id)));
    assert.equal(reached.size, MESSAGES, "every message's publish is the parent of, or linked from, a tracking batch span");

    // The dead-letter line carries the trace of its span, which the backend has.
    assert.equal(deadLettered["trace_id"], poison.traceId, "the dead-letter log line is in the poison message's trace");
    const dlq = spans.find((s) => s.spanId === deadLettered["span_id"]);
    assert.ok(dlq, "the log line's span was exported");
    assert.equal(dlq.traceId, poison.traceId);
    assert.equal(dlq.kind, OtlpSpanKind.PRODUCER);
    assert.match(dlq.name, new RegExp(`^publish ${mesh.id}\\.dlq\\.`));
    const consumerSpan = spans.find((s) => s.spanId === dlq.parentSpanId);
    assert.equal(consumerSpan?.kind, OtlpSpanKind.CONSUMER, "the dead letter is published inside the consumer's span");
    assert.equal(consumerSpan?.parentSpanId, poison.spanId, "which continues the poison message's producer");
  });
});
