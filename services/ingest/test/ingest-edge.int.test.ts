import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Scope } from "../../shared/src/auth/index.js";
import { ServiceLevel } from "../../shared/src/gen/logistics/common/v1/shipment_pb.js";
import {
  CreateShipmentRequestSchema,
  IngestService,
  ScanOutcome,
  type CreateShipmentRequest,
} from "../../shared/src/gen/logistics/ingest/v1/ingest_pb.js";
import { waitFor } from "../../shared/src/testing/index.js";
import {
  bearer,
  openScanStream,
  scanMessage,
  startIngestHarness,
  streamAll,
  submitScans,
  validScan,
  type IngestHarness,
} from "./ingest-harness.js";

function shipment(key: string, over: { customerId?: string; trackingNumber?: string } = {}): CreateShipmentRequest {
  return create(CreateShipmentRequestSchema, {
    idempotencyKey: key,
    carrierCode: "acme",
    customerId: "cust-1",
    serviceLevel: ServiceLevel.STANDARD,
    origin: { countryCode: "DE", city: "Frankfurt", location: { latitude: 50.11, longitude: 8.68 } },
    destination: { countryCode: "US", city: "Chicago", location: { latitude: 41.88, longitude: -87.63 } },
    parcel: { weightGrams: 1200 },
    readyTime: timestampFromDate(new Date("2026-01-01T00:00:00Z")),
    ...over,
  });
}

describe("IngestService edges over real sockets (auth, rate limits, idempotency, Redis outage)", () => {
  let h: IngestHarness;
  beforeAll(async () => {
    h = await startIngestHarness({ INGEST_RATE_PER_SEC: "1", INGEST_RATE_BURST: "1000" });
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

  it("fails SubmitScans with PermissionDenied when a carrier sends another carrier's scan, storing nothing", async () => {
    const md = bearer(await h.token({ carrier: "acme" }));
    const err = await submitScans(h.grpcClient(), md, [validScan("acme", "p-1"), validScan("ups", "p-2")]).then(
      () => assert.fail("expected PermissionDenied"),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.PERMISSION_DENIED);
    assert.match(err.details, /"acme" may not act for carrier "ups"/);
    assert.equal(await storedCount(h.subjects.streams.scans.name), 0);
  });

  it("ends StreamScans with PermissionDenied when a carrier sends another carrier's scan", async () => {
    const call = openScanStream(h.grpcClient(), bearer(await h.token({ carrier: "acme" })));
    const run = await streamAll(call, [scanMessage([validScan("acme", "q-1")]), scanMessage([validScan("dhl", "q-2")])], 1);
    assert.equal(run.status.code, grpc.status.PERMISSION_DENIED);
    assert.equal(run.responses.length, 1, "the message before the foreign scan is still answered");
    assert.equal(run.responses[0]?.acks[0]?.outcome, ScanOutcome.ACCEPTED);
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
    const first = await client.createShipment(shipment("order-0001"), { headers });
    assert.match(first.trackingNumber, /^LM[A-Z2-7]{10}$/);
    assert.equal(first.replayed, false);
    const again = await client.createShipment(shipment("order-0001"), { headers });
    assert.equal(again.replayed, true);
    assert.equal(again.trackingNumber, first.trackingNumber);
    assert.equal(again.shipmentId, first.shipmentId);
    assert.deepEqual(again.createdAt, first.createdAt);
    assert.equal(await storedCount(h.subjects.streams.shipments.name), before + 1, "one ShipmentCreated event");

    const changed = await client.createShipment(shipment("order-0001", { customerId: "cust-2" }), { headers }).catch((e: unknown) => ConnectError.from(e));
    assert.ok(changed instanceof ConnectError);
    assert.equal(changed.code, Code.FailedPrecondition);
  });

  it("keeps a requested tracking number to the shipment that has it (AlreadyExists)", async () => {
    const { client, headers } = await ingestClient([Scope.ShipmentsWrite]);
    const mine = await client.createShipment(shipment("order-tn-1", { trackingNumber: "ACME00000001" }), { headers });
    assert.equal(mine.trackingNumber, "ACME00000001");
    const theirs = await client
      .createShipment(shipment("order-tn-2", { trackingNumber: "ACME00000001" }), { headers })
      .catch((e: unknown) => ConnectError.from(e));
    assert.ok(theirs instanceof ConnectError);
    assert.equal(theirs.code, Code.AlreadyExists);
  });

  it("keeps ingesting while Redis is down (fail-open), with JetStream deduplicating resends", async () => {
    await h.redis.kill();
    try {
      const md = bearer(await h.token({ carrier: "acme" }));
      const scans = [validScan("acme", "down-1"), validScan("acme", "down-2")];
      const res = await submitScans(h.grpcClient(), md, scans);
      assert.deepEqual(res.acks.map((a) => a.outcome), [ScanOutcome.ACCEPTED, ScanOutcome.ACCEPTED]);
      const resent = await submitScans(h.grpcClient(), md, scans);
      assert.deepEqual(resent.acks.map((a) => a.outcome), [ScanOutcome.DUPLICATE, ScanOutcome.DUPLICATE]);

      const { client, headers } = await ingestClient([Scope.ShipmentsWrite]);
      const created = await client.createShipment(shipment("order-down-1"), { headers });
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
