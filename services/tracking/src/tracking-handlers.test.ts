import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { WatchShipmentRequestSchema, WatchUpdateKind } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { drainSignalKey } from "@logistics/shared/server";
import { Registry } from "prom-client";
import { commitAll, historyOf, journey, memoryLiveHub, type Commit } from "../test/live-changes.js";
import { decodeNotice, encodeNotice, noticeChange } from "./live-notice.js";
import { HistoryGapError } from "./shipment-history.js";
import { StoreError } from "./store/errors.js";
import { createTrackingHandlers, type TrackingHandlersDeps } from "./tracking-handlers.js";
import { createTrackingMetrics } from "./tracking-metrics.js";
import { createWatchFeeds } from "./watch-feed.js";

const TN = "TN00000042";

/**
 * WatchShipment over the real watch feeds, with a store serving what is committed so far and a
 * hub the test delivers notices through (as watch-feed.test.ts does); `fail` makes the store's
 * reads fail with the given error.
 */
function setup(opts: Partial<TrackingHandlersDeps> = {}, versions = 8, maxBytes?: number) {
  const commits = commitAll(
    journey(TN, versions - 1).map((e) => [e]),
    maxBytes === undefined ? {} : { maxBytes },
  );
  let committed = 1;
  let fail: unknown;
  const store = {
    getShipment: async () => {
      if (fail !== undefined) throw fail;
      return commits[committed - 1]?.doc;
    },
    listEvents: async () => {
      if (fail !== undefined) throw fail;
      return { items: historyOf(commits.slice(0, committed)) };
    },
    searchShipments: async () => ({ items: [] }),
  };
  const live = memoryLiveHub();
  const metrics = createTrackingMetrics(new Registry());
  const feeds = createWatchFeeds({ store, live, metrics });
  const handlers = createTrackingHandlers({ store, reader: { get: async () => undefined } as never, live, metrics, feeds, ...opts });
  const drain = new AbortController();
  return {
    feeds,
    drain,
    live,
    metrics,
    failReads: (err: unknown) => (fail = err),
    /** Commits up to `version` and delivers its notice (unless `notify` is false). */
    commit(version: number, notify = true) {
      committed = version;
      const c = commits[version - 1] as Commit;
      if (notify) live.announce(decodeNotice(TN, encodeNotice(c.doc.version, noticeChange(c.doc, c.applied))));
    },
    watch(afterSequence = 0n) {
      const call = new AbortController();
      const ctx = { signal: call.signal, values: createContextValues().set(drainSignalKey, drain.signal) } as unknown as HandlerContext;
      const it = handlers.watchShipment!(create(WatchShipmentRequestSchema, { trackingNumber: TN, afterSequence }), ctx)[Symbol.asyncIterator]();
      return { it, cancel: () => call.abort(new ConnectError("canceled", Code.Canceled)) };
    },
  };
}

/** "KIND sequence" of a response, or "end". */
const update = (r: IteratorResult<{ kind?: WatchUpdateKind; sequence?: bigint }>) =>
  r.done === true ? "end" : `${WatchUpdateKind[r.value.kind ?? WatchUpdateKind.UNSPECIFIED]} ${r.value.sequence ?? 0n}`;

describe("WatchShipment", () => {
  it("sends the snapshot, then a change per notice as it arrives, and ends cleanly when the caller goes", async () => {
    const t = setup({ heartbeatMs: 60_000 });
    const { it: stream, cancel } = t.watch();
    assert.equal(update(await stream.next()), "SNAPSHOT 1");
    for (let v = 2; v <= 5; v++) {
      const next = stream.next();
      t.commit(v);
      assert.equal(update(await next), `CHANGE ${v}`);
    }
    const next = stream.next();
    cancel();
    assert.equal(update(await next), "end");
    assert.equal(t.feeds.size(), 0, "the watcher left its feed");
    assert.equal((await t.metrics.watchers.get()).values[0]?.value, 0);
  });

  it("repeats heartbeats while nothing changes, and a notice still wakes it between them", async () => {
    const t = setup({ heartbeatMs: 5 });
    const { it: stream, cancel } = t.watch();
    assert.equal(update(await stream.next()), "SNAPSHOT 1");
    // Several in a row: the stream's one heartbeat timer is armed again after each.
    for (let i = 0; i < 3; i++) assert.equal(update(await stream.next()), "HEARTBEAT 1");
    t.commit(2);
    let r = await stream.next();
    while (update(r) === "HEARTBEAT 1") r = await stream.next();
    assert.equal(update(r), "CHANGE 2");
    assert.equal(update(await stream.next()), "HEARTBEAT 2");
    cancel();
    assert.equal(update(await stream.next()), "end");
  });

  it("catches up from after_sequence, and picks up a change whose notice was lost at the next heartbeat", async () => {
    const t = setup({ heartbeatMs: 5 });
    t.commit(4, false);
    const { it: stream, cancel } = t.watch(2n);
    assert.deepEqual([update(await stream.next()), update(await stream.next())], ["CHANGE 3", "CHANGE 4"]);
    t.commit(5, false);
    let r = await stream.next();
    while (update(r) === "HEARTBEAT 4") r = await stream.next();
    assert.equal(update(r), "CHANGE 5");
    cancel();
    assert.equal(update(await stream.next()), "end");
  });

  it("sends a snapshot in place of the changes a document trimmed to its size limit can no longer rebuild", async () => {
    const t = setup({ heartbeatMs: 60_000 }, 400, 12_000);
    t.commit(399, false);
    const { it: stream, cancel } = t.watch(5n);
    assert.equal(update(await stream.next()), "SNAPSHOT 399", "version 5's event id was dropped");
    t.commit(400);
    assert.equal(update(await stream.next()), "CHANGE 400", "then changes as they come");
    // While the first watch keeps the shipment's feed: a resume from a change it keeps...
    const held = t.watch(399n);
    assert.equal(update(await held.it.next()), "CHANGE 400");
    // ... and one from a version whose document would be rebuilt from version 1.
    const resumed = t.watch(396n);
    assert.equal(update(await resumed.it.next()), "SNAPSHOT 400");
    for (const w of [{ it: stream, cancel }, held, resumed]) {
      w.cancel();
      assert.equal(update(await w.it.next()), "end");
    }
    assert.equal(t.feeds.size(), 0);
  });

  it("ends with OK when the server drains or the stream's lifetime is over", async () => {
    const t = setup({ heartbeatMs: 60_000 });
    const { it: drained } = t.watch();
    assert.equal(update(await drained.next()), "SNAPSHOT 1");
    const waiting = drained.next();
    t.drain.abort();
    assert.equal(update(await waiting), "end");
    const { it: late } = t.watch();
    assert.deepEqual([update(await late.next()), update(await late.next())], ["SNAPSHOT 1", "end"], "a watch opened while draining ends after its snapshot");

    const short = setup({ heartbeatMs: 60_000, maxStreamLifetimeMs: 20 });
    const { it: stream } = short.watch();
    assert.equal(update(await stream.next()), "SNAPSHOT 1");
    assert.equal(update(await stream.next()), "end");
    assert.equal(short.feeds.size(), 0);
  });

  it("answers store failures of its reads with Connect codes", async () => {
    const t = setup({ heartbeatMs: 60_000 });
    t.failReads(new StoreError("CONFLICT", "concurrent update"));
    await assert.rejects(t.watch().it.next(), (e: unknown) => e instanceof ConnectError && e.code === Code.Aborted);

    const later = setup({ heartbeatMs: 60_000 });
    const { it: stream } = later.watch();
    assert.equal(update(await stream.next()), "SNAPSHOT 1");
    later.failReads(new HistoryGapError(TN, "e-1"));
    const next = stream.next();
    // A version-only notice: the watcher reads the store for it.
    later.live.announce(decodeNotice(TN, encodeNotice(3)));
    await assert.rejects(next, (e: unknown) => e instanceof ConnectError && e.code === Code.Internal);
    assert.equal(later.feeds.size(), 0);
  });

  it("refuses an after_sequence beyond the shipment's version with OutOfRange, and an unknown shipment with NotFound", async () => {
    const t = setup();
    await assert.rejects(t.watch(9n).it.next(), (e: unknown) => e instanceof ConnectError && e.code === Code.OutOfRange);
    // The largest uint64 is named as sent, not as the nearest double.
    await assert.rejects(setup().watch(18446744073709551615n).it.next(), (e: unknown) => e instanceof ConnectError && e.code === Code.OutOfRange && e.rawMessage.startsWith("after_sequence 18446744073709551615 "));
    const none = setup({ creationGraceMs: 30 });
    none.commit(0, false);
    await assert.rejects(none.watch().it.next(), (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound);
    assert.equal(none.feeds.size(), 0);
    assert.equal((await none.metrics.watchCreationWaits.get()).values.find((v) => v.labels.outcome === "not_found")?.value, 1);
  });

  it("waits for the creation of a shipment the read model does not hold yet: its notice, or a read at the deadline", async () => {
    // The creation's notice arrives while the watch waits.
    const early = setup({ creationGraceMs: 60_000, heartbeatMs: 60_000 });
    early.commit(0, false);
    const { it: stream, cancel } = early.watch();
    const first = stream.next();
    await new Promise((r) => setImmediate(r));
    early.commit(1);
    assert.equal(update(await first), "SNAPSHOT 1");
    const next = stream.next();
    early.commit(2);
    assert.equal(update(await next), "CHANGE 2");
    cancel();
    // Its notice was lost: the read at the end of the grace finds it.
    const lost = setup({ creationGraceMs: 30, heartbeatMs: 60_000 });
    lost.commit(0, false);
    const quiet = lost.watch();
    const snapshot = quiet.it.next();
    lost.commit(1, false);
    assert.equal(update(await snapshot), "SNAPSHOT 1");
    quiet.cancel();
    // The caller goes while it waits: the stream ends, nothing stays behind.
    const gone = setup({ creationGraceMs: 60_000 });
    gone.commit(0, false);
    const w = gone.watch();
    const pending = w.it.next();
    await new Promise((r) => setImmediate(r));
    w.cancel();
    assert.equal(update(await pending), "end");
    assert.equal(gone.feeds.size(), 0);
  });
});
