import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import type { Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import {
  RejectReason,
  ScanOutcome,
  type ScanAck,
  type StreamScansRequest,
  type StreamScansResponse,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { waitFor } from "@logistics/shared/testing";
import { recordedEventId } from "../src/event-ids.js";
import { bearer, openScanCall, scanMessage, startIngestHarness, streamAll, validScan, type IngestHarness } from "./ingest-harness.js";

const idOf = (s: Scan) => recordedEventId(s.carrierCode, s.eventId);

describe("StreamScans when the broker restarts (real nats-server, stopped and restarted mid-stream)", () => {
  let h: IngestHarness;
  beforeAll(async () => {
    h = await startIngestHarness({ INGEST_PUBLISH_DEADLINE_MS: "1500", INGEST_RATE_PER_SEC: "1000000", INGEST_RATE_BURST: "1000000" });
    await h.createShipments("acme");
  });
  afterAll(async () => {
    await h?.close();
  });

  it("loses no acknowledged scan: every ACCEPTED scan is in the stream after the restart", async () => {
    const scans = Array.from({ length: 3000 }, (_, i) => validScan("acme", `r-${i}`));
    const messages: StreamScansRequest[] = [];
    for (let i = 0; i < scans.length; i += 50) messages.push(scanMessage(scans.slice(i, i + 50)));
    let unavailable = 0;
    let outage: Promise<void> | undefined;
    const call = openScanCall(h.grpcClient(), bearer(await h.token({ carrier: "acme" })));
    const run = await streamAll(call, messages, 4, (res: StreamScansResponse, index) => {
      unavailable += res.acks.filter((a) => a.rejectReason === RejectReason.UNAVAILABLE).length;
      if (index === 10) {
        outage = (async () => {
          await h.nats.stop({ keepStore: true });
          await waitFor(() => unavailable > 0, { timeoutMs: 30_000, message: "scans rejected as UNAVAILABLE during the outage" });
          await h.nats.restart();
        })();
      }
    });
    await outage;
    assert.equal(run.status.code, grpc.status.OK, `the stream survives the reconnect: ${run.status.details}`);
    const acks: ScanAck[] = run.responses.flatMap((r) => r.acks);
    assert.equal(acks.length, scans.length);
    assert.ok(unavailable > 0, "the outage was observed");
    const acked = new Set<string>();
    const retry: Scan[] = [];
    acks.forEach((a, i) => {
      if (a.outcome === ScanOutcome.ACCEPTED || a.outcome === ScanOutcome.DUPLICATE) acked.add(idOf(scans[i]!));
      else {
        assert.equal(a.rejectReason, RejectReason.UNAVAILABLE, a.detail);
        retry.push(scans[i]!);
      }
    });
    assert.ok(acks.slice(-50).every((a) => a.outcome === ScanOutcome.ACCEPTED), "scans after the restart are accepted on the same stream");

    const stored = new Set(await h.storedScanIds());
    for (const id of acked) assert.ok(stored.has(id), `acknowledged scan ${id} is in the stream`);

    // The gateway resends what was not acknowledged; afterwards every scan is stored exactly once.
    const resend = [];
    for (let i = 0; i < retry.length; i += 50) resend.push(scanMessage(retry.slice(i, i + 50)));
    const again = await streamAll(openScanCall(h.grpcClient(), bearer(await h.token({ carrier: "acme" }))), resend, 4);
    assert.ok(again.responses.flatMap((r) => r.acks).every((a) => a.outcome === ScanOutcome.ACCEPTED || a.outcome === ScanOutcome.DUPLICATE));
    const finalIds = await h.storedScanIds();
    assert.equal(finalIds.length, scans.length);
    assert.deepEqual(new Set(finalIds), new Set(scans.map(idOf)));
    console.log(`# outage: ${unavailable} scans answered UNAVAILABLE and resent; ${acked.size} acknowledged before the resend`);
  });
});

describe("StreamScans with a gateway that stops reading acks", () => {
  let h: IngestHarness;
  beforeAll(async () => {
    h = await startIngestHarness({
      INGEST_STREAM_WINDOW: "2",
      INGEST_RATE_PER_SEC: "1000000",
      INGEST_RATE_BURST: "1000000",
      // This gateway stops reading on purpose and reads again later: the reset of a stream left
      // stalled is stream-stall.int.test.ts's subject, not this one's.
      INGEST_STREAM_STALL_TIMEOUT_MS: "0",
    });
    await h.createShipments("acme");
  });
  afterAll(async () => {
    await h?.close();
  });

  it("stops reading its requests, so the gateway's writes block and server memory stays bounded", async () => {
    const CAP = 2000; // messages of 100 scans; far more than the buffers between client and server hold
    const call = openScanCall(h.grpcClient(), bearer(await h.token({ carrier: "acme" })));
    let written = 0;
    let ended = false;
    let finish = false;
    const writeMore = () => {
      while (written < CAP && !finish) {
        const scans = Array.from({ length: 100 }, (_, j) => validScan("acme", `s-${written}-${j}`));
        if (!call.write(scanMessage(scans)) ) {
          written++;
          return;
        }
        written++;
      }
      if (!ended) {
        ended = true;
        call.end();
      }
    };
    call.on("drain", writeMore);
    call.on("error", () => {});
    // The gateway takes its first response and then stops reading (pausing the stream is how a
    // grpc-js reader stops: it no longer pulls messages, so grpc-js pauses the HTTP/2 stream).
    const responses: StreamScansResponse[] = [];
    let reading = true;
    call.on("data", (r: StreamScansResponse) => {
      responses.push(r);
      if (!reading) return;
      reading = false;
      call.pause();
    });
    writeMore();

    // Wait until the pipeline is stuck: the client's writes are blocked and the server has
    // stopped making progress (two probes a second apart see the same count).
    const processed = () => h.metric("logistics_ingest_scans_total");
    let last = -1;
    await waitFor(
      async () => {
        const p = await processed();
        const stuck = p > 0 && p === last && call.writableNeedDrain;
        last = p;
        return stuck;
      },
      { timeoutMs: 60_000, intervalMs: 1000, message: "the stream to stall on the unread acks" },
    );
    const stalledAt = await processed();
    assert.ok(written < CAP, `writes blocked after ${written} of ${CAP} messages`);
    assert.ok(stalledAt < written * 100, `the server read only part of what was written (${stalledAt} of ${written * 100} scans)`);
    assert.ok(stalledAt <= 100 * 100, `scans processed while nobody reads acks stay bounded: ${stalledAt}`);
    assert.equal(await h.metric("logistics_ingest_inflight_scans"), 0, "nothing is held in flight while stalled");
    console.log(`# stalled after ${written} messages written, ${stalledAt} scans processed`);

    // Reading again releases everything: every written message gets its response.
    finish = true;
    const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    call.resume();
    writeMore();
    const final = await status;
    assert.equal(final.code, grpc.status.OK, final.details);
    assert.equal(responses.length, written);
    assert.ok(responses.every((r) => r.acks.length === 100 && r.acks.every((a) => a.outcome === ScanOutcome.ACCEPTED)));
  });
});

describe("StreamScans when ingest drains (SIGTERM) while a gateway streams", () => {
  let h: IngestHarness;
  beforeAll(async () => {
    // A window of one message keeps most of what the gateway sent unread when the drain starts.
    h = await startIngestHarness({ INGEST_STREAM_WINDOW: "1", INGEST_RATE_PER_SEC: "1000000", INGEST_RATE_BURST: "1000000" });
    await h.createShipments("acme");
  });
  afterAll(async () => {
    await h?.close();
  });

  it("ends the stream with UNAVAILABLE, never OK, when sent scans were left unanswered", async () => {
    const scans = Array.from({ length: 40 }, (_, i) => validScan("acme", `drain-${i}`));
    const call = openScanCall(h.grpcClient(), bearer(await h.token({ carrier: "acme" })));
    const answered: ScanAck[] = [];
    let closing: Promise<void> | undefined;
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      call.on("data", (res: StreamScansResponse) => {
        answered.push(...res.acks);
        closing ??= h.svc.close();
      });
      call.on("error", () => {});
      call.on("status", resolve);
      for (const s of scans) call.write(scanMessage([s]));
    });
    await closing;
    assert.ok(answered.length < scans.length, `the drain left scans unanswered (${answered.length} of ${scans.length} answered)`);
    assert.equal(status.code, grpc.status.UNAVAILABLE, `status ${grpc.status[status.code]}: ${status.details}`);
    assert.match(status.details, /resend/);
    assert.ok(answered.every((a) => a.outcome === ScanOutcome.ACCEPTED), "what was read was answered before the end");
    // Everything answered is stored, and nothing the gateway must resend is lost by trusting the status.
    const stored = new Set(await h.storedScanIds());
    for (const a of answered) assert.ok(stored.has(a.recordedEventId));
  });
});
