import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Scope } from "@logistics/shared/auth";
import { Health, HealthCheckResponse_ServingStatus } from "@logistics/shared/gen/grpc/health/v1/health_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { IngestService, RejectReason, ScanOutcome, type ScanAck } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { NotificationEventType, NotificationService } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { ShipmentEventKind, TrackingService, WatchUpdateKind } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { createSubjects, leafnodeDenyList, readPeerEntry, type Subjects } from "@logistics/shared/nats";
import type { RunningService } from "@logistics/shared/runtime";
import {
  getFreePort,
  spawnManagedProcess,
  startNatsServer,
  startReceiver,
  uniqueName,
  waitFor,
  type ManagedProcess,
  type NatsServerHandle,
  type TestReceiver,
} from "@logistics/shared/testing";
import { recordedEventId } from "@logistics/ingest";
import { createScanGateway } from "@logistics/ingest/gateway";
import { createMeshEnvironment, type MeshEnvironment } from "../src/mesh-environment.js";
import { MESH_SERVICES, serviceEntry, type MeshServiceName } from "../src/service-entry.js";
import { assertMeshSettled, shipmentRequest, startMeshService } from "./e2e-mesh.js";

/**
 * The region model end to end (nats/regions.ts): two regions, each a mesh of the four services on
 * its own nats-server (its own JetStream domain) and its own database schemas, joined by a leaf
 * node with the deny lists of `leafnodeDenyList`. Region a's services run as processes so they can
 * be killed like a lost region; region b's run in this process.
 *
 * A carrier streams scans to region a through the example gateway (endpoints: a, then b); a
 * customer watches every shipment from region b. Mid-stream region a's nats-server and services
 * are SIGKILLed; the gateway fails over to b and resends what a had not acknowledged (some of it
 * already stored in a). After a returns, both regions' read models equal the sequential model:
 * every acknowledged scan once, nothing else, the status of the event-time fold; and the
 * customer's webhook subscription, held in region a, got the changes of the scans ingested in b
 * once each (a's projector applies them when sourced and publishes the change in a).
 *
 * It prints the cross-region staleness: from a's ack (at the carrier) to b's watcher seeing the
 * scan, for the scans a acknowledged while it was up.
 */
const SHIPMENTS = 4;
const SCANS_PER_SHIPMENT = 20;
/** Scans acknowledged by region a before it is killed. */
const KILL_AFTER = 36;
const SCAN_INTERVAL_MS = 50;
/** Scans acknowledged by a that the carrier sends again to b after the failover (as if their acks were lost). */
const RESENT = 4;
const CARRIER = "acme";
const MINUTE = 60_000;

/** The generic status table's statuses for the codes the carrier sends (the sequential model's rules). */
const MODEL: Readonly<Record<string, ShipmentStatus>> = {
  PU: ShipmentStatus.IN_TRANSIT,
  AR: ShipmentStatus.IN_TRANSIT,
  DP: ShipmentStatus.IN_TRANSIT,
  OD: ShipmentStatus.OUT_FOR_DELIVERY,
};
const codeAt = (i: number) => (i === SCANS_PER_SHIPMENT - 1 ? "OD" : i === 0 ? "PU" : i % 2 ? "AR" : "DP");

interface SentScan {
  readonly trackingNumber: string;
  readonly index: number;
  readonly code: string;
  readonly eventTimeMs: number;
  readonly recordedId: string;
  /** Where and when it was finally acknowledged (ACCEPTED or DUPLICATE). */
  ackedBy?: string;
  ackedAt?: number;
  /** When region b's watcher first showed it. */
  visibleInB?: number;
}

/** A region: its nats-server, environment and services. */
interface Region {
  readonly name: string;
  readonly nats: NatsServerHandle;
  readonly env: MeshEnvironment;
  readonly envs: Map<MeshServiceName, Record<string, string>>;
  readonly address: (name: MeshServiceName) => string;
}

/** The percentile `p` (0..1) of sorted values. */
const percentile = (sorted: readonly number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] ?? NaN;

async function waitServing(port: number, signal: AbortSignal, what: string): Promise<void> {
  const health = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
  await waitFor(
    async () => (await health.check({}, { timeoutMs: 2000 })).status === HealthCheckResponse_ServingStatus.SERVING,
    { timeoutMs: 60_000, intervalMs: 200, message: `${what} SERVING`, signal },
  );
}

describe("two regions joined by a leaf node", { timeout: 240_000 }, () => {
  const prefix = uniqueName("rg").slice(0, 32);
  let dir: string;
  let a: Region;
  let b: Region;
  /** Region a's service processes (killed and started again). */
  const processes = new Map<MeshServiceName, ManagedProcess>();
  /** Region b's services, in this process. */
  const inProcess = new Map<MeshServiceName, RunningService>();
  const connections: NatsConnection[] = [];
  let subjects: Subjects;
  let webhooks: TestReceiver | undefined;

  const startRegionA = async () => {
    await Promise.all(
      MESH_SERVICES.map(async (name) => {
        const env = a.envs.get(name)!;
        // A fixed port, taken at the first start: the gateway finds the region where it was.
        if (env["PORT"] === "0") env["PORT"] = String(await getFreePort());
        const proc = spawnManagedProcess(process.execPath, [serviceEntry(name)], { env: { ...process.env, ...env } });
        processes.set(name, proc);
        await waitServing(Number(env["PORT"]), proc.exitSignal, `region a ${name}`).catch((e: unknown) => {
          throw new Error(`${String(e)}\n${proc.output().slice(-800)}`);
        });
      }),
    );
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "two-regions-"));
    const leafPort = await getFreePort();
    const deny = JSON.stringify(leafnodeDenyList(prefix));
    // Region b accepts the leaf connection; region a solicits it (and comes back to it after its loss).
    await writeFile(join(dir, "b.conf"), `jetstream { domain: b }\nleafnodes { listen: "127.0.0.1:${leafPort}" }\n`);
    await writeFile(
      join(dir, "a.conf"),
      `jetstream { domain: a }\nleafnodes { remotes: [ { url: "nats-leaf://127.0.0.1:${leafPort}", deny_imports: ${deny}, deny_exports: ${deny} } ] }\n`,
    );
    const natsB = await startNatsServer({ configFile: join(dir, "b.conf") });
    const natsA = await startNatsServer({ configFile: join(dir, "a.conf") });
    const common = { LOG_LEVEL: "silent", SHUTDOWN_GRACE_MS: "2000", SUBJECT_PREFIX: prefix, TRACKING_WATCH_HEARTBEAT_MS: "2000" };
    const envA = await createMeshEnvironment({ idPrefix: "rga", nats: natsA, base: { ...common, REGION: "a", REGION_PEERS: "b" } });
    // One identity provider for both regions: a carrier's token is good in either.
    const envB = await createMeshEnvironment({
      idPrefix: "rgb",
      nats: natsB,
      base: { ...common, REGION: "b", REGION_PEERS: "a", JWT_PUBLIC_KEY_FILE: envA.base["JWT_PUBLIC_KEY_FILE"]! },
    });
    const region = async (name: string, nats: NatsServerHandle, env: MeshEnvironment): Promise<Region> => {
      const envs = new Map<MeshServiceName, Record<string, string>>();
      for (const s of MESH_SERVICES) {
        const extra: Record<string, string> = s === "notification" ? { NOTIFICATION_RETRY_BASE_MS: "200", NOTIFICATION_POLL_INTERVAL_MS: "100" } : {};
        envs.set(s, await env.envFor(s, extra));
      }
      return { name, nats, env, envs, address: (s) => `127.0.0.1:${envs.get(s)!["PORT"]}` };
    };
    a = await region("a", natsA, envA);
    b = await region("b", natsB, envB);
    subjects = createSubjects(prefix);
    for (const name of MESH_SERVICES) {
      const svc = await startMeshService(name, b.envs.get(name)!);
      inProcess.set(name, svc);
      b.envs.get(name)!["PORT"] = String(svc.port);
    }
    await startRegionA();
  }, 180_000);

  afterAll(async () => {
    await webhooks?.close();
    for (const c of connections) await c.close().catch(() => {});
    for (const p of processes.values()) await p.stop("SIGTERM", 5000);
    for (const s of inProcess.values()) await s.close().catch(() => {});
    await b?.env.close();
    await a?.env.close();
    await b?.nats.stop();
    await a?.nats.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const jsmOf = async (r: Region): Promise<JetStreamManager> => {
    const nc = await connect({ servers: r.nats.url });
    connections.push(nc);
    return jetstreamManager(nc);
  };

  it("carries scans ingested in a to b's watchers, survives the loss of a, and converges both read models once a returns", async () => {
    const adminToken = await a.env.token([Scope.Admin]);
    const admin = { headers: { authorization: `Bearer ${adminToken}` } };
    const ingestA = createClient(IngestService, createGrpcTransport({ baseUrl: `http://${a.address("ingest")}` }));
    const trackingB = createClient(TrackingService, createGrpcTransport({ baseUrl: `http://${b.address("tracking")}` }));
    const shipper = { headers: { authorization: `Bearer ${await a.env.token([Scope.ShipmentsWrite])}` } };

    // Shipments are created in region a (the carrier's region) and sourced to b, directory included.
    const trackingNumbers: string[] = [];
    for (let i = 0; i < SHIPMENTS; i++) {
      const res = await ingestA.createShipment(shipmentRequest(CARRIER, "cust-rg"), { ...shipper, timeoutMs: 20_000 });
      trackingNumbers.push(res.trackingNumber);
    }
    const jsmB = await jsmOf(b);
    await waitFor(
      async () => {
        for (const tn of trackingNumbers) {
          if (!(await readPeerEntry(jsmB, subjects.buckets.shipmentParties, tn))) return false;
          await trackingB.getShipment({ trackingNumber: tn }, { timeoutMs: 5000 });
        }
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 200, message: "region b knows a's shipments (tracking and ingest's directory)" },
    );

    // The customer's webhook subscription lives in region a (residency): it must fire once for
    // every status change, also for scans ingested in b while a was down.
    webhooks = await startReceiver();
    const notificationA = createClient(NotificationService, createGrpcTransport({ baseUrl: `http://${a.address("notification")}` }));
    await notificationA.subscribe(
      { scope: { case: "customerId", value: "cust-rg" }, eventTypes: [NotificationEventType.STATUS_CHANGED], webhookUrl: `${webhooks.url}/hooks` },
      { ...admin, timeoutMs: 10_000 },
    );

    // The customer watches every shipment from region b (signed in: anonymous watchers see no event ids).
    const customer = { headers: { authorization: `Bearer ${await a.env.token([Scope.ShipmentsRead], { customer: "cust-rg" })}` } };
    const sent = new Map<string, SentScan>();
    const byShipment = new Map<string, SentScan[]>(trackingNumbers.map((tn) => [tn, []]));
    const watching = new AbortController();
    const changesSeenInB = { fromA: 0, fromB: 0 };
    const watches = trackingNumbers.map(async (tn) => {
      try {
        for await (const u of trackingB.watchShipment({ trackingNumber: tn }, { ...customer, signal: watching.signal })) {
          if (u.kind !== WatchUpdateKind.CHANGE || !u.cause) continue;
          const cause = [...sent.values()].find((s) => s.recordedId === u.cause?.eventId);
          if (!cause) continue;
          const now = Date.now();
          if (cause.ackedBy === a.address("ingest")) changesSeenInB.fromA++;
          else changesSeenInB.fromB++;
          // A watcher may see several events of a shipment as one change: all before it are visible too.
          for (const s of byShipment.get(tn)!) if (s.index <= cause.index && s.visibleInB === undefined) s.visibleInB = now;
        }
      } catch (e) {
        if (!watching.signal.aborted) throw e;
      }
    });

    const gateway = createScanGateway({
      addresses: [a.address("ingest"), b.address("ingest")],
      token: await a.env.token([Scope.ScansWrite], { carrier: CARRIER }),
      maxBatch: 10,
      initialBackoffMs: 50,
      maxBackoffMs: 1000,
      ackTimeoutMs: 5000,
      onAck: (ack, at, address) => {
        const s = sent.get(ack.eventId);
        if (s && s.ackedAt === undefined && (ack.outcome === ScanOutcome.ACCEPTED || ack.outcome === ScanOutcome.DUPLICATE)) {
          s.ackedBy = address;
          s.ackedAt = at;
        }
      },
    });
    const ackedByA = () => [...sent.values()].filter((s) => s.ackedBy === a.address("ingest")).length;

    // The carrier streams scans round robin over the shipments; region a dies after KILL_AFTER acks.
    const t0 = Date.now() - 2 * 24 * 60 * MINUTE;
    const outcomes: Array<Promise<ScanAck>> = [];
    let killed: Promise<void> | undefined;
    let killedAt = 0;
    for (let i = 0; i < SCANS_PER_SHIPMENT; i++) {
      for (const tn of trackingNumbers) {
        const eventId = `${tn}-${i}`;
        const s: SentScan = { trackingNumber: tn, index: i, code: codeAt(i), eventTimeMs: t0 + i * 10 * MINUTE, recordedId: recordedEventId(CARRIER, eventId) };
        sent.set(eventId, s);
        byShipment.get(tn)!.push(s);
        outcomes.push(
          gateway.submit({ eventId, trackingNumber: tn, carrierCode: CARRIER, rawStatus: { code: s.code, text: s.code }, eventTime: timestampFromMs(s.eventTimeMs) }),
        );
        await new Promise((r) => setTimeout(r, SCAN_INTERVAL_MS));
        if (!killed && ackedByA() >= KILL_AFTER) {
          killedAt = Date.now();
          // The region is lost at once: its nats-server and every service, no draining.
          killed = Promise.all([a.nats.kill(), ...[...processes.values()].map((p) => p.stop("SIGKILL"))]).then(() => {});
        }
      }
    }
    assert.ok(killed, `region a acknowledged ${ackedByA()} scans before the stream ended; raise SCANS_PER_SHIPMENT`);
    await killed;
    // A gateway that lost a's acks (a crash of its own) resends scans a had stored: b must apply them once too.
    const resent = [...sent.entries()].filter(([, s]) => s.ackedBy === a.address("ingest")).slice(0, RESENT);
    for (const [eventId, s] of resent) {
      outcomes.push(gateway.submit({ eventId, trackingNumber: s.trackingNumber, carrierCode: CARRIER, rawStatus: { code: s.code, text: s.code }, eventTime: timestampFromMs(s.eventTimeMs) }));
    }
    const acks = await Promise.all(outcomes);
    const rejected = acks.filter((ack) => ack.outcome === ScanOutcome.REJECTED).map((ack) => `${ack.eventId}: ${RejectReason[ack.rejectReason]} ${ack.detail}`);
    assert.deepEqual(rejected, [], "no scan finally rejected");
    assert.equal(gateway.unacked, 0);
    await gateway.close();
    const failedOver = [...sent.values()].filter((s) => s.ackedBy === b.address("ingest")).length;
    assert.ok(failedOver > 0, "scans went to region b after a was lost");

    // While a is down, b's watchers keep seeing the carrier's scans (now ingested in b).
    await waitFor(() => changesSeenInB.fromB > 0, { timeoutMs: 30_000, message: "b's watcher sees scans ingested in b" });

    // Region a returns: its nats-server on the same store, its services on the same ports.
    const returnedAt = Date.now();
    await a.nats.restart();
    await startRegionA();
    const jsmA = await jsmOf(a);

    // Both read models converge on the sequential model: every acknowledged scan once, the status of the event-time fold.
    const trackingA = createClient(TrackingService, createGrpcTransport({ baseUrl: `http://${a.address("tracking")}` }));
    const readModel = async (tracking: typeof trackingA) => {
      const model = new Map<string, { status: ShipmentStatus; scans: string[] }>();
      for (const tn of trackingNumbers) {
        const scans: string[] = [];
        let pageToken = "";
        do {
          const page = await tracking.listShipmentEvents({ trackingNumber: tn, pageSize: 500, pageToken }, { ...admin, timeoutMs: 10_000 });
          for (const e of page.events) if (e.kind === ShipmentEventKind.SCAN) scans.push(e.eventId);
          pageToken = page.nextPageToken;
        } while (pageToken);
        const { shipment } = await tracking.getShipment({ trackingNumber: tn }, { ...admin, timeoutMs: 10_000 });
        model.set(tn, { status: shipment?.status ?? ShipmentStatus.UNSPECIFIED, scans: scans.sort() });
      }
      return model;
    };
    const expected = new Map(
      trackingNumbers.map((tn) => {
        const scans = byShipment.get(tn)!;
        const folded = [...scans].sort((x, y) => x.eventTimeMs - y.eventTimeMs).reduce((st, s) => MODEL[s.code] ?? st, ShipmentStatus.INFO_RECEIVED);
        return [tn, { status: folded, scans: scans.map((s) => s.recordedId).sort() }];
      }),
    );
    for (const [region, tracking] of [["a", trackingA], ["b", trackingB]] as const) {
      await waitFor(
        async () => {
          assert.deepEqual(await readModel(tracking), expected);
          return true;
        },
        { timeoutMs: 90_000, intervalMs: 500, message: `region ${region}'s read model equals the sequential model` },
      );
    }
    watching.abort();
    await Promise.allSettled(watches);

    // a's subscription got each shipment's last change (out for delivery, from a scan ingested in
    // b during a's loss) once: a's projector applied the sourced scan and published the change in a.
    const lastScans = trackingNumbers.map((tn) => byShipment.get(tn)!.at(-1)!);
    assert.ok(lastScans.every((s) => s.ackedBy === b.address("ingest")), "the last scans were ingested in b");
    const outForDelivery = (tn: string) =>
      webhooks!.accepted.filter((r) => r.json.data.tracking_number === tn && (r.json.data as { status?: string }).status === "out_for_delivery");
    await waitFor(() => trackingNumbers.every((tn) => outForDelivery(tn).length > 0), {
      timeoutMs: 60_000,
      message: "a's subscription notified of every shipment's last change",
    });
    const webhookCounts = trackingNumbers.map((tn) => outForDelivery(tn).length);
    assert.deepEqual(webhookCounts, trackingNumbers.map(() => 1), "one webhook per change, not one per region");

    // Nothing loops or is dead-lettered in either region (a's consumers may redeliver what its kill left unacknowledged).
    await assertMeshSettled(jsmB, subjects, 60_000);
    assert.equal((await jsmA.streams.info(subjects.streams.deadLetters.name)).state.messages, 0, "dead letters in a");
    for (const stream of [subjects.streams.scans, subjects.streams.shipments, subjects.streams.routes]) {
      for await (const c of jsmA.consumers.list(stream.name)) {
        await waitFor(async () => {
          const i = await jsmA.consumers.info(stream.name, c.name);
          return i.num_pending === 0 && i.num_ack_pending === 0;
        }, { timeoutMs: 60_000, message: `a's ${c.name} settled` });
      }
    }

    // Each region's streams hold its own scans once and the other's once: the leaf node's deny
    // lists keep a stream from capturing the other region's publishes, sourcing copies each once.
    const perSubject = async (jsm: JetStreamManager) => (await jsm.streams.info(subjects.streams.scans.name, { subjects_filter: ">" })).state.subjects;
    const [scansA, scansB] = [await perSubject(jsmA), await perSubject(jsmB)];
    const resentAcks = acks.slice(-RESENT).map((ack) => ScanOutcome[ack.outcome]);
    assert.deepEqual(scansA, scansB, "both regions' scans streams hold the same messages per subject");
    const storedInA = scansA?.[subjects.scanRecorded("a", CARRIER)] ?? 0;
    const storedInB = scansB?.[subjects.scanRecorded("b", CARRIER)] ?? 0;

    // Cross-region staleness: a's ack at the carrier → b's watcher shows the scan (a up).
    const fromA = [...sent.values()].filter((s) => s.ackedBy === a.address("ingest"));
    const beforeLoss = fromA.filter((s) => s.visibleInB !== undefined && s.visibleInB <= killedAt);
    const staleness = beforeLoss.map((s) => (s.visibleInB as number) - (s.ackedAt as number)).sort((x, y) => x - y);
    const afterReturn = fromA.filter((s) => s.visibleInB === undefined || s.visibleInB >= returnedAt).length;
    // The same measure inside one region, as the baseline: b's ack → b's watcher, for the scans after the failover.
    const local = [...sent.values()]
      .filter((s) => s.ackedBy === b.address("ingest") && s.visibleInB !== undefined)
      .map((s) => (s.visibleInB as number) - (s.ackedAt as number))
      .sort((x, y) => x - y);
    console.log(
      `two regions: ${sent.size} scans; ${fromA.length} acknowledged by a, ${failedOver} by b after failover ` +
        `(${storedInA} stored in a, ${storedInB} in b: ${storedInA + storedInB - sent.size} stored in both, applied once); ` +
        `staleness a→b (ack at the carrier → b's watcher) over ${staleness.length} scans: p50 ${percentile(staleness, 0.5)} ms, ` +
        `p99 ${percentile(staleness, 0.99)} ms, max ${staleness.at(-1)} ms (same region, b → b, over ${local.length}: ` +
        `p50 ${percentile(local, 0.5)} ms, p99 ${percentile(local, 0.99)} ms); ${afterReturn} acknowledged by a reached b only after a returned; ` +
        `${RESENT} acknowledged by a resent to b: ${resentAcks.join(", ")}; webhooks from a's subscription: ${webhooks.accepted.length}, ` +
        `out for delivery (ingested in b) per shipment ${webhookCounts.join("/")}`,
    );
    assert.ok(staleness.length > 0, "b's watchers saw scans ingested in a while a was up");
  });
});
