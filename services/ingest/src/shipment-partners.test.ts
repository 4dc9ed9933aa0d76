import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { derivePrincipal, principalKey, type Principal } from "@logistics/shared/auth";
import type { ShipmentHandedOver, ShipmentPartnerRemoved } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import {
  HandOverShipmentRequestSchema,
  IngestService,
  RemoveShipmentPartnerRequestSchema,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { createMeshValidator } from "@logistics/shared/validation";
import { memoryPartners, recordingPublisher } from "../test/memory-partners.js";
import { handoverEventId, partnerRemovedEventId } from "./event-ids.js";
import { MAX_PARTNER_CARRIERS, type ShipmentParties } from "./scan-ownership.js";
import { DirectoryUnavailableError } from "./shipment-directory.js";
import { createShipmentHandover, createShipmentPartnerRemoval } from "./shipment-partners.js";

const TN = "ACME00000001";
const carrierToken = (carrier: string): Principal => derivePrincipal({ sub: `gw-${carrier}`, scope: "scans:write", carrier });
const internalToken = derivePrincipal({ sub: "order-system", scope: "shipments:write" });

/** Both RPCs over one shipment `TN` of carrier acme (partner lastmile unless `parties` says otherwise), each recording its events. */
function setup(parties: Partial<ShipmentParties> = {}) {
  const directory = memoryPartners(TN, { shipmentId: "shp_1", carrier: "acme", partners: ["lastmile"], customer: "cust-1", ...parties });
  const handovers = recordingPublisher<ShipmentHandedOver>();
  const removals = recordingPublisher<ShipmentPartnerRemoved>();
  const handOverRpc = createShipmentHandover({
    directory,
    publisher: handovers,
    handedOverSubject: (r) => `t.shipment.handed_over.${r}`,
    region: "eu",
    now: () => 0,
  });
  const removeRpc = createShipmentPartnerRemoval({
    directory,
    publisher: removals,
    partnerRemovedSubject: (r) => `t.shipment.partner_removed.${r}`,
    region: "eu",
    now: () => 1_000,
  });
  const handOver = (partner: string, caller: Principal, trackingNumber = TN) =>
    handOverRpc(create(HandOverShipmentRequestSchema, { trackingNumber, partnerCarrierCode: partner }), caller).catch((e: unknown) => ConnectError.from(e));
  const remove = (partner: string, caller: Principal, trackingNumber = TN) =>
    removeRpc(create(RemoveShipmentPartnerRequestSchema, { trackingNumber, partnerCarrierCode: partner }), caller).catch((e: unknown) =>
      ConnectError.from(e),
    );
  return { directory, handovers, removals, handOver, remove, removeRpc };
}

const answered = <T>(res: T | ConnectError): T => {
  if (res instanceof ConnectError) assert.fail(`expected an answer, got ${res.message}`);
  return res;
};

describe("createShipmentHandover", () => {
  it("lets the shipment's carrier add a partner and names it as the requester of the event", async () => {
    const { directory, handovers, handOver } = setup();
    const res = await handOver("regional", carrierToken("acme"));
    assert.ok(!(res instanceof ConnectError), String(res));
    assert.deepEqual([res.carrierCode, res.partnerCarrierCodes, res.changed], ["acme", ["lastmile", "regional"], true]);
    assert.deepEqual(directory.entry.partners, ["lastmile", "regional"]);
    assert.deepEqual(handovers.published.map((e) => [e.partnerCarrierCode, e.requestedByCarrierCode]), [["regional", "acme"]]);
  });

  it("refuses a partner's handover with PermissionDenied saying it is a partner, and changes nothing", async () => {
    const { directory, handovers, handOver } = setup();
    for (const partner of ["colluder", "lastmile", "acme"]) {
      const err = await handOver(partner, carrierToken("lastmile"));
      assert.ok(err instanceof ConnectError, `${partner}: expected an error`);
      assert.equal(err.code, Code.PermissionDenied, `${partner}: ${err.message}`);
      assert.match(err.rawMessage, /carrier "lastmile" may not hand over shipment ACME00000001: that carrier is a partner/);
      assert.doesNotMatch(err.rawMessage, /"acme"/, "the shipment's carrier is not named to a partner");
    }
    assert.deepEqual(directory.entry.partners, ["lastmile"]);
    assert.equal(handovers.published.length, 0);
  });

  it("refuses a partner named at creation like one added by a handover", async () => {
    const { handOver } = setup({ partners: ["air-x"] });
    const err = await handOver("colluder", carrierToken("air-x"));
    assert.equal(err instanceof ConnectError ? err.code : undefined, Code.PermissionDenied);
  });

  it("keeps answering a carrier that does not carry the shipment with PermissionDenied, and an unknown number with NotFound", async () => {
    const { handOver } = setup();
    const foreign = await handOver("globex", carrierToken("globex"));
    assert.ok(foreign instanceof ConnectError);
    assert.equal(foreign.code, Code.PermissionDenied);
    assert.match(foreign.rawMessage, /it is not carried by that carrier/);
    const unknown = await handOver("regional", carrierToken("lastmile"), "NOSUCH000001");
    assert.equal(unknown instanceof ConnectError ? unknown.code : undefined, Code.NotFound);
  });

  it("lets an internal service hand over on behalf of the shipment's carrier", async () => {
    const { directory, handovers, handOver } = setup();
    const res = await handOver("regional", internalToken);
    assert.ok(!(res instanceof ConnectError), String(res));
    assert.deepEqual(directory.entry.partners, ["lastmile", "regional"]);
    assert.equal(handovers.published[0]?.requestedByCarrierCode, "");
  });

  it("answers the owner's repeat as unchanged, and a handover past the limit with FailedPrecondition", async () => {
    const { handOver } = setup({ partners: Array.from({ length: 8 }, (_, i) => `p${i}x`) });
    const repeat = await handOver("p3x", carrierToken("acme"));
    assert.ok(!(repeat instanceof ConnectError), String(repeat));
    assert.equal(repeat.changed, false);
    const full = await handOver("regional", carrierToken("acme"));
    assert.equal(full instanceof ConnectError ? full.code : undefined, Code.FailedPrecondition);
  });

  it("begins a new term for a partner removed before: a new event id, the term in the event, the same id on a repeat", async () => {
    const { handovers, handOver } = setup({ partners: [], removals: { lastmile: 2 } });
    const res = await handOver("lastmile", carrierToken("acme"));
    assert.ok(!(res instanceof ConnectError), String(res));
    assert.deepEqual([res.partnerCarrierCodes, res.changed], [["lastmile"], true]);
    const repeat = await handOver("lastmile", carrierToken("acme"));
    assert.equal(repeat instanceof ConnectError ? repeat.code : repeat.changed, false);
    assert.deepEqual(handovers.published.map((e) => [e.partnerTerm, e.eventId]), [
      [2, handoverEventId(TN, "lastmile", 2)],
      [2, handoverEventId(TN, "lastmile", 2)],
    ]);
    assert.deepEqual(handovers.sent.map((s) => s.msgId), [handoverEventId(TN, "lastmile", 2), handoverEventId(TN, "lastmile", 2)]);
  });
});

const TWO: Partial<ShipmentParties> = { partners: ["lastmile", "regional"] };

describe("createShipmentPartnerRemoval", () => {
  it("lets the shipment's carrier remove a partner, ending its term, and publishes the removal before answering", async () => {
    const { directory, removals, remove } = setup(TWO);
    const res = answered(await remove("lastmile", carrierToken("acme")));
    assert.deepEqual([res.trackingNumber, res.carrierCode, res.partnerCarrierCodes, res.changed], [TN, "acme", ["regional"], true]);
    assert.deepEqual(directory.entry.partners, ["regional"]);
    assert.deepEqual(directory.entry.removals, { lastmile: 1 });
    assert.equal(removals.published.length, 1);
    const e = removals.published[0] as ShipmentPartnerRemoved;
    assert.deepEqual(
      [e.eventId, e.trackingNumber, e.shipmentId, e.carrierCode, e.partnerCarrierCode, e.partnerTerm, e.requestedByCarrierCode, e.region],
      [partnerRemovedEventId(TN, "lastmile", 0), TN, "shp_1", "acme", "lastmile", 0, "acme", "eu"],
    );
    assert.equal(e.removedAt?.seconds, 1n);
    assert.deepEqual(removals.sent, [{ subject: "t.shipment.partner_removed.eu", msgId: e.eventId }]);
  });

  it("answers a repeat as unchanged and publishes the same removal again, so a retry completes it", async () => {
    const { removals, remove } = setup(TWO);
    answered(await remove("lastmile", carrierToken("acme")));
    const repeat = answered(await remove("lastmile", carrierToken("acme")));
    assert.deepEqual([repeat.partnerCarrierCodes, repeat.changed], [["regional"], false]);
    assert.deepEqual(removals.published.map((e) => e.eventId), [partnerRemovedEventId(TN, "lastmile", 0), partnerRemovedEventId(TN, "lastmile", 0)]);
  });

  it("answers the removal of a carrier that never was a partner as unchanged, publishing nothing", async () => {
    const { directory, removals, remove } = setup(TWO);
    const res = answered(await remove("stranger", carrierToken("acme")));
    assert.deepEqual([res.partnerCarrierCodes, res.changed], [["lastmile", "regional"], false]);
    assert.equal(directory.entry.removals, undefined);
    assert.equal(removals.published.length, 0);
  });

  it("refuses every removal by a partner with PermissionDenied, its own included, and changes nothing", async () => {
    const { directory, removals, remove } = setup(TWO);
    for (const partner of ["regional", "lastmile", "acme", "stranger"]) {
      const err = await remove(partner, carrierToken("lastmile"));
      assert.ok(err instanceof ConnectError, `${partner}: expected an error`);
      assert.equal(err.code, Code.PermissionDenied, `${partner}: ${err.message}`);
      assert.match(err.rawMessage, /carrier "lastmile" may not remove partners of shipment ACME00000001: that carrier is a partner/);
      assert.doesNotMatch(err.rawMessage, /"acme"/, "the shipment's carrier is not named to a partner");
    }
    assert.deepEqual(directory.entry.partners, ["lastmile", "regional"]);
    assert.equal(removals.published.length, 0);
  });

  it("answers a carrier that does not carry the shipment like a handover does (PermissionDenied), and an unknown number with NotFound", async () => {
    const { remove } = setup(TWO);
    const foreign = await remove("lastmile", carrierToken("globex"));
    assert.ok(foreign instanceof ConnectError);
    assert.equal(foreign.code, Code.PermissionDenied);
    assert.match(foreign.rawMessage, /it is not carried by that carrier/);
    const ownCarrierNamed = await remove("acme", carrierToken("globex"));
    assert.equal(ownCarrierNamed instanceof ConnectError ? ownCarrierNamed.code : undefined, Code.PermissionDenied, "authorization before the argument");
    for (const caller of [carrierToken("acme"), carrierToken("globex"), internalToken]) {
      const unknown = await remove("lastmile", caller, "NOSUCH000001");
      assert.equal(unknown instanceof ConnectError ? unknown.code : undefined, Code.NotFound);
    }
  });

  it("refuses to remove the shipment's own carrier with InvalidArgument, for its carrier and internal callers", async () => {
    const { directory, removals, remove } = setup(TWO);
    for (const caller of [carrierToken("acme"), internalToken]) {
      const err = await remove("acme", caller);
      assert.equal(err instanceof ConnectError ? err.code : undefined, Code.InvalidArgument);
    }
    assert.deepEqual(directory.entry.partners, ["lastmile", "regional"]);
    assert.equal(removals.published.length, 0);
  });

  it("lets an internal service remove a partner on behalf of the shipment's carrier", async () => {
    const { removals, remove } = setup(TWO);
    const res = answered(await remove("regional", internalToken));
    assert.deepEqual(res.partnerCarrierCodes, ["lastmile"]);
    assert.equal(removals.published[0]?.requestedByCarrierCode, "");
  });

  it("answers Unavailable when the directory or the event stream does not answer; the retry then completes the removal", async () => {
    const { directory, removals, remove } = setup(TWO);
    directory.down = new DirectoryUnavailableError("shipment directory update failed: timeout");
    assert.equal(((await remove("lastmile", carrierToken("acme"))) as ConnectError).code, Code.Unavailable);
    assert.deepEqual(directory.entry.partners, ["lastmile", "regional"]);
    directory.down = undefined;
    removals.fail = true;
    const lost = await remove("lastmile", carrierToken("acme"));
    assert.equal(lost instanceof ConnectError ? lost.code : undefined, Code.Unavailable);
    assert.deepEqual(directory.entry.partners, ["regional"], "the directory dropped the partner before the publish failed");
    removals.fail = false;
    const retry = answered(await remove("lastmile", carrierToken("acme")));
    assert.equal(retry.changed, false);
    assert.deepEqual(removals.published.map((e) => e.partnerCarrierCode), ["lastmile"], "the retry removals.published the removal");
  });

  it("frees the partner's slot for a new handover, and a new handover of it begins its next term", async () => {
    const full = Array.from({ length: MAX_PARTNER_CARRIERS }, (_, i) => `p${i}x`);
    const { remove, handOver, handovers } = setup({ partners: full });
    const handTo = (partner: string) => handOver(partner, carrierToken("acme"));
    assert.equal(((await handTo("newcomer")) as ConnectError).code, Code.FailedPrecondition);
    answered(await remove("p2x", carrierToken("acme")));
    const added = answered(await handTo("newcomer"));
    assert.deepEqual(added.partnerCarrierCodes, [...full.filter((p) => p !== "p2x"), "newcomer"]);
    assert.equal(((await handTo("p2x")) as ConnectError).code, Code.FailedPrecondition, "full again");
    answered(await remove("newcomer", carrierToken("acme")));
    const back = answered(await handTo("p2x"));
    assert.equal(back.partnerCarrierCodes.at(-1), "p2x");
    assert.deepEqual(handovers.published.map((e) => [e.partnerCarrierCode, e.partnerTerm, e.eventId]), [
      ["newcomer", 0, handoverEventId(TN, "newcomer", 0)],
      ["p2x", 1, handoverEventId(TN, "p2x", 1)],
    ]);
  });
});

describe("RemoveShipmentPartner request validation (RPC tier: the server's validate interceptor)", () => {
  const principal = carrierToken("acme");
  const setPrincipal: Interceptor = (next) => (req) => {
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
  const { directory, removeRpc } = setup(TWO);
  const client = createClient(
    IngestService,
    createRouterTransport((r) => r.service(IngestService, { removeShipmentPartner: (req, ctx) => removeRpc(req, ctx.values.get(principalKey)) }), {
      router: { interceptors: [setPrincipal, createValidateInterceptor({ validator: createMeshValidator() })] },
    }),
  );

  it("refuses a malformed tracking number or partner code with InvalidArgument before the directory is asked", async () => {
    for (const [req, field] of [
      [{ trackingNumber: "acme-1", partnerCarrierCode: "lastmile" }, "tracking_number"],
      [{ trackingNumber: "", partnerCarrierCode: "lastmile" }, "tracking_number"],
      [{ trackingNumber: TN, partnerCarrierCode: "" }, "partner_carrier_code"],
      [{ trackingNumber: TN, partnerCarrierCode: "Last.Mile" }, "partner_carrier_code"],
    ] as const) {
      const err = await client.removeShipmentPartner(req).catch((e: unknown) => ConnectError.from(e));
      assert.ok(err instanceof ConnectError, `${JSON.stringify(req)}: expected an error`);
      assert.equal(err.code, Code.InvalidArgument, err.message);
      assert.match(err.rawMessage, new RegExp(field));
    }
    assert.deepEqual(directory.entry.partners, ["lastmile", "regional"]);
    const ok = await client.removeShipmentPartner({ trackingNumber: TN, partnerCarrierCode: "lastmile" });
    assert.deepEqual([ok.partnerCarrierCodes, ok.changed], [["regional"], true], "a valid request goes through");
  });
});
