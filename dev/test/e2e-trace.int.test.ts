import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { propagation, ROOT_CONTEXT, SpanKind, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace";
import { Scope } from "@logistics/shared/auth";
import { ScanOutcome } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import {
  NotificationEventType,
  NotificationService,
} from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { startTelemetry, type TelemetryHandle } from "@logistics/shared/telemetry";
import { repoRoot, uniqueName, waitFor } from "@logistics/shared/testing";
import { openScanStream } from "@logistics/ingest/client";
import { STREAM_MESSAGE_SPAN } from "@logistics/ingest";
import { createTrackedShipment, startE2eMesh, type E2eMesh, type MeshServiceName } from "./e2e-mesh.js";

const CARRIER = "acme";

/** One hop of a scan's journey and how to recognise its span. */
interface Hop {
  readonly name: string;
  /** The service that must be running for this hop to exist. */
  readonly needs: MeshServiceName;
  readonly match: (s: ReadableSpan) => boolean;
}

const attr = (s: ReadableSpan, k: string) => s.attributes[k];
const dest = (s: ReadableSpan) => String(attr(s, "messaging.destination.name") ?? "");
const group = (s: ReadableSpan) => String(attr(s, "messaging.consumer.group.name") ?? "");

/** The hops of one scan's trace: the trace of its StreamScans message, linked to the call's span. */
const HOPS: readonly Hop[] = [
  {
    name: "ingest handles the stream message",
    needs: "ingest",
    match: (s) => s.name === STREAM_MESSAGE_SPAN,
  },
  {
    name: "JetStream publish of the scan event",
    needs: "ingest",
    match: (s) => s.kind === SpanKind.PRODUCER && /^publish \S+\.scan\.recorded$/.test(s.name) && dest(s).includes(".scan.recorded."),
  },
  {
    name: "tracking projector processes the scan",
    needs: "tracking",
    match: (s) => s.kind === SpanKind.CONSUMER && dest(s).includes(".scan.recorded.") && group(s).startsWith("tracking"),
  },
  {
    name: "tracking publishes status changed",
    needs: "tracking",
    match: (s) => s.kind === SpanKind.PRODUCER && dest(s).includes(".status.changed."),
  },
  {
    name: "notification consumes status changed",
    needs: "notification",
    match: (s) => s.kind === SpanKind.CONSUMER && dest(s).includes(".status.changed."),
  },
  {
    name: "notification delivers the webhook",
    needs: "notification",
    match: (s) => s.kind === SpanKind.CLIENT && s.name === "POST" && attr(s, "http.request.method") === "POST",
  },
];

describe("observability across the whole mesh", () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: TelemetryHandle;
  let mesh: E2eMesh;
  let hook: Server;
  let hookUrl: string;
  const received: Array<{ headers: IncomingHttpHeaders; body: string }> = [];

  beforeAll(async () => {
    telemetry = startTelemetry({ serviceName: "e2e-trace", spanExporter: exporter });
    hook = createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (c: string) => (body += c));
      req.on("end", () => {
        received.push({ headers: req.headers, body });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((ok) => hook.listen(0, "127.0.0.1", ok));
    hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hooks/tracking`;
    mesh = await startE2eMesh({ optional: ["routing", "notification"] });
  });

  afterAll(async () => {
    await mesh?.close();
    await new Promise<void>((ok) => (hook ? hook.close(() => ok()) : ok()));
    hook?.closeAllConnections();
    await telemetry?.shutdown();
  });

  it("links carrier stream → (link) stream message → ingest → JetStream → tracking → status changed → notification → webhook", async (t) => {
    const trackingNumber = await createTrackedShipment(mesh, { carrier: CARRIER, customer: "trace-shop" });
    const notifying = mesh.services.has("notification");
    if (notifying) {
      const notification = createClient(NotificationService, createGrpcTransport({ baseUrl: mesh.get("notification").url }));
      await notification.subscribe(
        { scope: { case: "trackingNumber", value: trackingNumber }, eventTypes: [NotificationEventType.STATUS_CHANGED], webhookUrl: hookUrl },
        { headers: { authorization: `Bearer ${await mesh.token([Scope.SubscriptionsWrite])}` } },
      );
    }

    // The carrier gateway's own span; its context travels in the gRPC metadata.
    const gateway = trace.getTracer("carrier-gateway");
    const root = gateway.startSpan("carrier-gateway send scans", { kind: SpanKind.CLIENT, attributes: { "logistics.carrier": CARRIER } });
    const traceId = root.spanContext().traceId;
    const metadata: Record<string, string> = {};
    propagation.inject(trace.setSpan(ROOT_CONTEXT, root), metadata);
    assert.ok(metadata["traceparent"], "the gateway sends a traceparent");
    const stream = openScanStream({
      address: `127.0.0.1:${mesh.get("ingest").port}`,
      token: await mesh.token([Scope.ScansWrite], { carrier: CARRIER }),
      metadata,
    });
    try {
      const [ack] = await stream.send([
        {
          eventId: uniqueName("trace-scan"),
          trackingNumber,
          carrierCode: CARRIER,
          rawStatus: { code: "PU", text: "Picked up" },
          eventTime: timestampFromDate(new Date()),
        },
      ]);
      assert.equal(ack?.outcome, ScanOutcome.ACCEPTED, ack?.detail);
    } finally {
      await stream.close();
      root.end();
    }

    // The call's span is in the gateway's trace; the message has a trace of its own, linked to it.
    const server = await waitFor(
      () =>
        exporter
          .getFinishedSpans()
          .find((s) => s.spanContext().traceId === traceId && s.kind === SpanKind.SERVER && s.name === "logistics.ingest.v1.IngestService/StreamScans"),
      { timeoutMs: 10_000, message: "ingest's StreamScans server span in the gateway's trace" },
    );
    const parentId = (s: ReadableSpan) => s.parentSpanContext?.spanId;
    assert.equal(parentId(server), root.spanContext().spanId, "ingest's server span is the gateway span's child");
    assert.equal(attr(server, "rpc.method"), "logistics.ingest.v1.IngestService/StreamScans");
    assert.equal(attr(server, "rpc.system.name"), "grpc");
    assert.equal(attr(server, "server.port"), mesh.get("ingest").port);
    const message = await waitFor(
      () => exporter.getFinishedSpans().find((s) => s.name === STREAM_MESSAGE_SPAN && s.links.some((l) => l.context.spanId === server.spanContext().spanId)),
      { timeoutMs: 10_000, message: "the stream message's span, linked to the call's span" },
    );
    const messageTraceId = message.spanContext().traceId;
    assert.notEqual(messageTraceId, traceId, "the message starts a trace of its own");
    assert.equal(message.parentSpanContext, undefined, "the message's span is its trace's root");
    assert.equal(
      exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId && /^publish \S+\.scan\.recorded$/.test(s.name)).length,
      0,
      "nothing about the scan joins the stream's trace",
    );

    const expected = HOPS.filter((h) => mesh.services.has(h.needs));
    const missing = HOPS.filter((h) => !mesh.services.has(h.needs));
    for (const h of missing) await t.annotate(`hop not checked (${h.needs} did not start: ${mesh.failed.get(h.needs)}): ${h.name}`);
    const inTrace = () => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === messageTraceId);
    const found = await waitFor(
      () => {
        const spans = inTrace();
        const hits = expected.map((h) => ({ hop: h, span: spans.find(h.match) }));
        return hits.every((x) => x.span) ? hits : undefined;
      },
      {
        timeoutMs: 30_000,
        message: `spans of every hop in trace ${messageTraceId}`,
      },
    ).catch((e: unknown) => {
      const spans = inTrace();
      const absent = expected.filter((h) => !spans.some(h.match)).map((h) => h.name);
      const seen = spans.map((s) => `${SpanKind[s.kind]} ${s.name} ${dest(s)}`);
      throw new Error(`missing hops: ${absent.join("; ")}\nspans in the trace:\n  ${seen.join("\n  ")}`, { cause: e });
    });

    const span = (name: string) => found.find((x) => x.hop.name === name)?.span;
    const byId = new Map(inTrace().map((s) => [s.spanContext().spanId, s]));

    const publish = span("JetStream publish of the scan event")!;
    assert.equal(attr(publish, "messaging.system.name"), "nats");
    assert.ok(attr(publish, "messaging.message.id"), "a publish of one message names its Nats-Msg-Id");
    assert.equal(attr(publish, "messaging.operation.type"), "send");
    let ancestor: ReadableSpan | undefined = publish;
    while (ancestor && ancestor !== message) ancestor = byId.get(parentId(ancestor) ?? "");
    assert.equal(ancestor, message, "the publish runs inside the message's span");

    if (mesh.services.has("tracking")) {
      const projector = span("tracking projector processes the scan")!;
      assert.equal(parentId(projector), publish.spanContext().spanId, "the projector's span is the publish span's child");
      assert.ok(
        projector.links.some((l) => l.context.spanId === publish.spanContext().spanId),
        "the projector's span also links to the producer",
      );
      assert.equal(attr(projector, "messaging.operation.type"), "process");
      const status = span("tracking publishes status changed")!;
      ancestor = status;
      while (ancestor && ancestor !== projector) ancestor = byId.get(parentId(ancestor) ?? "");
      assert.equal(ancestor, projector, "status changed is published while the projector handles the scan");
    }
    if (notifying) {
      const consumer = span("notification consumes status changed")!;
      assert.equal(parentId(consumer), span("tracking publishes status changed")!.spanContext().spanId);
      const deliver = span("notification delivers the webhook")!;
      assert.equal(attr(deliver, "server.address"), "127.0.0.1", "the delivery names its target");
      assert.equal(attr(deliver, "url.full"), hookUrl);
      assert.equal(attr(deliver, "server.port"), Number(new URL(hookUrl).port));
      assert.equal(attr(deliver, "http.response.status_code"), 204);
      const hit = await waitFor(() => received.find((r) => String(r.headers["traceparent"] ?? "").includes(messageTraceId)), {
        timeoutMs: 10_000,
        message: "the webhook request carries the trace",
      });
      assert.ok(hit.body.includes(trackingNumber), "the webhook is about our shipment");
    }
    await t.annotate(`stream trace ${traceId}, message trace ${messageTraceId}: ${inTrace().length} spans, hops checked: ${expected.map((h) => h.name).join(" → ")}`);
  });

  it("exports every metric the Grafana dashboard and the Prometheus rules query; the dashboard's recorded series are recorded", async () => {
    const dashboard: unknown = JSON.parse(await readFile(join(repoRoot, "charts", "dashboards", "logistics-mesh.json"), "utf8"));
    const exprs: string[] = [];
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === "object") {
        for (const [k, x] of Object.entries(v)) {
          if (k === "expr" && typeof x === "string") exprs.push(x);
          else walk(x);
        }
      }
    };
    walk(dashboard);
    assert.ok(exprs.length >= 20, `the dashboard has queries (${exprs.length})`);
    const rules = parseYaml(await readFile(join(repoRoot, "charts", "logistics-mesh", "rules", "logistics-mesh.rules.yaml"), "utf8")) as {
      groups: Array<{ rules: Array<{ record?: string; alert?: string; expr: string }> }>;
    };
    const ruleList = rules.groups.flatMap((g) => g.rules);
    const recorded = new Set(ruleList.flatMap((r) => (r.record ? [r.record] : [])));
    // Recorded series are named level:metric:operation (a colon never appears in an exported name).
    const recordedName = /\b[a-z_][a-z0-9_]*:[a-z0-9_:]+/g;
    const dashboardRecorded = [...new Set(exprs.flatMap((e) => e.match(recordedName) ?? []))];
    assert.ok(dashboardRecorded.length >= 4, "the SLO panels read the recording rules");
    assert.deepEqual(dashboardRecorded.filter((n) => !recorded.has(n)), [], "series the dashboard reads that no rule records");
    const metricsIn = (list: string[]) =>
      new Set(
        list.flatMap((e) =>
          [...e.replace(recordedName, "").matchAll(/\b((?:logistics|process|nodejs)_[a-z0-9_]+)/g)].map((m) => m[1]!.replace(/_(bucket|count|sum)$/, "")),
        ),
      );
    const exported = new Set<string>();
    for (const s of mesh.services.values()) {
      const text = await (await fetch(s.metricsUrl)).text();
      for (const m of text.matchAll(/^# TYPE (\S+) /gm)) exported.add(m[1]!);
    }
    const running = `running: ${[...mesh.services.keys()].join(", ")}`;
    const unknown = [...metricsIn(exprs)].filter((n) => !exported.has(n));
    assert.deepEqual(unknown, [], `metrics the dashboard queries that no running service exports (${running})`);
    const unknownInRules = [...metricsIn(ruleList.map((r) => r.expr))].filter((n) => !exported.has(n));
    assert.deepEqual(unknownInRules, [], `metrics the rules query that no running service exports (${running})`);
  });
});
