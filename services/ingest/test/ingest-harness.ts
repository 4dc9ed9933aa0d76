import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Scope } from "@logistics/shared/auth";
import { ScanSchema, type Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  CreateShipmentRequestSchema,
  IngestService,
  type CreateShipmentRequest,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { createSubjects, type Subjects } from "@logistics/shared/nats";
import { startService, type RunningService } from "@logistics/shared/runtime";
import {
  createTestKeys,
  serviceTestEnv,
  startNatsServer,
  startRedisServer,
  uniqueName,
  type NatsServerHandle,
  type RedisServerHandle,
} from "@logistics/shared/testing";
import { ingestConfig } from "../src/config.js";
import { ingestService } from "../src/ingest.js";

/** A private nats-server and redis-server with an ingest service in this process. */
export interface IngestHarness {
  readonly nats: NatsServerHandle;
  readonly redis: RedisServerHandle;
  readonly svc: RunningService;
  readonly subjects: Subjects;
  /** A bearer token: a carrier gateway's (`carrier` set), a customer's (`customer` set) or an internal one. */
  token(opts: { carrier?: string; customer?: string; scopes?: string[]; subject?: string }): Promise<string>;
  /**
   * Creates (once per carrier, through CreateShipment) the shipments {@link validScan} scans of
   * `carrier` refer to, so their scans are owned; resolves with their tracking numbers.
   */
  createShipments(carrier: string): Promise<readonly string[]>;
  /** Creates one shipment of `carrier` (tracking number assigned unless given), as an order system would. */
  createShipment(carrier: string, o?: { trackingNumber?: string; customerId?: string; partners?: string[] }): Promise<string>;
  /** A grpc-js client of the service (closed by `close`). */
  grpcClient(): grpc.Client;
  /**
   * Starts another ingest replica on the same nats-server, Redis, subject prefix and keys (the
   * shared shipment directory and streams, its own cache); closed by `close`.
   */
  startReplica(): Promise<RunningService>;
  /** Sum of a counter or gauge on the service's /metrics, optionally only samples whose labels include `match`. */
  metric(name: string, match?: string): Promise<number>;
  /** Recorded event ids (`Nats-Msg-Id`) of every message in the scans stream, read with a private connection. */
  storedScanIds(): Promise<string[]>;
  close(): Promise<void>;
}

/** Starts the harness; `env` overrides the service's environment. */
export async function startIngestHarness(env: Record<string, string> = {}): Promise<IngestHarness> {
  const nats = await startNatsServer();
  const redis = await startRedisServer();
  const keys = await createTestKeys("ingest");
  const prefix = uniqueName("ingest");
  const subjects = createSubjects(prefix);
  const clients: grpc.Client[] = [];
  const replicas: RunningService[] = [];
  const start = () =>
    startService(
      ingestService,
      ingestConfig.parse({
        ...serviceTestEnv({ natsUrl: nats.url, prefix, jwksPath: keys.jwksPath }),
        REDIS_URL: redis.url,
        INGEST_REDIS_KEY_PREFIX: `${prefix}:`,
        // These tests pile tens of thousands of scans on 32 shipments per carrier: no shipment
        // budget (shipment-budget.int.test.ts and dev/test/shipment-budget.int.test.ts test it).
        INGEST_SHIPMENT_SCAN_BUDGET_BYTES: "0",
        ...env,
      }),
    );
  let svc: RunningService;
  try {
    svc = await start();
  } catch (err) {
    await redis.stop();
    await nats.stop();
    await keys.remove();
    throw err;
  }
  const token = (o: { carrier?: string; customer?: string; scopes?: string[]; subject?: string }) =>
    keys.token({
      subject: o.subject ?? (o.carrier ? `gateway-${o.carrier}` : "order-system"),
      scopes: o.scopes ?? [Scope.ScansWrite],
      ...(o.carrier ? { carrier: o.carrier } : {}),
      ...(o.customer ? { customer: o.customer } : {}),
    });
  const orders = createClient(IngestService, createGrpcTransport({ baseUrl: svc.url }));
  let orderCount = 0;
  const createShipment = async (carrier: string, o: { trackingNumber?: string; customerId?: string; partners?: string[] } = {}) => {
    const headers = { authorization: `Bearer ${await token({ scopes: [Scope.ShipmentsWrite], subject: "order-system" })}` };
    const res = await orders.createShipment(
      {
        idempotencyKey: `order-${prefix}-${++orderCount}`,
        trackingNumber: o.trackingNumber ?? "",
        carrierCode: carrier,
        customerId: o.customerId ?? "cust-1",
        partnerCarrierCodes: o.partners ?? [],
        serviceLevel: ServiceLevel.STANDARD,
        origin: { countryCode: "DE", city: "Frankfurt", location: { latitude: 50.11, longitude: 8.68 } },
        destination: { countryCode: "US", city: "Chicago", location: { latitude: 41.88, longitude: -87.63 } },
        parcel: { weightGrams: 1200 },
      },
      { headers },
    );
    return res.trackingNumber;
  };
  const created = new Map<string, Promise<readonly string[]>>();
  return {
    nats,
    redis,
    svc,
    subjects,
    token,
    createShipment,
    createShipments(carrier) {
      let p = created.get(carrier);
      if (!p) {
        p = Promise.all(Array.from({ length: SHIPMENTS_PER_CARRIER }, (_, k) => createShipment(carrier, { trackingNumber: poolTrackingNumber(carrier, k) })));
        created.set(carrier, p);
      }
      return p;
    },
    grpcClient() {
      const c = new grpc.Client(`127.0.0.1:${svc.port}`, grpc.credentials.createInsecure());
      clients.push(c);
      return c;
    },
    async startReplica() {
      const replica = await start();
      replicas.push(replica);
      return replica;
    },
    async metric(name, match) {
      const text = await (await fetch(svc.metricsUrl)).text();
      let sum = 0;
      for (const line of text.split("\n")) {
        if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
        if (match && !line.includes(match)) continue;
        sum += Number(line.slice(line.lastIndexOf(" ") + 1));
      }
      return sum;
    },
    async storedScanIds() {
      const nc: NatsConnection = await connect({ servers: nats.url });
      try {
        const jsm = await jetstreamManager(nc);
        const stream = subjects.streams.scans.name;
        const total = (await jsm.streams.info(stream)).state.messages;
        const ids: string[] = [];
        if (total === 0) return ids;
        const consumer = await jetstream(nc).consumers.get(stream);
        const messages = await consumer.consume({ max_messages: 2000 });
        for await (const m of messages) {
          ids.push(m.headers?.get("Nats-Msg-Id") ?? "");
          if (ids.length >= total) break;
        }
        return ids;
      } finally {
        await nc.close();
      }
    },
    async close() {
      for (const c of clients) c.close();
      for (const r of replicas) await r.close();
      await svc.close();
      await redis.stop();
      await nats.stop();
      await keys.remove();
    },
  };
}

/** Shipments per carrier that {@link validScan}'s scans are spread over. */
export const SHIPMENTS_PER_CARRIER = 32;

/** The k-th tracking number of `carrier`'s pool (`ACMETN000007` for acme): distinct per carrier. */
export function poolTrackingNumber(carrier: string, k: number): string {
  return `${carrier.toUpperCase().replace(/[^A-Z0-9]/g, "")}TN${String(k).padStart(6, "0")}`;
}

/**
 * A valid scan of `carrier` with event id `id` (event time: a minute ago), for one of the
 * carrier's pool shipments (create them first with `IngestHarness.createShipments`).
 */
export function validScan(carrier: string, id: string, over: Partial<MessageInitShape<typeof ScanSchema>> = {}): Scan {
  return create(ScanSchema, {
    eventId: id,
    trackingNumber: poolTrackingNumber(carrier, hash(id) % SHIPMENTS_PER_CARRIER),
    carrierCode: carrier,
    rawStatus: { code: "AR", text: "Arrived at hub" },
    eventTime: timestampFromMs(Date.now() - 60_000),
    hubCode: "FRA",
    ...over,
  } as MessageInitShape<typeof ScanSchema>);
}

/**
 * A valid CreateShipment request of carrier acme under idempotency key `key`; `over` replaces
 * fields (fixed ready time, so two calls with the same arguments are the same request).
 */
export function shipmentRequest(key: string, over: Partial<MessageInitShape<typeof CreateShipmentRequestSchema>> = {}): CreateShipmentRequest {
  return create(CreateShipmentRequestSchema, {
    idempotencyKey: key,
    carrierCode: "acme",
    customerId: "cust-1",
    serviceLevel: ServiceLevel.STANDARD,
    origin: { countryCode: "DE", city: "Frankfurt", location: { latitude: 50.11, longitude: 8.68 } },
    destination: { countryCode: "US", city: "Chicago", location: { latitude: 41.88, longitude: -87.63 } },
    parcel: { weightGrams: 1200 },
    readyTime: timestampFromDate(new Date("2026-01-01T00:00:00Z")),
    ...over,
  } as MessageInitShape<typeof CreateShipmentRequestSchema>);
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}

export { bearer, openScanCall, scanMessage, streamAll, submitScans, type StreamRun } from "../src/scan-client.js";
