import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { jetstream } from "@nats-io/jetstream";
import { ScanRecordedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { createEventCatalog, type EventCatalog } from "@logistics/shared/events";
import { createEventPublisher, ensureStreams, type EventPublisher } from "@logistics/shared/nats";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import {
  createdEvent,
  createProjectorTestEnv,
  publishFixture,
  scanEvent,
  trackingNumber,
  type FixtureEvent,
  type ProjectorTestEnv,
} from "./tracking-fixtures.js";

/**
 * The projector of one region in a multi-region mesh (nats/regions.ts): its streams hold its own
 * events and, sourced, the peers'. It applies all of them, the same event (one id) stored in both
 * regions once, and publishes the status changes they cause under its own region's token (into
 * its own status stream, never sourced), so this region's notification fires the webhooks of the
 * subscriptions it holds for scans ingested anywhere.
 */
describe("the tracking projector in region eu of two", () => {
  let env: ProjectorTestEnv;
  let catalog: EventCatalog;
  let publisher: EventPublisher;
  const own = trackingNumber(uniqueName("own"), 1);
  const peer = trackingNumber(uniqueName("peer"), 2);
  const t0 = new Date(Date.now() - 3_600_000);
  const at = (minutes: number) => new Date(t0.getTime() + minutes * 60_000);
  const inRegion = (e: FixtureEvent, region: string): FixtureEvent =>
    e.kind === "scan" ? { ...e, message: create(ScanRecordedSchema, { ...e.message, region }) } : e;

  beforeAll(async () => {
    env = await createProjectorTestEnv({ schemaPrefix: "trk_rgn", maxConnections: 6 });
    catalog = createEventCatalog(uniqueName("trk"), { region: "eu" });
    await ensureStreams(env.jsm, catalog.subjects.streamList);
    publisher = createEventPublisher({ js: jetstream(env.admin) });
    // A shipment of this region, and one of the peer region (as sourcing stores it here).
    await publishFixture(publisher, catalog.subjects, createdEvent(own, at(0)), undefined, "eu");
    await publishFixture(publisher, catalog.subjects, createdEvent(peer, at(0)), undefined, "us");
    const pickedUp = scanEvent(own, 1, ScanKind.PICKUP, at(1));
    await publishFixture(publisher, catalog.subjects, inRegion(pickedUp, "eu"), undefined, "eu");
    // The same scan also stored by the peer (a carrier resent it there after losing the ack), sourced here.
    await publishFixture(publisher, catalog.subjects, inRegion(pickedUp, "us"), `${pickedUp.message.eventId}.us`, "us");
    await publishFixture(publisher, catalog.subjects, inRegion(scanEvent(peer, 1, ScanKind.PICKUP, at(1)), "us"), undefined, "us");
    await env.startReplica(catalog, { ownRegion: "eu", defaultRegion: "eu" });
  });

  afterAll(async () => {
    await env?.close();
  });

  it("applies every region's events, an event stored in both regions once", async () => {
    await waitFor(
      async () => {
        const [a, b] = [await env.store.listEvents(own, { pageSize: 10 }), await env.store.listEvents(peer, { pageSize: 10 })];
        return a.items.length === 2 && b.items.length === 2;
      },
      { timeoutMs: 30_000, message: "both shipments projected" },
    );
    const scans = (await env.store.listEvents(own, { pageSize: 10 })).items.filter((e) => e.event.type === "scan.recorded");
    assert.equal(scans.length, 1, "the scan stored in both regions is applied once");
  });

  it("publishes the status changes of every region's events under its own region's token", async () => {
    const subjects = catalog.subjects;
    const count = async (subject: string) =>
      Object.values((await env.jsm.streams.info(subjects.streams.status.name, { subjects_filter: subject })).state.subjects ?? {}).reduce((x, y) => x + y, 0);
    await waitFor(async () => (await count(subjects.statusChanged("eu"))) >= 2, { timeoutMs: 30_000, message: "both shipments' changes published" });
    // Settle: every consumer of the projector has acknowledged everything (so no change is still to come).
    await waitFor(
      async () => {
        for (const stream of [subjects.streams.scans, subjects.streams.shipments]) {
          for await (const c of env.jsm.consumers.list(stream.name)) if (c.num_pending > 0 || c.num_ack_pending > 0) return false;
        }
        return true;
      },
      { timeoutMs: 30_000, message: "projector settled" },
    );
    assert.equal(await count(subjects.statusChanged("us")), 0, "nothing published under the peer's token");
    assert.equal(await count(subjects.statusChanged("eu")), 2, "one change per shipment's pickup, the peer's included, the doubly stored scan once");
  });
});
