import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Scope } from "@logistics/shared/auth";
import { ScanSchema, type Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { IngestService, RejectReason, ScanOutcome, type ScanAck } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { ShipmentEventKind, TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createSubjects } from "@logistics/shared/nats";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { assertMeshSettled, startE2eMesh, type E2eMesh } from "./e2e-mesh.js";

/**
 * A carrier that keeps scanning one parcel (a loop, a bug, an attack) used to have every scan
 * accepted until the shipment's tracking document reached its size limit; from then on tracking
 * dead-lettered each of its events and the shipment froze (tracking now trims such a document
 * instead: services/tracking/test/oversize-shipment.int.test.ts). Ingest charges each scan what it
 * adds to that document and rejects the scans past the shipment's budget (SHIPMENT_FULL), at its
 * default: whatever it accepted, tracking applied, and nothing was dead-lettered.
 */
// At the default budget and at the largest INGEST_SHIPMENT_SCAN_BUDGET_BYTES accepts.
for (const budget of [undefined, "196608"]) describe(`a shipment's scan budget (${budget ?? "default"}): what ingest accepts, tracking holds`, { timeout: 180_000 }, () => {
  let mesh: E2eMesh;
  let nc: NatsConnection;
  let jsm: JetStreamManager;

  beforeAll(async () => {
    mesh = await startE2eMesh({ services: ["ingest", "routing", "tracking"], ...(budget ? { env: { INGEST_SHIPMENT_SCAN_BUDGET_BYTES: budget } } : {}) });
    nc = await connect({ servers: mesh.env["NATS_URL"] });
    jsm = await jetstreamManager(nc);
  }, 120_000);
  afterAll(async () => {
    await nc?.close();
    await mesh?.close();
  });

  const ingest = () => createClient(IngestService, createGrpcTransport({ baseUrl: mesh.get("ingest").url }));
  const tracking = () => createClient(TrackingService, createGrpcTransport({ baseUrl: mesh.get("tracking").url }));
  const auth = async (scopes: string[], extra?: { carrier?: string }) => ({ headers: { authorization: `Bearer ${await mesh.token(scopes, extra)}` } });

  const newShipment = async (tag: string): Promise<string> => {
    const created = await ingest().createShipment(
      {
        idempotencyKey: uniqueName(tag),
        carrierCode: "acme",
        customerId: "cust-budget",
        serviceLevel: ServiceLevel.STANDARD,
        origin: { countryCode: "DE", city: "Frankfurt", hubCode: "FRA", location: { latitude: 50.11, longitude: 8.68 } },
        destination: { countryCode: "US", city: "Chicago", hubCode: "ORD", location: { latitude: 41.88, longitude: -87.63 } },
        parcel: { weightGrams: 1200 },
      },
      await auth([Scope.ShipmentsWrite]),
    );
    return created.trackingNumber;
  };

  /** Submits `scans` (retrying only what ingest asks to retry); the final acks. */
  const submit = async (scans: Scan[]): Promise<ScanAck[]> => {
    const carrier = await auth([Scope.ScansWrite], { carrier: "acme" });
    return waitFor(
      async () => {
        const { acks } = await ingest().submitScans({ scans }, carrier);
        const again = acks.some((a) => a.outcome === ScanOutcome.REJECTED && (a.rejectReason === RejectReason.UNAVAILABLE || a.rejectReason === RejectReason.UNKNOWN_SHIPMENT));
        return again ? null : acks;
      },
      { timeoutMs: 20_000, message: "scans acknowledged" },
    );
  };

  /** Scans `tn` in rounds of `perRound` until ingest answers SHIPMENT_FULL; the ids it accepted. */
  const scanUntilFull = async (tn: string, scan: (i: number) => Omit<Parameters<typeof create<typeof ScanSchema>>[1], "$typeName">, perRound: number) => {
    const accepted: string[] = [];
    const t0 = Date.now() - 20 * 24 * 3_600_000;
    for (let round = 0; round < 200; round++) {
      const scans = Array.from({ length: perRound }, (_, k) => {
        const i = round * perRound + k;
        return create(ScanSchema, { trackingNumber: tn, carrierCode: "acme", eventTime: timestampFromMs(t0 + i * 60_000), ...scan(i) });
      });
      const acks = await submit(scans);
      for (const a of acks) {
        if (a.outcome === ScanOutcome.ACCEPTED) accepted.push(a.eventId);
        else assert.equal(RejectReason[a.rejectReason], "SHIPMENT_FULL", `${a.eventId}: ${ScanOutcome[a.outcome]} ${RejectReason[a.rejectReason]} ${a.detail}`);
      }
      if (acks.some((a) => a.outcome === ScanOutcome.REJECTED)) return { accepted, lastRound: scans };
    }
    throw new Error(`${tn}: never full after ${accepted.length} accepted scans`);
  };

  /** Waits until tracking's history of `tn` holds exactly the `accepted` scans. */
  const assertAllApplied = async (tn: string, accepted: readonly string[]) => {
    const reader = await auth([Scope.Admin]);
    await waitFor(
      async () => {
        let token = "";
        let scans = 0;
        do {
          const page = await tracking().listShipmentEvents({ trackingNumber: tn, pageSize: 100, pageToken: token }, reader);
          scans += page.events.filter((e) => e.kind === ShipmentEventKind.SCAN).length;
          token = page.nextPageToken;
        } while (token);
        return scans === accepted.length;
      },
      { timeoutMs: 60_000, intervalMs: 500, message: `${tn}: the ${accepted.length} accepted scans applied` },
    );
  };

  it("fills up on scans of the longest texts the contract allows (escaped control characters), and tracking holds every accepted one", async () => {
    const tn = await newShipment("budget-long");
    const text = "\u0001".repeat(512); // each is six bytes in the document's JSON
    const { accepted, lastRound } = await scanUntilFull(tn, (i) => ({ eventId: `${"e".repeat(100)}-${uniqueName("l")}-${i}`.slice(-128), rawStatus: { code: "AR", text }, hubCode: "FRANKFUR" }), 10);
    assert.ok(accepted.length >= 20 && accepted.length <= 70, `${accepted.length} long scans accepted`);
    await assertAllApplied(tn, accepted);

    // Full stays full for new scans as large; a resend of an accepted one is still a duplicate; other shipments go on.
    const resent = lastRound.find((s) => accepted.includes(s.eventId)) ?? lastRound[0]!;
    const [again] = await submit([resent]);
    assert.equal(ScanOutcome[again!.outcome], accepted.includes(resent.eventId) ? "DUPLICATE" : "REJECTED");
    const [more] = await submit([create(ScanSchema, { trackingNumber: tn, carrierCode: "acme", eventId: uniqueName("more"), rawStatus: { code: "DL", text }, hubCode: "FRANKFUR", eventTime: timestampFromMs(Date.now() - 60_000) })]);
    assert.equal(RejectReason[more!.rejectReason], "SHIPMENT_FULL");
    const other = await newShipment("budget-other");
    const [fine] = await submit([create(ScanSchema, { trackingNumber: other, carrierCode: "acme", eventId: uniqueName("o"), rawStatus: { code: "PU", text: "Picked up" }, eventTime: timestampFromMs(Date.now() - 60_000) })]);
    assert.equal(ScanOutcome[fine!.outcome], "ACCEPTED");
  });

  it("fills up on ordinary scans after hundreds of them, and tracking holds every accepted one", async () => {
    const tn = await newShipment("budget-short");
    const { accepted } = await scanUntilFull(tn, (i) => ({ eventId: `${uniqueName("s")}-${i}`, rawStatus: { code: i % 2 ? "AR" : "DP", text: i % 2 ? "Arrived at hub" : "Departed hub" }, hubCode: "FRA" }), 100);
    assert.ok(accepted.length >= 300, `${accepted.length} ordinary scans accepted`);
    await assertAllApplied(tn, accepted);
  });

  it("dead-lettered nothing and redelivered nothing", async () => {
    await assertMeshSettled(jsm, createSubjects(mesh.env["SUBJECT_PREFIX"]));
  });
});
