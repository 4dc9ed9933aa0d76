import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { createEventCatalog } from "../events/catalog.js";
import { jetStreamApiPrefix, leafnodeDenyList, regionSources, topologyProblems } from "./regions.js";
import { createSubjects } from "./subjects.js";

/** Whether a NATS subject matches a filter with `*` and `>` wildcards. */
const matches = (filter: string, subject: string) => {
  const f = filter.split(".");
  const s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return s.length > i;
    if (f[i] !== "*" && f[i] !== s[i]) return false;
  }
  return f.length === s.length;
};

describe("regionSources", () => {
  const subjects = createSubjects("t_rg");
  const catalog = createEventCatalog("t_rg");

  it("sources each peer's own scans, shipments and routes through the peer's domain API", () => {
    const sources = regionSources(subjects.streams.scans, ["us", "ap"]);
    assert.deepEqual(sources, [
      { name: "T_RG_SCANS", filter_subject: "t_rg.scan.recorded.us.*", external: { api: "$JS.us.API", deliver: "" } },
      { name: "T_RG_SCANS", filter_subject: "t_rg.scan.recorded.ap.*", external: { api: "$JS.ap.API", deliver: "" } },
    ]);
    assert.equal(regionSources(subjects.streams.shipments, ["us"])[0]?.filter_subject, "t_rg.shipment.*.us");
    assert.equal(regionSources(subjects.streams.routes, ["us"])[0]?.filter_subject, "t_rg.route.*.us");
  });

  it("leaves status changes and dead letters in their region, and sources nothing without peers", () => {
    assert.deepEqual(regionSources(subjects.streams.status, ["us"]), []);
    assert.deepEqual(regionSources(subjects.streams.deadLetters, ["us"]), []);
    assert.deepEqual(regionSources(subjects.streams.scans, []), []);
  });

  it("filters exactly the peer's own events of the stream: never this region's, so nothing loops", () => {
    for (const event of catalog.eventList) {
      const sources = regionSources(event.stream, ["us"]);
      if (sources.length === 0) continue;
      const subject = (region: string) => (event.name === "scan.recorded" ? catalog.events.scanRecorded.subject({ region, carrier: "acme" }) : event.subject({ region }));
      assert.ok(matches(sources[0]!.filter_subject!, subject("us")), `${event.name} of the peer is sourced`);
      assert.ok(!matches(sources[0]!.filter_subject!, subject("eu")), `${event.name} of this region is not sourced back`);
    }
  });

  it("denies every mesh and key-value subject on the leaf node, and checks the topology", () => {
    assert.deepEqual(leafnodeDenyList("logistics"), ["logistics.>", "$KV.>"]);
    assert.equal(jetStreamApiPrefix("eu-west"), "$JS.eu-west.API");
    assert.throws(() => jetStreamApiPrefix("eu.west"));
    assert.deepEqual(topologyProblems({ region: "eu", peers: ["us"] }), []);
    assert.equal(topologyProblems({ region: "eu", peers: ["eu"] }).length, 1);
    assert.equal(topologyProblems({ region: "eu", peers: ["us", "us"] }).length, 1);
    assert.equal(topologyProblems({ region: "eu", peers: ["u s"] }).length, 1);
  });
});

describe("createEventCatalog with a region", () => {
  it("makes routing's planning and notification's webhooks read only this region, under new durables replacing the old", () => {
    const catalog = createEventCatalog("t_rg", { region: "eu" });
    const planned = catalog.consumer("routing-shipments-created");
    assert.equal(planned.filterSubject, "t_rg.shipment.created.eu");
    assert.equal(planned.durable, "routing-shipments-created-eu");
    assert.deepEqual(planned.replaces, ["routing-shipments-created"]);
    assert.equal(catalog.consumer("notification-status").filterSubject, "t_rg.status.changed.eu");
    assert.equal(catalog.consumer("notification-eta", { durablePrefix: "n2" }).durable, "n2-eta-eu");
  });

  it("keeps tracking's projector and routing's scans on every region, and changes nothing without a region", () => {
    const regional = createEventCatalog("t_rg", { region: "eu" });
    const single = createEventCatalog("t_rg");
    for (const name of ["tracking-scans", "tracking-shipment-events", "tracking-routes", "routing-scans"] as const) {
      const [r, s] = [regional.consumer(name), single.consumer(name)];
      assert.deepEqual([r.durable, r.filterSubject, r.replaces, r.description], [s.durable, s.filterSubject, s.replaces, s.description], name);
    }
    assert.equal(single.consumer("routing-shipments-created").filterSubject, "t_rg.shipment.created.>");
    assert.equal(single.consumer("notification-status").durable, "notification-status");
    assert.deepEqual(single.consumer("notification-status").replaces, []);
  });
});
