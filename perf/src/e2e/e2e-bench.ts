/**
 * End to end at one offered scan rate: a carrier gateway (grpc-js StreamScans calls) sends scans
 * on an open-loop schedule while an order system creates shipments at the matching rate; every
 * shipment is watched through WatchShipment from its creation until its delivery is visible, and a
 * webhook subscription for the carrier receives its status changes. Services run as separate
 * processes; latencies are measured from the moment the carrier received its ACCEPTED ack.
 *
 * What it reports honestly (issue 13's harness findings):
 * - the schedule is fixed in advance and catches up when a timer fires late (intended start
 *   times), and the send rate actually achieved is reported next to the offered one;
 * - the acked rate counts only acks received inside the measured window; what is still pending at
 *   its end (unacked at the client, per JetStream durable) is reported as backlog;
 * - settling waits, within a bound, for every scan to become visible and for every webhook the
 *   visible changes imply (one per status change), and reports the missing ones;
 * - shipments get 7–13 scans along their route, so documents and histories have real sizes.
 * CPU per component comes from /proc over the measured window (see lib/proc.ts).
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as hdr from "hdr-histogram-js";
import pg from "pg";
import { Scope } from "@logistics/shared/auth";
import { ScanSchema, type Scan } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { CreateShipmentRequestSchema, ScanOutcome, type StreamScansRequest, type StreamScansResponse } from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { NotificationEventType, NotificationService } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { WatchUpdateKind } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { recordedEventId } from "@logistics/ingest";
import { bearer, openScanCall, scanMessage } from "@logistics/ingest/client";
import { sampleBacklog } from "../lib/jetstream-backlog.js";
import type { LoadResult } from "../lib/load-generator.js";
import type { MeshProcesses } from "../lib/mesh-processes.js";
import { cpuBetween, loadAverage, type CpuSampler, type CpuSample } from "../lib/proc.js";
import { seriesPercentileMs } from "../lib/stats.js";
import { judgeSustained } from "../lib/summary.js";
import { buildSchedule, dueUntil, shipmentTemplates, type ShipmentTemplate } from "./scenario.js";
import { openWatch, type WatchUpdate } from "./watch-client.js";

export interface E2eOptions {
  /** Scans per second offered in steady state (open loop). */
  rate: number;
  /** Measured window (ms). */
  windowMs: number;
  /** Upper bound on waiting after the window for acks, visibility and webhooks (ms). */
  settleMs: number;
  /** Idle mesh measured before the ramp, for the idle CPU rate (ms). Default 3000. */
  idleMs?: number;
  /** Wall-clock gap between two scans of one shipment (ms). Default 400. */
  scanGapMs?: number;
  /** Creation → first scan (ms). Default 1000. */
  createLeadMs?: number;
  /** The UTC hour of day the shipments' plans start at (see `shipmentTemplates`). Default: the run's own hour. */
  scenarioHourUtc?: number;
  /** Full-rate warm-up between the ramp and the window (ms, see `buildSchedule`). Default 0. */
  warmupMs?: number;
  /** StreamScans calls the gateway spreads shipments over. Default 2. */
  streams?: number;
  /** Bucket of the per-interval latency series (ms). Default 1000; the soak uses longer ones. */
  timelineBucketMs?: number;
  /** Backlog sampling interval (ms). Default 1000. */
  backlogIntervalMs?: number;
  /** CPU of every component (services, nats-server, redis-server, PostgreSQL, this process). */
  cpu: CpuSampler;
  /** The private PostgreSQL's URL, for commits and WAL per scan (optional). */
  databaseUrl?: string;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** A latency series as measured (µs), with the values never observed within the deadline. */
export interface LatencySeries {
  histogram: hdr.Histogram;
  /** Expected but not observed by the end of settling. */
  missing: number;
  /** Per intended second of the window: count, p50, p99 (µs), for plots. */
  timeline: Array<{ second: number; count: number; p50Us: number; p99Us: number }>;
}

export interface CostPerScan {
  /** Measured window (ms) the CPU was taken over. */
  windowMs: number;
  /** Scans accepted (acks received) during the window: the denominator. */
  scans: number;
  /** Shipments created during the window (part of the same traffic). */
  shipments: number;
  /** CPU ms used per component in the window. */
  cpuMs: Record<string, number>;
  /** CPU ms per 1,000 accepted scans per component. */
  perThousandScans: Record<string, number>;
  /** CPU ms per second per component with no traffic (the idle mesh before the ramp). */
  idleMsPerSec: Record<string, number>;
  /** Cores the whole machine was busy on average during the window, and how much of that was not ours. */
  machineBusyCores: number;
  otherCores: number;
  /** PostgreSQL commits and WAL bytes per accepted scan (private cluster only). */
  pg?: { commitsPerScan: number; walBytesPerScan: number; statements?: StatementCost[] };
}

/** One statement's share of the window (pg_stat_statements, reset when the window opens). */
export interface StatementCost {
  /** Normalized text, whitespace collapsed, cut to 160 characters. */
  query: string;
  callsPerScan: number;
  /** Execution time per 1,000 accepted scans. */
  execMsPerThousandScans: number;
  /** Planning time per 1,000 accepted scans (unnamed statements are planned at every call). */
  planMsPerThousandScans: number;
  rowsPerCall: number;
}

export interface E2eResult {
  rate: number;
  windowMs: number;
  offered: { scans: number; perSec: number; shipments: number };
  /** Window scans written by the window's end, and how late the generator ran behind its schedule. */
  sent: { inWindow: number; perSec: number; lateOver100ms: number; maxLagMs: number; creationFailures: number; droppedForFailedCreation: number };
  /** Acks received inside the window (any scan), window scans acked only after it, rejections. */
  acked: { inWindow: number; perSec: number; rejected: number; afterWindow: number; rejectReasons: Record<string, number> };
  backlogAtEnd: { clientUnacked: number; perConsumer: Record<string, number>; maxConsumer: number; total: number };
  sendToAck: LatencySeries;
  ackToVisible: LatencySeries;
  ackToWebhook: LatencySeries;
  /** Window scans seen by their watcher, and those never seen by the end of settling. */
  /** `byLaterVersion`: window scans first seen inside a later version of their shipment (their latency an upper bound). */
  visible: { inWindow: number; missing: number; byLaterVersion: number };
  /** Status-change webhooks implied by the visible changes of window scans, and how many arrived. */
  webhooks: { expected: number; received: number; missing: number; unknownForInvisible: number; otherReceived: number };
  /** p99 with missing values counted as larger than any measured one (Infinity when they reach p99). */
  p99: { sendToAckMs: number; ackToVisibleMs: number; ackToWebhookMs: number };
  p50: { sendToAckMs: number; ackToVisibleMs: number; ackToWebhookMs: number };
  sustained: boolean;
  /** Why not sustained (empty when sustained). */
  failed: string[];
  cost: CostPerScan;
  load: { start: [number, number, number]; end: [number, number, number] };
  /** Per wall-clock second relative to the window start (negative: ramp, beyond: settle). */
  timeline: Array<{ t: number; sent: number; acked: number; visible: number; webhooks: number }>;
  /** Per-durable backlog over time, t in seconds relative to the window start. */
  backlog: Array<{ t: number; perConsumer: Readonly<Record<string, number>>; total: number }>;
  scenario: { templates: number; scansPerShipment: { mean: number; min: number; max: number }; scanGapMs: number; streams: number; watchersPeak: number };
  /** Phase lengths (ms), and when the window opened (performance.now()). */
  timing: { setupMs: number; idleMs: number; /** Ramp and full-rate warm-up together. */ rampMs: number; /** The full-rate part of `rampMs`. */ warmupMs: number; settleMs: number; settledEarly: boolean; windowStartedAt: number };
}

/** IngestService.CreateShipment, called through grpc-js. */
const CREATE_SHIPMENT_PATH = "/logistics.ingest.v1.IngestService/CreateShipment";

const hist = () => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
/** Per-interval histograms: packed, so a 10-minute soak's hundreds of them stay small. */
const bucketHist = () =>
  hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3, bitBucketSize: "packed" });

interface ScanRec {
  readonly shipment: number;
  readonly step: number;
  /** Intended time, ms relative to the window start. */
  readonly intended: number;
  readonly inWindow: boolean;
  ackAt?: number;
  visibleAt?: number;
  /** Set once visible: undefined = no webhook implied, else its key (until it arrives). */
  webhookKey?: string;
}

/** Per-shipment creation state: undefined while CreateShipment runs. */
type Created = "ok" | "failed";

export async function runE2e(mesh: MeshProcesses, o: E2eOptions): Promise<E2eResult> {
  const log = o.log ?? (() => {});
  const idleMs = o.idleMs ?? 3000;
  const scanGapMs = o.scanGapMs ?? 400;
  const createLeadMs = o.createLeadMs ?? 1000;
  const nStreams = o.streams ?? 2;
  const bucketMs = o.timelineBucketMs ?? 1000;
  const loadStart = loadAverage();
  const setupStarted = performance.now();

  const carrier = "acme";
  const adminToken = await mesh.token([Scope.Admin]);
  const adminHeaders = { authorization: `Bearer ${adminToken}` };
  const carrierToken = await mesh.token([Scope.ScansWrite], { carrier });
  const ordersMd = bearer(await mesh.token([Scope.ShipmentsWrite]));
  const transport = (svc: keyof MeshProcesses["ports"]) => createGrpcTransport({ baseUrl: `http://127.0.0.1:${mesh.ports[svc]}` });
  const notification = createClient(NotificationService, transport("notification"));

  // Everything before the clock starts: routes planned, schedule built.
  const templates: ShipmentTemplate[] = shipmentTemplates(Date.now(), undefined, o.scenarioHourUtc);
  const perTemplate = templates.map((t) => t.scans.length);
  const schedule = buildSchedule({ rate: o.rate, windowMs: o.windowMs, scansPerTemplate: perTemplate, scanGapMs, createLeadMs, warmupMs: o.warmupMs ?? 0 });
  const runId = Date.now().toString(36).toUpperCase();
  const tnOf = (k: number) => `PF${runId}${String(k).padStart(7, "0")}`.slice(0, 30);

  // --- state: a scan is tracked until it is acked, visible and its webhook (if any) arrived ---
  const scans = new Map<string, ScanRec>(); // by recorded event id
  const byScanId = new Map<string, string>(); // scan event id → recorded event id
  const sendToAck = hist();
  const ackToVisible = hist();
  const ackToWebhook = hist();
  const perBucket = {
    sendToAck: [] as hdr.Histogram[],
    ackToVisible: [] as hdr.Histogram[],
    ackToWebhook: [] as hdr.Histogram[],
  };
  const timeline = new Map<number, { sent: number; acked: number; visible: number; webhooks: number }>();
  let t0 = Infinity; // performance.now() of the window start
  let windowEnded = false;
  let closing = false;
  const c = {
    sent: 0,
    sentInWindow: 0,
    sentInWindowByEnd: 0,
    acked: 0,
    ackedDuringWindow: 0,
    ackedAfterWindow: 0,
    rejected: 0,
    rejectedInWindow: 0,
    visibleInWindow: 0,
    lateOver100: 0,
    maxLag: 0,
    creationFailures: 0,
    droppedForFailedCreation: 0,
    webhooksReceived: 0,
    otherWebhooks: 0,
    /** Window scans first seen inside a later version of their shipment (see onUpdate). */
    visibleByLaterVersion: 0,
  };
  const bump = (k: "sent" | "acked" | "visible" | "webhooks", at: number) => {
    const s = Math.floor((at - t0) / 1000);
    const e = timeline.get(s) ?? { sent: 0, acked: 0, visible: 0, webhooks: 0 };
    e[k]++;
    timeline.set(s, e);
  };
  const record = (which: keyof typeof perBucket, h: hdr.Histogram, rec: ScanRec, us: number) => {
    const v = Math.min(3_600_000_000, Math.max(1, Math.round(us)));
    h.recordValue(v);
    const b = Math.floor(rec.intended / bucketMs);
    (perBucket[which][b] ??= bucketHist()).recordValue(v);
  };
  const forget = (id: string, rec: ScanRec) => {
    if (rec.ackAt !== undefined && rec.visibleAt !== undefined && rec.webhookKey === undefined) {
      scans.delete(id);
      byScanId.delete(`e-${runId}-${rec.shipment}-${rec.step}`);
    }
  };

  // Webhook receiver: (tracking number, version) → arrival, matched with the change that implied it.
  const webhookAt = new Map<string, number>();
  const webhookExpected = new Map<string, string>(); // key → recorded event id of the causing scan
  const matchWebhook = (key: string) => {
    const id = webhookExpected.get(key);
    const at = webhookAt.get(key);
    if (id === undefined || at === undefined) return;
    webhookExpected.delete(key);
    webhookAt.delete(key);
    c.webhooksReceived++;
    const rec = scans.get(id);
    if (!rec) return;
    rec.webhookKey = undefined;
    if (rec.ackAt !== undefined) record("ackToWebhook", ackToWebhook, rec, (at - rec.ackAt) * 1000);
    forget(id, rec);
  };
  const receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (b: Buffer) => chunks.push(b));
    req.on("end", () => {
      const now = performance.now();
      try {
        const j = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { data?: { tracking_number?: string; shipment_version?: number } };
        if (j.data?.tracking_number) {
          const key = `${j.data.tracking_number}:${j.data.shipment_version}`;
          bump("webhooks", now);
          if (webhookExpected.has(key)) {
            webhookAt.set(key, now);
            matchWebhook(key);
          } else {
            // Not (yet) implied by a change a watcher saw: the creation's, or one for a change the
            // watcher reports later. Kept briefly for the latter.
            c.otherWebhooks++;
            webhookAt.set(key, now);
          }
        }
      } catch {
        // not ours
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  await notification.subscribe(
    { scope: { case: "carrierCode", value: carrier }, eventTypes: [NotificationEventType.STATUS_CHANGED], webhookUrl: hookUrl },
    { headers: adminHeaders },
  );

  // Watchers: one per shipment from its creation until its last scan is visible, on grpc-js
  // server streams read for the four fields measured (watch-client.ts): the generator shares the
  // two cores with the mesh, and a Connect client's per-message async iterables and full decoding
  // were a third of its CPU.
  const trackingGrpc = new grpc.Client(`127.0.0.1:${mesh.ports.tracking}`, grpc.credentials.createInsecure());
  const adminMd = bearer(adminToken);
  let watchingStopped = false;
  const openWatches = new Set<grpc.ClientReadableStream<WatchUpdate>>();
  const watchers = new Set<Promise<void>>();
  let watchersOpen = 0;
  let watchersPeak = 0;
  const watch = (k: number, tn: string) => {
    const lastStep = templates[schedule.templateOf[k]!]!.scans.length - 1;
    let done = false; // the last scan is visible (or the run is closing)
    let after = 1n; // version 1 is the creation; every later change arrives with its cause
    let status = ShipmentStatus.INFO_RECEIVED; // a created shipment's status
    let current: grpc.ClientReadableStream<WatchUpdate> | undefined;
    const onUpdate = (u: WatchUpdate) => {
      if (u.kind === WatchUpdateKind.HEARTBEAT) return;
      const now = performance.now();
      if (u.sequence > after) after = u.sequence;
      const newStatus: ShipmentStatus = u.status ?? status;
      const id = u.causeEventId;
      const rec = id ? scans.get(id) : undefined;
      // The shipment's earlier scans are in this version too (the projector applies a shipment's
      // scans in stream order). One the watcher never saw as a change of its own counts as visible
      // now, an upper bound on its latency: the first scan, applied before the shipment's creation
      // when the creation's consumer lagged, is version 1, which a watch after version 1 skips.
      if (rec) {
        for (let step = 0; step < rec.step; step++) {
          const earlierId = byScanId.get(`e-${runId}-${k}-${step}`);
          const earlier = earlierId ? scans.get(earlierId) : undefined;
          if (!earlierId || !earlier || earlier.visibleAt !== undefined || earlier.ackAt === undefined) continue;
          earlier.visibleAt = now;
          bump("visible", now);
          if (earlier.inWindow) {
            c.visibleInWindow++;
            c.visibleByLaterVersion++;
            record("ackToVisible", ackToVisible, earlier, (now - earlier.ackAt) * 1000);
          }
          forget(earlierId, earlier);
        }
      }
      if (id && rec && rec.visibleAt === undefined) {
        rec.visibleAt = now;
        bump("visible", now);
        if (rec.inWindow) {
          c.visibleInWindow++;
          if (rec.ackAt !== undefined) record("ackToVisible", ackToVisible, rec, (now - rec.ackAt) * 1000);
        }
        if (u.kind === WatchUpdateKind.CHANGE && newStatus !== status && rec.inWindow) {
          const key = `${tn}:${u.sequence}`;
          rec.webhookKey = key;
          webhookExpected.set(key, id);
          if (webhookAt.has(key)) {
            c.otherWebhooks--;
            matchWebhook(key);
          }
        }
        if (rec.step === lastStep) {
          done = true;
          current?.cancel();
        }
        forget(id, rec);
      }
      status = newStatus;
    };
    const p = (async () => {
      watchersOpen++;
      watchersPeak = Math.max(watchersPeak, watchersOpen);
      let backoff = 200;
      try {
        while (!done && !watchingStopped) {
          const { call, ended } = openWatch(trackingGrpc, adminMd, { trackingNumber: tn, afterSequence: after }, onUpdate);
          current = call;
          openWatches.add(call);
          const end = await ended;
          openWatches.delete(call);
          current = undefined;
          if (done || watchingStopped) break;
          // NotFound until tracking has applied the creation; a dropped stream resumes after `after`.
          if (process.env["PERF_DEBUG"]) {
            log(`watch ${tn} after ${after}: ${end.code === grpc.status.OK ? "ended by the server" : `${grpc.status[end.code]}: ${end.details}`}`);
          }
          await new Promise((r) => setTimeout(r, backoff));
          backoff = Math.min(1000, backoff * 2);
        }
      } finally {
        watchersOpen--;
      }
    })();
    watchers.add(p);
    void p.finally(() => watchers.delete(p));
  };
  const stopWatching = () => {
    watchingStopped = true;
    for (const call of openWatches) call.cancel();
  };

  // Carrier gateway: `nStreams` StreamScans calls, shipments spread over them by index.
  const grpcClient = new grpc.Client(`127.0.0.1:${mesh.ports.ingest}`, grpc.credentials.createInsecure());
  const md = bearer(carrierToken);
  const rejectReasons: Record<string, number> = {};
  const calls: Array<grpc.ClientDuplexStream<StreamScansRequest, StreamScansResponse>> = [];
  const callsEnded: Array<Promise<void>> = [];
  for (let i = 0; i < nStreams; i++) {
    const call = openScanCall(grpcClient, md);
    call.on("data", (r: StreamScansResponse) => {
      const now = performance.now();
      for (const a of r.acks) {
        const id = byScanId.get(a.eventId);
        const rec = id ? scans.get(id) : undefined;
        if (!id || !rec || rec.ackAt !== undefined) continue;
        if (a.outcome !== ScanOutcome.ACCEPTED && a.outcome !== ScanOutcome.DUPLICATE) {
          c.rejected++;
          if (rec.inWindow) c.rejectedInWindow++;
          const why = `${ScanOutcome[a.outcome]} ${a.detail}`.slice(0, 120);
          rejectReasons[why] = (rejectReasons[why] ?? 0) + 1;
          scans.delete(id);
          byScanId.delete(a.eventId);
          continue;
        }
        rec.ackAt = now;
        c.acked++;
        bump("acked", now);
        if (!windowEnded && now >= t0) c.ackedDuringWindow++;
        if (rec.inWindow) {
          if (windowEnded) c.ackedAfterWindow++;
          record("sendToAck", sendToAck, rec, (now - (t0 + rec.intended)) * 1000);
          if (rec.visibleAt !== undefined) record("ackToVisible", ackToVisible, rec, (rec.visibleAt - now) * 1000);
        }
        forget(id, rec);
      }
    });
    call.on("error", (e: Error) => {
      if (!closing) log(`StreamScans ${i} failed: ${e.message}`);
    });
    callsEnded.push(new Promise<void>((r) => call.on("status", () => r())));
    calls.push(call);
  }

  // --- idle baseline ---
  const idleA = o.cpu.sample();
  await new Promise((r) => setTimeout(r, idleMs));
  const idleB = o.cpu.sample();

  // --- load: ramp, then the measured window ---
  const created: Array<Created | undefined> = [];
  const held = new Map<number, Array<{ step: number; at: number }>>();
  const backlog = sampleBacklog(mesh.nats.monitorUrl, o.backlogIntervalMs ?? 1000);
  const pgClient = o.databaseUrl ? new pg.Client({ connectionString: o.databaseUrl, application_name: "perf-sampler" }) : undefined;
  await pgClient?.connect();
  const pgSnap = async () => {
    if (!pgClient) return undefined;
    const r = await pgClient.query<{ commits: string; lsn: string }>(
      `SELECT (SELECT sum(xact_commit) FROM pg_stat_database)::text AS commits, pg_current_wal_lsn()::text AS lsn`,
    );
    const [hi, lo] = r.rows[0]!.lsn.split("/").map((x) => parseInt(x, 16));
    return { commits: Number(r.rows[0]!.commits), wal: hi! * 2 ** 32 + lo! };
  };
  // Per-statement cost of the window when the cluster loads pg_stat_statements (perf's own does).
  let statementsOn = false;
  if (pgClient) {
    try {
      await pgClient.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
      await pgClient.query("SELECT 1 FROM pg_stat_statements LIMIT 1");
      statementsOn = true;
    } catch {
      statementsOn = false; // not preloaded (a DATABASE_URL server): the report goes without
    }
  }
  const statementsReset = async () => {
    if (statementsOn) await pgClient!.query("SELECT pg_stat_statements_reset()");
  };
  const statementsRead = async (scans: number): Promise<StatementCost[] | undefined> => {
    if (!statementsOn || scans <= 0) return undefined;
    const r = await pgClient!.query<{ query: string; calls: string; ms: number; plan: number; rows: string }>(
      `SELECT query, calls::text, total_exec_time AS ms, total_plan_time AS plan, rows::text FROM pg_stat_statements
        WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pg_current_wal_lsn%'
        ORDER BY total_exec_time + total_plan_time DESC LIMIT 15`,
    );
    return r.rows.map((row) => ({
      query: row.query.replace(/\s+/g, " ").trim().slice(0, 160),
      callsPerScan: Number(row.calls) / scans,
      execMsPerThousandScans: (row.ms / scans) * 1000,
      planMsPerThousandScans: (row.plan / scans) * 1000,
      rowsPerCall: Number(row.calls) > 0 ? Number(row.rows) / Number(row.calls) : 0,
    }));
  };

  const batchFor: Scan[][] = Array.from({ length: nStreams }, () => []);
  const flush = () => {
    for (let i = 0; i < nStreams; i++) {
      const b = batchFor[i]!;
      for (let k = 0; k < b.length; k += 500) calls[i]!.write(scanMessage(b.slice(k, k + 500)));
      batchFor[i] = [];
    }
  };
  const sendScan = (k: number, step: number, intended: number) => {
    const tpl = templates[schedule.templateOf[k]!]!;
    const s = tpl.scans[step]!;
    const eventId = `e-${runId}-${k}-${step}`;
    const rid = recordedEventId(carrier, eventId);
    const now = performance.now();
    const rec: ScanRec = { shipment: k, step, intended, inWindow: intended >= 0 && intended < o.windowMs };
    scans.set(rid, rec);
    byScanId.set(eventId, rid);
    const lag = now - (t0 + intended);
    if (lag > 100) c.lateOver100++;
    c.sent++;
    if (rec.inWindow) {
      c.maxLag = Math.max(c.maxLag, lag);
      c.sentInWindow++;
      if (!windowEnded) c.sentInWindowByEnd++;
    }
    bump("sent", now);
    batchFor[k % nStreams]!.push(
      create(ScanSchema, {
        eventId,
        trackingNumber: tnOf(k),
        carrierCode: carrier,
        rawStatus: { code: s.code, text: s.text },
        eventTime: timestampFromMs(s.eventTimeMs),
        hubCode: s.hubCode ?? "",
        ...(s.location ? { location: s.location } : {}),
      }),
    );
  };
  // The orders system creates shipments through grpc-js unary calls on the gateway's channel: a
  // Connect client call cost the generator about 1.2 ms of CPU each (abort signals, a ConnectError
  // per closed stream, async-iterator plumbing), a quarter of its CPU on this shared machine.
  const createShipment = (k: number) => {
    const tpl = templates[schedule.templateOf[k]!]!;
    const tn = tnOf(k);
    const req = create(CreateShipmentRequestSchema, {
      idempotencyKey: `perf-${runId}-${k}`,
      trackingNumber: tn,
      carrierCode: carrier,
      customerId: "perf-shop",
      serviceLevel: tpl.serviceLevel,
      origin: tpl.lane.origin,
      destination: tpl.lane.destination,
      parcel: { weightGrams: 500 + (k % 20) * 250, lengthMm: 300, widthMm: 200, heightMm: 150 },
      readyTime: timestampFromMs(tpl.readyAtMs),
    });
    grpcClient.makeUnaryRequest(
      CREATE_SHIPMENT_PATH,
      (m: typeof req) => Buffer.from(toBinary(CreateShipmentRequestSchema, m)),
      () => undefined, // the response is not read
      req,
      ordersMd,
      { deadline: Date.now() + 30_000 },
      (e: grpc.ServiceError | null) => {
        if (!e) {
          created[k] = "ok";
          watch(k, tn);
          const waiting = held.get(k);
          held.delete(k);
          if (waiting) {
            for (const w of waiting) sendScan(k, w.step, w.at);
            flush();
          }
          return;
        }
        created[k] = "failed";
        c.creationFailures++;
        c.droppedForFailedCreation += held.get(k)?.length ?? 0;
        held.delete(k);
        if (c.creationFailures <= 3) log(`CreateShipment ${tn} failed: ${e.message}`);
      },
    );
  };

  const rampStarted = performance.now();
  t0 = rampStarted - schedule.startsAt; // the window opens -startsAt ms after the ramp starts
  let next = 0;
  let windowA: CpuSample | undefined;
  let pgA: Awaited<ReturnType<typeof pgSnap>>;
  for (;;) {
    const nowRel = performance.now() - t0;
    if (windowA === undefined && nowRel >= 0) {
      windowA = o.cpu.sample();
      pgA = await pgSnap();
      await statementsReset();
    }
    if (nowRel >= o.windowMs) break;
    const until = dueUntil(schedule.actions, next, nowRel);
    for (; next < until; next++) {
      const a = schedule.actions[next]!;
      if (a.kind === "create") createShipment(a.shipment);
      else if (created[a.shipment] === "ok") sendScan(a.shipment, a.step, a.at);
      else if (created[a.shipment] === "failed") c.droppedForFailedCreation++;
      else {
        const list = held.get(a.shipment) ?? [];
        list.push({ step: a.step, at: a.at });
        held.set(a.shipment, list);
      }
    }
    flush();
    const nextAt = next < schedule.actions.length ? schedule.actions[next]!.at : o.windowMs;
    const waitMs = Math.min(10, Math.max(0, Math.min(nextAt, o.windowMs) - (performance.now() - t0)));
    await new Promise((r) => setTimeout(r, waitMs));
  }
  // Window end.
  windowEnded = true;
  const windowB = o.cpu.sample();
  const pgB = await pgSnap();
  const statements = await statementsRead(c.ackedDuringWindow);
  const clientUnacked = c.sent - c.acked - c.rejected;
  const atEnd = await backlog.now();
  const loadEnd = loadAverage();
  // Throughput: acks received inside the window (of any scan, the ramp's too: in steady state that is
  // the rate the mesh accepts), not acks that arrive later.
  const ackedInWindow = c.ackedDuringWindow;
  log(
    `  window done: offered ${schedule.scansInWindow}, sent ${c.sentInWindowByEnd}, acked in window ${ackedInWindow}, ` +
      `unacked ${clientUnacked}, max consumer backlog ${Math.max(0, ...Object.values(atEnd?.perConsumer ?? {}))}, watchers ${watchersOpen}, load ${loadEnd[0]}`,
  );

  // --- settle: bounded wait for acks, visibility and webhooks of the window's scans ---
  for (const call of calls) call.end();
  const settleStarted = performance.now();
  const outstanding = () => {
    if (held.size > 0 || webhookExpected.size > 0) return true;
    for (const r of scans.values()) if (r.inWindow && (r.ackAt === undefined || r.visibleAt === undefined)) return true;
    return false;
  };
  let settledEarly = false;
  while (performance.now() - settleStarted < o.settleMs) {
    if (!outstanding()) {
      settledEarly = true;
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const settleMs = performance.now() - settleStarted;
  await backlog.stop();
  stopWatching();
  await Promise.allSettled([...watchers]);
  trackingGrpc.close();
  await Promise.race([Promise.all(callsEnded), new Promise((r) => setTimeout(r, 3000))]);
  closing = true;
  for (const call of calls) call.cancel();
  grpcClient.close();
  receiver.closeAllConnections();
  await new Promise((r) => receiver.close(r));
  await pgClient?.end();

  // --- results ---
  let ackMissing = 0;
  let visibleMissing = 0;
  /** PERF_DEBUG: the steps never visible, by shipment. */
  const invisible = process.env["PERF_DEBUG"] ? new Map<number, number[]>() : undefined;
  for (const r of scans.values()) {
    if (!r.inWindow) continue;
    if (r.ackAt === undefined) ackMissing++;
    else if (r.visibleAt === undefined) {
      visibleMissing++;
      const steps = invisible?.get(r.shipment);
      if (steps) steps.push(r.step);
      else invisible?.set(r.shipment, [r.step]);
    }
  }
  for (const [k, steps] of invisible ?? []) log(`never visible: ${tnOf(k)} steps ${steps.sort((a, b) => a - b).join(",")}`);
  // Window scans sent late (held for their shipment's creation) count as sent; never-sent ones as missing acks.
  ackMissing += held.size ? [...held.values()].reduce((a, l) => a + l.filter((x) => x.at >= 0).length, 0) : 0;
  const webhookMissing = webhookExpected.size;
  const series = (which: keyof typeof perBucket, h: hdr.Histogram, missing: number): LatencySeries => ({
    histogram: h,
    missing,
    timeline: perBucket[which].map((x, b) => ({
      second: (b * bucketMs) / 1000,
      count: x ? Number(x.totalCount) : 0,
      p50Us: x?.getValueAtPercentile(50) ?? 0,
      p99Us: x?.getValueAtPercentile(99) ?? 0,
    })),
  });
  const s2a = series("sendToAck", sendToAck, ackMissing);
  const a2v = series("ackToVisible", ackToVisible, visibleMissing + ackMissing);
  const a2w = series("ackToWebhook", ackToWebhook, webhookMissing);

  const win = cpuBetween(windowA ?? windowB, windowB);
  const idle = cpuBetween(idleA, idleB);
  const ours = Object.values(win.perGroup).reduce((a, b) => a + b, 0);
  const denominator = c.ackedDuringWindow;
  const perThousand: Record<string, number> = {};
  const idlePerSec: Record<string, number> = {};
  for (const [k, v] of Object.entries(win.perGroup)) perThousand[k] = denominator > 0 ? (v / denominator) * 1000 : NaN;
  for (const [k, v] of Object.entries(idle.perGroup)) idlePerSec[k] = (v / idle.wallMs) * 1000;
  const pgCost =
    pgA && pgB && denominator > 0
      ? {
          commitsPerScan: (pgB.commits - pgA.commits) / denominator,
          walBytesPerScan: (pgB.wal - pgA.wal) / denominator,
          ...(statements ? { statements } : {}),
        }
      : undefined;
  const windowSec = o.windowMs / 1000;
  const offeredPerSec = schedule.scansInWindow / windowSec;
  const perConsumer = { ...(atEnd?.perConsumer ?? {}) };
  const maxConsumer = Math.max(0, ...Object.values(perConsumer));
  const pct = (p: number) => ({
    sendToAckMs: seriesPercentileMs(s2a, p),
    ackToVisibleMs: seriesPercentileMs(a2v, p),
    ackToWebhookMs: seriesPercentileMs(a2w, p),
  });
  const p99 = pct(99);
  const p50 = pct(50);
  const verdict = judgeSustained({
    offeredPerSec,
    ackedPerSec: ackedInWindow / windowSec,
    clientUnacked,
    maxConsumerBacklog: maxConsumer,
    ackToVisibleP99Ms: p99.ackToVisibleMs,
    exited: mesh.exited(),
  });
  return {
    rate: o.rate,
    windowMs: o.windowMs,
    offered: { scans: schedule.scansInWindow, perSec: offeredPerSec, shipments: schedule.shipmentsCreatedInWindow },
    sent: {
      inWindow: c.sentInWindowByEnd,
      perSec: c.sentInWindowByEnd / windowSec,
      lateOver100ms: c.lateOver100,
      maxLagMs: c.maxLag,
      creationFailures: c.creationFailures,
      droppedForFailedCreation: c.droppedForFailedCreation,
    },
    acked: { inWindow: ackedInWindow, perSec: ackedInWindow / windowSec, rejected: c.rejectedInWindow, afterWindow: c.ackedAfterWindow, rejectReasons },
    backlogAtEnd: { clientUnacked, perConsumer, maxConsumer, total: atEnd?.total ?? NaN },
    sendToAck: s2a,
    ackToVisible: a2v,
    ackToWebhook: a2w,
    visible: { inWindow: c.visibleInWindow, missing: visibleMissing + ackMissing, byLaterVersion: c.visibleByLaterVersion },
    webhooks: {
      expected: c.webhooksReceived + webhookMissing,
      received: c.webhooksReceived,
      missing: webhookMissing,
      unknownForInvisible: visibleMissing + ackMissing,
      otherReceived: c.otherWebhooks,
    },
    p99,
    p50,
    sustained: verdict.sustained,
    failed: verdict.failed,
    cost: {
      windowMs: win.wallMs,
      scans: denominator,
      shipments: schedule.shipmentsCreatedInWindow,
      cpuMs: win.perGroup,
      perThousandScans: perThousand,
      idleMsPerSec: idlePerSec,
      machineBusyCores: win.machineBusyMs / win.wallMs,
      otherCores: Math.max(0, (win.machineBusyMs - ours) / win.wallMs),
      ...(pgCost ? { pg: pgCost } : {}),
    },
    load: { start: loadStart, end: loadEnd },
    timeline: [...timeline.entries()].sort((a, b) => a[0] - b[0]).map(([t, e]) => ({ t, ...e })),
    backlog: backlog.samples
      .map((s) => ({ t: (s.at - t0) / 1000, perConsumer: s.perConsumer, total: s.total }))
      .sort((a, b) => a.t - b.t),
    scenario: {
      templates: templates.length,
      scansPerShipment: { mean: perTemplate.reduce((a, b) => a + b, 0) / perTemplate.length, min: Math.min(...perTemplate), max: Math.max(...perTemplate) },
      scanGapMs,
      streams: nStreams,
      watchersPeak,
    },
    timing: { setupMs: rampStarted - setupStarted - idleMs, idleMs, rampMs: -schedule.startsAt, warmupMs: o.warmupMs ?? 0, settleMs, settledEarly, windowStartedAt: t0 },
  };
}

/** An e2e latency series as a load result, so it gets the same ghz JSON and plots as the benches. */
export function asLoadResult(s: LatencySeries, windowMs: number): LoadResult {
  const ok = Number(s.histogram.totalCount);
  return {
    mode: "open",
    startedAt: new Date(),
    durationMs: windowMs,
    histogram: s.histogram,
    ok,
    statusCodes: { OK: ok, ...(s.missing ? { DeadlineExceeded: s.missing } : {}) },
    errors: s.missing ? { "not observed before the settle deadline": s.missing } : {},
    dropped: 0,
    timeline: s.timeline,
  };
}
