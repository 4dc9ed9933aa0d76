import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ensureDevKeys, mintToken, Scope } from "../../shared/src/auth/index.js";
import { ShipmentStatus } from "../../shared/src/gen/logistics/common/v1/shipment_pb.js";
import {
  EtaChangedSchema,
  StatusChangedSchema,
} from "../../shared/src/gen/logistics/events/v1/tracking_events_pb.js";
import { NotificationService } from "../../shared/src/gen/logistics/notification/v1/notification_pb.js";
import { createEventPublisher, type EventPublisher } from "../../shared/src/nats/publisher.js";
import { createSubjects, type Subjects } from "../../shared/src/nats/subjects.js";
import { startService, type RunningService } from "../../shared/src/runtime/start-service.js";
import {
  createTestSchema,
  startNatsServer,
  uniqueName,
  type NatsServerHandle,
  type TestSchema,
} from "../../shared/src/testing/index.js";
import { notificationConfig } from "../src/config.js";
import { notificationService } from "../src/notification.js";

/** A request a test receiver got. */
export interface ReceivedRequest {
  readonly at: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  readonly json: { id: string; type: string; data: { tracking_number: string; shipment_version: number } };
}

/** What a test receiver answers. */
export interface ReceiverReply {
  status: number;
  delayMs?: number;
  body?: string;
  headers?: Record<string, string>;
}

/** A real node:http webhook receiver on 127.0.0.1. */
export interface TestReceiver {
  readonly url: string;
  readonly port: number;
  /** Every request, in arrival order. */
  readonly requests: ReceivedRequest[];
  /** Requests answered 2xx, in answer order. */
  readonly accepted: ReceivedRequest[];
  /** Most requests handled at once. */
  maxConcurrent: number;
  close(): Promise<void>;
}

/** Starts a receiver answering each request with `reply(request, index)`. */
export async function startReceiver(
  reply: (r: ReceivedRequest, index: number) => ReceiverReply = () => ({ status: 204 }),
  port = 0,
): Promise<TestReceiver> {
  let active = 0;
  const sockets = new Set<import("node:net").Socket>();
  const receiver: TestReceiver = {
    url: "",
    port: 0,
    requests: [],
    accepted: [],
    maxConcurrent: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const r: ReceivedRequest = { at: performance.now(), headers: req.headers, body, json: JSON.parse(body.toString("utf8")) };
      const index = receiver.requests.length;
      receiver.requests.push(r);
      active++;
      receiver.maxConcurrent = Math.max(receiver.maxConcurrent, active);
      const answer = reply(r, index);
      const send = () => {
        active--;
        if (res.destroyed) return;
        if (answer.status >= 200 && answer.status < 300) receiver.accepted.push(r);
        res.writeHead(answer.status, answer.headers ?? {});
        res.end(answer.body ?? "");
      };
      if (answer.delayMs) setTimeout(send, answer.delayMs);
      else send();
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const p = (server.address() as AddressInfo).port;
  Object.assign(receiver, { url: `http://127.0.0.1:${p}/hooks`, port: p });
  return receiver;
}

/** A notification service with its own NATS server and PostgreSQL schema. */
export interface NotificationHarness {
  readonly svc: RunningService;
  readonly nats: NatsServerHandle;
  readonly nc: NatsConnection;
  readonly schema: TestSchema;
  readonly subjects: Subjects;
  readonly publisher: EventPublisher;
  /** Client authorized for every notification RPC. */
  readonly client: Client<typeof NotificationService>;
  /** Mints a token with the given scopes (a customer or carrier token with `extra`). */
  token(scopes: string[], subject?: string, extra?: { customer?: string; carrier?: string }): Promise<string>;
  /** Starts another replica of the service on the same NATS server, prefix and schema. */
  startReplica(): Promise<RunningService>;
  publishStatus(e: StatusEventInput): Promise<void>;
  publishEta(e: EtaEventInput): Promise<void>;
  close(): Promise<void>;
}

/** Fields of a StatusChanged a test sets. */
export interface StatusEventInput {
  eventId: string;
  trackingNumber: string;
  version: number;
  status?: ShipmentStatus;
  customerId?: string;
  carrierCode?: string;
  region?: string;
  /** Override the JetStream message id (default: the event id). */
  msgId?: string;
}

/** Fields of an EtaChanged a test sets. */
export interface EtaEventInput {
  eventId: string;
  trackingNumber: string;
  version: number;
  customerId?: string;
  carrierCode?: string;
}

/** Starts nats-server, a fresh schema and the notification service with `env` overrides. */
export async function startNotificationHarness(env: Record<string, string>): Promise<NotificationHarness> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const close = async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  };
  try {
    const nats = await startNatsServer();
    cleanups.push(() => nats.stop());
    const schema = await createTestSchema({ prefix: "notif" });
    cleanups.push(() => schema.drop());
    const keysDir = await mkdtemp(join(tmpdir(), "notif-keys-"));
    cleanups.push(() => rm(keysDir, { recursive: true, force: true }));
    const keys = await ensureDevKeys(keysDir);
    const prefix = uniqueName("ntf");
    const config = notificationConfig.parse({
      HOST: "127.0.0.1",
      PORT: "0",
      METRICS_PORT: "0",
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
      NATS_URL: nats.url,
      SUBJECT_PREFIX: prefix,
      JWT_PUBLIC_KEY_FILE: keys.jwksPath,
      SHUTDOWN_GRACE_MS: "2000",
      DATABASE_URL: schema.connectionString,
      NOTIFICATION_DB_SCHEMA: schema.schema,
      NOTIFICATION_ALLOW_HTTP: "true",
      NOTIFICATION_WEBHOOK_ALLOW_HOSTS: "127.0.0.1",
      NOTIFICATION_POLL_INTERVAL_MS: "25",
      ...env,
    });
    const svc = await startService(notificationService, config);
    cleanups.push(() => svc.close());
    const nc = await connect({ servers: nats.url });
    cleanups.push(() => nc.drain());
    const subjects = createSubjects(prefix);
    const publisher = createEventPublisher({ js: jetstream(nc) });
    const token = (scopes: string[], subject = "test-client", extra: { customer?: string; carrier?: string } = {}) =>
      mintToken({ privateJwkPath: keys.privateJwkPath, issuer: "logistics-dev", audience: "logistics-mesh", subject, scopes, ...extra });
    const adminToken = await token([Scope.SubscriptionsWrite, Scope.SubscriptionsRead, Scope.DeliveriesAdmin]);
    const client = createClient(
      NotificationService,
      createConnectTransport({
        baseUrl: svc.url,
        httpVersion: "1.1",
        interceptors: [
          (next) => (req) => {
            if (!req.header.has("authorization")) req.header.set("authorization", `Bearer ${adminToken}`);
            return next(req);
          },
        ],
      }),
    );
    const now = Date.now();
    return {
      svc,
      nats,
      nc,
      schema,
      subjects,
      publisher,
      client,
      token,
      async startReplica() {
        const replica = await startService(notificationService, config);
        cleanups.push(() => replica.close());
        return replica;
      },
      async publishStatus(e) {
        const msg = create(StatusChangedSchema, {
          eventId: e.eventId,
          trackingNumber: e.trackingNumber,
          shipmentId: `shp-${e.trackingNumber}`,
          customerId: e.customerId ?? "cust-1",
          carrierCode: e.carrierCode ?? "acme",
          previousStatus: ShipmentStatus.IN_TRANSIT,
          status: e.status ?? ShipmentStatus.IN_TRANSIT,
          statusTime: timestampFromDate(new Date(now + e.version * 1000)),
          causeEventId: `scan-${e.eventId}`,
          version: BigInt(e.version),
          recordedAt: timestampFromDate(new Date()),
        });
        await publisher.publish(subjects.statusChanged(e.region ?? "eu"), StatusChangedSchema, msg, { msgId: e.msgId ?? e.eventId });
      },
      async publishEta(e) {
        const msg = create(EtaChangedSchema, {
          eventId: e.eventId,
          trackingNumber: e.trackingNumber,
          shipmentId: `shp-${e.trackingNumber}`,
          customerId: e.customerId ?? "cust-1",
          carrierCode: e.carrierCode ?? "acme",
          eta: { estimatedArrival: timestampFromDate(new Date(now + 86_400_000)), confidence: 0.8 },
          version: BigInt(e.version),
          changedAt: timestampFromDate(new Date(now + e.version * 1000)),
        });
        await publisher.publish(subjects.etaChanged("eu"), EtaChangedSchema, msg, { msgId: e.eventId });
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** A tracking number unique to this run: 12 uppercase alphanumerics. */
export function trackingNumber(): string {
  return uniqueName("t").replace(/[^a-z0-9]/g, "").toUpperCase().slice(-12).padStart(12, "X");
}

/** "ok" when `p` resolves, else the Connect code it failed with. */
export async function codeOf(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return ConnectError.from(e).code;
  }
}
