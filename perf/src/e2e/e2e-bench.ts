/**
 * End to end: scan acknowledged by ingest → visible to a WatchShipment client of tracking →
 * webhook received from notification, at a fixed (open-loop) scan rate. Services run as separate
 * processes; every latency is measured from the moment the carrier received its ACCEPTED ack.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as hdr from "hdr-histogram-js";
import { Scope } from "@logistics/shared/auth";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import {
  IngestService,
  ScanOutcome,
  StreamScansRequestSchema,
  StreamScansResponseSchema,
  type StreamScansResponse,
} from "@logistics/shared/gen/logistics/ingest/v1/ingest_pb.js";
import { NotificationEventType, NotificationService } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { TrackingService } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import type { MeshProcesses } from "../lib/mesh-processes.js";

export interface E2eOptions {
  /** Scans per second offered (open loop). */
  rate: number;
  durationMs: number;
  /** Shipments the scans rotate over (each has one watcher). */
  shipments: number;
  /** How long to wait after the last scan for stragglers. */
  settleMs?: number;
}

export interface E2eResult {
  rate: number;
  durationMs: number;
  sent: number;
  accepted: number;
  rejected: number;
  visible: number;
  webhooks: number;
  /** ack → visible in WatchShipment, microseconds. */
  ackToVisible: hdr.Histogram;
  /** ack → webhook received, microseconds. */
  ackToWebhook: hdr.Histogram;
  /** Accepted scans per second actually achieved. */
  achievedRate: number;
  /** Offered rate met (≥ 95%) and ≥ 99% of accepted scans became visible before the settle deadline. */
  sustained: boolean;
}

const hist = () => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });

export async function runE2e(mesh: MeshProcesses, o: E2eOptions): Promise<E2eResult> {
  const carrier = "acme";
  const internal = await mesh.token([Scope.Admin]);
  const carrierToken = await mesh.token([Scope.ScansWrite], { carrier });
  const headers = { authorization: `Bearer ${internal}` };
  const transport = (svc: keyof MeshProcesses["ports"]) => createGrpcTransport({ baseUrl: `http://127.0.0.1:${mesh.ports[svc]}` });
  const ingest = createClient(IngestService, transport("ingest"));
  const tracking = createClient(TrackingService, transport("tracking"));
  const notification = createClient(NotificationService, transport("notification"));

  // Webhook receiver: remembers when each (tracking number, version) arrived.
  const webhookAt = new Map<string, number>();
  const receiver = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      const now = performance.now();
      try {
        const j = JSON.parse(body) as { data?: { tracking_number?: string; shipment_version?: number } };
        if (j.data?.tracking_number) webhookAt.set(`${j.data.tracking_number}:${j.data.shipment_version}`, now);
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
    { headers },
  );

  const numbers: string[] = [];
  const runId = Date.now().toString(36).toUpperCase();
  for (let i = 0; i < o.shipments; i++) {
    const res = await ingest.createShipment(
      {
        idempotencyKey: `perf-${runId}-${i}`,
        trackingNumber: `PF${runId}${String(i).padStart(6, "0")}`.slice(0, 30),
        carrierCode: carrier,
        customerId: "perf",
        serviceLevel: ServiceLevel.STANDARD,
        origin: { countryCode: "DE", city: "Frankfurt", location: { latitude: 50.11, longitude: 8.68 } },
        destination: { countryCode: "FR", city: "Paris", location: { latitude: 48.86, longitude: 2.35 } },
        parcel: { weightGrams: 1000 },
      },
      { headers },
    );
    numbers.push(res.trackingNumber);
  }

  // One watcher per shipment; remembers when each causing event became visible, and its version.
  const visibleAt = new Map<string, { t: number; version: bigint; tn: string }>();
  const watching = new AbortController();
  const watchers = numbers.map(async (tn) => {
    // A new shipment becomes visible once the projector applied it; until then the watch
    // answers NotFound, so retry. Internal scope: the public view carries no event ids.
    while (!watching.signal.aborted) {
      try {
        for await (const u of tracking.watchShipment({ trackingNumber: tn }, { signal: watching.signal, headers })) {
          if (u.cause?.eventId) visibleAt.set(u.cause.eventId, { t: performance.now(), version: u.sequence, tn });
        }
      } catch {
        if (!watching.signal.aborted) await new Promise((r) => setTimeout(r, 100));
      }
    }
  });
  // Start the clock only when every shipment is visible (its first snapshot arrived).
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const ok = await Promise.all(numbers.map((tn) => tracking.getShipment({ trackingNumber: tn }, { headers }).then(() => true, () => false)));
    if (ok.every(Boolean)) break;
    await new Promise((r) => setTimeout(r, 200));
  }

  // Carrier stream (standard grpc-js client, as a gateway would use).
  const client = new grpc.Client(`127.0.0.1:${mesh.ports.ingest}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${carrierToken}`);
  const call = client.makeBidiStreamRequest(
    "/logistics.ingest.v1.IngestService/StreamScans",
    (m: ReturnType<typeof create<typeof StreamScansRequestSchema>>) => Buffer.from(toBinary(StreamScansRequestSchema, m)),
    (b: Buffer) => fromBinary(StreamScansResponseSchema, b),
    md,
  );
  const ackAt = new Map<string, number>();
  let accepted = 0;
  let rejected = 0;
  call.on("data", (r: StreamScansResponse) => {
    const now = performance.now();
    for (const a of r.acks) {
      if (a.outcome === ScanOutcome.ACCEPTED) {
        accepted++;
        ackAt.set(a.recordedEventId, now);
      } else rejected++;
    }
  });
  const ended = new Promise<void>((r) => call.on("status", () => r()));

  const tickMs = 10;
  const perTick = o.rate / (1000 / tickMs);
  const t0 = performance.now();
  const base = Date.now() - 60_000;
  let sent = 0;
  let owed = 0;
  while (performance.now() - t0 < o.durationMs) {
    owed += perTick;
    const n = Math.floor(owed);
    owed -= n;
    if (n > 0) {
      const scans = Array.from({ length: n }, () => {
        const i = sent++;
        const tn = numbers[i % numbers.length]!;
        const round = Math.floor(i / numbers.length);
        return {
          eventId: `e-${runId}-${i}`,
          trackingNumber: tn,
          carrierCode: carrier,
          // Alternate in transit / out for delivery so every scan changes the status.
          rawStatus: round % 2 === 0 ? { code: "OD", text: "Out for delivery" } : { code: "AR", text: "Arrived at hub" },
          eventTime: timestampFromMs(base + i),
        };
      });
      for (let k = 0; k < scans.length; k += 500) {
        call.write(create(StreamScansRequestSchema, { scans: scans.slice(k, k + 500) }));
      }
    }
    const next = t0 + Math.ceil((performance.now() - t0 + 0.01) / tickMs) * tickMs;
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
  }
  const sendMs = performance.now() - t0;
  call.end();
  const settleDeadline = performance.now() + (o.settleMs ?? 15_000);
  await Promise.race([ended, new Promise((r) => setTimeout(r, o.settleMs ?? 15_000))]);
  while (performance.now() < settleDeadline && [...ackAt.keys()].some((id) => !visibleAt.has(id))) {
    await new Promise((r) => setTimeout(r, 100));
  }
  // Webhooks trail visibility; give them the rest of the settle window.
  while (performance.now() < settleDeadline && webhookAt.size < visibleAt.size) await new Promise((r) => setTimeout(r, 100));

  const ackToVisible = hist();
  const ackToWebhook = hist();
  let visible = 0;
  let webhooks = 0;
  for (const [id, ack] of ackAt) {
    const v = visibleAt.get(id);
    if (!v) continue;
    visible++;
    ackToVisible.recordValue(Math.max(1, Math.round((v.t - ack) * 1000)));
    const w = webhookAt.get(`${v.tn}:${v.version}`);
    if (w !== undefined) {
      webhooks++;
      ackToWebhook.recordValue(Math.max(1, Math.round((w - ack) * 1000)));
    }
  }
  watching.abort();
  await Promise.allSettled(watchers);
  client.close();
  await new Promise((r) => receiver.close(r));
  const achievedRate = accepted / (sendMs / 1000);
  return {
    rate: o.rate,
    durationMs: o.durationMs,
    sent,
    accepted,
    rejected,
    visible,
    webhooks,
    ackToVisible,
    ackToWebhook,
    achievedRate,
    sustained: achievedRate >= 0.95 * o.rate && visible >= 0.99 * accepted,
  };
}
