import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Scope } from "@logistics/shared/auth";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { RoutingService } from "@logistics/shared/gen/logistics/routing/v1/routing_pb.js";
import { ShipmentEventKind, TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { waitFor } from "@logistics/shared/testing";
import { startCarrierSimulator, type CarrierSimulator, type SimulatorEvent } from "../src/carrier-simulator.js";
import { listWebHubs } from "../src/hub-directory.js";
import { startE2eMesh, type E2eMesh } from "./e2e-mesh.js";

describe("the carrier simulator of the local runner", () => {
  let mesh: E2eMesh;
  let sim: CarrierSimulator | undefined;
  const events: SimulatorEvent[] = [];

  beforeAll(async () => {
    mesh = await startE2eMesh({ services: ["ingest", "routing", "tracking"] });
  });
  afterAll(async () => {
    await sim?.close();
    await mesh?.close();
  });

  it("creates shipments, follows routing's plan and walks each parcel to delivery over StreamScans", async () => {
    const hubs = new Map(listWebHubs().map((h) => [h.code, h]));
    sim = await startCarrierSimulator({
      ingestUrl: mesh.get("ingest").url,
      routingUrl: mesh.get("routing").url,
      // Both kinds of token source: functions (as npm start renews its tokens) and a fixed token.
      scansToken: () => mesh.token([Scope.ScansWrite], { carrier: "acme" }),
      shipmentsToken: await mesh.token([Scope.ShipmentsWrite]),
      routesToken: () => mesh.token([Scope.RoutesRead]),
      shipments: 2,
      scanIntervalMs: 150,
      hubLocation: (code) => hubs.get(code),
      onEvent: (e) => events.push(e),
    });
    assert.equal(sim.trackingNumbers.length, 2);
    const [first] = sim.trackingNumbers as [string];
    const tracking = createClient(TrackingService, createGrpcTransport({ baseUrl: mesh.get("tracking").url }));
    const delivered = await waitFor(
      async () => {
        const res = await tracking.getShipment({ trackingNumber: first }, { timeoutMs: 2000 });
        return res.shipment?.status === ShipmentStatus.DELIVERED ? res.shipment : undefined;
      },
      { timeoutMs: 45_000, intervalMs: 250, message: `${first} delivered` },
    );
    assert.ok(delivered.deliveredAt, "delivery time recorded");

    const created = events.find((e) => e.type === "created" && e.trackingNumber === first);
    assert.ok(created && created.type === "created");
    assert.equal(created.route, "routing", "the parcel follows routing's planned route");
    const scans = events.filter((e) => e.type === "scan" && e.trackingNumber === first);
    assert.ok(scans.every((e) => e.type === "scan" && e.outcome === "ACCEPTED"), JSON.stringify(scans));
    assert.deepEqual(
      scans.filter((e) => e.type === "scan" && e.code === "AR").map((e) => (e.type === "scan" ? e.hub : "")),
      created.hubs,
      "an arrival scan at every hub of the plan, in order",
    );
    const history = await tracking.listShipmentEvents({ trackingNumber: first, pageSize: 200 });
    const scanEvents = history.events.filter((e) => e.kind === ShipmentEventKind.SCAN);
    assert.equal(scanEvents.length, scans.length, "every scan is in the shipment's history once");

    // The scans carry the planned route's times: in order, in the past, no arrival at a hub
    // before the planned departure towards it, no departure after the planned arrival.
    const times = scanEvents.map((e) => timestampMs(e.eventTime!));
    assert.deepEqual([...times].sort((a, b) => a - b), times, "history in event-time order");
    assert.ok(times.every((t) => t <= Date.now()), "no scan in the future");
    const routing = createClient(RoutingService, createGrpcTransport({ baseUrl: mesh.get("routing").url }));
    const legs =
      (await routing.getRoute({ trackingNumber: first }, { headers: { authorization: `Bearer ${await mesh.token([Scope.RoutesRead])}` } })).route?.legs ?? [];
    assert.ok(legs.length > 0);
    for (const leg of legs) {
      const arrival = scanEvents.find((e) => e.scanKind === ScanKind.HUB_ARRIVAL && e.hubCode === leg.toHub);
      const departure = scanEvents.find((e) => e.scanKind === ScanKind.HUB_DEPARTURE && e.hubCode === leg.fromHub);
      assert.ok(arrival && departure, `arrival at ${leg.toHub} and departure from ${leg.fromHub} scanned`);
      assert.ok(timestampMs(arrival.eventTime!) >= timestampMs(leg.plannedDeparture!), `${leg.toHub}: arrived after the planned departure`);
      assert.ok(timestampMs(departure.eventTime!) <= timestampMs(leg.plannedArrival!), `${leg.fromHub}: departed before the planned arrival`);
      assert.ok(timestampMs(arrival.eventTime!) > timestampMs(departure.eventTime!));
    }
    assert.deepEqual(events.filter((e) => e.type === "error"), []);
  });
});
