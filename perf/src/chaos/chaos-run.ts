/**
 * One chaos run: the mesh on a three-node JetStream cluster, carriers streaming at a fixed rate,
 * a fault-free baseline, then the seeded schedule of faults, each followed by a settle period;
 * then the load stops, the carriers resend until every scan is acknowledged, and the checker
 * compares what they were told with what the public RPCs and the webhooks show.
 */
import { loadavg } from "node:os";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { MeshServiceName } from "@logistics/dev";
import { Scope } from "@logistics/shared/auth";
import { NotificationEventType, NotificationService } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { startReceiver, waitFor } from "@logistics/shared/testing";
import { newRunRecord, startCarriers, type RunRecord } from "./carriers.js";
import { startChaosMesh } from "./chaos-mesh.js";
import { check, readTracking, type CheckerReport, type WebhookSeen } from "./checker.js";
import { runFault, seededRandom, type FaultName } from "./faults.js";
import { drainedLevel, faultFigures, type FaultFigures, type FaultWindow } from "./figures.js";
import { watchJetStream, type LagSample } from "./jetstream-watch.js";

export interface ChaosOptions {
  readonly seed: number;
  readonly faults: readonly FaultName[];
  /** Fault-free load before the first fault; its figures are the baseline. */
  readonly baselineMs: number;
  /** Load after each fault is healed, before the next. */
  readonly settleMs: number;
  readonly carriers: readonly string[];
  readonly ratePerCarrier: number;
  readonly slots: number;
  readonly replicas?: Partial<Record<MeshServiceName, number>>;
  /** Where the processes' logs go. */
  readonly logDir: string;
  readonly log?: (line: string) => void;
}

export interface ChaosResult {
  readonly seed: number;
  readonly options: Omit<ChaosOptions, "log" | "logDir">;
  readonly startedAt: string;
  readonly durationS: number;
  readonly loadAverage: readonly number[];
  readonly baseline: FaultFigures;
  readonly faults: readonly FaultFigures[];
  readonly checker: CheckerReport;
  readonly streamsOpened: number;
  readonly skippedTicks: number;
  readonly lagSamples: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const log = o.log ?? (() => {});
  const faultRandom = seededRandom(o.seed);
  const loadRandom = seededRandom(o.seed ^ 0x9e3779b9);
  const startedAt = new Date().toISOString();
  log(`seed ${o.seed}: starting a 3-node JetStream cluster, PostgreSQL, Redis and the services`);
  const mesh = await startChaosMesh({
    logDir: o.logDir,
    partitionable: o.faults.includes("nats-partition"),
    ...(o.replicas ? { replicas: o.replicas } : {}),
  });
  const cleanups: Array<() => Promise<unknown>> = [() => mesh.close()];
  try {
    const receiver = await startReceiver(() => ({ status: 204 }));
    cleanups.push(() => receiver.close());
    const admin = await mesh.env.token([Scope.Admin]);
    const orders = await mesh.env.token([Scope.ShipmentsWrite]);
    const notification = createClient(NotificationService, createGrpcTransport({ baseUrl: `http://${mesh.addresses("notification")[0]}` }));
    for (const carrier of o.carriers) {
      await notification.subscribe(
        { scope: { case: "carrierCode", value: carrier }, eventTypes: [NotificationEventType.STATUS_CHANGED], webhookUrl: receiver.url },
        { headers: { authorization: `Bearer ${admin}` } },
      );
    }
    const record: RunRecord = newRunRecord();
    const now = () => performance.now() - record.epoch;
    const watch = await watchJetStream(mesh.nats.urls, mesh.subjectPrefix, record.epoch);
    cleanups.push(() => watch.close());
    const sampler = watch.startSampling(500, record.epoch);
    cleanups.push(() => sampler.stop());
    const load = await startCarriers({
      record,
      ingest: mesh.addresses("ingest"),
      carriers: o.carriers,
      ratePerCarrier: o.ratePerCarrier,
      slots: o.slots,
      carrierToken: (carrier) => mesh.env.token([Scope.ScansWrite], { carrier }),
      ordersToken: orders,
      runTag: o.seed.toString(36).slice(0, 6),
      random: loadRandom,
    });
    cleanups.push(() => load.close());
    log(`load: ${o.carriers.length} carriers × ${o.ratePerCarrier} scans/s; baseline ${o.baselineMs / 1000} s`);

    // The first seconds create shipments; the baseline window starts after them.
    const baselineStart = Math.min(5000, o.baselineMs / 3);
    await sleep(o.baselineMs);
    const baselineEnd = now();
    const windows: Array<Omit<FaultWindow, "windowEnd">> = [];
    for (const name of o.faults) {
      log(`fault ${name} at ${(now() / 1000).toFixed(1)} s`);
      const run = await runFault(name, { mesh, watch, random: faultRandom, now, log });
      windows.push({ name, detail: run.detail, injectedAt: run.injectedAt, healedAt: run.healedAt });
      log(`  healed after ${((run.healedAt - run.injectedAt) / 1000).toFixed(1)} s: ${run.detail}`);
      await sleep(o.settleMs);
    }
    const loadEnd = now();
    log(`load stops at ${(loadEnd / 1000).toFixed(1)} s; carriers resend until every scan is acknowledged`);
    const { unacked } = await load.stop(120_000);
    // Everything consumed: the backlog at zero twice in a row.
    let zeros = 0;
    await waitFor(
      async () => {
        const s = await watch.sample();
        zeros = s && s.total === 0 ? zeros + 1 : 0;
        return zeros >= 2;
      },
      { timeoutMs: 180_000, intervalMs: 500, message: "consumers to drain" },
    ).catch((e: unknown) => log(`warning: ${(e as Error).message}`));
    await sampler.stop();
    const samples: LagSample[] = sampler.samples;

    log(`checker: reading ${record.shipments.size} shipments through TrackingService`);
    const tracking = await readTracking(mesh.addresses("tracking")[0]!, admin, record.shipments.keys());
    const webhooks = (): WebhookSeen[] =>
      receiver.accepted
        .filter((r) => r.json.type === "shipment.status_changed")
        .map((r) => {
          const d = r.json.data as unknown as { tracking_number: string; shipment_version: number; previous_status: string | null; status: string };
          return { id: r.json.id, trackingNumber: d.tracking_number, version: d.shipment_version, previousStatus: d.previous_status, status: d.status };
        });
    const deadLetters = await watch.deadLetters();
    // Webhooks trail the read model by the ordering window and the poll: wait (bounded) for the chains to complete.
    let report = check(record, { ...tracking, webhooks: webhooks(), deadLetters }, unacked);
    const webhookDeadline = performance.now() + 90_000;
    while (report.webhooks.missing.length > 0 && performance.now() < webhookDeadline) {
      await sleep(1000);
      report = check(record, { ...tracking, webhooks: webhooks(), deadLetters }, unacked);
    }

    const drained = drainedLevel(samples, baselineStart, baselineEnd);
    const full: FaultWindow[] = windows.map((w, i) => ({ ...w, windowEnd: windows[i + 1]?.injectedAt ?? loadEnd }));
    const baseline = faultFigures(record, samples, { name: "baseline (no fault)", detail: "", injectedAt: baselineStart, healedAt: baselineStart, windowEnd: baselineEnd }, drained);
    return {
      seed: o.seed,
      options: {
        seed: o.seed,
        faults: o.faults,
        baselineMs: o.baselineMs,
        settleMs: o.settleMs,
        carriers: o.carriers,
        ratePerCarrier: o.ratePerCarrier,
        slots: o.slots,
        ...(o.replicas ? { replicas: o.replicas } : {}),
      },
      startedAt,
      durationS: Math.round(now() / 1000),
      loadAverage: loadavg().map((v) => Math.round(v * 100) / 100),
      baseline,
      faults: full.map((w) => faultFigures(record, samples, w, drained)),
      checker: report,
      streamsOpened: record.streamErrors.length + o.carriers.length,
      skippedTicks: record.skippedTicks,
      lagSamples: samples.length,
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  }
}
