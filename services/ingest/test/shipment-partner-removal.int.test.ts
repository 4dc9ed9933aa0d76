import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Scope } from "@logistics/shared/auth";
import {
  ShipmentHandedOverSchema,
  ShipmentPartnerRemovedSchema,
  type ShipmentHandedOver,
  type ShipmentPartnerRemoved,
} from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import {
  IngestService,
  RejectReason,
  ScanOutcome,
  type HandOverShipmentResponse,
  type RemoveShipmentPartnerResponse,
  type ScanAck,
  type StreamScansResponse,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import type { RunningService } from "@logistics/shared/runtime";
import { waitFor } from "@logistics/shared/testing";
import { handoverEventId, partnerRemovedEventId } from "../src/event-ids.js";
import { decodeParties, MAX_PARTNER_CARRIERS } from "../src/scan-ownership.js";
import { bearer, openScanCall, scanMessage, startIngestHarness, submitScans, validScan, type IngestHarness } from "./ingest-harness.js";

type Caller = { carrier?: string; scopes?: string[]; subject?: string; customer?: string };

/**
 * Removing a partner carrier from a shipment, over real sockets with a real nats-server (the
 * shipment directory's key-value bucket, the shipments stream) and Redis, on two ingest replicas
 * sharing the directory: the partner's scans are rejected from the answer on on both (the replica
 * that did not remove it still has it cached), an open StreamScans call included; only the
 * shipment's carrier and internal callers may remove; a removed partner's slot is free again.
 */
describe("RemoveShipmentPartner (real gRPC, nats-server and Redis, two ingest replicas)", () => {
  let h: IngestHarness;
  let other: RunningService;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let bucket: KV;
  let first: Client<typeof IngestService>;
  let second: Client<typeof IngestService>;
  const grpcClients: grpc.Client[] = [];
  beforeAll(async () => {
    h = await startIngestHarness();
    other = await h.startReplica();
    nc = await connect({ servers: h.nats.url });
    js = jetstream(nc);
    bucket = await new Kvm(nc).open(h.subjects.buckets.shipmentParties.name);
    first = createClient(IngestService, createGrpcTransport({ baseUrl: h.svc.url }));
    second = createClient(IngestService, createGrpcTransport({ baseUrl: other.url }));
  });
  afterAll(async () => {
    for (const c of grpcClients) c.close();
    await nc?.close();
    await h?.close();
  });

  const as = async (o: Caller) => ({ headers: { authorization: `Bearer ${await h.token(o)}` } });
  const handOver = async (trackingNumber: string, partnerCarrierCode: string, caller: Caller, client = first) =>
    client.handOverShipment({ trackingNumber, partnerCarrierCode }, await as(caller)).catch((e: unknown) => ConnectError.from(e));
  const remove = async (trackingNumber: string, partnerCarrierCode: string, caller: Caller, client = first) =>
    client.removeShipmentPartner({ trackingNumber, partnerCarrierCode }, await as(caller)).catch((e: unknown) => ConnectError.from(e));
  const ok = <T extends HandOverShipmentResponse | RemoveShipmentPartnerResponse>(res: T | ConnectError): T => {
    if (res instanceof ConnectError) assert.fail(`expected an answer: ${res.message}`);
    return res;
  };
  const denied = (res: unknown, code: Code, what: string): ConnectError => {
    assert.ok(res instanceof ConnectError, `${what}: expected ${Code[code]}, got an answer`);
    assert.equal(res.code, code, `${what}: ${res.message}`);
    return res;
  };
  /** One scan of `carrier` for `trackingNumber` through SubmitScans on the replica at `port`. */
  const scan = async (port: number, carrier: string, id: string, trackingNumber: string): Promise<ScanAck | undefined> => {
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    grpcClients.push(client);
    return (await submitScans(client, bearer(await h.token({ carrier })), [validScan(carrier, id, { trackingNumber })])).acks[0];
  };
  const outcome = (ack: ScanAck | undefined) => [ack?.outcome, ack?.rejectReason];
  const ACCEPTED = [ScanOutcome.ACCEPTED, RejectReason.UNSPECIFIED];
  const WRONG_CARRIER = [ScanOutcome.REJECTED, RejectReason.WRONG_CARRIER];
  /** The directory entry as stored in the bucket (not through any replica's cache). */
  const stored = async (tn: string) => {
    const e = await bucket.get(tn);
    assert.ok(e && e.operation === "PUT", `directory entry of ${tn}`);
    return { revision: e.revision, parties: decodeParties(e.value) };
  };
  /** Every event of the shipments stream on `subject` for `tn`, in stream order. */
  const events = async <M extends ShipmentHandedOver | ShipmentPartnerRemoved>(subject: string, decode: (b: Uint8Array) => M, tn: string): Promise<M[]> => {
    const consumer = await js.consumers.get(h.subjects.streams.shipments.name, { filter_subjects: subject });
    const out: M[] = [];
    const info = await consumer.info();
    if (info.num_pending === 0) return out;
    for await (const m of await consumer.fetch({ max_messages: info.num_pending, expires: 5000 })) {
      const e = decode(m.data);
      if (e.trackingNumber === tn) out.push(e);
      if (m.info.pending === 0) break;
    }
    return out;
  };
  const removals = (tn: string) => events(h.subjects.allShipmentPartnersRemoved, (b) => fromBinary(ShipmentPartnerRemovedSchema, b), tn);
  const handovers = (tn: string) => events(h.subjects.allShipmentsHandedOver, (b) => fromBinary(ShipmentHandedOverSchema, b), tn);

  it("rejects the removed partner's scans on every replica from the answer on, an open stream's included, and publishes the removal once", async () => {
    const tn = await h.createShipment("acme");
    ok(await handOver(tn, "lastmile", { carrier: "acme" }));
    // Both replicas accept the partner's scans, so both have the entry with the partner cached.
    assert.deepEqual(outcome(await scan(h.svc.port, "lastmile", "rm-lm-1", tn)), ACCEPTED);
    assert.deepEqual(outcome(await scan(other.port, "lastmile", "rm-lm-2", tn)), ACCEPTED);
    // A gateway stream on the second replica, open before the removal and used after it.
    const streamClient = new grpc.Client(`127.0.0.1:${other.port}`, grpc.credentials.createInsecure());
    grpcClients.push(streamClient);
    const call = openScanCall(streamClient, bearer(await h.token({ carrier: "lastmile" })));
    const responses: StreamScansResponse[] = [];
    call.on("data", (r: StreamScansResponse) => responses.push(r));
    call.on("error", () => {});
    call.write(scanMessage([validScan("lastmile", "rm-lm-s1", { trackingNumber: tn })]));
    await waitFor(() => responses.length === 1, { message: "the stream's first ack" });
    assert.deepEqual(outcome(responses[0]?.acks[0]), ACCEPTED);

    const res = ok(await remove(tn, "lastmile", { carrier: "acme" }));
    assert.deepEqual([res.trackingNumber, res.carrierCode, res.partnerCarrierCodes, res.changed], [tn, "acme", [], true]);
    // No wait: the answer is the point from which every replica rejects the partner.
    assert.deepEqual(outcome(await scan(other.port, "lastmile", "rm-lm-3", tn)), WRONG_CARRIER, "the replica that still had it cached");
    assert.deepEqual(outcome(await scan(h.svc.port, "lastmile", "rm-lm-4", tn)), WRONG_CARRIER, "the replica that removed it");
    call.write(scanMessage([validScan("lastmile", "rm-lm-s2", { trackingNumber: tn })]));
    await waitFor(() => responses.length === 2, { message: "the stream's second ack" });
    const streamed = responses[1]?.acks[0];
    assert.deepEqual(outcome(streamed), WRONG_CARRIER, "the stream opened before the removal");
    assert.match(streamed?.detail ?? "", /not carried by "lastmile"/);
    call.end();
    assert.deepEqual(outcome(await scan(other.port, "acme", "rm-acme-1", tn)), ACCEPTED, "the shipment's carrier scans on");

    const entry = await stored(tn);
    assert.deepEqual([entry.parties?.partners, entry.parties?.removals], [[], { lastmile: 1 }]);
    const published = await removals(tn);
    assert.equal(published.length, 1);
    const e = published[0] as ShipmentPartnerRemoved;
    assert.deepEqual(
      [e.eventId, e.partnerCarrierCode, e.partnerTerm, e.carrierCode, e.requestedByCarrierCode],
      [partnerRemovedEventId(tn, "lastmile", 0), "lastmile", 0, "acme", "acme"],
    );

    // A repeat is answered unchanged and publishes the same event, which the stream drops.
    const repeat = ok(await remove(tn, "lastmile", { carrier: "acme" }, second));
    assert.deepEqual([repeat.partnerCarrierCodes, repeat.changed], [[], false]);
    assert.equal((await stored(tn)).revision, entry.revision, "the directory entry was not written");
    assert.equal((await removals(tn)).length, 1, "one event in the stream");
    const never = ok(await remove(tn, "stranger", { carrier: "acme" }));
    assert.equal(never.changed, false);
  });

  it("refuses every removal by a partner, its own included, and answers the others as a handover does", async () => {
    const tn = await h.createShipment("acme", { partners: ["air-x", "lastmile"] });
    const before = await stored(tn);
    for (const [partner, caller] of [
      ["lastmile", "air-x"],
      ["air-x", "air-x"],
      ["acme", "air-x"],
      ["stranger", "lastmile"],
    ] as const) {
      const err = denied(await remove(tn, partner, { carrier: caller }), Code.PermissionDenied, `${caller} removes ${partner}`);
      assert.match(err.rawMessage, /may not remove partners of shipment \w+: that carrier is a partner/);
    }
    // A carrier that does not carry the shipment gets what a handover gives it.
    const foreignHandover = denied(await handOver(tn, "globex-partner", { carrier: "globex" }), Code.PermissionDenied, "globex hands over");
    const foreign = denied(await remove(tn, "lastmile", { carrier: "globex" }), Code.PermissionDenied, "globex removes");
    assert.match(foreignHandover.rawMessage, /it is not carried by that carrier/);
    assert.match(foreign.rawMessage, /it is not carried by that carrier/);
    for (const carrier of ["acme", "lastmile", "globex"]) {
      denied(await remove("NOSUCH000003", "lastmile", { carrier }), Code.NotFound, `${carrier}, unknown number`);
    }
    denied(await remove(tn, "acme", { carrier: "acme" }), Code.InvalidArgument, "the shipment's own carrier");
    denied(await remove(tn, "acme", { scopes: [Scope.ShipmentsWrite] }), Code.InvalidArgument, "the own carrier, by an internal service");
    denied(await remove(tn, "lastmile", { customer: "cust-1", scopes: [Scope.ShipmentsWrite] }), Code.PermissionDenied, "a customer token");
    denied(await remove(tn, "Not A Code", { carrier: "acme" }), Code.InvalidArgument, "a malformed partner code");
    const after = await stored(tn);
    assert.equal(after.revision, before.revision, "nothing was written");
    assert.deepEqual((await removals(tn)).length, 0);
    assert.deepEqual(outcome(await scan(other.port, "lastmile", "rm-den-1", tn)), ACCEPTED, "the partners scan on");

    // Internal services and operators remove on the carrier's behalf (partners from the bug that
    // let partners hand over in turn, say).
    ok(await remove(tn, "air-x", { scopes: [Scope.ScansWrite], subject: "dispatch" }));
    const last = ok(await remove(tn, "lastmile", { scopes: [Scope.Admin], subject: "oncall" }, second));
    assert.deepEqual(last.partnerCarrierCodes, []);
    assert.deepEqual((await removals(tn)).map((e) => [e.partnerCarrierCode, e.requestedByCarrierCode]), [
      ["air-x", ""],
      ["lastmile", ""],
    ]);
  });

  it("frees a removed partner's slot for the next handover, and a partner handed the shipment again begins a new term", async () => {
    const partners = Array.from({ length: MAX_PARTNER_CARRIERS }, (_, i) => `slot-${i}`);
    const tn = await h.createShipment("acme", { partners });
    denied(await handOver(tn, "newcomer", { carrier: "acme" }), Code.FailedPrecondition, "every slot taken");
    ok(await remove(tn, "slot-3", { carrier: "acme" }));
    const added = ok(await handOver(tn, "newcomer", { carrier: "acme" }, second));
    assert.deepEqual(added.partnerCarrierCodes, [...partners.filter((p) => p !== "slot-3"), "newcomer"]);
    assert.deepEqual(outcome(await scan(other.port, "newcomer", "rm-slot-1", tn)), ACCEPTED);
    denied(await handOver(tn, "slot-3", { carrier: "acme" }), Code.FailedPrecondition, "full again");

    ok(await remove(tn, "slot-0", { carrier: "acme" }, second));
    const back = ok(await handOver(tn, "slot-3", { carrier: "acme" }));
    assert.deepEqual([back.partnerCarrierCodes.at(-1), back.changed], ["slot-3", true]);
    assert.deepEqual(outcome(await scan(h.svc.port, "slot-3", "rm-slot-2", tn)), ACCEPTED, "scans again after its new handover");
    assert.deepEqual(outcome(await scan(other.port, "slot-0", "rm-slot-3", tn)), WRONG_CARRIER);
    const terms = (await handovers(tn)).map((e) => [e.partnerCarrierCode, e.partnerTerm, e.eventId]);
    assert.deepEqual(terms, [
      ["newcomer", 0, handoverEventId(tn, "newcomer", 0)],
      ["slot-3", 1, handoverEventId(tn, "slot-3", 1)],
    ]);
    const entry = await stored(tn);
    assert.deepEqual(entry.parties?.removals, { "slot-3": 1, "slot-0": 1 });
  });

  it("keeps both when a handover and a removal of the same shipment race on two replicas", async () => {
    const tn = await h.createShipment("acme", { partners: ["lastmile"] });
    const [handed, removed] = await Promise.all([
      handOver(tn, "regional", { carrier: "acme" }, first),
      remove(tn, "lastmile", { carrier: "acme" }, second),
    ]);
    ok(handed);
    ok(removed);
    assert.deepEqual((await stored(tn)).parties?.partners, ["regional"]);
    assert.deepEqual(outcome(await scan(h.svc.port, "lastmile", "rm-race-1", tn)), WRONG_CARRIER);
    assert.deepEqual(outcome(await scan(other.port, "regional", "rm-race-2", tn)), ACCEPTED);
  });
});
