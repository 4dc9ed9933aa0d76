import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { commitAll, historyOf, journey, type Commit } from "../test/live-changes.js";
import { decodeNotice, encodeNotice, noticeChange, type LiveNotice } from "./live-notice.js";
import type { LiveHub } from "./live-updates.js";
import type { ShipmentDoc } from "./store/ports.js";
import { VersionsTrimmedError } from "./shipment-history.js";
import { createWatchFeeds } from "./watch-feed.js";

const TN = "TN00000001";

/**
 * A shipment committed one event per call (version 1 = creation) and fakes of the feed's narrow
 * interfaces: a store that serves what is committed so far and counts reads, and a hub the test
 * delivers notices through.
 */
function fixture(versions: number, maxBytes?: number) {
  const events = journey(TN, versions - 1);
  const commits = commitAll(
    events.map((e) => [e]),
    maxBytes === undefined ? {} : { maxBytes },
  );
  let committed = 1;
  const reads = { getShipment: 0, listEvents: 0 };
  const store = {
    getShipment: async () => (reads.getShipment++, commits[committed - 1]?.doc),
    listEvents: async () => (reads.listEvents++, { items: historyOf(commits.slice(0, committed)) }),
  };
  let deliver: (n: LiveNotice) => void = () => {};
  const live: LiveHub = {
    listen: (_tn, listener) => ((deliver = listener), () => (deliver = () => {})),
    deliver: (_tn, n) => deliver(n()),
    origin: "test",
    close: () => {},
  };
  const notice = (c: Commit): LiveNotice => decodeNotice(TN, encodeNotice(c.doc.version, noticeChange(c.doc, c.applied)));
  return {
    reads,
    live,
    store,
    commits,
    /** Commits up to `version`; `notify: false` loses its notice. */
    commit(version: number, notify = true) {
      committed = version;
      if (notify) deliver(notice(commits[version - 1] as Commit));
    },
    deliver: (n: LiveNotice) => deliver(n),
  };
}

const versions = (steps: Iterable<{ version: number }>) => [...steps].map((s) => s.version);

describe("watch feeds", () => {
  it("take in notices that continue the shared copy without reading, and hand every watcher the same steps", async () => {
    const f = fixture(10);
    const feeds = createWatchFeeds({ store: f.store, live: f.live });
    const announced: number[] = [];
    const a = feeds.join(TN, (v) => announced.push(v));
    const b = feeds.join(TN);
    let state = (await a.current(0)) as ShipmentDoc;
    assert.equal(state.version, 1);
    for (let v = 2; v <= 10; v++) {
      f.commit(v);
      const target = (await a.current(v)) as ShipmentDoc;
      const fromA = [...(await a.steps(state, target))];
      const fromB = [...(await b.steps(state, target))];
      assert.deepEqual(versions(fromA), [v]);
      assert.equal(fromA[0], fromB[0], "the same step object for both watchers");
      state = target;
    }
    assert.deepEqual(announced, [2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(f.reads, { getShipment: 1, listEvents: 0 });
    a.leave();
    b.leave();
    assert.equal(feeds.size(), 0);
  });

  it("reads the store after a lost notice, and takes notices in again once it is caught up", async () => {
    const f = fixture(6);
    const feeds = createWatchFeeds({ store: f.store, live: f.live });
    const feed = feeds.join(TN);
    const v1 = (await feed.current(0)) as ShipmentDoc;
    f.commit(2, false);
    f.commit(3);
    const v3 = (await feed.current(3)) as ShipmentDoc;
    assert.equal(v3.version, 3);
    assert.deepEqual(versions(await feed.steps(v1, v3)), [2, 3]);
    assert.deepEqual(f.reads, { getShipment: 2, listEvents: 1 }, "the gap was read");
    f.commit(4);
    const v4 = (await feed.current(4)) as ShipmentDoc;
    assert.deepEqual(versions(await feed.steps(v3, v4)), [4]);
    assert.deepEqual(f.reads, { getShipment: 2, listEvents: 1 }, "the next notice continues the copy read");
    feed.leave();
  });

  it("reads at once after an unreadable notice and announces the version it found", async () => {
    const f = fixture(3);
    const feeds = createWatchFeeds({ store: f.store, live: f.live });
    let announce: (v: number) => void = () => {};
    const announced = new Promise<number>((resolve) => (announce = resolve));
    const feed = feeds.join(TN, (v) => announce(v));
    await feed.current(0);
    f.commit(3, false);
    f.deliver({});
    assert.equal(await announced, 3);
    assert.equal((await feed.current(3))?.version, 3);
    assert.equal(f.reads.getShipment, 2);
    feed.leave();
  });

  it("keeps at most maxSteps versions: a watcher further behind replays from the history", async () => {
    const f = fixture(40);
    const feeds = createWatchFeeds({ store: f.store, live: f.live, maxSteps: 8 });
    const behind = feeds.join(TN);
    const follower = feeds.join(TN);
    const v1 = (await behind.current(0)) as ShipmentDoc;
    let state = v1;
    for (let v = 2; v <= 40; v++) {
      f.commit(v);
      const target = (await follower.current(v)) as ShipmentDoc;
      for (const _ of await follower.steps(state, target));
      state = target;
    }
    assert.deepEqual(f.reads, { getShipment: 1, listEvents: 0 });
    const steps = await behind.steps(v1, state);
    assert.deepEqual(versions(steps), Array.from({ length: 39 }, (_, i) => i + 2));
    assert.equal(f.reads.listEvents, 1, "the steps were not all kept");
    behind.leave();
    follower.leave();
  });

  it("replay a watcher far behind one step at a time, keeping the newest maxSteps for the others", async () => {
    const f = fixture(300);
    // Each replayed step derives its document from its event: reading `event` counts the steps derived.
    let derived = 0;
    const store = {
      getShipment: f.store.getShipment,
      listEvents: async () => ({
        items: (await f.store.listEvents()).items.map((e) => Object.defineProperty({ ...e }, "event", { get: () => (derived++, e.event) })),
      }),
    };
    const feeds = createWatchFeeds({ store, live: f.live, maxSteps: 8 });
    const feed = feeds.join(TN);
    f.commit(300, false);
    const v300 = (await feed.current(0)) as ShipmentDoc;
    const replay = (await feed.steps(1, v300))[Symbol.iterator]();
    assert.equal(derived, 1, "only version 1, the replay's start, before the first step is asked for");
    const received: number[] = [];
    for (let r = replay.next(); r.done !== true; r = replay.next()) {
      received.push(r.value.version);
      assert.ok(derived <= received.length + 1, `${derived} steps derived for ${received.length} taken`);
    }
    assert.deepEqual(received, Array.from({ length: 299 }, (_, i) => i + 2));
    // The last step is the document read itself: derived from nothing.
    assert.equal(derived, 299);
    const other = feeds.join(TN);
    assert.deepEqual(versions(await other.steps(292, v300)), [293, 294, 295, 296, 297, 298, 299, 300], "the newest 8 were kept");
    assert.deepEqual(f.reads, { getShipment: 1, listEvents: 1 });
    assert.equal(derived, 299);
    feed.leave();
    other.leave();
  });

  it("follow a shipment trimmed to its size limit as any other, and refuse at once the versions its document dropped", async () => {
    const f = fixture(400, 12_000);
    const feeds = createWatchFeeds({ store: f.store, live: f.live });
    const feed = feeds.join(TN);
    f.commit(399, false);
    const v399 = (await feed.current(0)) as ShipmentDoc;
    const dropped = v399.derivation.trimmed?.ids ?? 0;
    assert.ok(dropped > 10 && dropped < 390, `the test's document dropped ${dropped} ids`);
    f.commit(400);
    const v400 = (await feed.current(400)) as ShipmentDoc;
    assert.deepEqual(versions(await feed.steps(v399, v400)), [400]);
    assert.deepEqual(f.reads, { getShipment: 1, listEvents: 0 }, "the notice was taken in");

    const early = f.commits[9]?.doc as ShipmentDoc;
    assert.equal(early.version, 10);
    await assert.rejects(feed.steps(3, v400), VersionsTrimmedError);
    await assert.rejects(feed.steps(early, v400), VersionsTrimmedError);
    assert.equal(f.reads.listEvents, 0, "refused without loading the history");

    const kept = f.commits[395]?.doc as ShipmentDoc;
    assert.deepEqual(versions(await feed.steps(kept, v400)), [397, 398, 399, 400], "replayed from a version the document still lists");
    assert.equal(f.reads.listEvents, 1);
    feed.leave();
  });
});
