import * as assert from "node:assert/strict";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, it } from "vitest";
import type { ScanSchema } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { RejectReason, ScanAckSchema, ScanOutcome, type ScanAck } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import type { ScanStream } from "./scan-client.js";
import { createScanGateway, type ScanGatewayOptions } from "./scan-gateway.js";

type ScanInit = MessageInitShape<typeof ScanSchema>;

/** A fake ingest: records every scan sent per stream and answers as `answer` says. */
function fakeIngest(answer: (streamIndex: number, scans: ScanInit[]) => ScanAck[] | Error | "hang") {
  const sent: Array<{ stream: number; address: string; eventIds: string[] }> = [];
  let streams = 0;
  const openStream = (address: string): ScanStream => {
    const index = streams++;
    let closed = false;
    return {
      get closed() {
        return closed;
      },
      async send(scans) {
        sent.push({ stream: index, address, eventIds: scans.map((s) => s.eventId ?? "") });
        const a = answer(index, [...scans]);
        if (a === "hang") return new Promise<ScanAck[]>(() => {});
        if (a instanceof Error) {
          closed = true;
          throw a;
        }
        return a;
      },
      async close() {
        closed = true;
      },
    };
  };
  return { sent, openStream };
}

const ack = (s: ScanInit, outcome: ScanOutcome, rejectReason = RejectReason.UNSPECIFIED) =>
  create(ScanAckSchema, { eventId: s.eventId ?? "", trackingNumber: s.trackingNumber ?? "", outcome, rejectReason });
const scan = (i: number): ScanInit => ({ eventId: `e-${i}`, trackingNumber: "ABCD12345678", carrierCode: "acme" });
const unavailable = () => Object.assign(new Error("14 UNAVAILABLE: shutting down"), { code: 14 });

/** A gateway whose first region is lost (its stream fails UNAVAILABLE) and whose second answers with `answer`. */
function failedOver(answer: (scans: ScanInit[]) => ScanAck[], opts: Partial<ScanGatewayOptions> = {}) {
  const ingest = fakeIngest((stream, scans) => (stream === 0 ? unavailable() : answer(scans)));
  const gw = createScanGateway({ addresses: ["a:1", "b:2"], token: "t", initialBackoffMs: 1, openStream: ingest.openStream, ...opts });
  return { ingest, gw };
}
const unknown = (scans: ScanInit[]) => scans.map((s) => ack(s, ScanOutcome.REJECTED, RejectReason.UNKNOWN_SHIPMENT));

describe("createScanGateway", () => {
  it("opens every stream with the token its token function returns then, so a reconnect carries a renewed token", async () => {
    const ingest = fakeIngest((stream, scans) => (stream === 0 ? unavailable() : scans.map((s) => ack(s, ScanOutcome.ACCEPTED))));
    const tokens: string[] = [];
    let current = "token-1";
    const gw = createScanGateway({
      addresses: ["a:1"],
      token: () => current,
      initialBackoffMs: 1,
      openStream: (address, token) => (tokens.push(token), ingest.openStream(address)),
      onStreamError: () => (current = "token-2"),
    });
    const acked = await gw.submit(scan(1));
    assert.equal(acked.outcome, ScanOutcome.ACCEPTED);
    assert.deepEqual(tokens, ["token-1", "token-2"], "the stream opened after the break asked for the token again");
    await gw.close();
  });

  it("resends every unacknowledged scan with the same event id on a new stream to the next replica after a broken stream", async () => {
    const ingest = fakeIngest((stream, scans) => (stream === 0 ? unavailable() : scans.map((s) => ack(s, ScanOutcome.DUPLICATE))));
    const errors: string[] = [];
    const gw = createScanGateway({
      addresses: ["a:1", "b:2"],
      token: "t",
      initialBackoffMs: 1,
      maxBatch: 10,
      openStream: ingest.openStream,
      onStreamError: (code, address) => errors.push(`${code}@${address}`),
    });
    const acks = await Promise.all([1, 2, 3].map((i) => gw.submit(scan(i))));
    assert.deepEqual(acks.map((a) => [a.eventId, ScanOutcome[a.outcome]]), [["e-1", "DUPLICATE"], ["e-2", "DUPLICATE"], ["e-3", "DUPLICATE"]]);
    assert.deepEqual(errors, ["UNAVAILABLE@a:1"]);
    const first = ingest.sent.filter((s) => s.stream === 0).flatMap((s) => s.eventIds);
    const later = new Set(ingest.sent.filter((s) => s.stream > 0).flatMap((s) => s.eventIds));
    assert.ok(first.length > 0 && first.every((id) => later.has(id)), "every scan of the broken stream resent with its event id");
    assert.deepEqual([...later].sort(), ["e-1", "e-2", "e-3"], "nothing new invented");
    assert.equal(ingest.sent.find((s) => s.stream === 1)?.address, "b:2");
    assert.equal(gw.unacked, 0);
    await gw.close();
  });

  it("resends scans rejected as UNAVAILABLE, and hands back final rejections as they are", async () => {
    let calls = 0;
    const ingest = fakeIngest((_s, scans) =>
      scans.map((s) =>
        s.eventId === "e-2"
          ? ack(s, ScanOutcome.REJECTED, RejectReason.WRONG_CARRIER)
          : calls++ < 1
            ? ack(s, ScanOutcome.REJECTED, RejectReason.UNAVAILABLE)
            : ack(s, ScanOutcome.ACCEPTED),
      ),
    );
    const gw = createScanGateway({ addresses: ["a:1"], token: "t", initialBackoffMs: 1, openStream: ingest.openStream });
    const [a1, a2] = await Promise.all([gw.submit(scan(1)), gw.submit(scan(2))]);
    assert.equal(a1.outcome, ScanOutcome.ACCEPTED);
    assert.equal(a2.rejectReason, RejectReason.WRONG_CARRIER);
    assert.deepEqual(ingest.sent.flatMap((s) => s.eventIds).filter((id) => id === "e-1").length, 2);
    await gw.close();
  });

  it("treats a request message without its response as a broken stream and resends it", async () => {
    const ingest = fakeIngest((stream, scans) => (stream === 0 ? "hang" : scans.map((s) => ack(s, ScanOutcome.ACCEPTED))));
    const errors: string[] = [];
    const gw = createScanGateway({
      addresses: ["a:1"],
      token: "t",
      ackTimeoutMs: 50,
      initialBackoffMs: 1,
      openStream: ingest.openStream,
      onStreamError: (code) => errors.push(code),
    });
    const a = await gw.submit(scan(7));
    assert.equal(a.outcome, ScanOutcome.ACCEPTED);
    assert.deepEqual(errors, ["TIMEOUT"]);
    assert.equal(gw.streamsOpened, 2);
    await gw.close();
  });

  it("moves to the next replica when one answers whole batches UNAVAILABLE twice in a row", async () => {
    const ingest = fakeIngest((stream, scans) =>
      scans.map((s) => (stream === 0 ? ack(s, ScanOutcome.REJECTED, RejectReason.UNAVAILABLE) : ack(s, ScanOutcome.ACCEPTED))),
    );
    const errors: string[] = [];
    const gw = createScanGateway({
      addresses: ["a:1", "b:2"],
      token: "t",
      initialBackoffMs: 1,
      openStream: ingest.openStream,
      onStreamError: (code, address) => errors.push(`${code}@${address}`),
    });
    const a = await gw.submit(scan(1));
    assert.equal(a.outcome, ScanOutcome.ACCEPTED);
    assert.deepEqual(errors, ["REJECTED_UNAVAILABLE@a:1"]);
    assert.deepEqual(ingest.sent.map((x) => x.address), ["a:1", "a:1", "b:2"]);
    await gw.close();
  });

  it("holds scans a failover endpoint answers UNKNOWN_SHIPMENT and resends them until the directory entry arrives", async () => {
    // Region a is lost; b has not sourced the shipment of e-1 yet and knows it from its third send.
    let unknownAnswers = 0;
    const { ingest, gw } = failedOver(
      (scans) => scans.map((s) => (s.eventId === "e-1" && unknownAnswers++ < 2 ? unknown([s])[0]! : ack(s, ScanOutcome.ACCEPTED))),
      { maxBackoffMs: 10 },
    );
    const order: string[] = [];
    const acks = await Promise.all([1, 2].map((i) => gw.submit(scan(i)).then((a) => (order.push(a.eventId), a))));
    assert.deepEqual(acks.map((a) => ScanOutcome[a.outcome]), ["ACCEPTED", "ACCEPTED"]);
    assert.deepEqual(order, ["e-2", "e-1"], "the held scan does not hold up the others");
    const toB = ingest.sent.filter((x) => x.address === "b:2").flatMap((x) => x.eventIds);
    assert.equal(toB.filter((id) => id === "e-1").length, 3, "resent with the same event id until accepted");
    assert.equal(gw.unacked, 0);
    await gw.close();
  });

  it("gives UNKNOWN_SHIPMENT back at once from the first endpoint, and after the bounded resends from a failover one", async () => {
    const home = fakeIngest((_stream, scans) => unknown(scans));
    const gw = createScanGateway({ addresses: ["a:1", "b:2"], token: "t", initialBackoffMs: 1, openStream: home.openStream });
    assert.equal((await gw.submit(scan(1))).rejectReason, RejectReason.UNKNOWN_SHIPMENT);
    assert.equal(home.sent.length, 1, "final on the nearest endpoint");
    await gw.close();

    const away = failedOver(unknown, { maxBackoffMs: 5, unknownShipmentRetries: 3 });
    assert.equal((await away.gw.submit(scan(1))).rejectReason, RejectReason.UNKNOWN_SHIPMENT);
    assert.equal(away.ingest.sent.filter((x) => x.address === "b:2").length, 4, "one send and three resends");
    await away.gw.close();
  });

  it("rejects a held scan when closed", async () => {
    let answered: () => void = () => {};
    const unknownAnswered = new Promise<void>((r) => (answered = r));
    const { gw } = failedOver(unknown, { maxBackoffMs: 60_000, onAck: () => answered() });
    const settled = gw.submit(scan(1)).catch((e: unknown) => e);
    await unknownAnswered;
    assert.equal(gw.unacked, 1, "held");
    await gw.close();
    assert.match(String(await settled), /closed before the scan was acknowledged/);
  });

  it("rejects what is still unacknowledged when closed", async () => {
    const ingest = fakeIngest(() => unavailable());
    const gw = createScanGateway({ addresses: ["a:1"], token: "t", initialBackoffMs: 60_000, openStream: ingest.openStream });
    const p = gw.submit(scan(1));
    await new Promise((r) => setTimeout(r, 20));
    await gw.close();
    await assert.rejects(p, /closed before the scan was acknowledged/);
  });
});
