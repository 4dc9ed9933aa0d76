import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import type { Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { RejectReason, ScanOutcome, type StreamScansRequest } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { recordedEventId } from "../src/event-ids.js";
import { bearer, openScanCall, scanMessage, startIngestHarness, streamAll, validScan, type IngestHarness } from "./ingest-harness.js";

/** Scans streamed by the volume test; INGEST_TEST_SCANS overrides the default 50,000. */
const TOTAL = Number(process.env["INGEST_TEST_SCANS"] ?? 50_000);
const BATCH = 100;

describe("StreamScans over grpc-js (real nats-server and redis-server)", () => {
  let h: IngestHarness;
  beforeAll(async () => {
    // Exactly-once here rests on the Redis dedupe set answering. With the default 250 ms command
    // timeout a loaded machine fails Redis open (by design), and once the run outlasts JetStream's
    // 2-minute duplicate window a resend is legitimately stored twice. The fail-open path has its
    // own test (ingest-edge); this one gives Redis time and checks below that it never failed.
    h = await startIngestHarness({
      INGEST_RATE_PER_SEC: "1000000",
      INGEST_RATE_BURST: "1000000",
      INGEST_REDIS_TIMEOUT_MS: "10000",
    });
    await h.createShipments("acme");
  });
  afterAll(async () => {
    await h?.close();
  });

  it(`acks each of ${TOTAL} scans exactly once and stores exactly the valid unique ones`, async () => {
    // 5 % resends of earlier scans, 2 % invalid (bad tracking number), the rest new and valid.
    const scans: Scan[] = [];
    const kinds: Array<"new" | "dup" | "invalid"> = [];
    let rnd = 42;
    const random = () => ((rnd = (Math.imul(rnd, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const originals: Scan[] = [];
    for (let i = 0; i < TOTAL; i++) {
      const r = random();
      if (r < 0.05 && originals.length > 0) {
        scans.push(originals[Math.floor(random() * originals.length)] as Scan);
        kinds.push("dup");
      } else if (r < 0.07) {
        scans.push(validScan("acme", `bad-${i}`, { trackingNumber: "not-valid" }));
        kinds.push("invalid");
      } else {
        const s = validScan("acme", `evt-${i}`);
        originals.push(s);
        scans.push(s);
        kinds.push("new");
      }
    }
    const messages: StreamScansRequest[] = [];
    for (let i = 0; i < scans.length; i += BATCH) messages.push(scanMessage(scans.slice(i, i + BATCH)));

    const call = openScanCall(h.grpcClient(), bearer(await h.token({ carrier: "acme" })));
    const started = performance.now();
    const run = await streamAll(call, messages, 32);
    const seconds = (performance.now() - started) / 1000;
    assert.equal(run.status.code, grpc.status.OK, run.status.details);

    assert.equal(run.responses.length, messages.length);
    const acks = run.responses.flatMap((r, i) => {
      assert.equal(r.acks.length, messages[i]?.scans.length, `response ${i} has one ack per scan`);
      return r.acks;
    });
    assert.equal(acks.length, TOTAL);

    const redisErrors = (await (await fetch(h.svc.metricsUrl)).text())
      .split("\n")
      .filter((l) => l.startsWith("logistics_ingest_redis_errors_total{"));
    assert.deepEqual(redisErrors, [], "no Redis call failed open during the run (per op)");
    const acceptedIds = new Set<string>();
    const expectedIds = new Set(originals.map((s) => recordedEventId(s.carrierCode, s.eventId)));
    for (let i = 0; i < TOTAL; i++) {
      const ack = acks[i]!;
      const scan = scans[i]!;
      assert.equal(ack.eventId, scan.eventId, `ack ${i} answers scan ${i}`);
      if (kinds[i] === "invalid") {
        assert.equal(ack.outcome, ScanOutcome.REJECTED);
        assert.equal(ack.rejectReason, RejectReason.INVALID);
        assert.ok(ack.violations.some((v) => v.field === "tracking_number"));
        continue;
      }
      const id = recordedEventId(scan.carrierCode, scan.eventId);
      assert.equal(ack.recordedEventId, id);
      if (ack.outcome === ScanOutcome.ACCEPTED) {
        assert.ok(!acceptedIds.has(id), `scan ${scan.eventId} accepted twice`);
        acceptedIds.add(id);
        assert.ok(ack.streamSequence > 0n);
      } else {
        assert.equal(ack.outcome, ScanOutcome.DUPLICATE, `scan ${i} (${kinds[i]}): ${ack.detail}`);
      }
    }
    assert.deepEqual(acceptedIds, expectedIds, "every valid unique scan accepted exactly once");

    const stored = await h.storedScanIds();
    assert.equal(stored.length, expectedIds.size, "stream holds one message per valid unique scan");
    assert.deepEqual(new Set(stored), expectedIds);

    const dupCount = kinds.filter((k) => k === "dup").length;
    assert.equal(await h.metric("logistics_ingest_scans_total", 'outcome="duplicate"'), dupCount);
    assert.equal(await h.metric("logistics_ingest_scans_total", 'reason="invalid"'), kinds.filter((k) => k === "invalid").length);
    console.log(`# streamed ${TOTAL} scans in ${seconds.toFixed(1)} s (${Math.round(TOTAL / seconds)} scans/s); ${expectedIds.size} stored, ${dupCount} duplicates`);
  });

  it("holds more open StreamScans calls than Node's default of 10 listeners without a MaxListenersExceededWarning", async () => {
    // Each open call listens on the service's drain signal until it ends; Node would call the
    // eleventh "a possible memory leak" although every listener goes with its stream.
    const warnings: string[] = [];
    const onWarning = (w: Error) => {
      if (w.name === "MaxListenersExceededWarning") warnings.push(w.message);
    };
    process.on("warning", onWarning);
    const token = await h.token({ carrier: "acme" });
    const client = h.grpcClient();
    const calls = Array.from({ length: 12 }, () => openScanCall(client, bearer(token)));
    const answered = calls.map(() => 0);
    calls.forEach((c, i) => {
      c.on("data", () => answered[i]!++);
      c.on("error", () => {});
    });
    try {
      calls.forEach((c, i) => c.write(scanMessage([validScan("acme", `${uniqueName("listeners")}-${i}`)])));
      await waitFor(() => answered.every((n) => n > 0), { message: "every call answered" });
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(warnings, []);
    } finally {
      process.off("warning", onWarning);
      for (const c of calls) c.end();
    }
  });
});
