import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { derivePrincipal, type Principal } from "@logistics/shared/auth";
import type { ShipmentHandedOver } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { HandOverShipmentRequestSchema } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { memoryPartners, recordingPublisher } from "../test/memory-partners.js";
import { handoverEventId } from "./event-ids.js";
import type { ShipmentParties } from "./scan-ownership.js";
import { createShipmentHandover } from "./shipment-handover.js";

const TN = "ACME00000001";
const carrierToken = (carrier: string): Principal => derivePrincipal({ sub: `gw-${carrier}`, scope: "scans:write", carrier });
const internalToken = derivePrincipal({ sub: "order-system", scope: "shipments:write" });

function setup(parties: Partial<ShipmentParties> = {}) {
  const directory = memoryPartners(TN, { shipmentId: "shp_1", carrier: "acme", partners: ["lastmile"], customer: "cust-1", ...parties });
  const publisher = recordingPublisher<ShipmentHandedOver>();
  const handOver = createShipmentHandover({ directory, publisher, handedOverSubject: (r) => `t.shipment.handed_over.${r}`, region: "eu", now: () => 0 });
  const call = (partner: string, caller: Principal, trackingNumber = TN) =>
    handOver(create(HandOverShipmentRequestSchema, { trackingNumber, partnerCarrierCode: partner }), caller).catch((e: unknown) => ConnectError.from(e));
  return { directory, published: publisher.published, sent: publisher.sent, call };
}

describe("createShipmentHandover", () => {
  it("lets the shipment's carrier add a partner and names it as the requester of the event", async () => {
    const { directory, published, call } = setup();
    const res = await call("regional", carrierToken("acme"));
    assert.ok(!(res instanceof ConnectError), String(res));
    assert.deepEqual([res.carrierCode, res.partnerCarrierCodes, res.changed], ["acme", ["lastmile", "regional"], true]);
    assert.deepEqual(directory.entry.partners, ["lastmile", "regional"]);
    assert.deepEqual(published.map((e) => [e.partnerCarrierCode, e.requestedByCarrierCode]), [["regional", "acme"]]);
  });

  it("refuses a partner's handover with PermissionDenied saying it is a partner, and changes nothing", async () => {
    const { directory, published, call } = setup();
    for (const partner of ["colluder", "lastmile", "acme"]) {
      const err = await call(partner, carrierToken("lastmile"));
      assert.ok(err instanceof ConnectError, `${partner}: expected an error`);
      assert.equal(err.code, Code.PermissionDenied, `${partner}: ${err.message}`);
      assert.match(err.rawMessage, /carrier "lastmile" may not hand over shipment ACME00000001: that carrier is a partner/);
      assert.doesNotMatch(err.rawMessage, /"acme"/, "the shipment's carrier is not named to a partner");
    }
    assert.deepEqual(directory.entry.partners, ["lastmile"]);
    assert.equal(published.length, 0);
  });

  it("refuses a partner named at creation like one added by a handover", async () => {
    const { call } = setup({ partners: ["air-x"] });
    const err = await call("colluder", carrierToken("air-x"));
    assert.equal(err instanceof ConnectError ? err.code : undefined, Code.PermissionDenied);
  });

  it("keeps answering a carrier that does not carry the shipment with PermissionDenied, and an unknown number with NotFound", async () => {
    const { call } = setup();
    const foreign = await call("globex", carrierToken("globex"));
    assert.ok(foreign instanceof ConnectError);
    assert.equal(foreign.code, Code.PermissionDenied);
    assert.match(foreign.rawMessage, /it is not carried by that carrier/);
    const unknown = await call("regional", carrierToken("lastmile"), "NOSUCH000001");
    assert.equal(unknown instanceof ConnectError ? unknown.code : undefined, Code.NotFound);
  });

  it("lets an internal service hand over on behalf of the shipment's carrier", async () => {
    const { directory, published, call } = setup();
    const res = await call("regional", internalToken);
    assert.ok(!(res instanceof ConnectError), String(res));
    assert.deepEqual(directory.entry.partners, ["lastmile", "regional"]);
    assert.equal(published[0]?.requestedByCarrierCode, "");
  });

  it("answers the owner's repeat as unchanged, and a handover past the limit with FailedPrecondition", async () => {
    const { call } = setup({ partners: Array.from({ length: 8 }, (_, i) => `p${i}x`) });
    const repeat = await call("p3x", carrierToken("acme"));
    assert.ok(!(repeat instanceof ConnectError), String(repeat));
    assert.equal(repeat.changed, false);
    const full = await call("regional", carrierToken("acme"));
    assert.equal(full instanceof ConnectError ? full.code : undefined, Code.FailedPrecondition);
  });

  it("begins a new term for a partner removed before: a new event id, the term in the event, the same id on a repeat", async () => {
    const { published, sent, call } = setup({ partners: [], removals: { lastmile: 2 } });
    const res = await call("lastmile", carrierToken("acme"));
    assert.ok(!(res instanceof ConnectError), String(res));
    assert.deepEqual([res.partnerCarrierCodes, res.changed], [["lastmile"], true]);
    const repeat = await call("lastmile", carrierToken("acme"));
    assert.equal(repeat instanceof ConnectError ? repeat.code : repeat.changed, false);
    assert.deepEqual(published.map((e) => [e.partnerTerm, e.eventId]), [
      [2, handoverEventId(TN, "lastmile", 2)],
      [2, handoverEventId(TN, "lastmile", 2)],
    ]);
    assert.deepEqual(sent.map((s) => s.msgId), [handoverEventId(TN, "lastmile", 2), handoverEventId(TN, "lastmile", 2)]);
  });
});
