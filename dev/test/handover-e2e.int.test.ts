import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Scope } from "@logistics/shared/auth";
import { IngestService, RejectReason, ScanOutcome } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import {
  ShipmentEventKind,
  TrackingService,
  WatchUpdateKind,
  type WatchShipmentResponse,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createSubjects } from "@logistics/shared/nats";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { assertMeshSettled, shipmentRequest, startE2eMesh, type E2eMesh } from "./e2e-mesh.js";

/**
 * A handover from ingest's HandOverShipment to what a customer sees in tracking, over the real
 * services, nats-server and PostgreSQL: the carrier hands the parcel to a last-mile partner, a
 * watcher of the shipment gets the HANDED_OVER change live, and the shipment lists the partner.
 * Then the partner's removal (RemoveShipmentPartner) the same way: its scans are refused, the
 * shipment no longer lists it, and handing the parcel to it again lists it again.
 */
describe("a handover from the carrier edge to the tracking read model", () => {
  let mesh: E2eMesh;
  let nc: NatsConnection;
  let ingest: Client<typeof IngestService>;
  let tracking: Client<typeof TrackingService>;

  beforeAll(async () => {
    mesh = await startE2eMesh({ services: ["ingest", "tracking"] });
    nc = await connect({ servers: mesh.env["NATS_URL"] });
    ingest = createClient(IngestService, createGrpcTransport({ baseUrl: mesh.get("ingest").url }));
    tracking = createClient(TrackingService, createConnectTransport({ baseUrl: mesh.get("tracking").url, httpVersion: "1.1" }));
  });
  afterAll(async () => {
    await nc?.close();
    await mesh?.close();
  });

  const as = async (scopes: string[], extra?: { carrier?: string }) => ({
    headers: { authorization: `Bearer ${await mesh.token(scopes, extra)}` },
  });

  it("shows the handover to a watcher at once and the partner on the shipment, and the partner's scans follow", async () => {
    const { trackingNumber } = await ingest.createShipment(
      { ...shipmentRequest("acme", "handover-shop"), partnerCarrierCodes: ["air-x"] },
      await as([Scope.ShipmentsWrite]),
    );
    const reader = await as([Scope.ShipmentsRead]);
    await waitFor(() => tracking.getShipment({ trackingNumber }, reader).then(() => true), { timeoutMs: 30_000, message: "tracking knows the shipment" });

    const updates: WatchShipmentResponse[] = [];
    const abort = new AbortController();
    const watching = (async () => {
      for await (const u of tracking.watchShipment({ trackingNumber }, { ...reader, signal: abort.signal })) updates.push(u);
    })().catch(() => undefined);
    await waitFor(() => updates.some((u) => u.kind === WatchUpdateKind.SNAPSHOT), { message: "snapshot" });

    const before = new Date();
    const res = await ingest.handOverShipment({ trackingNumber, partnerCarrierCode: "lastmile", hubCode: "CDG" }, await as([Scope.ScansWrite], { carrier: "acme" }));
    const after = new Date();
    assert.deepEqual(res.partnerCarrierCodes, ["air-x", "lastmile"]);
    const change = await waitFor(() => updates.find((u) => u.kind === WatchUpdateKind.CHANGE), { timeoutMs: 30_000, message: "the handover on the watch" });
    assert.equal(change.sequence, 2n);
    assert.equal(change.cause?.kind, ShipmentEventKind.HANDED_OVER);
    assert.equal(change.cause?.partnerCarrierCode, "lastmile");
    assert.equal(change.cause?.hubCode, "CDG");
    const at = change.cause?.eventTime ? timestampDate(change.cause.eventTime).getTime() : 0;
    assert.ok(at >= before.getTime() - 1 && at <= after.getTime() + 1, "event time = when ingest recorded the handover");
    assert.deepEqual(change.shipment?.partnerCarrierCodes, ["air-x", "lastmile"], "as ingest lists them");

    // A repeated handover changes nothing; the partner's scan is the next version.
    const repeat = await ingest.handOverShipment({ trackingNumber, partnerCarrierCode: "lastmile" }, await as([Scope.ScansWrite], { carrier: "acme" }));
    assert.equal(repeat.changed, false);
    const scanned = await ingest.submitScans(
      {
        scans: [
          {
            eventId: uniqueName("lm"),
            trackingNumber,
            carrierCode: "lastmile",
            rawStatus: { code: "AR", text: "Arrived at depot" },
            eventTime: timestampFromDate(new Date()),
            hubCode: "CDG",
          },
        ],
      },
      await as([Scope.ScansWrite], { carrier: "lastmile" }),
    );
    assert.equal(scanned.acks[0]?.outcome, ScanOutcome.ACCEPTED);
    await waitFor(() => updates.some((u) => u.sequence === 3n), { timeoutMs: 30_000, message: "the partner's scan on the watch" });
    abort.abort();
    await watching;
    assert.deepEqual(
      updates.filter((u) => u.kind !== WatchUpdateKind.HEARTBEAT).map((u) => [u.sequence, u.cause?.kind ?? ShipmentEventKind.UNSPECIFIED]),
      [
        [1n, ShipmentEventKind.UNSPECIFIED],
        [2n, ShipmentEventKind.HANDED_OVER],
        [3n, ShipmentEventKind.SCAN],
      ],
    );

    const anonymous = (await tracking.listShipmentEvents({ trackingNumber })).events;
    assert.deepEqual(
      anonymous.map((e) => e.kind),
      [ShipmentEventKind.CREATED, ShipmentEventKind.HANDED_OVER, ShipmentEventKind.SCAN],
    );
    assert.equal(anonymous[1]?.description, "Handed over to a partner carrier at hub CDG");
    assert.equal(anonymous[1]?.partnerCarrierCode, "");
    assert.deepEqual((await tracking.getShipment({ trackingNumber })).shipment?.partnerCarrierCodes, []);

    const jsm = await jetstreamManager(nc);
    await assertMeshSettled(jsm, createSubjects(mesh.env["SUBJECT_PREFIX"]));
  });

  it("takes a removed partner's scans no more and drops it from the shipment, and a new handover brings it back", async () => {
    const { trackingNumber } = await ingest.createShipment(
      { ...shipmentRequest("acme", "removal-shop"), partnerCarrierCodes: ["air-x"] },
      await as([Scope.ShipmentsWrite]),
    );
    const reader = await as([Scope.ShipmentsRead]);
    const acme = await as([Scope.ScansWrite], { carrier: "acme" });
    const partners = async () => (await tracking.getShipment({ trackingNumber }, reader)).shipment?.partnerCarrierCodes;
    const scanAs = async (carrier: string, id: string) =>
      (
        await ingest.submitScans(
          {
            scans: [
              {
                eventId: uniqueName(id),
                trackingNumber,
                carrierCode: carrier,
                rawStatus: { code: "AR", text: "Arrived at depot" },
                eventTime: timestampFromDate(new Date()),
              },
            ],
          },
          await as([Scope.ScansWrite], { carrier }),
        )
      ).acks[0];

    await ingest.handOverShipment({ trackingNumber, partnerCarrierCode: "lastmile", hubCode: "CDG" }, acme);
    assert.equal((await scanAs("lastmile", "rm-before"))?.outcome, ScanOutcome.ACCEPTED);
    await waitFor(async () => (await partners().catch(() => undefined))?.includes("lastmile"), { timeoutMs: 30_000, message: "tracking lists lastmile" });

    const removed = await ingest.removeShipmentPartner({ trackingNumber, partnerCarrierCode: "lastmile" }, acme);
    assert.deepEqual([removed.partnerCarrierCodes, removed.changed], [["air-x"], true]);
    const refused = await scanAs("lastmile", "rm-after");
    assert.deepEqual([refused?.outcome, refused?.rejectReason], [ScanOutcome.REJECTED, RejectReason.WRONG_CARRIER]);
    await waitFor(async () => {
      const p = await partners();
      return p !== undefined && !p.includes("lastmile") ? p : undefined;
    }, { timeoutMs: 30_000, message: "tracking drops lastmile" });
    assert.deepEqual(await partners(), ["air-x"]);
    const history = (await tracking.listShipmentEvents({ trackingNumber }, reader)).events;
    assert.deepEqual(
      history.filter((e) => e.kind === ShipmentEventKind.HANDED_OVER || e.kind === ShipmentEventKind.PARTNER_REMOVED).map((e) => [e.kind, e.partnerCarrierCode]),
      [
        [ShipmentEventKind.HANDED_OVER, "lastmile"],
        [ShipmentEventKind.PARTNER_REMOVED, "lastmile"],
      ],
    );
    const publicKinds = (await tracking.listShipmentEvents({ trackingNumber })).events.map((e) => e.kind);
    assert.ok(!publicKinds.includes(ShipmentEventKind.PARTNER_REMOVED), "the removal is internal");

    // Handed the parcel again: a new term, so a new event that neither JetStream nor tracking drops as a repeat.
    const back = await ingest.handOverShipment({ trackingNumber, partnerCarrierCode: "lastmile" }, acme);
    assert.deepEqual([back.partnerCarrierCodes, back.changed], [["air-x", "lastmile"], true]);
    assert.equal((await scanAs("lastmile", "rm-again"))?.outcome, ScanOutcome.ACCEPTED);
    await waitFor(async () => (await partners())?.includes("lastmile"), { timeoutMs: 30_000, message: "tracking lists lastmile again" });
    assert.deepEqual(await partners(), ["air-x", "lastmile"]);

    const jsm = await jetstreamManager(nc);
    await assertMeshSettled(jsm, createSubjects(mesh.env["SUBJECT_PREFIX"]));
  });
});
