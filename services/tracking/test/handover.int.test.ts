import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Scope } from "@logistics/shared/auth";
import { createCatalogPublisher, createEventCatalog, type CatalogPublisher, type EventCatalog } from "@logistics/shared/events";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ShipmentHandedOverSchema,
  ShipmentPartnerRemovedSchema,
  type ShipmentHandedOver,
  type ShipmentPartnerRemoved,
} from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { StatusChangedSchema } from "@logistics/shared/gen/logistics/events/v1/tracking_events_pb.js";
import { ShipmentEventKind, TrackingService, WatchUpdateKind } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createEventPublisher } from "@logistics/shared/nats";
import type { RunningService } from "@logistics/shared/runtime";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import {
  connectWatch,
  createdEvent,
  createTrackingTestEnv,
  handoverEvent,
  publishFixture,
  readCounter,
  REGION,
  scanEvent,
  trackingNumber,
  type TrackingTestEnv,
  type Watch,
} from "./tracking-fixtures.js";

const t0 = Date.UTC(2026, 10, 23, 8, 0, 0);
const at = (h: number) => new Date(t0 + h * 3_600_000);

/** A ShipmentHandedOver as ingest's HandOverShipment publishes it. */
function handover(tn: string, partner: string, when: Date, hubCode = ""): ShipmentHandedOver {
  const e = handoverEvent(tn, partner, when, hubCode);
  assert.ok(e.kind === "handover");
  return e.message;
}

/** A ShipmentPartnerRemoved as ingest's RemoveShipmentPartner publishes it, ending `term`. */
function removal(tn: string, partner: string, when: Date, term = 0): ShipmentPartnerRemoved {
  return create(ShipmentPartnerRemovedSchema, {
    eventId: `pr.${tn}.${partner}.${term}`,
    trackingNumber: tn,
    shipmentId: `shp_${tn}`,
    carrierCode: "acme",
    partnerCarrierCode: partner,
    partnerTerm: term,
    removedAt: timestampFromDate(when),
    requestedByCarrierCode: "acme",
    region: REGION,
  });
}

describe("handovers to partner carriers in tracking (real nats-server, PostgreSQL and tracking service)", () => {
  let env: TrackingTestEnv;
  let svc: RunningService;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let catalog: EventCatalog;
  let publisher: CatalogPublisher;
  let client: Client<typeof TrackingService>;
  let full: Record<string, string>;
  const tag = uniqueName("ho").replace(/_/g, "").toUpperCase().slice(0, 10);

  beforeAll(async () => {
    env = await createTrackingTestEnv();
    svc = await env.start();
    nc = await connect({ servers: env.nats.url });
    js = jetstream(nc);
    catalog = createEventCatalog(env.env.SUBJECT_PREFIX);
    publisher = createCatalogPublisher({ js });
    client = createClient(TrackingService, createConnectTransport({ baseUrl: svc.url, httpVersion: "1.1" }));
    full = { authorization: `Bearer ${await env.token([Scope.ShipmentsRead])}` };
  });
  afterAll(async () => {
    await nc?.drain();
    await env?.close();
  });

  const publishCreated = (tn: string, when: Date, partners: string[]) =>
    publishFixture(createEventPublisher({ js }), env.subjects, createdEvent(tn, when, "cust-1", partners));
  const publishHandover = (m: ShipmentHandedOver) => publisher.publish(catalog.events.shipmentHandedOver, m, { region: REGION });
  const publishRemoval = (m: ShipmentPartnerRemoved) => publisher.publish(catalog.events.shipmentPartnerRemoved, m, { region: REGION });
  const version = async (tn: string) => {
    try {
      return (await client.getShipment({ trackingNumber: tn }, { headers: full })).shipment?.version ?? 0n;
    } catch {
      return 0n;
    }
  };
  const handoverOutcomes = (outcome: "applied" | "duplicate") =>
    readCounter(svc.metricsUrl, "logistics_tracking_projected_events_total", `type="shipment.handed_over",outcome="${outcome}"`);
  const removalOutcomes = (outcome: "applied" | "duplicate") =>
    readCounter(svc.metricsUrl, "logistics_tracking_projected_events_total", `type="shipment.partner_removed",outcome="${outcome}"`);
  /** The versions of `tn` whose StatusChanged is in the status stream. */
  const statusChanges = async (tn: string) => {
    const status = await js.consumers.get(env.subjects.streams.status.name, { filter_subjects: env.subjects.allStatusChanged });
    const versions: bigint[] = [];
    for await (const m of await status.fetch({ max_messages: 100, expires: 1000 })) {
      const c = fromBinary(StatusChangedSchema, m.data);
      if (c.trackingNumber === tn) versions.push(c.version);
    }
    return versions;
  };
  const changeAt = (w: Watch, sequence: bigint) => w.updates.find((u) => u.kind === WatchUpdateKind.CHANGE && u.sequence === sequence);

  it("shows a handover published through the catalog as a HANDED_OVER event and a partner, live to watchers, once however often it comes", async () => {
    const tn = trackingNumber(tag, 1);
    await publishCreated(tn, at(0), ["air-x"]);
    await waitFor(async () => (await version(tn)) === 1n, { message: "shipment created" });
    const internal = connectWatch(client, tn, 0n, full);
    const anonymous = connectWatch(client, tn);
    await waitFor(() => internal.updates.length >= 1 && anonymous.updates.length >= 1, { message: "snapshots" });

    const event = handover(tn, "lastmile", at(5), "CDG");
    await publishHandover(event);
    // Again through the catalog (the stream drops it: same Nats-Msg-Id), and once under another
    // message id, so the projector receives the same event id a second time.
    await publishHandover(event);
    await createEventPublisher({ js }).publish(catalog.events.shipmentHandedOver.subject({ region: REGION }), ShipmentHandedOverSchema, event, {
      msgId: `${event.eventId}.again`,
    });
    await waitFor(async () => (await handoverOutcomes("duplicate")) >= 1, { message: "the second delivery found applied" });
    assert.equal(await handoverOutcomes("applied"), 1);
    assert.equal(await version(tn), 2n, "one version for the handover");

    await waitFor(() => changeAt(internal, 2n) !== undefined && changeAt(anonymous, 2n) !== undefined, { message: "version 2 on both watches" });
    internal.cancel();
    anonymous.cancel();
    await Promise.all([internal.ended, anonymous.ended]);
    const inside = changeAt(internal, 2n);
    assert.equal(inside?.cause?.kind, ShipmentEventKind.HANDED_OVER);
    assert.equal(inside?.cause?.eventId, event.eventId);
    assert.equal(inside?.cause?.partnerCarrierCode, "lastmile");
    assert.equal(inside?.cause?.hubCode, "CDG");
    assert.equal(inside?.cause?.description, "Handed over to lastmile at hub CDG");
    assert.deepEqual(inside?.shipment?.partnerCarrierCodes, ["air-x", "lastmile"]);
    assert.equal(inside?.shipment?.status, ShipmentStatus.INFO_RECEIVED, "a handover is not a status change");
    const outside = changeAt(anonymous, 2n);
    assert.equal(outside?.cause?.kind, ShipmentEventKind.HANDED_OVER);
    assert.equal(outside?.cause?.partnerCarrierCode, "");
    assert.equal(outside?.cause?.eventId, "");
    assert.equal(outside?.cause?.hubCode, "CDG");
    assert.equal(outside?.cause?.description, "Handed over to a partner carrier at hub CDG");
    assert.deepEqual(outside?.shipment?.partnerCarrierCodes, []);
    assert.equal(internal.updates.filter((u) => u.kind === WatchUpdateKind.CHANGE).length, 1, "no change for the repeats");

    const got = (await client.getShipment({ trackingNumber: tn }, { headers: full })).shipment;
    assert.deepEqual(got?.partnerCarrierCodes, ["air-x", "lastmile"]);
    assert.equal(got?.updatedAt?.seconds, BigInt(at(5).getTime() / 1000));
    assert.deepEqual((await client.getShipment({ trackingNumber: tn })).shipment?.partnerCarrierCodes, []);
    const history = (await client.listShipmentEvents({ trackingNumber: tn }, { headers: full })).events;
    assert.deepEqual(
      history.map((e) => [e.kind, e.partnerCarrierCode, e.eventTime?.seconds]),
      [
        [ShipmentEventKind.CREATED, "", BigInt(t0 / 1000)],
        [ShipmentEventKind.HANDED_OVER, "lastmile", BigInt(at(5).getTime() / 1000)],
      ],
    );
    const publicHistory = (await client.listShipmentEvents({ trackingNumber: tn })).events;
    assert.deepEqual(
      publicHistory.map((e) => [e.kind, e.partnerCarrierCode, e.description]),
      [
        [ShipmentEventKind.CREATED, "", "Shipment information received"],
        [ShipmentEventKind.HANDED_OVER, "", "Handed over to a partner carrier at hub CDG"],
      ],
    );

    // The handover's message was acknowledged after its changes were published: none were.
    assert.deepEqual(await statusChanges(tn), [1n], "StatusChanged for the creation only");
  });

  it("ends with the same document when the handover arrives before the creation", async () => {
    const tn = trackingNumber(tag, 2);
    await publishHandover(handover(tn, "lastmile", at(5), "CDG"));
    await waitFor(async () => (await version(tn)) === 1n, { message: "the handover alone makes a document" });
    const early = (await client.getShipment({ trackingNumber: tn }, { headers: full })).shipment;
    assert.deepEqual(early?.partnerCarrierCodes, ["lastmile"]);
    assert.equal(early?.status, ShipmentStatus.UNSPECIFIED);

    await publishCreated(tn, at(0), ["air-x"]);
    await publishFixture(createEventPublisher({ js }), env.subjects, scanEvent(tn, 1, ScanKind.OUT_FOR_DELIVERY, at(6)));
    await waitFor(async () => (await version(tn)) === 3n, { message: "creation and scan applied" });
    const got = (await client.getShipment({ trackingNumber: tn }, { headers: full })).shipment;
    assert.deepEqual(got?.partnerCarrierCodes, ["air-x", "lastmile"], "the creation's partners first, whatever the arrival order");
    assert.equal(got?.customerId, "cust-1");
    assert.equal(got?.status, ShipmentStatus.OUT_FOR_DELIVERY);
    const history = (await client.listShipmentEvents({ trackingNumber: tn }, { headers: full })).events;
    assert.deepEqual(
      history.map((e) => [e.kind, e.late]),
      [
        [ShipmentEventKind.CREATED, false],
        [ShipmentEventKind.HANDED_OVER, false],
        [ShipmentEventKind.SCAN, false],
      ],
    );
  });

  it("drops a removed partner, as an internal PARTNER_REMOVED event live to watchers, once however often it comes, and lists it again after a new term", async () => {
    const tn = trackingNumber(tag, 3);
    await publishCreated(tn, at(0), ["air-x"]);
    await publishHandover(handover(tn, "lastmile", at(2), "CDG"));
    await waitFor(async () => (await version(tn)) === 2n, { message: "created and handed over" });
    const internal = connectWatch(client, tn, 0n, full);
    const anonymous = connectWatch(client, tn);
    await waitFor(() => internal.updates.length >= 1 && anonymous.updates.length >= 1, { message: "snapshots" });

    const removed = removal(tn, "lastmile", at(4));
    await publishRemoval(removed);
    await publishRemoval(removed);
    await createEventPublisher({ js }).publish(catalog.events.shipmentPartnerRemoved.subject({ region: REGION }), ShipmentPartnerRemovedSchema, removed, {
      msgId: `${removed.eventId}.again`,
    });
    await waitFor(async () => (await removalOutcomes("duplicate")) >= 1, { message: "the second delivery found applied" });
    assert.equal(await removalOutcomes("applied"), 1);
    assert.equal(await version(tn), 3n, "one version for the removal");

    await waitFor(() => changeAt(internal, 3n) !== undefined && changeAt(anonymous, 3n) !== undefined, { message: "version 3 on both watches" });
    const inside = changeAt(internal, 3n);
    assert.equal(inside?.cause?.kind, ShipmentEventKind.PARTNER_REMOVED);
    assert.equal(inside?.cause?.eventId, removed.eventId);
    assert.equal(inside?.cause?.partnerCarrierCode, "lastmile");
    assert.equal(inside?.cause?.description, "Partner carrier lastmile removed");
    assert.deepEqual(inside?.shipment?.partnerCarrierCodes, ["air-x"]);
    const outside = changeAt(anonymous, 3n);
    assert.equal(outside?.cause, undefined, "an internal event: the anonymous watcher gets the new version without its cause");
    assert.deepEqual(outside?.shipment?.partnerCarrierCodes, []);

    const history = (await client.listShipmentEvents({ trackingNumber: tn }, { headers: full })).events;
    assert.deepEqual(
      history.map((e) => [e.kind, e.partnerCarrierCode]),
      [
        [ShipmentEventKind.CREATED, ""],
        [ShipmentEventKind.HANDED_OVER, "lastmile"],
        [ShipmentEventKind.PARTNER_REMOVED, "lastmile"],
      ],
    );
    const publicHistory = (await client.listShipmentEvents({ trackingNumber: tn })).events;
    assert.deepEqual(publicHistory.map((e) => e.kind), [ShipmentEventKind.CREATED, ShipmentEventKind.HANDED_OVER]);

    // The partner is handed the shipment again: its second term, a new event.
    const again = create(ShipmentHandedOverSchema, { ...handover(tn, "lastmile", at(6)), eventId: `ho.${tn}.lastmile.1`, partnerTerm: 1 });
    await publishHandover(again);
    await waitFor(() => changeAt(internal, 4n) !== undefined, { message: "version 4 on the watch" });
    assert.deepEqual(changeAt(internal, 4n)?.shipment?.partnerCarrierCodes, ["air-x", "lastmile"]);
    internal.cancel();
    anonymous.cancel();
    await Promise.all([internal.ended, anonymous.ended]);

    assert.deepEqual(await statusChanges(tn), [1n], "StatusChanged for the creation only");
  });

  it("ends with the same partners when a removal arrives before the handover it ends", async () => {
    const tn = trackingNumber(tag, 4);
    await publishRemoval(removal(tn, "lastmile", at(4)));
    await waitFor(async () => (await version(tn)) === 1n, { message: "the removal alone makes a document" });
    await publishHandover(handover(tn, "lastmile", at(2)));
    await publishCreated(tn, at(0), ["air-x"]);
    await waitFor(async () => (await version(tn)) === 3n, { message: "handover and creation applied" });
    const got = (await client.getShipment({ trackingNumber: tn }, { headers: full })).shipment;
    assert.deepEqual(got?.partnerCarrierCodes, ["air-x"], "the late handover of the ended term does not bring the partner back");
  });
});
