import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { seededRandom } from "@logistics/shared/testing";
import { ShipmentSchema, type Shipment } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { pick, shipmentEvents, text, type Random } from "../test/store/doc-generators.js";
import { shipmentBinary, HAND_WRITTEN_PATH } from "./shipment-binary.js";
import { shipmentMessage } from "./shipment-view.js";
import { applyToDoc } from "./store/derive.js";
import type { ShipmentDoc } from "./store/ports.js";
import { trimDocument } from "./store/trim-document.js";

/** What a call gives: its bytes, or the message it throws. */
function outcome(f: () => Uint8Array): { bytes: Uint8Array } | { error: string } {
  try {
    return { bytes: new Uint8Array(f()) };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

/** The Shipments of every version of generated shipments (those that render); now and then a trimmed one. */
function generatedShipments(random: Random, shipments: number): Shipment[] {
  const out: Shipment[] = [];
  for (let n = 0; n < shipments; n++) {
    let doc: ShipmentDoc | undefined;
    for (const e of shipmentEvents(random, n)) {
      doc = applyToDoc(doc, e).doc;
      if (random() < 0.1) doc = trimDocument(doc, Math.floor(random() * 600), 1) ?? doc;
      try {
        out.push(shipmentMessage(doc));
      } catch {
        // A lone surrogate in a place: not a Shipment.
      }
    }
  }
  return out;
}

/** A value of another kind or range for some field of `s` (a copy): what a hand-made message could hold. */
function oddShipment(random: Random, s: Shipment): Shipment {
  const m = structuredClone(s) as Shipment & Record<string, unknown>;
  const ts = () => pick(random, [m.statusTime, m.updatedAt, m.createdAt, m.route?.plannedAt, m.eta?.estimatedArrival].filter((t) => t !== undefined));
  const r = random();
  if (r < 0.1) m.customerReference = text(random);
  else if (r < 0.15) m.version = pick(random, [0n, 2n ** 53n, 2n ** 63n - 1n, -1n]);
  else if (r < 0.2) m[pick(random, ["eventCount", "trimmedEventCount"])] = pick(random, [0, 2 ** 32 - 1, 2 ** 32, -1, 1.5]);
  else if (r < 0.25) m.status = pick(random, [0, 99, -3, 2 ** 31]);
  else if (r < 0.32) {
    const t = ts();
    if (t) Object.assign(t, pick(random, [{ seconds: -1n }, { seconds: 0n }, { nanos: -1 }, { nanos: 999_999_999 }, { nanos: 0 }, { seconds: 2n ** 60n }]));
  } else if (r < 0.38 && m.currentLocation) m.currentLocation.latitude = pick(random, [-0, 0, NaN, Infinity, 1e-300, -89.9999999]);
  else if (r < 0.42 && m.eta) m.eta.confidence = pick(random, [-0, NaN, 0.1]);
  else if (r < 0.46) m.partnerCarrierCodes = pick(random, [[], [""], ["a", "b\u00e9"], ["x\udc00"]]);
  else if (r < 0.5) m.$unknown = [{ no: 99, wireType: 0, data: new Uint8Array([1]) }];
  else if (r < 0.54 && m.origin) (m.origin as unknown as Record<string, unknown>).$unknown = [{ no: 50, wireType: 0, data: new Uint8Array([7]) }];
  else if (r < 0.58) m.currentHubCode = pick(random, [undefined, 5, null]) as unknown as string;
  else if (r < 0.62 && m.route) m.route.legs.push(undefined as never);
  else if (r < 0.66 && m.route?.legs[0]) m.route.legs[0].mode = pick(random, [-1, 7, 2 ** 31 - 1]);
  else if (r < 0.7) m.origin = pick(random, [undefined, null, create(ShipmentSchema)]) as never;
  else if (r < 0.74 && m.route) m.route.revision = pick(random, [0, 2 ** 32 - 1, 300]);
  else if (r < 0.8) m.trackingNumber = pick(random, ["", "TN\u00fc", "TN".repeat(100), "x\ud800"]);
  return m;
}

describe("shipmentBinary", () => {
  it("writes every generated Shipment exactly as toBinary, without falling back to it", () => {
    const shipments = generatedShipments(seededRandom(31), 400);
    assert.ok(shipments.length > 3000, `${shipments.length} shipments`);
    assert.ok(shipments.some((s) => s.trimmedEventCount > 0), "trimmed shipments among them");
    for (const s of shipments) {
      const bytes = HAND_WRITTEN_PATH(s);
      assert.ok(bytes, `fell back for ${s.trackingNumber} v${s.version}`);
      assert.deepStrictEqual(new Uint8Array(bytes), toBinary(ShipmentSchema, s), `${s.trackingNumber} v${s.version}`);
      assert.deepStrictEqual(fromBinary(ShipmentSchema, bytes), fromBinary(ShipmentSchema, toBinary(ShipmentSchema, s)));
    }
  });

  it("writes (or refuses) Shipments holding odd values exactly as toBinary", () => {
    const random = seededRandom(32);
    const shipments = generatedShipments(random, 100);
    for (let i = 0; i < 4000; i++) {
      const s = oddShipment(random, pick(random, shipments));
      assert.deepStrictEqual(
        outcome(() => shipmentBinary(s)),
        outcome(() => toBinary(ShipmentSchema, s)),
        `${s.trackingNumber} v${String(s.version)}`,
      );
    }
    assert.deepStrictEqual(new Uint8Array(shipmentBinary(create(ShipmentSchema))), new Uint8Array(0));
  });
});
