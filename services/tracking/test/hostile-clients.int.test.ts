import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { Scope } from "@logistics/shared/auth";
import {
  TrackingService,
  WatchShipmentRequestSchema,
  WatchShipmentResponseSchema,
  type WatchShipmentResponse,
} from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createEventPublisher } from "@logistics/shared/nats";
import type { RunningService } from "@logistics/shared/runtime";
import { deepUnknownField, lastClosed, slowClients, uniqueName, waitFor } from "@logistics/shared/testing";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createdEvent, createTrackingTestEnv, publishFixture, trackingNumber, type TrackingTestEnv } from "./tracking-fixtures.js";

const PER_CONNECTION = 5;
const PER_PRINCIPAL = 8;
const HEADER_TIMEOUT_MS = 2000;

/** An open (or refused) watch: its updates, and its error once it ended. */
interface Watch {
  updates: WatchShipmentResponse[];
  error?: { code: number | Code; message: string };
  ended: boolean;
  cancel(): void;
}

/** WatchShipment over grpc-js: every watch of one `client` shares its HTTP/2 connection. */
function grpcWatch(client: grpc.Client, tn: string, token?: string): Watch {
  const metadata = new grpc.Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  const call = client.makeServerStreamRequest(
    "/logistics.tracking.v1.TrackingService/WatchShipment",
    (m: ReturnType<typeof create<typeof WatchShipmentRequestSchema>>) => Buffer.from(toBinary(WatchShipmentRequestSchema, m)),
    (b: Buffer) => fromBinary(WatchShipmentResponseSchema, b),
    create(WatchShipmentRequestSchema, { trackingNumber: tn }),
    metadata,
  );
  const w: Watch = { updates: [], ended: false, cancel: () => call.cancel() };
  call.on("data", (u: WatchShipmentResponse) => w.updates.push(u));
  call.on("error", (e: grpc.ServiceError) => {
    w.error ??= { code: e.code, message: e.details };
    w.ended = true;
  });
  call.on("end", () => (w.ended = true));
  return w;
}

/** WatchShipment over Connect on HTTP/1.1: each watch has a connection of its own. */
function connectWatch(baseUrl: string, tn: string): Watch {
  const abort = new AbortController();
  const client = createClient(TrackingService, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
  const w: Watch = { updates: [], ended: false, cancel: () => abort.abort() };
  void (async () => {
    try {
      for await (const u of client.watchShipment({ trackingNumber: tn }, { signal: abort.signal })) w.updates.push(u);
    } catch (e) {
      const err = ConnectError.from(e);
      w.error ??= { code: err.code, message: err.rawMessage };
    } finally {
      w.ended = true;
    }
  })();
  return w;
}

const refused = (ws: Watch[], code: number) => ws.filter((w) => w.error?.code === code);
const serving = (ws: Watch[]) => ws.filter((w) => !w.ended && w.updates.length > 0);

/** The attacks of a hostile client on tracking's public port, against the real service (grpc-js, Connect, raw sockets). */
describe("tracking facing hostile clients (real service)", () => {
  let env: TrackingTestEnv;
  let svc: RunningService;
  let nc: NatsConnection;
  const tn = trackingNumber(uniqueName("wl").replace(/_/g, "").toUpperCase().slice(0, 10), 1);

  beforeAll(async () => {
    env = await createTrackingTestEnv();
    svc = await env.start({
      TRACKING_WATCHES_PER_CONNECTION: String(PER_CONNECTION),
      TRACKING_WATCHES_PER_PRINCIPAL: String(PER_PRINCIPAL),
      HTTP_HEADER_TIMEOUT_MS: String(HEADER_TIMEOUT_MS),
    });
    nc = await connect({ servers: env.nats.url });
    await publishFixture(createEventPublisher({ js: jetstream(nc) }), env.subjects, createdEvent(tn, new Date(Date.UTC(2026, 10, 21, 8))));
    const probe = createClient(TrackingService, createConnectTransport({ baseUrl: svc.url, httpVersion: "1.1" }));
    await waitFor(async () => (await probe.getShipment({ trackingNumber: tn }).catch(() => undefined)) !== undefined, {
      message: "shipment visible",
    });
  });
  afterAll(async () => {
    await nc?.drain();
    await env?.close();
  });

  /** Opens watches, waits until each is serving or refused, and cancels them all afterwards. */
  async function settle(watches: Watch[]): Promise<Watch[]> {
    await waitFor(() => watches.every((w) => w.ended || w.updates.length > 0), { message: "every watch served or refused", timeoutMs: 60_000 });
    return watches;
  }
  const cancelAll = async (watches: Watch[]) => {
    for (const w of watches) w.cancel();
    await waitFor(() => watches.every((w) => w.ended), { message: "watches ended" });
  };

  it("serves at most the per-connection cap of 2,000 anonymous watches on one HTTP/2 connection and refuses the rest with ResourceExhausted", async () => {
    const client = new grpc.Client(`127.0.0.1:${svc.port}`, grpc.credentials.createInsecure());
    const watches = Array.from({ length: 2000 }, () => grpcWatch(client, tn));
    try {
      await settle(watches);
      assert.equal(serving(watches).length, PER_CONNECTION);
      const no = refused(watches, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(no.length, 2000 - PER_CONNECTION);
      assert.match(no[0]!.error!.message, /too many open TrackingService\.WatchShipment calls on this connection \(at most 5\)/);
    } finally {
      await cancelAll(watches);
      client.close();
    }
  });

  it("caps anonymous watches per client address across connections, and gives the slots back when they close", async () => {
    const first = await settle(Array.from({ length: 20 }, () => connectWatch(svc.url, tn)));
    try {
      assert.equal(serving(first).length, PER_PRINCIPAL);
      const no = refused(first, Code.ResourceExhausted);
      assert.equal(no.length, 20 - PER_PRINCIPAL);
      assert.match(no[0]!.error!.message, /from this address \(at most 8\)/);
    } finally {
      await cancelAll(first);
    }
    // Closed watches free their slots: the same address is served again, up to the cap.
    await waitFor(async () => {
      const again = await settle(Array.from({ length: PER_PRINCIPAL }, () => connectWatch(svc.url, tn)));
      const ok = serving(again).length === PER_PRINCIPAL;
      await cancelAll(again);
      return ok;
    }, { message: "slots given back after close" });
  });

  it("counts a token's watches under its subject, apart from anonymous callers at the same address", async () => {
    const token = await env.token([Scope.ShipmentsRead]);
    const anonymous = await settle(Array.from({ length: PER_PRINCIPAL }, () => connectWatch(svc.url, tn)));
    const clients = Array.from({ length: 3 }, () =>
      new grpc.Client(`127.0.0.1:${svc.port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }),
    );
    const withToken = await settle(clients.flatMap((c) => Array.from({ length: 4 }, () => grpcWatch(c, tn, token))));
    try {
      assert.equal(serving(anonymous).length, PER_PRINCIPAL);
      assert.equal(serving(withToken).length, PER_PRINCIPAL);
      const no = refused(withToken, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(no.length, 12 - PER_PRINCIPAL);
      assert.match(no[0]!.error!.message, /for this caller \(at most 8\)/);
    } finally {
      await cancelAll([...anonymous, ...withToken]);
      for (const c of clients) c.close();
    }
  });

  it("closes 300 slow connections within the header timeout while GetShipment stays answered", async () => {
    const opened = Date.now();
    const conns = slowClients(svc.port, 300, "/logistics.tracking.v1.TrackingService/GetShipment");
    try {
      const client = createClient(TrackingService, createConnectTransport({ baseUrl: svc.url, httpVersion: "1.1" }));
      const grpcClient = createClient(TrackingService, createGrpcTransport({ baseUrl: svc.url }));
      for (const c of [client, grpcClient]) {
        const res = await c.getShipment({ trackingNumber: tn }, { timeoutMs: HEADER_TIMEOUT_MS });
        assert.equal(res.shipment?.trackingNumber, tn);
      }
      const latest = (await lastClosed(conns, 15_000)) - opened;
      assert.ok(latest <= HEADER_TIMEOUT_MS + 1500, `last slow connection closed after ${latest} ms`);
    } finally {
      for (const c of conns) c.socket.destroy();
    }
  });

  it("answers 650,000 levels of JSON nesting in an unknown field of an anonymous call with InvalidArgument, unparsed", async () => {
    const res = await fetch(`${svc.url}/logistics.tracking.v1.TrackingService/GetShipment`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: deepUnknownField(650_000, `"trackingNumber":"${tn}"`),
    });
    assert.equal(res.status, 400);
    const err = (await res.json()) as { code: string; message: string };
    assert.equal(err.code, "invalid_argument");
    assert.match(err.message, /JSON nested deeper than 64 levels/);
  });
});
