import { strict as assert } from "node:assert";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { Registry } from "prom-client";
import { createCatalogPublisher, createEventCatalog, type EventCatalog } from "@logistics/shared/events";
import { ScanSchema, type Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { RejectReason, ScanOutcome } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { connectNats, createPipelinedPublisher, ensureStreams, jetstreamFor, type PipelinedPublisher } from "@logistics/shared/nats";
import { testNatsUrl, uniqueName, waitFor } from "@logistics/shared/testing";
import { createMeshValidator } from "@logistics/shared/validation";
import { createIngestMetrics } from "../src/ingest-metrics.js";
import { createScanCheck } from "../src/scan-check.js";
import { createScanIngestor, type ScanAdmission } from "../src/scan-ingestor.js";
import { createSemaphore } from "../src/semaphore.js";
import { memoryAdmission } from "./memory-admission.js";

const TN = "ABCD12345678";
const scan = (id: string): Scan =>
  create(ScanSchema, { eventId: id, trackingNumber: TN, carrierCode: "acme", rawStatus: { code: "AR" }, eventTime: timestampFromMs(Date.now() - 1000) });

describe("scan ingest through the pipelined publisher (real nats-server)", () => {
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let pipeline: PipelinedPublisher;

  beforeAll(async () => {
    nc = await connectNats({ servers: testNatsUrl(), name: "scan-publish-pipeline-test" });
    ({ js, jsm } = await jetstreamFor(nc));
    pipeline = createPipelinedPublisher({ nc, maxInFlight: 64 });
  });
  afterAll(async () => {
    pipeline?.close();
    await nc?.close();
  });

  const ingestorFor = (catalog: EventCatalog, admission: ScanAdmission, publishDeadlineMs: number) =>
    createScanIngestor({
      publisher: createCatalogPublisher({ js, pipeline }),
      scanEvent: catalog.events.scanRecorded,
      region: "eu",
      directory: { lookup: async (tns) => new Map(tns.map((tn) => [tn, { shipmentId: "shp_1", carrier: "acme", partners: [], customer: "c" }])) },
      check: createScanCheck({ validator: createMeshValidator() }),
      admission,
      inflight: createSemaphore(1000),
      metrics: createIngestMetrics(new Registry()),
      log: { warn() {} },
      publishDeadlineMs,
    });

  it("acks each scan ACCEPTED with the sequence its PubAck gave, and a resend DUPLICATE", async () => {
    const catalog = createEventCatalog(uniqueName("ipp"));
    await ensureStreams(jsm, [catalog.subjects.streams.scans]);
    const ingestor = ingestorFor(catalog, memoryAdmission(), 5000);
    const scans = Array.from({ length: 150 }, (_, i) => scan(`e-${i}`));

    const acks = await ingestor.ingest(scans, { carrier: "acme" });

    assert.deepEqual(new Set(acks.map((a) => a.outcome)), new Set([ScanOutcome.ACCEPTED]));
    assert.deepEqual(acks.map((a) => a.eventId), scans.map((s) => s.eventId));
    assert.equal(new Set(acks.map((a) => a.streamSequence)).size, 150);
    const stream = catalog.subjects.streams.scans.name;
    for (const k of [0, 77, 149]) {
      const stored = await jsm.streams.getMessage(stream, { seq: Number(acks[k]?.streamSequence) });
      assert.equal(stored?.header.get("Nats-Msg-Id"), acks[k]?.recordedEventId, `scan ${k} is stored where its ack says`);
    }
    // A resend past the dedupe set (a fresh replica) is caught by the stream's window.
    const again = await ingestorFor(catalog, memoryAdmission(), 5000).ingest(scans.slice(0, 10), { carrier: "acme" });
    assert.deepEqual(again.map((a) => a.outcome), Array(10).fill(ScanOutcome.DUPLICATE));
    assert.equal((await jsm.streams.info(stream)).state.messages, 150);
  });

  it("rejects a scan UNAVAILABLE, never ACCEPTED, when no PubAck arrives by the publish deadline", async () => {
    const catalog = createEventCatalog(uniqueName("ipp"));
    // A subscriber instead of a stream: publishes are taken and never acknowledged.
    const swallowed: string[] = [];
    const sub = nc.subscribe(catalog.events.scanRecorded.allSubjects, { callback: (_e, m) => void swallowed.push(m.subject) });
    try {
      const dedupe = memoryAdmission();
      const acks = await ingestorFor(catalog, dedupe, 400).ingest([scan("t-1"), scan("t-2")], { carrier: "acme" });

      assert.deepEqual(acks.map((a) => [a.outcome, a.rejectReason]), [
        [ScanOutcome.REJECTED, RejectReason.UNAVAILABLE],
        [ScanOutcome.REJECTED, RejectReason.UNAVAILABLE],
      ]);
      assert.equal(acks[0]?.streamSequence, 0n);
      assert.ok(swallowed.length >= 2, "the scans were published");
      assert.equal(dedupe.ids.size, 0, "an unconfirmed scan is not remembered as stored");
      await waitFor(() => pipeline.inFlight === 0, { message: "no publish left waiting" });
    } finally {
      sub.unsubscribe();
    }
  });
});
