import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Scope } from "@logistics/shared/auth";
import {
  IngestService,
  RejectReason,
  ScanOutcome,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { waitFor } from "@logistics/shared/testing";
import {
  bearer,
  openScanCall,
  scanMessage,
  shipmentRequest,
  startIngestHarness,
  streamAll,
  submitScans,
  validScan,
  type IngestHarness,
} from "./ingest-harness.js";

describe("IngestService edges over real sockets (auth, rate limits, idempotency, Redis outage)", () => {
  let h: IngestHarness;
  beforeAll(async () => {
    h = await startIngestHarness({ INGEST_RATE_PER_SEC: "1", INGEST_RATE_BURST: "1000" });
    await Promise.all(["acme", "slowco", "globex"].map((c) => h.createShipments(c)));
  });
  afterAll(async () => {
    await h?.close();
  });
  const ingestClient = async (scopes: string[]) => {
    const transport = createGrpcTransport({ baseUrl: h.svc.url });
    const headers = { authorization: `Bearer ${await h.token({ scopes, subject: "order-system" })}` };
    return { client: createClient(IngestService, transport), headers };
  };
  const storedCount = async (stream: string) => {
    const nc = await connect({ servers: h.nats.url });
    try {
      return (await (await jetstreamManager(nc)).streams.info(stream)).state.messages;
    } finally {
      await nc.close();
    }
  };

  it("answers a scan naming another carrier than the token's with a per-scan WRONG_CARRIER, storing only the own scan", async () => {
    const md = bearer(await h.token({ carrier: "acme" }));
    const before = await storedCount(h.subjects.streams.scans.name);
    const res = await submitScans(h.grpcClient(), md, [validScan("acme", "p-1"), validScan("globex", "p-2")]);
    assert.deepEqual(res.acks.map((a) => [a.outcome, a.rejectReason]), [
      [ScanOutcome.ACCEPTED, RejectReason.UNSPECIFIED],
      [ScanOutcome.REJECTED, RejectReason.WRONG_CARRIER],
    ]);
    assert.match(res.acks[1]?.detail ?? "", /does not match the credentials' carrier "acme"/);
    assert.equal(await storedCount(h.subjects.streams.scans.name), before + 1);
  });

  it("keeps StreamScans open after a foreign scan and answers it alone", async () => {
    const call = openScanCall(h.grpcClient(), bearer(await h.token({ carrier: "acme" })));
    const run = await streamAll(call, [scanMessage([validScan("acme", "q-1")]), scanMessage([validScan("globex", "q-2")]), scanMessage([validScan("acme", "q-3")])], 1);
    assert.equal(run.status.code, grpc.status.OK);
    assert.deepEqual(run.responses.map((r) => r.acks[0]?.rejectReason), [RejectReason.UNSPECIFIED, RejectReason.WRONG_CARRIER, RejectReason.UNSPECIFIED]);
  });

  it("refuses a DELIVERED scan for another carrier's shipment even when the scan names the attacker's own carrier", async () => {
    // The attack: a valid acme token, carrier_code "acme", a tracking number of globex's shipment.
    const victim = await h.createShipment("globex");
    const before = await storedCount(h.subjects.streams.scans.name);
    const md = bearer(await h.token({ carrier: "acme" }));
    const forged = validScan("acme", "forged-delivery", { trackingNumber: victim, rawStatus: { code: "DL", text: "Delivered" } });
    const res = await submitScans(h.grpcClient(), md, [forged]);
    assert.equal(res.acks[0]?.outcome, ScanOutcome.REJECTED);
    assert.equal(res.acks[0]?.rejectReason, RejectReason.WRONG_CARRIER);
    const streamed = await streamAll(openScanCall(h.grpcClient(), md), [scanMessage([forged])], 1);
    assert.equal(streamed.responses[0]?.acks[0]?.rejectReason, RejectReason.WRONG_CARRIER);
    // An internal backfill job cannot write it either: the shipment decides, not the caller.
    const internal = await submitScans(h.grpcClient(), bearer(await h.token({ scopes: [Scope.ScansWrite], subject: "backfill" })), [forged]);
    assert.equal(internal.acks[0]?.rejectReason, RejectReason.WRONG_CARRIER);
    assert.equal(await storedCount(h.subjects.streams.scans.name), before, "nothing stored");
    // The rightful carrier's scan is accepted.
    const own = await submitScans(h.grpcClient(), bearer(await h.token({ carrier: "globex" })), [validScan("globex", "real-1", { trackingNumber: victim })]);
    assert.equal(own.acks[0]?.outcome, ScanOutcome.ACCEPTED);
  });

  it("answers a scan for a tracking number the mesh never saw with UNKNOWN_SHIPMENT, and accepts it once the shipment exists", async () => {
    const md = bearer(await h.token({ carrier: "acme" }));
    const early = validScan("acme", "early-1", { trackingNumber: "ACMENEW00001" });
    const first = await submitScans(h.grpcClient(), md, [early]);
    assert.equal(first.acks[0]?.rejectReason, RejectReason.UNKNOWN_SHIPMENT);
    await h.createShipment("acme", { trackingNumber: "ACMENEW00001" });
    const again = await submitScans(h.grpcClient(), md, [early]);
    assert.equal(again.acks[0]?.outcome, ScanOutcome.ACCEPTED, "the scan right after CreateShipment finds its shipment");
  });

  it("accepts a partner's scans only after a handover by the shipment's carrier, and publishes the handover", async () => {
    const tn = await h.createShipment("acme");
    const partnerMd = bearer(await h.token({ carrier: "lastmile" }));
    const before = await submitScans(h.grpcClient(), partnerMd, [validScan("lastmile", "lm-1", { trackingNumber: tn })]);
    assert.equal(before.acks[0]?.rejectReason, RejectReason.WRONG_CARRIER);

    const transport = createGrpcTransport({ baseUrl: h.svc.url });
    const client = createClient(IngestService, transport);
    const as = async (o: { carrier?: string; scopes?: string[] }) => ({ headers: { authorization: `Bearer ${await h.token(o)}` } });
    // Carriers that do not carry the shipment may not hand it over, the partner-to-be included
    // (nor may a partner once it is one: shipment-handover.int.test.ts).
    for (const carrier of ["lastmile", "globex"]) {
      const denied = await client
        .handOverShipment({ trackingNumber: tn, partnerCarrierCode: "lastmile" }, await as({ carrier }))
        .catch((e: unknown) => ConnectError.from(e));
      assert.ok(denied instanceof ConnectError && denied.code === Code.PermissionDenied, `${carrier}: ${String(denied)}`);
    }
    const unknown = await client
      .handOverShipment({ trackingNumber: "NOSUCH000001", partnerCarrierCode: "lastmile" }, await as({ carrier: "acme" }))
      .catch((e: unknown) => ConnectError.from(e));
    assert.ok(unknown instanceof ConnectError && unknown.code === Code.NotFound);

    const events = await storedCount(h.subjects.streams.shipments.name);
    const res = await client.handOverShipment({ trackingNumber: tn, partnerCarrierCode: "lastmile", hubCode: "ORD" }, await as({ carrier: "acme" }));
    assert.deepEqual([res.carrierCode, res.partnerCarrierCodes, res.changed], ["acme", ["lastmile"], true]);
    const repeat = await client.handOverShipment({ trackingNumber: tn, partnerCarrierCode: "lastmile" }, await as({ carrier: "acme" }));
    assert.equal(repeat.changed, false);
    assert.equal(await storedCount(h.subjects.streams.shipments.name), events + 1, "one ShipmentHandedOver event");

    const after = await submitScans(h.grpcClient(), partnerMd, [validScan("lastmile", "lm-2", { trackingNumber: tn })]);
    assert.equal(after.acks[0]?.outcome, ScanOutcome.ACCEPTED);
    const original = await submitScans(h.grpcClient(), bearer(await h.token({ carrier: "acme" })), [validScan("acme", "acme-after", { trackingNumber: tn })]);
    assert.equal(original.acks[0]?.outcome, ScanOutcome.ACCEPTED, "the original carrier still scans returns and corrections");
  });

  it("answers SubmitScans over the carrier's rate with ResourceExhausted and a retry-after trailer", async () => {
    const md = bearer(await h.token({ carrier: "slowco" }));
    const first = await submitScans(h.grpcClient(), md, Array.from({ length: 1000 }, (_, i) => validScan("slowco", `rl-${i}`)));
    assert.equal(first.acks.filter((a) => a.outcome === ScanOutcome.ACCEPTED).length, 1000);
    // The bucket (1 000 scans, refilled at 1 scan/s) cannot hold another full batch this soon.
    const err = await submitScans(h.grpcClient(), md, Array.from({ length: 1000 }, (_, i) => validScan("slowco", `rl-over-${i}`))).then(
      () => assert.fail("expected ResourceExhausted"),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(err.details, /retry after \d+ s/);
    assert.ok(Number(err.metadata.get("retry-after")[0]) >= 1, "retry-after trailer in seconds");
    // Another carrier has its own bucket.
    const other = await submitScans(h.grpcClient(), bearer(await h.token({ carrier: "acme" })), [validScan("acme", "rl-other")]);
    assert.equal(other.acks[0]?.outcome, ScanOutcome.ACCEPTED);
  });

  it("creates a shipment once per idempotency key and replays the first result", async () => {
    const { client, headers } = await ingestClient([Scope.ShipmentsWrite]);
    const before = await storedCount(h.subjects.streams.shipments.name);
    const first = await client.createShipment(shipmentRequest("order-0001"), { headers });
    assert.match(first.trackingNumber, /^LM[A-Z2-7]{10}$/);
    assert.equal(first.replayed, false);
    const again = await client.createShipment(shipmentRequest("order-0001"), { headers });
    assert.equal(again.replayed, true);
    assert.equal(again.trackingNumber, first.trackingNumber);
    assert.equal(again.shipmentId, first.shipmentId);
    assert.deepEqual(again.createdAt, first.createdAt);
    assert.equal(await storedCount(h.subjects.streams.shipments.name), before + 1, "one ShipmentCreated event");

    const changed = await client.createShipment(shipmentRequest("order-0001", { customerId: "cust-2" }), { headers }).catch((e: unknown) => ConnectError.from(e));
    assert.ok(changed instanceof ConnectError);
    assert.equal(changed.code, Code.FailedPrecondition);
  });

  it("keeps a requested tracking number to the shipment that has it (AlreadyExists)", async () => {
    const { client, headers } = await ingestClient([Scope.ShipmentsWrite]);
    const mine = await client.createShipment(shipmentRequest("order-tn-1", { trackingNumber: "ACME00000001" }), { headers });
    assert.equal(mine.trackingNumber, "ACME00000001");
    const theirs = await client
      .createShipment(shipmentRequest("order-tn-2", { trackingNumber: "ACME00000001" }), { headers })
      .catch((e: unknown) => ConnectError.from(e));
    assert.ok(theirs instanceof ConnectError);
    assert.equal(theirs.code, Code.AlreadyExists);
  });

  it("keeps ingesting while Redis is down (fail-open), with JetStream deduplicating resends", async () => {
    // JetStream's window is the dedupe that holds without Redis (a Redis restart also empties the
    // set): the scans stream keeps ids for SCAN_DUPLICATE_WINDOW_MINUTES (60), not 2 minutes.
    const nc = await connect({ servers: h.nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      assert.equal((await jsm.streams.info(h.subjects.streams.scans.name)).config.duplicate_window, 60 * 60_000 * 1_000_000);
      assert.equal((await jsm.streams.info(h.subjects.streams.shipments.name)).config.duplicate_window, 120_000 * 1_000_000);
    } finally {
      await nc.close();
    }
    await h.redis.kill();
    try {
      const md = bearer(await h.token({ carrier: "acme" }));
      const scans = [validScan("acme", "down-1"), validScan("acme", "down-2")];
      const res = await submitScans(h.grpcClient(), md, scans);
      assert.deepEqual(res.acks.map((a) => a.outcome), [ScanOutcome.ACCEPTED, ScanOutcome.ACCEPTED]);
      const resent = await submitScans(h.grpcClient(), md, scans);
      assert.deepEqual(resent.acks.map((a) => a.outcome), [ScanOutcome.DUPLICATE, ScanOutcome.DUPLICATE]);

      const { client, headers } = await ingestClient([Scope.ShipmentsWrite]);
      const created = await client.createShipment(shipmentRequest("order-down-1"), { headers });
      assert.equal(created.replayed, false);
      assert.ok(await h.metric("logistics_ingest_redis_errors_total") > 0, "the outage is counted");
    } finally {
      await h.redis.restart();
    }
    // Once Redis is back, the dedupe set is used again.
    const md = bearer(await h.token({ carrier: "acme" }));
    await waitFor(async () => {
      const r = await submitScans(h.grpcClient(), md, [validScan("acme", `back-${Date.now()}`)]);
      return r.acks[0]?.outcome === ScanOutcome.ACCEPTED;
    });
  });
});
