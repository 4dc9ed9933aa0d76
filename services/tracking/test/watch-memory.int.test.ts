import { afterAll, beforeAll, describe, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  TrackingService,
  WatchShipmentRequestSchema,
  WatchShipmentResponseSchema,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createEventPublisher } from "@logistics/shared/nats";
import {
  assertHeapReturnsAfterStreams,
  compiledEntry,
  getFreePort,
  readMetric,
  spawnProbedProcess,
  uniqueName,
  waitFor,
  type ProbedProcess,
} from "@logistics/shared/testing";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createdEvent, createTrackingTestEnv, publishFixture, trackingNumber, type TrackingTestEnv } from "./tracking-fixtures.js";

const STREAMS = 1000;
const CONNECTIONS = 4;
/** Heap after closing may exceed the baseline by this much (allocator and JIT noise). */
const MARGIN_BYTES = 4 * 1_048_576;

/**
 * WatchShipment memory: a tracking process as deployed (its own process, run with --expose-gc),
 * 1,000 anonymous watch streams opened and closed over grpc-js, heap measured after full GC.
 */
describe("WatchShipment memory after streams close (tracking process, grpc-js)", () => {
  let env: TrackingTestEnv;
  let svc: ProbedProcess;
  let nc: NatsConnection;
  let port: number;
  let metricsUrl: string;
  const tn = trackingNumber(uniqueName("wm").replace(/_/g, "").toUpperCase().slice(0, 10), 1);

  beforeAll(async () => {
    env = await createTrackingTestEnv();
    port = await getFreePort();
    const metricsPort = await getFreePort();
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    svc = spawnProbedProcess(compiledEntry("services/tracking/src/main.ts"), {
      ...env.env,
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      LOG_LEVEL: "warn",
      // Caps off: this measures what open streams cost, not who may open them.
      TRACKING_WATCHES_PER_CONNECTION: "0",
      TRACKING_WATCHES_PER_PRINCIPAL: "0",
      // Watches of numbers nobody created wait for the creation until they are closed.
      TRACKING_WATCH_CREATION_GRACE_MS: "60000",
    });
    await waitFor(async () => (await readMetric(metricsUrl, "rpc_server_open_streams")) !== undefined, {
      message: "tracking process up",
      signal: svc.proc.exitSignal,
      timeoutMs: 60_000,
    });
    nc = await connect({ servers: env.nats.url });
    await publishFixture(createEventPublisher({ js: jetstream(nc) }), env.subjects, createdEvent(tn, new Date(Date.UTC(2026, 10, 21, 8))));
    const tracking = createClient(TrackingService, createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" }));
    await waitFor(async () => (await tracking.getShipment({ trackingNumber: tn }).catch(() => undefined)) !== undefined, {
      message: "shipment visible",
    });
  });
  afterAll(async () => {
    await svc?.proc.stop();
    await nc?.drain();
    await env?.close();
  });

  /**
   * Opens `n` watches over `CONNECTIONS` connections: of the shipment (resolves once each got its
   * snapshot), or with `waiting` each of its own tracking number nobody created (resolves once all
   * are open, waiting for a creation: a feed, a notice subscription and a timer each).
   */
  async function openWatches(n: number, waiting = false) {
    const clients = Array.from({ length: CONNECTIONS }, () =>
      new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }),
    );
    let snapshots = 0;
    const calls = Array.from({ length: n }, (_, i) => {
      const call = clients[i % CONNECTIONS]!.makeServerStreamRequest(
        "/logistics.tracking.v1.TrackingService/WatchShipment",
        (m: ReturnType<typeof create<typeof WatchShipmentRequestSchema>>) => Buffer.from(toBinary(WatchShipmentRequestSchema, m)),
        (b: Buffer) => fromBinary(WatchShipmentResponseSchema, b),
        create(WatchShipmentRequestSchema, { trackingNumber: waiting ? `${tn}W${i}` : tn }),
      );
      call.once("data", () => snapshots++);
      call.on("error", () => {});
      return call;
    });
    if (waiting) {
      await waitFor(async () => (await readMetric(metricsUrl, "tracking_watchers")) === n, {
        message: `${n} watches waiting`,
        timeoutMs: 120_000,
        signal: svc.proc.exitSignal,
      });
    } else await waitFor(() => snapshots === n, { message: `${n} watches served`, timeoutMs: 120_000, signal: svc.proc.exitSignal });
    return {
      async close() {
        for (const c of calls) c.cancel();
        for (const c of clients) c.close();
        await waitFor(async () => (await readMetric(metricsUrl, "rpc_server_open_streams")) === 0, {
          message: "no stream open on the server",
          timeoutMs: 60_000,
        });
      },
    };
  }

  it(`returns to its baseline heap after ${STREAMS} watch streams close`, async () => {
    await assertHeapReturnsAfterStreams(svc, openWatches, { label: "WatchShipment", streams: STREAMS, marginBytes: MARGIN_BYTES });
  });

  it(`returns to its baseline heap after ${STREAMS} watches waiting for a creation are closed`, async () => {
    await assertHeapReturnsAfterStreams(svc, (n) => openWatches(n, true), {
      label: "WatchShipment waiting for a creation",
      streams: STREAMS,
      marginBytes: MARGIN_BYTES,
    });
  });
});
