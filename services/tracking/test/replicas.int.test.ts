import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { TrackingService, WatchUpdateKind, type WatchShipmentResponse } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createEventPublisher } from "@logistics/shared/nats";
import type { RunningService } from "@logistics/shared/runtime";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import {
  createdEvent,
  createTrackingTestEnv,
  publishFixture,
  readCounter,
  scanEvent,
  trackingNumber,
  type TrackingTestEnv,
} from "./tracking-fixtures.js";

const KINDS = [ScanKind.PICKUP, ScanKind.HUB_ARRIVAL, ScanKind.HUB_DEPARTURE, ScanKind.OUT_FOR_DELIVERY, ScanKind.DELIVERED];
const SHIPMENTS = 4;

describe("tracking replicas (two projectors, API replicas apart from them)", () => {
  let env: TrackingTestEnv;
  let apiOnly: RunningService;
  let projectorB: RunningService;
  let projectorC: RunningService;
  let nc: NatsConnection;
  const tag = uniqueName("r").replace(/_/g, "").toUpperCase().slice(0, 10);

  beforeAll(async () => {
    env = await createTrackingTestEnv();
    // The API-only replica never applies an event: whatever its watchers see came from the others.
    apiOnly = await env.start({ TRACKING_PROJECTOR_ENABLED: "false", TRACKING_WATCH_HEARTBEAT_MS: "60000" });
    projectorB = await env.start({ TRACKING_WATCH_HEARTBEAT_MS: "60000" });
    projectorC = await env.start({ TRACKING_WATCH_HEARTBEAT_MS: "60000" });
    nc = await connect({ servers: env.nats.url });
  });
  afterAll(async () => {
    await nc?.drain();
    await env?.close();
  });

  it("delivers changes applied by the projector replicas to watchers on every API replica, in order", async () => {
    const publisher = createEventPublisher({ js: jetstream(nc) });
    const t0 = Date.UTC(2026, 10, 23, 8, 0, 0);
    const tns = Array.from({ length: SHIPMENTS }, (_, i) => trackingNumber(tag, i));
    for (const tn of tns) await publishFixture(publisher, env.subjects, createdEvent(tn, new Date(t0)));
    const onA = createClient(TrackingService, createConnectTransport({ baseUrl: apiOnly.url, httpVersion: "1.1" }));
    const onB = createClient(TrackingService, createGrpcTransport({ baseUrl: projectorB.url }));
    await waitFor(async () => {
      for (const tn of tns) if ((await onA.getShipment({ trackingNumber: tn })).shipment?.version !== 1n) return false;
      return true;
    }, { message: "shipments created", intervalMs: 100 }).catch(async () => {
      throw new Error("shipments not visible");
    });

    const abort = new AbortController();
    const received = new Map<string, WatchShipmentResponse[]>();
    const watchers = tns.flatMap((tn) =>
      (
        [
          ["A", onA],
          ["B", onB],
        ] as const
      ).map(async ([replica, client]) => {
        const list: WatchShipmentResponse[] = [];
        received.set(`${replica}:${tn}`, list);
        try {
          for await (const u of client.watchShipment({ trackingNumber: tn }, { signal: abort.signal })) list.push(u);
        } catch {
          // cancelled at the end of the test
        }
      }),
    );
    await waitFor(() => [...received.values()].every((l) => l.length >= 1) && received.size === tns.length * 2, {
      message: "snapshots on every watcher",
    });

    for (let k = 0; k < KINDS.length; k++) {
      await Promise.all(tns.map((tn) => publishFixture(publisher, env.subjects, scanEvent(tn, k, KINDS[k] as ScanKind, new Date(t0 + (k + 1) * 3_600_000)))));
    }
    const finalVersion = BigInt(1 + KINDS.length);
    await waitFor(
      () => [...received.values()].every((l) => l.filter((u) => u.kind !== WatchUpdateKind.HEARTBEAT).at(-1)?.sequence === finalVersion),
      { timeoutMs: 20_000, message: "every watcher at the final version" },
    );
    abort.abort();
    await Promise.all(watchers);

    for (const [key, list] of received) {
      const seqs = list.filter((u) => u.kind !== WatchUpdateKind.HEARTBEAT).map((u) => u.sequence);
      assert.deepEqual(seqs, Array.from({ length: Number(finalVersion) }, (_, i) => BigInt(i + 1)), `${key}: no gaps, no repeats`);
    }
    assert.equal(await readCounter(apiOnly.metricsUrl, "logistics_tracking_projected_events_total"), 0, "the API-only replica projected nothing");
    // Applied, not handled: a message whose ack outlives the 10 s ack wait on a loaded machine is
    // redelivered (at-least-once) and counted again as outcome="duplicate", which is correct.
    const applied =
      (await readCounter(projectorB.metricsUrl, "logistics_tracking_projected_events_total", 'outcome="applied"')) +
      (await readCounter(projectorC.metricsUrl, "logistics_tracking_projected_events_total", 'outcome="applied"'));
    assert.equal(applied, SHIPMENTS * (1 + KINDS.length), "the two projectors shared the events, each applied once");
    const lagSamples =
      (await readCounter(projectorB.metricsUrl, "logistics_tracking_ack_to_visible_seconds_count")) +
      (await readCounter(projectorC.metricsUrl, "logistics_tracking_ack_to_visible_seconds_count"));
    assert.equal(lagSamples, SHIPMENTS * KINDS.length, "one ack-to-visible sample per applied scan");
  });
});
