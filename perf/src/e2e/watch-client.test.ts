import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, it } from "vitest";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  ShipmentSchema,
  WatchShipmentResponseSchema,
  WatchUpdateKind,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { decodeWatchUpdate } from "./watch-client.js";

describe("decodeWatchUpdate", () => {
  it("reads the sequence, kind, status and cause's event id of a full CHANGE, whatever else it carries", () => {
    const full = create(WatchShipmentResponseSchema, {
      sequence: 9_007_199_254_740_993n,
      kind: WatchUpdateKind.CHANGE,
      shipment: create(ShipmentSchema, {
        trackingNumber: "PF00000001",
        carrierCode: "acme",
        status: ShipmentStatus.OUT_FOR_DELIVERY,
        version: 12n,
        statusTime: timestampFromMs(1_700_000_000_000),
        lastCarrierStatus: { code: "OFD", text: "out for delivery" },
        currentHubCode: "DEHAM",
      }),
      cause: { eventId: "rec-acme-e-1-7", status: ShipmentStatus.OUT_FOR_DELIVERY, hubCode: "DEHAM", late: true },
    });
    const u = decodeWatchUpdate(toBinary(WatchShipmentResponseSchema, full));
    assert.deepEqual(u, {
      sequence: 9_007_199_254_740_993n,
      kind: WatchUpdateKind.CHANGE,
      status: ShipmentStatus.OUT_FOR_DELIVERY,
      causeEventId: "rec-acme-e-1-7",
    });
  });

  it("tells a heartbeat (no shipment, no cause) and a snapshot of a new shipment (status 0 omitted on the wire) apart", () => {
    const hb = decodeWatchUpdate(toBinary(WatchShipmentResponseSchema, create(WatchShipmentResponseSchema, { sequence: 3n, kind: WatchUpdateKind.HEARTBEAT })));
    assert.deepEqual(hb, { sequence: 3n, kind: WatchUpdateKind.HEARTBEAT, status: undefined, causeEventId: undefined });
    const snap = decodeWatchUpdate(
      toBinary(
        WatchShipmentResponseSchema,
        create(WatchShipmentResponseSchema, { sequence: 1n, kind: WatchUpdateKind.SNAPSHOT, shipment: { trackingNumber: "PF00000002" } }),
      ),
    );
    assert.deepEqual(snap, { sequence: 1n, kind: WatchUpdateKind.SNAPSHOT, status: ShipmentStatus.UNSPECIFIED, causeEventId: undefined });
  });
});
