import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Registry } from "prom-client";
import { ScanSchema, type Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ScanRecordedSchema, type ScanRecorded } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RejectReason, ScanOutcome } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { createEventCatalog, type Publication } from "@logistics/shared/events";
import type { PublishEventResult } from "@logistics/shared/nats";
import { createMeshValidator } from "@logistics/shared/validation";
import { recordedEventId } from "./event-ids.js";
import { createIngestMetrics } from "./ingest-metrics.js";
import { createScanCheck } from "./scan-check.js";
import { createScanIngestor, type ScanAdmission } from "./scan-ingestor.js";
import type { ShipmentParties } from "./scan-ownership.js";
import { createSemaphore } from "./semaphore.js";
import { scanDocumentCost } from "./shipment-budget.js";
import { DirectoryUnavailableError, type ShipmentDirectory } from "./shipment-directory.js";
import { memoryAdmission } from "../test/memory-admission.js";

const validator = createMeshValidator();
const catalog = createEventCatalog("p");
const silent = { warn() {} };

function scan(id: string, over: Omit<Partial<Scan>, "$typeName" | "rawStatus"> & { rawStatus?: { code: string; text?: string } } = {}): Scan {
  return create(ScanSchema, {
    eventId: id,
    trackingNumber: "ABCD12345678",
    carrierCode: "acme",
    rawStatus: { code: "AR" },
    eventTime: timestampFromMs(Date.now() - 1000),
    ...over,
  });
}

/** A stream stand-in of our own publisher interface: stores by msgId like JetStream's window. */
function fakeStream(opts: { failFirst?: number; failAlways?: boolean } = {}) {
  const stored = new Map<string, number>();
  const events: ScanRecorded[] = [];
  let failures = 0;
  const stream = {
    stored,
    events,
    /** Rounds of publishAll, with the number of items in each. */
    rounds: [] as number[],
    publisher: {
      async publishAll(items: readonly Publication[]): Promise<Array<PromiseSettledResult<PublishEventResult>>> {
        stream.rounds.push(items.length);
        return items.map((p): PromiseSettledResult<PublishEventResult> => {
          if (opts.failAlways || failures < (opts.failFirst ?? 0)) {
            failures++;
            return { status: "rejected", reason: new Error("503 no responders") };
          }
          const message = p.message as ScanRecorded;
          const msgId = p.event.id(message);
          const seq = stored.get(msgId);
          if (seq !== undefined) return { status: "fulfilled", value: { seq, duplicate: true, stream: "S" } };
          stored.set(msgId, stored.size + 1);
          events.push(message);
          return { status: "fulfilled", value: { seq: stored.size, duplicate: false, stream: "S" } };
        });
      },
    },
  };
  return stream;
}

const parties = (carrier: string, partners: string[] = []): ShipmentParties => ({ shipmentId: "shp_1", carrier, partners, customer: "cust-1" });

/**
 * A directory of our own interface: `stored` is the truth, `cached` what a replica still believes
 * (read unless `fresh`); `down` makes every read fail, `freshDown` only the fresh ones.
 */
function memoryDirectory(stored: Record<string, ShipmentParties> = { ABCD12345678: parties("acme") }) {
  const dir = {
    stored: new Map(Object.entries(stored)),
    cached: new Map<string, ShipmentParties>(),
    down: false,
    freshDown: false,
    reads: [] as Array<{ tns: string[]; fresh: boolean }>,
    async lookup(tns: readonly string[], fresh = false) {
      dir.reads.push({ tns: [...tns], fresh });
      if (dir.down || (fresh && dir.freshDown)) throw new DirectoryUnavailableError("nats down");
      const found = new Map<string, ShipmentParties>();
      for (const tn of tns) {
        const p = (!fresh ? dir.cached.get(tn) : undefined) ?? dir.stored.get(tn);
        if (p) {
          found.set(tn, p);
          dir.cached.set(tn, p);
        }
      }
      return found;
    },
  } satisfies Pick<ShipmentDirectory, "lookup"> & Record<string, unknown>;
  return dir;
}

/** The event the ingestor publishes for `s` (what its budget charge is computed from). */
const scanEvent = (s: Scan) => create(ScanRecordedSchema, { eventId: recordedEventId(s.carrierCode, s.eventId), scan: s });

function ingestorFor(
  stream: ReturnType<typeof fakeStream>,
  admission: ScanAdmission,
  deadlineMs = 2000,
  directory = memoryDirectory(),
  metrics = createIngestMetrics(new Registry()),
) {
  return createScanIngestor({
    publisher: stream.publisher,
    scanEvent: catalog.events.scanRecorded,
    region: "eu-west",
    directory,
    check: createScanCheck({ validator }),
    admission,
    inflight: createSemaphore(100),
    metrics,
    log: silent,
    publishDeadlineMs: deadlineMs,
  });
}

describe("createScanIngestor", () => {
  it("answers one ack per scan in order: accepted, invalid, in-batch duplicate", async () => {
    const stream = fakeStream();
    const acks = await ingestorFor(stream, memoryAdmission()).ingest([scan("a"), scan("b", { trackingNumber: "x" }), scan("a")], {});
    assert.deepEqual(acks.map((a) => a.outcome), [ScanOutcome.ACCEPTED, ScanOutcome.REJECTED, ScanOutcome.DUPLICATE]);
    assert.equal(acks[1]?.rejectReason, RejectReason.INVALID);
    assert.equal(acks[0]?.streamSequence, 1n);
    assert.equal(acks[0]?.recordedEventId, recordedEventId("acme", "a"));
    assert.equal(acks[2]?.recordedEventId, acks[0]?.recordedEventId);
    assert.equal(acks[2]?.streamSequence, 0n);
    assert.equal(stream.events.length, 1);
    assert.equal(stream.events[0]?.region, "eu-west");
  });

  it("answers DUPLICATE from the dedupe set without publishing", async () => {
    const stream = fakeStream();
    const dedupe = memoryAdmission();
    dedupe.ids.add(recordedEventId("acme", "old"));
    const acks = await ingestorFor(stream, dedupe).ingest([scan("old")], {});
    assert.equal(acks[0]?.outcome, ScanOutcome.DUPLICATE);
    assert.equal(stream.events.length, 0);
  });

  it("remembers stored scans so a later resend is a DUPLICATE", async () => {
    const dedupe = memoryAdmission();
    const ingestor = ingestorFor(fakeStream(), dedupe);
    await ingestor.ingest([scan("c")], {});
    assert.ok(dedupe.ids.has(recordedEventId("acme", "c")));
    assert.equal((await ingestor.ingest([scan("c")], {}))[0]?.outcome, ScanOutcome.DUPLICATE);
  });

  it("rejects the scans past their shipment's budget as SHIPMENT_FULL, unpublished; other shipments go on", async () => {
    const stream = fakeStream();
    const admission = memoryAdmission(3 * scanDocumentCost(scanEvent(scan("x0"))) + 10);
    const directory = memoryDirectory({ ABCD12345678: parties("acme"), EFGH12345678: parties("acme") });
    const ingestor = ingestorFor(stream, admission, 2000, directory);
    const acks = await ingestor.ingest(["x0", "x1", "x2", "x3", "x3"].map((id) => scan(id)), {});
    assert.deepEqual(acks.map((a) => [ScanOutcome[a.outcome], RejectReason[a.rejectReason]]), [
      ["ACCEPTED", "UNSPECIFIED"], ["ACCEPTED", "UNSPECIFIED"], ["ACCEPTED", "UNSPECIFIED"],
      ["REJECTED", "SHIPMENT_FULL"], ["REJECTED", "SHIPMENT_FULL"], // the copy of a scan past the budget shares its answer
    ]);
    assert.equal(stream.events.length, 3);
    // A resend of an accepted scan is still a DUPLICATE; another shipment has its own budget.
    const later = await ingestor.ingest([scan("x1"), scan("y0", { trackingNumber: "EFGH12345678" })], {});
    assert.deepEqual(later.map((a) => ScanOutcome[a.outcome]), ["DUPLICATE", "ACCEPTED"]);
  });

  it("gives back the charge of a scan that was not stored after all (no PubAck, or a duplicate by JetStream's window)", async () => {
    const admission = memoryAdmission(1_000_000);
    const down = await ingestorFor(fakeStream({ failAlways: true }), admission, 200).ingest([scan("f")], {});
    assert.equal(down[0]?.rejectReason, RejectReason.UNAVAILABLE);
    assert.equal(admission.used.get("ABCD12345678"), 0);
    assert.equal(admission.refunds.length, 1);
    // Stored before, but the dedupe set forgot it (Redis failed open): JetStream answers duplicate.
    const stream = fakeStream();
    const ingestor = ingestorFor(stream, admission, 2000);
    await ingestor.ingest([scan("g")], {});
    const charged = admission.used.get("ABCD12345678");
    admission.ids.clear();
    const again = await ingestor.ingest([scan("g")], {});
    assert.equal(again[0]?.outcome, ScanOutcome.DUPLICATE);
    assert.equal(admission.used.get("ABCD12345678"), charged, "the duplicate's charge was given back");
    assert.equal(admission.refunds.length, 2);
  });

  it("retries a failing publish within the deadline", async () => {
    const stream = fakeStream({ failFirst: 3 });
    const acks = await ingestorFor(stream, memoryAdmission()).ingest([scan("d")], {});
    assert.equal(acks[0]?.outcome, ScanOutcome.ACCEPTED);
  });

  it("publishes a batch in one pipelined round and resends only the scans whose publish failed", async () => {
    const stream = fakeStream({ failFirst: 2 });
    const acks = await ingestorFor(stream, memoryAdmission()).ingest(["r1", "r2", "r3", "r4", "r5"].map((id) => scan(id)), {});
    assert.deepEqual(acks.map((a) => a.outcome), Array(5).fill(ScanOutcome.ACCEPTED));
    assert.deepEqual(stream.rounds, [5, 2]);
    assert.equal(stream.events.length, 5);
  });

  it("rejects as UNAVAILABLE when no PubAck arrives within the deadline, and remembers nothing", async () => {
    const dedupe = memoryAdmission();
    const acks = await ingestorFor(fakeStream({ failAlways: true }), dedupe, 200).ingest([scan("e"), scan("e")], {});
    assert.deepEqual(acks.map((a) => [a.outcome, a.rejectReason]), [
      [ScanOutcome.REJECTED, RejectReason.UNAVAILABLE],
      [ScanOutcome.REJECTED, RejectReason.UNAVAILABLE],
    ]);
    assert.equal(dedupe.ids.size, 0);
  });

  it("rejects a scan naming another carrier than the token's as WRONG_CARRIER, alone, without reading the directory", async () => {
    const stream = fakeStream();
    const directory = memoryDirectory();
    const acks = await ingestorFor(stream, memoryAdmission(), 2000, directory).ingest([scan("own"), scan("foreign", { carrierCode: "ups" })], {
      carrier: "acme",
    });
    assert.deepEqual(acks.map((a) => [a.outcome, a.rejectReason]), [
      [ScanOutcome.ACCEPTED, RejectReason.UNSPECIFIED],
      [ScanOutcome.REJECTED, RejectReason.WRONG_CARRIER],
    ]);
    assert.match(acks[1]?.detail ?? "", /does not match the credentials' carrier "acme"/);
    assert.deepEqual(directory.reads.map((r) => r.tns), [["ABCD12345678"]]);
    assert.equal(stream.events.length, 1);
  });

  it("rejects a scan for another carrier's shipment as WRONG_CARRIER, for carrier tokens and internal callers alike", async () => {
    const directory = memoryDirectory({ ABCD12345678: parties("globex") });
    const stream = fakeStream();
    const ingestor = ingestorFor(stream, memoryAdmission(), 2000, directory);
    for (const caller of [{ carrier: "acme" }, {}]) {
      const [ack] = await ingestor.ingest([scan("steal")], caller);
      assert.equal(ack?.rejectReason, RejectReason.WRONG_CARRIER);
      assert.match(ack?.detail ?? "", /not carried by "acme"/);
    }
    assert.equal(stream.events.length, 0);
  });

  it("rejects a scan for a tracking number the mesh never registered as UNKNOWN_SHIPMENT", async () => {
    const stream = fakeStream();
    const [ack] = await ingestorFor(stream, memoryAdmission(), 2000, memoryDirectory({})).ingest([scan("early")], { carrier: "acme" });
    assert.equal(ack?.rejectReason, RejectReason.UNKNOWN_SHIPMENT);
    assert.equal(stream.events.length, 0);
  });

  it("rejects as UNAVAILABLE, never accepting unchecked, when the directory cannot be read", async () => {
    const directory = memoryDirectory();
    directory.down = true;
    const stream = fakeStream();
    const acks = await ingestorFor(stream, memoryAdmission(), 2000, directory).ingest([scan("x1"), scan("x2", { carrierCode: "ups" })], {
      carrier: "acme",
    });
    assert.deepEqual(acks.map((a) => a.rejectReason), [RejectReason.UNAVAILABLE, RejectReason.WRONG_CARRIER]);
    assert.equal(stream.events.length, 0);
  });

  it("accepts a partner's scan that a stale cached entry would refuse, after a fresh read", async () => {
    const directory = memoryDirectory();
    const ingestor = ingestorFor(fakeStream(), memoryAdmission(), 2000, directory);
    await ingestor.ingest([scan("first")], { carrier: "acme" });
    directory.stored.set("ABCD12345678", parties("acme", ["lastmile"]));
    const [ack] = await ingestor.ingest([scan("p1", { carrierCode: "lastmile" })], { carrier: "lastmile" });
    assert.equal(ack?.outcome, ScanOutcome.ACCEPTED);
    assert.deepEqual(directory.reads.slice(-2).map((r) => r.fresh), [false, true]);
  });

  it("rejects a removed partner's scan as WRONG_CARRIER although a stale cached entry still lists it", async () => {
    const directory = memoryDirectory({ ABCD12345678: parties("acme", ["lastmile"]) });
    const stream = fakeStream();
    const ingestor = ingestorFor(stream, memoryAdmission(), 2000, directory);
    const [before] = await ingestor.ingest([scan("p1", { carrierCode: "lastmile" })], { carrier: "lastmile" });
    assert.equal(before?.outcome, ScanOutcome.ACCEPTED);
    // Another replica removed the partner; this one's cache still lists it.
    directory.stored.set("ABCD12345678", parties("acme"));
    const [after] = await ingestor.ingest([scan("p2", { carrierCode: "lastmile" })], { carrier: "lastmile" });
    assert.deepEqual([after?.outcome, after?.rejectReason], [ScanOutcome.REJECTED, RejectReason.WRONG_CARRIER]);
    assert.match(after?.detail ?? "", /not carried by "lastmile"/);
    assert.deepEqual(directory.reads.slice(-2).map((r) => r.fresh), [false, true]);
    assert.equal(stream.events.length, 1, "only the scan before the removal was published");
  });

  it("confirms a partner's scan with one fresh read per batch, and takes the shipment's own carrier from the cache", async () => {
    const directory = memoryDirectory({ ABCD12345678: parties("acme", ["lastmile"]), EFGH12345678: parties("acme", ["lastmile"]) });
    const ingestor = ingestorFor(fakeStream(), memoryAdmission(), 2000, directory);
    const partnerScans = ["ABCD12345678", "EFGH12345678", "ABCD12345678"].map((trackingNumber, i) => scan(`pb${i}`, { carrierCode: "lastmile", trackingNumber }));
    const acks = await ingestor.ingest(partnerScans, {});
    assert.deepEqual(acks.map((a) => a.outcome), [ScanOutcome.ACCEPTED, ScanOutcome.ACCEPTED, ScanOutcome.ACCEPTED]);
    assert.deepEqual(directory.reads.map((r) => [r.tns.sort(), r.fresh]), [
      [["ABCD12345678", "EFGH12345678"], false],
      [["ABCD12345678", "EFGH12345678"], true],
    ]);
    directory.reads.length = 0;
    const own = await ingestor.ingest([scan("ob1"), scan("ob2", { trackingNumber: "EFGH12345678" })], { carrier: "acme" });
    assert.deepEqual(own.map((a) => a.outcome), [ScanOutcome.ACCEPTED, ScanOutcome.ACCEPTED]);
    assert.deepEqual(directory.reads.map((r) => r.fresh), [false], "the carrier's own scans need no fresh read");
  });

  it("rejects a partner's scan as UNAVAILABLE, never accepting it from the cache alone, when the confirming read fails", async () => {
    const directory = memoryDirectory({ ABCD12345678: parties("acme", ["lastmile"]) });
    const ingestor = ingestorFor(fakeStream(), memoryAdmission(), 2000, directory);
    await ingestor.ingest([scan("warm")], { carrier: "acme" });
    directory.freshDown = true;
    const acks = await ingestor.ingest([scan("c1"), scan("c2", { carrierCode: "lastmile" })], {});
    assert.deepEqual(acks.map((a) => [a.outcome, a.rejectReason]), [
      [ScanOutcome.ACCEPTED, RejectReason.UNSPECIFIED],
      [ScanOutcome.REJECTED, RejectReason.UNAVAILABLE],
    ]);
  });

  it("counts every ack under a carrier the mesh vouches for: the token's, a confirmed carrier_code, or a placeholder", async () => {
    const registry = new Registry();
    const metrics = createIngestMetrics(registry);
    const ingestor = ingestorFor(fakeStream(), memoryAdmission(), 2000, memoryDirectory(), metrics);
    const tooOld = { eventTime: timestampFromMs(Date.now() - 40 * 86_400_000) };
    // A carrier gateway: its token's carrier labels every outcome, a too-late scan included.
    await ingestor.ingest([scan("g1"), scan("g2", tooOld), scan("g3", { trackingNumber: "x" })], { carrier: "acme" });
    // An internal caller: the scan's carrier_code only once the directory confirmed it.
    await ingestor.ingest(
      [scan("i1"), scan("i2", tooOld), scan("i3", { trackingNumber: "x" }), scan("i4", { carrierCode: "made-up-carrier-77" })],
      {},
    );
    const values = (await registry.getSingleMetric("logistics_ingest_scans_total")!.get()).values;
    const count = (carrier: string, outcome: string, reason: string) =>
      values.find((v) => v.labels.carrier === carrier && v.labels.outcome === outcome && v.labels.reason === reason)?.value ?? 0;
    assert.equal(count("acme", "accepted", ""), 2);
    assert.equal(count("acme", "rejected", "too_late"), 1);
    assert.equal(count("acme", "rejected", "invalid"), 1);
    assert.equal(count("_unverified", "rejected", "too_late"), 1);
    assert.equal(count("_invalid", "rejected", "invalid"), 1);
    assert.equal(count("_unverified", "rejected", "wrong_carrier"), 1);
    assert.deepEqual(
      [...new Set(values.map((v) => v.labels.carrier))].sort(),
      ["_invalid", "_unverified", "acme"],
      "no carrier label value comes from an unconfirmed carrier_code",
    );
    const acked = (await registry.getSingleMetric("logistics_ingest_scan_ack_seconds")!.get()).values;
    const ackCount = (result: string) => acked.find((v) => (v as { metricName?: string }).metricName === "logistics_ingest_scan_ack_seconds_count" && v.labels.result === result)?.value;
    assert.equal(ackCount("ok"), 7, "the ack latency of every scan, whatever its outcome");
    assert.equal(ackCount("unavailable"), undefined);
  });
});
