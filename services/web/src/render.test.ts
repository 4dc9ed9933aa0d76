import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ShipmentEventKind, ShipmentEventSchema } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { catalogFor, createLocalizer } from "./i18n.js";
import type { HubInfo } from "./page-config.js";
import { eventText, type RenderContext } from "./render.js";
import type { RouteMapView } from "./world-map.js";

const hubs = new Map<string, HubInfo>([
  ["CDG", { code: "CDG", name: "Paris CDG", city: "Paris", countryCode: "FR", latitude: 49, longitude: 2.55, timeZone: "Europe/Paris" }],
]);
const context = (locale: string): RenderContext => ({
  l: createLocalizer(catalogFor(locale), "UTC"),
  hubs,
  live: true,
  map: {} as RouteMapView,
  now: Date.UTC(2026, 11, 1),
});

describe("eventText", () => {
  const handover = (partnerCarrierCode: string, hubCode: string) =>
    create(ShipmentEventSchema, { kind: ShipmentEventKind.HANDED_OVER, partnerCarrierCode, hubCode });

  it("says a parcel was handed over, to a partner carrier when the reader may not see which, and where", () => {
    const en = context("en");
    assert.equal(eventText(handover("", "CDG"), en), "Handed over to a partner carrier in Paris, France");
    assert.equal(eventText(handover("", ""), en), "Handed over to a partner carrier");
    assert.equal(eventText(handover("lastmile", "CDG"), en), "Handed over to lastmile in Paris, France");
    assert.equal(eventText(handover("", "CDG"), context("ko")), "Paris, 프랑스에서 협력 운송사에 인계되었습니다");
  });
});
