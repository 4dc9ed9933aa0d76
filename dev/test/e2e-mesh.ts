import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import assert from "node:assert/strict";
import type { JetStreamManager } from "@nats-io/jetstream";
import { Scope } from "@logistics/shared/auth";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { IngestService, type CreateShipmentRequestSchema } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { startService, type RunningService } from "@logistics/shared/runtime";
import type { Subjects } from "@logistics/shared/nats";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { createMeshEnvironment } from "../src/mesh-environment.js";
import type { MeshServiceName } from "../src/service-entry.js";
import { ingestConfig, ingestService } from "@logistics/ingest";
import { notificationConfig, notificationService } from "@logistics/notification";
import { routingConfig, routingService } from "@logistics/routing";
import { trackingConfig, trackingService } from "@logistics/tracking";

export type { MeshServiceName };

/** Options for {@link startE2eMesh}. */
export interface E2eMeshOptions {
  /** Services to start, in this order. Default all four. */
  readonly services?: readonly MeshServiceName[];
  /** Services whose failure to start is tolerated (reported in `failed`). Default none. */
  readonly optional?: readonly MeshServiceName[];
  /** Extra environment for every service (e.g. CORS_ORIGINS). */
  readonly env?: Readonly<Record<string, string>>;
}

/** The mesh a test runs against. */
export interface E2eMesh {
  readonly env: Readonly<Record<string, string>>;
  readonly services: ReadonlyMap<MeshServiceName, RunningService>;
  /** Optional services that did not start, with the reason. */
  readonly failed: ReadonlyMap<MeshServiceName, string>;
  /** A running service (throws when it is not running). */
  get(name: MeshServiceName): RunningService;
  /** Stops `name` (draining its RPCs and consumers). */
  stop(name: MeshServiceName): Promise<void>;
  /**
   * Starts `name` again with the same configuration, on `port` (default: a new free port), with
   * `env` over its configuration (e.g. `METRICS_PORT` to keep a scrape target).
   */
  restart(name: MeshServiceName, port?: number, env?: Readonly<Record<string, string>>): Promise<RunningService>;
  /** The environment `name` was started with (its own DATABASE_URL, prefixes...). */
  envOf(name: MeshServiceName): Readonly<Record<string, string>>;
  /** Mints a bearer token signed with the mesh's test key. */
  token(scopes: readonly string[], extra?: { carrier?: string; customer?: string }): Promise<string>;
  /** Stops everything and removes what was created (schemas, keys, nats-server). */
  close(): Promise<void>;
}

/**
 * Starts the mesh in this process for an end-to-end test: a private nats-server, a unique
 * subject prefix, a PostgreSQL schema per service, unique Redis key prefixes on the local Redis,
 * dev signing keys in a temporary folder, and the services on free ports (PORT=0, METRICS_PORT=0).
 */
export async function startE2eMesh(o: E2eMeshOptions = {}): Promise<E2eMesh> {
  const names = o.services ?? ["ingest", "routing", "tracking", "notification"];
  const running = new Map<MeshServiceName, RunningService>();
  const failed = new Map<MeshServiceName, string>();
  const envs = new Map<MeshServiceName, Record<string, string>>();
  const mesh = await createMeshEnvironment({
    idPrefix: "e2e",
    base: { LOG_LEVEL: "silent", SHUTDOWN_GRACE_MS: "2000", ...o.env },
  });
  const undo = async () => {
    for (const s of running.values()) await s.close().catch(() => {});
    running.clear();
    await mesh.close();
  };
  try {
    for (const name of names) {
      const env = await mesh.envFor(name, TEST_OVERRIDES[name]);
      envs.set(name, env);
      try {
        running.set(name, await startMeshService(name, env));
      } catch (e) {
        if (!o.optional?.includes(name)) throw e;
        failed.set(name, e instanceof Error ? e.message : String(e));
      }
    }
    let closing: Promise<void> | undefined;
    return {
      env: mesh.base,
      services: running,
      failed,
      get(name) {
        const s = running.get(name);
        if (!s) throw new Error(`${name} is not running${failed.has(name) ? `: ${failed.get(name)}` : ""}`);
        return s;
      },
      async stop(name) {
        const s = running.get(name);
        running.delete(name);
        await s?.close();
      },
      async restart(name, port, extra = {}) {
        await running.get(name)?.close();
        const env = { ...envs.get(name)!, PORT: String(port ?? 0), ...extra };
        const s = await startMeshService(name, env);
        running.set(name, s);
        return s;
      },
      envOf(name) {
        const env = envs.get(name);
        if (!env) throw new Error(`${name} was not started`);
        return env;
      },
      token: (scopes, extra) => mesh.token(scopes, extra),
      close: () => (closing ??= undo()),
    };
  } catch (e) {
    await undo();
    throw e;
  }
}

/** A valid CreateShipment request (Frankfurt → Paris, standard) for `carrier`, with a unique idempotency key. */
export function shipmentRequest(carrier: string, customer: string): MessageInitShape<typeof CreateShipmentRequestSchema> {
  return {
    idempotencyKey: uniqueName(`${customer}-order`),
    carrierCode: carrier,
    customerId: customer,
    serviceLevel: ServiceLevel.STANDARD,
    origin: { countryCode: "DE", city: "Frankfurt", location: { latitude: 50.11, longitude: 8.68 } },
    destination: { countryCode: "FR", city: "Paris", location: { latitude: 48.86, longitude: 2.35 } },
    parcel: { weightGrams: 800 },
    readyTime: timestampFromDate(new Date()),
  };
}

/**
 * Creates a Frankfurt → Paris shipment through ingest's CreateShipment (an order system's call)
 * and waits until tracking serves it. Returns its tracking number.
 */
export async function createTrackedShipment(mesh: E2eMesh, o: { carrier: string; customer: string }): Promise<string> {
  const ingest = createClient(IngestService, createGrpcTransport({ baseUrl: mesh.get("ingest").url }));
  const { trackingNumber } = await ingest.createShipment(
    shipmentRequest(o.carrier, o.customer),
    { headers: { authorization: `Bearer ${await mesh.token([Scope.ShipmentsWrite])}` } },
  );
  const tracking = createClient(TrackingService, createGrpcTransport({ baseUrl: mesh.get("tracking").url }));
  await waitFor(() => tracking.getShipment({ trackingNumber }).then(() => true), { timeoutMs: 30_000, message: "tracking knows the shipment" });
  return trackingNumber;
}

/**
 * Asserts the mesh loops on nothing: the dead-letter stream is empty and every durable consumer
 * of every stream settles (nothing pending or unacknowledged) without a single redelivery.
 */
export async function assertMeshSettled(jsm: JetStreamManager, subjects: Subjects, timeoutMs = 30_000): Promise<void> {
  const dlq = await jsm.streams.info(subjects.streams.deadLetters.name);
  assert.equal(dlq.state.messages, 0, "dead letters");
  for (const stream of subjects.streamList) {
    if (stream.name === subjects.streams.deadLetters.name) continue;
    for await (const c of jsm.consumers.list(stream.name)) {
      const info = await waitFor(
        async () => {
          const i = await jsm.consumers.info(stream.name, c.name);
          return i.num_pending === 0 && i.num_ack_pending === 0 ? i : null;
        },
        { timeoutMs, message: `${c.name} settled` },
      );
      assert.equal(info.num_redelivered, 0, `${c.name} redelivered`);
    }
  }
}

/** Faster heartbeats and retries than production, so tests observe them within their deadlines. */
const TEST_OVERRIDES: Partial<Record<MeshServiceName, Record<string, string>>> = {
  tracking: { TRACKING_WATCH_HEARTBEAT_MS: "2000" },
  notification: { NOTIFICATION_RETRY_BASE_MS: "200", NOTIFICATION_POLL_INTERVAL_MS: "100" },
};

/** Starts one service of the mesh in this process with `env` as its whole configuration. */
export function startMeshService(name: MeshServiceName, env: Record<string, string>): Promise<RunningService> {
  switch (name) {
    case "ingest":
      return startService(ingestService, ingestConfig.parse(env));
    case "routing":
      return startService(routingService, routingConfig.parse(env));
    case "tracking":
      return startService(trackingService, trackingConfig.parse(env));
    case "notification":
      return startService(notificationService, notificationConfig.parse(env));
  }
}
