import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Scope } from "@logistics/shared/auth";
import { IngestService, RejectReason, ScanOutcome, type HandOverShipmentResponse } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { decodeParties, MAX_PARTNER_CARRIERS } from "../src/scan-ownership.js";
import { bearer, startIngestHarness, submitScans, validScan, type IngestHarness } from "./ingest-harness.js";

/**
 * Who may hand a shipment over, over a real socket with a real nats-server (the shipment
 * directory's key-value bucket, the shipments stream) and Redis: the shipment's own carrier and
 * internal callers; a partner scans the shipment but cannot hand it on.
 */
describe("HandOverShipment ownership (real gRPC, nats-server and Redis)", () => {
  let h: IngestHarness;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let bucket: KV;
  let client: Client<typeof IngestService>;
  beforeAll(async () => {
    h = await startIngestHarness();
    nc = await connect({ servers: h.nats.url });
    jsm = await jetstreamManager(nc);
    bucket = await new Kvm(nc).open(h.subjects.buckets.shipmentParties.name);
    client = createClient(IngestService, createGrpcTransport({ baseUrl: h.svc.url }));
  });
  afterAll(async () => {
    await nc?.close();
    await h?.close();
  });

  const as = async (o: { carrier?: string; scopes?: string[]; subject?: string }) => ({ headers: { authorization: `Bearer ${await h.token(o)}` } });
  const handOver = async (trackingNumber: string, partnerCarrierCode: string, caller: { carrier?: string; scopes?: string[]; subject?: string }) =>
    client.handOverShipment({ trackingNumber, partnerCarrierCode, hubCode: "CDG" }, await as(caller)).catch((e: unknown) => ConnectError.from(e));
  const ok = (res: HandOverShipmentResponse | ConnectError): HandOverShipmentResponse => {
    if (res instanceof ConnectError) assert.fail(`expected the handover to succeed: ${res.message}`);
    return res;
  };
  const scan = async (carrier: string, id: string, trackingNumber: string) =>
    (await submitScans(h.grpcClient(), bearer(await h.token({ carrier })), [validScan(carrier, id, { trackingNumber })])).acks[0];
  /** The directory entry as stored in the bucket (not through any replica's cache). */
  const stored = async (tn: string) => {
    const e = await bucket.get(tn);
    assert.ok(e && e.operation === "PUT", `directory entry of ${tn}`);
    return { revision: e.revision, parties: decodeParties(e.value) };
  };
  const shipmentEvents = async () => (await jsm.streams.info(h.subjects.streams.shipments.name)).state.messages;

  it("lets the shipment's carrier hand over to a partner that then scans it, and refuses every handover by that partner", async () => {
    const tn = await h.createShipment("acme");
    const first = ok(await handOver(tn, "lastmile", { carrier: "acme" }));
    assert.deepEqual([first.carrierCode, first.partnerCarrierCodes, first.changed], ["acme", ["lastmile"], true]);
    const accepted = await scan("lastmile", "ho-own-lm-1", tn);
    assert.equal(accepted?.outcome, ScanOutcome.ACCEPTED, accepted?.detail);

    const before = await stored(tn);
    assert.deepEqual(before.parties?.partners, ["lastmile"]);
    const events = await shipmentEvents();
    // The attack: the partner fills every partner slot with codes of its choosing, a colluding
    // carrier first; and a handover that would change nothing is refused as well.
    const madeUp = ["colluder", ...Array.from({ length: MAX_PARTNER_CARRIERS - 1 }, (_, i) => `made-up-${i}`), "lastmile", "acme"];
    for (const code of madeUp) {
      const denied = await handOver(tn, code, { carrier: "lastmile" });
      assert.ok(denied instanceof ConnectError, `lastmile → ${code}: expected PermissionDenied, got an answer`);
      assert.equal(denied.code, Code.PermissionDenied, `lastmile → ${code}: ${denied.message}`);
      assert.match(denied.rawMessage, /carrier "lastmile" may not hand over shipment \w+: that carrier is a partner/);
    }
    const after = await stored(tn);
    assert.equal(after.revision, before.revision, "the directory entry was not written");
    assert.deepEqual(after.parties, before.parties);
    assert.equal(await shipmentEvents(), events, "no ShipmentHandedOver published");
    const colluder = await scan("colluder", "ho-own-col-1", tn);
    assert.equal(colluder?.outcome, ScanOutcome.REJECTED);
    assert.equal(colluder?.rejectReason, RejectReason.WRONG_CARRIER);

    // The shipment's carrier still has its slots, and its repeat is answered as before.
    const next = ok(await handOver(tn, "regional", { carrier: "acme" }));
    assert.deepEqual([next.partnerCarrierCodes, next.changed], [["lastmile", "regional"], true]);
    const repeat = ok(await handOver(tn, "lastmile", { carrier: "acme" }));
    assert.deepEqual([repeat.partnerCarrierCodes, repeat.changed], [["lastmile", "regional"], false]);
    assert.equal(await shipmentEvents(), events + 1, "one event, for regional");
    const partnerStill = await scan("lastmile", "ho-own-lm-2", tn);
    assert.equal(partnerStill?.outcome, ScanOutcome.ACCEPTED, "the partner keeps scanning");
  });

  it("refuses a partner named at creation too, and lets internal services and operators hand over", async () => {
    const tn = await h.createShipment("acme", { partners: ["air-x"] });
    const denied = await handOver(tn, "colluder", { carrier: "air-x" });
    assert.equal(denied instanceof ConnectError ? denied.code : "answered", Code.PermissionDenied);

    const internal = ok(await handOver(tn, "regional", { scopes: [Scope.ScansWrite], subject: "dispatch" }));
    assert.deepEqual([internal.carrierCode, internal.partnerCarrierCodes], ["acme", ["air-x", "regional"]]);
    const orders = ok(await handOver(tn, "courier", { scopes: [Scope.ShipmentsWrite], subject: "order-system" }));
    assert.deepEqual(orders.partnerCarrierCodes, ["air-x", "regional", "courier"]);
    const operator = ok(await handOver(tn, "ops-pick", { scopes: [Scope.Admin], subject: "oncall" }));
    assert.deepEqual(operator.partnerCarrierCodes, ["air-x", "regional", "courier", "ops-pick"]);
    assert.deepEqual((await stored(tn)).parties?.partners, ["air-x", "regional", "courier", "ops-pick"]);
    const added = await scan("regional", "ho-int-reg-1", tn);
    assert.equal(added?.outcome, ScanOutcome.ACCEPTED, added?.detail);
  });

  it("answers a carrier that does not carry the shipment with PermissionDenied, and an unknown number with NotFound, as before", async () => {
    const tn = await h.createShipment("acme", { partners: ["lastmile"] });
    const foreign = await handOver(tn, "globex-partner", { carrier: "globex" });
    assert.ok(foreign instanceof ConnectError);
    assert.equal(foreign.code, Code.PermissionDenied);
    assert.match(foreign.rawMessage, /it is not carried by that carrier/);
    for (const carrier of ["acme", "lastmile", "globex"]) {
      const unknown = await handOver("NOSUCH000002", "regional", { carrier });
      assert.equal(unknown instanceof ConnectError ? unknown.code : "answered", Code.NotFound, carrier);
    }
    assert.deepEqual((await stored(tn)).parties?.partners, ["lastmile"]);
  });
});
