import { strict as assert } from "node:assert";
import { afterAll, beforeAll, describe, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { DiscardPolicy, jetstream, type JetStreamManager } from "@nats-io/jetstream";
import { connectNats, jetstreamFor } from "../src/nats/connect.js";
import { ensureKeyValue, ensurePeerCopy, readPeerEntry } from "../src/nats/key-value.js";
import { ensureConsumer, ensureStreams, ImmutableConfigError } from "../src/nats/streams.js";
import { createSubjects, subjectFamily, SubjectTokenError } from "../src/nats/subjects.js";
import { startNatsServer, type NatsServerHandle } from "../src/testing/nats-server.js";
import { uniqueName } from "../src/testing/unique.js";
import { waitFor } from "../src/testing/wait-for.js";

describe("createSubjects", () => {
  it("derives every subject and stream name from the root prefix", () => {
    const s = createSubjects("t_ab12");
    assert.equal(s.scanRecorded("eu-west", "DHL"), "t_ab12.scan.recorded.eu-west.DHL");
    assert.equal(s.shipmentCreated("us"), "t_ab12.shipment.created.us");
    assert.equal(s.shipmentHandedOver("us"), "t_ab12.shipment.handed_over.us");
    assert.equal(s.shipmentPartnerRemoved("us"), "t_ab12.shipment.partner_removed.us");
    assert.equal(s.allShipmentPartnersRemoved, "t_ab12.shipment.partner_removed.>");
    assert.equal(s.buckets.shipmentParties.name, "T_AB12_SHIPMENT_PARTIES");
    assert.equal(s.routePlanned("us"), "t_ab12.route.planned.us");
    assert.equal(s.routeUpdated("us"), "t_ab12.route.updated.us");
    assert.equal(s.statusChanged("us"), "t_ab12.status.changed.us");
    assert.equal(s.etaChanged("us"), "t_ab12.eta.changed.us");
    assert.equal(s.deadLetter("tracking"), "t_ab12.dlq.tracking");
    assert.equal(s.allScans, "t_ab12.scan.recorded.>");
    assert.equal(s.scansInRegion("eu"), "t_ab12.scan.recorded.eu.*");
    assert.deepEqual(
      s.streamList.map((x) => [x.name, x.subjects]),
      [
        ["T_AB12_SCANS", ["t_ab12.scan.>"]],
        ["T_AB12_SHIPMENTS", ["t_ab12.shipment.>"]],
        ["T_AB12_ROUTES", ["t_ab12.route.>"]],
        ["T_AB12_STATUS", ["t_ab12.status.>", "t_ab12.eta.>"]],
        ["T_AB12_DLQ", ["t_ab12.dlq.>"]],
      ],
    );
    assert.equal(createSubjects().streams.scans.name, "LOGISTICS_SCANS");
    assert.equal(subjectFamily(s.scanRecorded("eu", "UPS")), "t_ab12.scan.recorded");
  });

  it("rejects tokens with dots, spaces or wildcards with a SubjectTokenError", () => {
    const s = createSubjects("t");
    for (const bad of ["eu.west", "eu west", "*", ">", "", "a".repeat(65)]) {
      assert.throws(() => s.shipmentCreated(bad), (e: unknown) => e instanceof SubjectTokenError && e.part === "region");
    }
    assert.throws(() => s.scanRecorded("eu", "D.HL"), (e: unknown) => e instanceof SubjectTokenError && e.part === "carrier");
    assert.throws(() => createSubjects("a.b"), SubjectTokenError);
  });
});

describe("ensureStreams / ensureConsumer", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let jsm: JetStreamManager;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats({ servers: server.url, name: "nats-streams-test" });
    ({ jsm } = await jetstreamFor(nc));
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it("adds, keeps and removes the peer regions' sources, and copies the peers' directory apart from the bucket", async () => {
    const s = createSubjects(uniqueName("t"));
    const specs = [s.streams.scans, s.streams.status];
    // Peers need not be reachable: a source retries until its domain answers.
    await ensureStreams(jsm, specs);
    const added = await ensureStreams(jsm, specs, { peers: ["us", "ap"] });
    assert.deepEqual(added.map((r) => r.action), ["updated", "unchanged"], "nats-server 2.9 takes a same-named source filtered under the stream's own subjects");
    assert.deepEqual(
      added[0]?.info.config.sources?.map((x) => [x.name, x.filter_subject, x.external?.api]),
      [
        [s.streams.scans.name, `${s.prefix}.scan.recorded.us.*`, "$JS.us.API"],
        [s.streams.scans.name, `${s.prefix}.scan.recorded.ap.*`, "$JS.ap.API"],
      ],
    );
    assert.deepEqual((await ensureStreams(jsm, specs, { peers: ["ap", "us"] })).map((r) => r.action), ["unchanged", "unchanged"]);
    const removed = await ensureStreams(jsm, specs, { peers: [] });
    assert.equal(removed[0]?.action, "updated");
    assert.deepEqual(removed[0]?.info.config.sources ?? [], []);

    const bucket = s.buckets.shipmentParties;
    assert.equal(await ensurePeerCopy(jsm, bucket, []), undefined, "no copy without peers");
    assert.equal(await ensurePeerCopy(jsm, bucket, ["us"]), "created");
    assert.equal(await ensurePeerCopy(jsm, bucket, ["us"]), "unchanged");
    assert.equal(await ensurePeerCopy(jsm, bucket, ["us", "ap"]), "updated");
    const copy = (await jsm.streams.info(bucket.peerCopy)).config;
    assert.deepEqual(copy.subjects ?? [], [], "the copy captures nothing itself");
    assert.deepEqual(copy.sources?.map((x) => [x.name, x.external?.api]), [[`KV_${bucket.name}`, "$JS.us.API"], [`KV_${bucket.name}`, "$JS.ap.API"]]);
    assert.equal(await readPeerEntry(jsm, bucket, "TN12345678"), undefined);
  });

  it("creates a key-value bucket once, leaves a matching one untouched and updates a changed one", async () => {
    const s = createSubjects(uniqueName("t"));
    const { js } = await jetstreamFor(nc);
    const spec = s.buckets.shipmentParties;
    const first = await ensureKeyValue(js, jsm, spec, { maxAgeMs: 3_600_000 });
    assert.equal(first.action, "created");
    await first.kv.put("TN12345678", "v1");
    const again = await ensureKeyValue(js, jsm, spec, { maxAgeMs: 3_600_000 });
    assert.equal(again.action, "unchanged");
    assert.equal((await again.kv.get("TN12345678"))?.string(), "v1", "the data is kept");
    const changed = await ensureKeyValue(js, jsm, spec, { maxAgeMs: 7_200_000 });
    assert.equal(changed.action, "updated");
    const info = await jsm.streams.info(`KV_${spec.name}`);
    assert.equal(info.config.max_age, 7_200_000 * 1_000_000);
    assert.equal(info.config.description, spec.description);
  });

  it("creates the streams once and leaves matching ones untouched", async () => {
    const s = createSubjects(uniqueName("t"));
    const first = await ensureStreams(jsm, s.streamList, { duplicateWindowMs: 60_000 });
    assert.deepEqual(first.map((r) => r.action), ["created", "created", "created", "created", "created"]);
    const info = await jsm.streams.info(s.streams.status.name);
    assert.deepEqual([...info.config.subjects].sort(), [...s.streams.status.subjects].sort());
    assert.equal(info.config.duplicate_window, 60_000 * 1_000_000);

    const second = await ensureStreams(jsm, s.streamList, { duplicateWindowMs: 60_000 });
    assert.deepEqual(second.map((r) => r.action), ["unchanged", "unchanged", "unchanged", "unchanged", "unchanged"]);
  });

  it("updates a stream whose settings changed", async () => {
    const s = createSubjects(uniqueName("t"));
    await ensureStreams(jsm, [s.streams.scans]);
    const [changed] = await ensureStreams(jsm, [s.streams.scans], { maxAgeMs: 3_600_000, duplicateWindowMs: 30_000 });
    assert.equal(changed?.action, "updated");
    const info = await jsm.streams.info(s.streams.scans.name);
    assert.equal(info.config.max_age, 3_600_000 * 1_000_000);
    assert.equal(info.config.duplicate_window, 30_000 * 1_000_000);
    const [again] = await ensureStreams(jsm, [s.streams.scans], { maxAgeMs: 3_600_000, duplicateWindowMs: 30_000 });
    assert.equal(again?.action, "unchanged");
  });

  it("keeps a longer duplicate window on one stream: a repeated id is still a duplicate there after the others forgot it", async () => {
    const s = createSubjects(uniqueName("t"));
    const results = await ensureStreams(jsm, [s.streams.scans, s.streams.shipments], {
      duplicateWindowMs: 1000,
      duplicateWindowMsByStream: { [s.streams.scans.name]: 3_600_000 },
    });
    assert.deepEqual(results.map((r) => r.info.config.duplicate_window), [3_600_000 * 1_000_000, 1000 * 1_000_000]);
    const js = jetstream(nc);
    const data = new TextEncoder().encode("x");
    assert.equal((await js.publish(s.scanRecorded("eu", "acme"), data, { msgID: "sc-1" })).duplicate, false);
    assert.equal((await js.publish(s.shipmentCreated("eu"), data, { msgID: "sh-1" })).duplicate, false);
    // Wait until the short window has passed (the shipments stream stores the same id anew)...
    await waitFor(async () => !(await js.publish(s.shipmentCreated("eu"), data, { msgID: "sh-1" })).duplicate, {
      timeoutMs: 10_000,
      intervalMs: 250,
      message: "the 1-second window to forget sh-1",
    });
    // ...then the scans stream, with its hour, still recognises its id.
    const again = await js.publish(s.scanRecorded("eu", "acme"), data, { msgID: "sc-1" });
    assert.equal(again.duplicate, true);
    assert.equal((await jsm.streams.info(s.streams.scans.name)).state.messages, 1);
  });

  it("bounds a stream by bytes and refuses new messages once it is full, keeping the stored ones", async () => {
    const s = createSubjects(uniqueName("t"));
    const [created] = await ensureStreams(jsm, [s.streams.shipments], { maxBytes: 4096 });
    assert.equal(created?.info.config.max_bytes, 4096);
    assert.equal(created?.info.config.discard, DiscardPolicy.New);
    const js = jetstream(nc);
    const payload = new Uint8Array(512);
    let refused: unknown;
    let stored = 0;
    for (let i = 0; i < 64 && refused === undefined; i++) {
      try {
        await js.publish(s.shipmentCreated("eu"), payload);
        stored++;
      } catch (e) {
        refused = e;
      }
    }
    assert.ok(refused !== undefined && stored > 0, "publishing past max_bytes is refused");
    assert.match(String(refused), /maximum bytes exceeded/i);
    const info = await jsm.streams.info(s.streams.shipments.name);
    assert.equal(info.state.messages, stored, "nothing already stored was dropped");
    assert.equal(info.state.first_seq, 1);
  });

  it("moves an existing discard-old stream without byte limit to discard-new with the limit", async () => {
    const s = createSubjects(uniqueName("t"));
    const spec = s.streams.routes;
    await jsm.streams.add({ name: spec.name, subjects: [...spec.subjects], description: spec.description, discard: DiscardPolicy.Old });
    const [updated] = await ensureStreams(jsm, [spec], { maxBytes: 1 << 20 });
    assert.equal(updated?.action, "updated");
    assert.equal(updated?.info.config.discard, DiscardPolicy.New);
    assert.equal(updated?.info.config.max_bytes, 1 << 20);
    const [again] = await ensureStreams(jsm, [spec], { maxBytes: 1 << 20 });
    assert.equal(again?.action, "unchanged");
    const [unlimited] = await ensureStreams(jsm, [spec], { maxBytes: 0 });
    assert.equal(unlimited?.info.config.max_bytes, -1);
  });

  it("refuses to switch an existing stream's storage type", async () => {
    const s = createSubjects(uniqueName("t"));
    await ensureStreams(jsm, [s.streams.routes], { storage: "memory" });
    await assert.rejects(ensureStreams(jsm, [s.streams.routes], { storage: "file" }), ImmutableConfigError);
  });

  it("creates a durable pull consumer once, updates changed settings and rejects a new filter", async () => {
    const s = createSubjects(uniqueName("t"));
    await ensureStreams(jsm, [s.streams.scans]);
    const stream = s.streams.scans.name;
    const opts = { durable: "tracking", filterSubject: s.allScans, ackWaitMs: 10_000, maxDeliver: 4 };

    const created = await ensureConsumer(jsm, stream, opts);
    assert.equal(created.action, "created");
    assert.equal(created.info.config.ack_policy, "explicit");
    assert.equal(created.info.config.deliver_subject, undefined);
    assert.equal(created.info.config.max_ack_pending, 1000);
    assert.equal(created.info.config.filter_subject, s.allScans);

    assert.equal((await ensureConsumer(jsm, stream, opts)).action, "unchanged");

    const updated = await ensureConsumer(jsm, stream, { ...opts, maxDeliver: 6, maxAckPending: 50, ackWaitMs: 5000 });
    assert.equal(updated.action, "updated");
    const info = await jsm.consumers.info(stream, "tracking");
    assert.equal(info.config.max_deliver, 6);
    assert.equal(info.config.max_ack_pending, 50);
    assert.equal(info.config.ack_wait, 5000 * 1_000_000);
    assert.equal((await ensureConsumer(jsm, stream, { ...opts, maxDeliver: 6, maxAckPending: 50, ackWaitMs: 5000 })).action, "unchanged");

    await assert.rejects(
      ensureConsumer(jsm, stream, { ...opts, filterSubject: s.scansInRegion("eu") }),
      ImmutableConfigError,
    );
  });

  it("configures a backoff list and checks it is shorter than maxDeliver", async () => {
    const s = createSubjects(uniqueName("t"));
    await ensureStreams(jsm, [s.streams.status]);
    const stream = s.streams.status.name;
    await assert.rejects(ensureConsumer(jsm, stream, { durable: "notify", maxDeliver: 2, backoffMs: [100, 200] }), RangeError);

    const opts = { durable: "notify", maxDeliver: 4, backoffMs: [1000, 5000, 10_000] };
    const created = await ensureConsumer(jsm, stream, opts);
    assert.equal(created.action, "created");
    assert.deepEqual(created.info.config.backoff, [1e9, 5e9, 10e9]);
    assert.equal((await ensureConsumer(jsm, stream, opts)).action, "unchanged");

    const cleared = await ensureConsumer(jsm, stream, { durable: "notify", maxDeliver: 4, ackWaitMs: 2000 });
    assert.equal(cleared.action, "updated");
    const info = await jsm.consumers.info(stream, "notify");
    assert.deepEqual(info.config.backoff ?? [], []);
    assert.equal(info.config.ack_wait, 2000 * 1_000_000);
  });
});
