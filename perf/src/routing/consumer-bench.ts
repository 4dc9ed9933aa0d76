/**
 * Routing's event intake, alone: CPU milliseconds of the routing process (utime + stime from
 * /proc) per 1,000 scans and per 1,000 new shipments, with the end-to-end run's traffic shape
 * (the e2e scenario's lanes and on-plan scan scripts, shipments interleaved) offered at a steady
 * rate. Routing runs as its own process (as deployed) against a private nats-server and its own
 * PostgreSQL schema. Scans are on plan, so the figure is what routing pays to read and compare,
 * plus one revision per delivery.
 *
 * Comparing two builds of routing (paired rounds, alternating order; ratios are the figure):
 *
 *   npm run build && node perf/dist/routing/consumer-bench.js --rounds 3 \
 *     --entry path/to/routing/dist/main.js --entry other/routing/dist/main.js
 *
 * Options: --shipments N (default 300), --rate scans/s (default 200), --rounds N (default 1),
 * --entry (repeatable; default this tree's routing), --profile-dir DIR (also `node --cpu-prof`).
 * Prints one JSON line per run and, for two entries, the per-round ratios.
 */
import { spawn } from "node:child_process";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { createMeshEnvironment, serviceEntry } from "@logistics/dev";
import { createCatalogPublisher, createEventCatalog, publication, type Publication } from "@logistics/shared/events";
import { Health, HealthCheckResponse_ServingStatus } from "@logistics/shared/gen/grpc/health/v1/health_pb.js";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RouteUpdatedSchema } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { EventHeaders } from "@logistics/shared/nats";
import { getFreePort, waitFor } from "@logistics/shared/testing";
import { shipmentTemplates, type ScriptedScan } from "../e2e/scenario.js";
import { processCpuMs } from "../lib/proc.js";

const { values: args } = parseArgs({
  options: {
    shipments: { type: "string", default: "300" },
    rate: { type: "string", default: "200" },
    rounds: { type: "string", default: "1" },
    entry: { type: "string", multiple: true },
    /** Also `node --cpu-prof` of routing, profiles in this folder (slows it: not for the figures). */
    "profile-dir": { type: "string" },
  },
});
const shipments = Number(args.shipments);
const rate = Number(args.rate);
const rounds = Number(args.rounds);
const entries = args.entry?.length ? args.entry : [serviceEntry("routing")];
const REGION = "eu";
const CARRIER = "acme";

const KIND: Record<string, ScanKind> = {
  PU: ScanKind.PICKUP,
  AR: ScanKind.HUB_ARRIVAL,
  DP: ScanKind.HUB_DEPARTURE,
  CH: ScanKind.CUSTOMS,
  CU: ScanKind.CUSTOMS,
  OD: ScanKind.OUT_FOR_DELIVERY,
  DL: ScanKind.DELIVERED,
};

interface RunResult {
  entry: string;
  round: number;
  scans: number;
  shipments: number;
  cpuMsPer1000Scans: number;
  cpuMsPer1000Shipments: number;
  scanPhaseSeconds: number;
}

/** Publishes `items` at `perSec`, in ticks of 20 ms, each tick's due items in one publishAll. */
async function paced(publish: (items: Publication[]) => Promise<unknown>, items: readonly Publication[], perSec: number): Promise<void> {
  const start = performance.now();
  let sent = 0;
  while (sent < items.length) {
    const due = Math.min(items.length, Math.floor(((performance.now() - start) / 1000) * perSec) + 1);
    if (due > sent) {
      await publish(items.slice(sent, due));
      sent = due;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function runOnce(entry: string, round: number): Promise<RunResult> {
  const mesh = await createMeshEnvironment({ idPrefix: "rbench", base: { LOG_LEVEL: "warn", SHUTDOWN_GRACE_MS: "5000" } });
  const port = await getFreePort();
  const env = await mesh.envFor("routing", { PORT: String(port), METRICS_PORT: String(await getFreePort()) });
  const prof = args["profile-dir"] ? ["--cpu-prof", `--cpu-prof-dir=${args["profile-dir"]}/${round}-${entries.indexOf(entry)}`] : [];
  const child = spawn(process.execPath, [...prof, entry], { env: { ...process.env, ...env }, stdio: ["ignore", "inherit", "inherit"] });
  const nc = await connect({ servers: env.NATS_URL });
  try {
    const health = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    await waitFor(async () => (await health.check({}, { timeoutMs: 1000 }).catch(() => undefined))?.status === HealthCheckResponse_ServingStatus.SERVING, {
      timeoutMs: 60_000,
      intervalMs: 200,
      message: "routing SERVING",
    });
    const catalog = createEventCatalog(mesh.id);
    const js = jetstream(nc);
    const publisher = createCatalogPublisher({ js });
    const publish = async (items: Publication[]) => {
      for (const r of await publisher.publishAll(items)) if (r.status === "rejected") throw r.reason;
    };
    let updated = 0;
    let planned = 0;
    const sub = nc.subscribe(`${mesh.id}.route.>`);
    void (async () => {
      for await (const m of sub) {
        if (m.headers?.get(EventHeaders.MessageType) === RouteUpdatedSchema.typeName) {
          // Scans on plan: the delivery is each shipment's only RouteUpdated.
          updated++;
        } else planned++;
      }
    })();

    const templates = shipmentTemplates(Date.now());
    const tns = Array.from({ length: shipments }, (_, i) => `RB${round}${String(i).padStart(7, "0")}${Date.now().toString(36).toUpperCase()}`);
    const created = tns.map((tn, i) => {
      const t = templates[i % templates.length]!;
      return publication(
        catalog.events.shipmentCreated,
        create(ShipmentCreatedSchema, {
          eventId: `shp-${tn}`,
          trackingNumber: tn,
          shipmentId: `id-${tn}`,
          carrierCode: CARRIER,
          customerId: "cust-1",
          origin: t.lane.origin,
          destination: t.lane.destination,
          serviceLevel: t.serviceLevel,
          readyTime: timestampFromMs(t.readyAtMs),
          createdAt: timestampFromMs(Date.now()),
          weightGrams: 1500,
        }),
        { region: REGION },
      );
    });
    const pid = child.pid!;
    const cpu0 = processCpuMs(pid) ?? 0;
    await paced(publish, created, rate / 8.6);
    await waitFor(() => planned >= shipments, { timeoutMs: 120_000, message: "every shipment planned" });
    const cpu1 = processCpuMs(pid) ?? 0;

    // Scans interleaved across shipments, each shipment's in its script's order.
    const scripts = tns.map((_, i) => templates[i % templates.length]!.scans);
    const scans: Publication[] = [];
    for (let step = 0; scripts.some((s) => step < s.length); step++) {
      scripts.forEach((script, i) => {
        const s: ScriptedScan | undefined = script[step];
        if (!s) return;
        const tn = tns[i]!;
        scans.push(
          publication(
            catalog.events.scanRecorded,
            create(ScanRecordedSchema, {
              eventId: `scan-${tn}-${step}`,
              scan: {
                eventId: `${CARRIER}-${tn}-${step}`,
                trackingNumber: tn,
                carrierCode: CARRIER,
                rawStatus: { code: s.code, text: s.text },
                eventTime: timestampFromMs(s.eventTimeMs),
                ...(s.hubCode ? { hubCode: s.hubCode } : {}),
              },
              status: s.code === "DL" ? ShipmentStatus.DELIVERED : ShipmentStatus.IN_TRANSIT,
              kind: KIND[s.code] ?? ScanKind.INFO,
              recordedAt: timestampFromMs(Date.now()),
              region: REGION,
            }),
            { region: REGION, carrier: CARRIER },
          ),
        );
      });
    }
    const t0 = performance.now();
    await paced(publish, scans, rate);
    const consumer = catalog.consumer("routing-scans");
    const jsm = await jetstreamManager(nc);
    await waitFor(
      async () => {
        const info = await jsm.consumers.info(consumer.stream.name, consumer.durable);
        return updated >= shipments && info.num_pending === 0 && info.num_ack_pending === 0;
      },
      { timeoutMs: 180_000, intervalMs: 100, message: "every scan handled" },
    );
    const cpu2 = processCpuMs(pid) ?? 0;
    sub.unsubscribe();
    return {
      entry,
      round,
      scans: scans.length,
      shipments,
      cpuMsPer1000Scans: ((cpu2 - cpu1) / scans.length) * 1000,
      cpuMsPer1000Shipments: ((cpu1 - cpu0) / shipments) * 1000,
      scanPhaseSeconds: (performance.now() - t0) / 1000,
    };
  } finally {
    await nc.close();
    await new Promise<void>((r) => {
      if (child.exitCode !== null || child.signalCode !== null) return r();
      child.once("exit", () => r());
      child.kill("SIGTERM");
    });
    await mesh.close();
  }
}

const results: RunResult[] = [];
for (let round = 0; round < rounds; round++) {
  // Alternate the order every round, so drift in the machine's load hits every entry alike.
  const order = round % 2 === 0 ? entries : [...entries].reverse();
  for (const entry of order) {
    const r = await runOnce(entry, round);
    results.push(r);
    process.stdout.write(`${JSON.stringify(r)}\n`);
  }
}
if (entries.length === 2) {
  const [a, b] = entries as [string, string];
  const ratios = [...Array(rounds).keys()].map((round) => {
    const x = results.find((r) => r.round === round && r.entry === a)!;
    const y = results.find((r) => r.round === round && r.entry === b)!;
    return { scans: x.cpuMsPer1000Scans / y.cpuMsPer1000Scans, shipments: x.cpuMsPer1000Shipments / y.cpuMsPer1000Shipments };
  });
  process.stdout.write(`${JSON.stringify({ ratioFirstOverSecond: ratios })}\n`);
}
