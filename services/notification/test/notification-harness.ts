import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Scope } from "@logistics/shared/auth";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  EtaChangedSchema,
  StatusChangedSchema,
} from "@logistics/shared/gen/logistics/events/v1/tracking_events_pb.js";
import { NotificationService } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { createEventPublisher, type EventPublisher, createSubjects, type Subjects } from "@logistics/shared/nats";
import { startService, type RunningService } from "@logistics/shared/runtime";
import {
  createTestKeys,
  serviceTestEnv,
  createTestSchema,
  startNatsServer,
  uniqueName,
  type NatsServerHandle,
  type TestSchema,
} from "@logistics/shared/testing";
import { notificationConfig } from "../src/config.js";
import { notificationService } from "../src/notification.js";

export { startReceiver, type ReceivedRequest, type ReceiverReply, type TestReceiver } from "@logistics/shared/testing";

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
    const keys = await createTestKeys("notif");
    cleanups.push(() => keys.remove());
    const prefix = uniqueName("ntf");
    const config = notificationConfig.parse({
      ...serviceTestEnv({ natsUrl: nats.url, prefix, jwksPath: keys.jwksPath, databaseUrl: schema.connectionString }),
      SHUTDOWN_GRACE_MS: "2000",
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
      keys.token({ subject, scopes, ...extra });
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
