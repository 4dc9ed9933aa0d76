/**
 * Store apply benchmark: events/s through the PostgreSQL shipment store (validate, dedupe, lock,
 * derive, CAS, history) in two modes — `applyEvent` (one transaction per event) and
 * `applyEvents` (one transaction per batch, batches scheduled as the projector's batch consumer
 * schedules them: a shipment is never in two batches at once) — versus a raw multi-row INSERT
 * (unnest arrays) of the same history rows into an equivalent plain table, same run, same
 * server. The ratios are the figures to watch; absolute rates on shared machines are noise.
 * A further reference inserts the same rows one autocommitted row at a time: the per-event mode
 * commits once per event (durably), so that commit cost, not the adapter's own work, bounds it.
 *
 *   node perf/dist/store/apply-bench.js [--events 3000] [--rounds 3] [--per-event 1000] [--concurrency 8]
 *     [--batch 500] [--apply-batch 256] [--apply-concurrency 2]
 *
 * The batched mode and the raw INSERT run in `--rounds` paired rounds of `--events` events each
 * (order alternating; the median per-round ratio is the figure, target >= 25%); the per-event mode
 * and its one-row-per-commit reference run once over `--per-event` events.
 * --concurrency: workers of the per-event mode and of both raw references; --batch: rows per raw
 * multi-row INSERT; --apply-batch / --apply-concurrency: most events per applyEvents call and
 * batches in flight (the projector's defaults: TRACKING_PROJECTOR_MAX_BATCH 256, two batches per
 * consumer).
 *
 * DATABASE_URL selects the server (`npm run perf` provides one). Works in a unique schema
 * that it drops afterwards. Prints one JSON line, then one human-readable line.
 */
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ServiceLevel } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { ScanRecordedSchema, ShipmentCreatedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { RoutePlannedSchema } from "@logistics/shared/gen/logistics/events/v1/routing_events_pb.js";
import { createTestSchema, testDatabaseUrl } from "@logistics/shared/testing";
import { createPostgresShipmentStore, eventJson, eventKey, type ProjectedEvent } from "@logistics/tracking/store";

const HOUR = 3_600_000;
const KINDS = [
  ScanKind.PICKUP,
  ScanKind.HUB_ARRIVAL,
  ScanKind.HUB_DEPARTURE,
  ScanKind.HUB_ARRIVAL,
  ScanKind.HUB_DEPARTURE,
  ScanKind.HUB_ARRIVAL,
  ScanKind.OUT_FOR_DELIVERY,
  ScanKind.DELIVERED,
];

/** Ten events per shipment: created, route planned, eight scans; returned interleaved across shipments. */
function generate(total: number, runId: string): ProjectedEvent[] {
  const shipments = Math.ceil(total / 10);
  const t0 = Date.now() - 5 * 24 * HOUR;
  const perShipment: ProjectedEvent[][] = [];
  for (let s = 0; s < shipments; s++) {
    const tn = `B${runId}${String(s).padStart(8, "0")}`;
    const start = t0 + s * 1000;
    const ev: ProjectedEvent[] = [
      {
        type: "shipment.created",
        message: create(ShipmentCreatedSchema, {
          eventId: `${tn}-0`,
          trackingNumber: tn,
          createdAt: timestampFromMs(start),
          shipmentId: `s-${tn}`,
          carrierCode: "acme",
          customerId: `cust-${s % 500}`,
          serviceLevel: ServiceLevel.STANDARD,
        }),
      },
      {
        type: "route.planned",
        message: create(RoutePlannedSchema, {
          eventId: `${tn}-1`,
          trackingNumber: tn,
          plannedAt: timestampFromMs(start + 60_000),
          route: { eta: { estimatedArrival: timestampFromMs(start + 48 * HOUR) } },
        }),
      },
    ];
    KINDS.forEach((kind, i) =>
      ev.push({
        type: "scan.recorded",
        message: create(ScanRecordedSchema, {
          eventId: `${tn}-${i + 2}`,
          kind,
          scan: {
            trackingNumber: tn,
            eventTime: timestampFromMs(start + (i + 1) * 3 * HOUR),
            carrierCode: "acme",
            rawStatus: { code: ScanKind[kind], text: "scanned" },
            location: { latitude: 48 + (s % 100) / 10, longitude: 2 + i / 2 },
            hubCode: kind === ScanKind.HUB_ARRIVAL || kind === ScanKind.HUB_DEPARTURE ? "HUB1" : "",
          },
        }),
      }),
    );
    perShipment.push(ev);
  }
  // Round-robin over shipments: each shipment's events stay in order, shipments interleave.
  const out: ProjectedEvent[] = [];
  for (let i = 0; i < 10; i++) for (const ev of perShipment) if (ev[i]) out.push(ev[i] as ProjectedEvent);
  return out.slice(0, total);
}

/** The history row of an event (the raw references write these), serialized before the clock starts. */
function historyRow(e: ProjectedEvent): [string, string, string, string, string] {
  const k = eventKey(e);
  return [k.eventId, k.trackingNumber, k.eventTime, e.type, JSON.stringify(eventJson(e))];
}

async function runWorkers(concurrency: number, count: number, job: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < count; i = next++) await job(i);
    }),
  );
  return Number(process.hrtime.bigint() - started) / 1e9;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      events: { type: "string", default: "3000" },
      "per-event": { type: "string", default: "1000" },
      rounds: { type: "string", default: "3" },
      concurrency: { type: "string", default: "8" },
      batch: { type: "string", default: "500" },
      "apply-batch": { type: "string", default: "256" },
      "apply-concurrency": { type: "string", default: "2" },
    },
  });
  const total = Number(values.events);
  const perEventTotal = Number(values["per-event"]);
  const rounds = Number(values.rounds);
  const concurrency = Number(values.concurrency);
  const batch = Number(values.batch);
  const applyBatch = Number(values["apply-batch"]);
  const applyConcurrency = Number(values["apply-concurrency"]);
  const schema = await createTestSchema({
    connectionString: testDatabaseUrl(),
    prefix: "bench_store",
  });
  try {
    const runId = Date.now().toString(36).toUpperCase().slice(-6);
    const store = await createPostgresShipmentStore({
      connectionString: schema.connectionString,
      maxConnections: Math.max(concurrency, applyConcurrency),
    });
    let applied = 0;
    let duplicates = 0;
    let rawRows = 0;
    let batches = 0;
    const perRound: Array<{ batched: number; raw: number; ratio: number }> = [];
    let adapterSeconds: number;
    let singleSeconds: number;
    const perEvent = generate(perEventTotal, `P${runId}`);
    try {
      // Baseline: the same history rows, written as raw multi-row inserts into a plain table.
      await store.pool.query(`CREATE TABLE raw_events (
        event_id text PRIMARY KEY, tracking_number text NOT NULL, event_time timestamptz NOT NULL,
        event_type text NOT NULL, late boolean NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), payload jsonb NOT NULL)`);
      await store.pool.query("CREATE INDEX raw_events_tracking_idx ON raw_events (tracking_number, event_time, event_id)");
      await store.pool.query("CREATE TABLE raw_events_single (LIKE raw_events INCLUDING ALL)");

      const rawRun = async (events: ProjectedEvent[]) => {
        const all = events.map(historyRow);
        const batches = Math.ceil(events.length / batch);
        const seconds = await runWorkers(concurrency, batches, async (b) => {
          const rows = all.slice(b * batch, (b + 1) * batch);
          await store.pool.query(
            `INSERT INTO raw_events (event_id, tracking_number, event_time, event_type, late, payload)
             SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::boolean[], $6::jsonb[])`,
            [
              rows.map((r) => r[0]),
              rows.map((r) => r[1]),
              rows.map((r) => r[2]),
              rows.map((r) => r[3]),
              rows.map(() => false),
              rows.map((r) => r[4]),
            ],
          );
        });
        rawRows += events.length;
        return events.length / seconds;
      };
      // Batches through applyEvents, one transaction each, scheduled as the projector's batch
      // consumer does: in order, at most --apply-batch events, and never a shipment that is in
      // a batch still in flight (its events wait for the next batch).
      const batchedRun = async (events: ProjectedEvent[]) => {
        let waiting = events;
        const busy = new Set<string>();
        let settled: () => void = () => {};
        let next = new Promise<void>((r) => (settled = r));
        const take = (): ProjectedEvent[] => {
          const batch: ProjectedEvent[] = [];
          const rest: ProjectedEvent[] = [];
          const blocked = new Set<string>();
          for (const e of waiting) {
            if (batch.length < applyBatch && !busy.has(eventKey(e).trackingNumber) && !blocked.has(eventKey(e).trackingNumber)) batch.push(e);
            else {
              blocked.add(eventKey(e).trackingNumber);
              rest.push(e);
            }
          }
          waiting = rest;
          for (const e of batch) busy.add(eventKey(e).trackingNumber);
          return batch;
        };
        const started = process.hrtime.bigint();
        await Promise.all(
          Array.from({ length: applyConcurrency }, async () => {
            while (waiting.length > 0) {
              const batch = take();
              if (batch.length === 0) {
                await next;
                continue;
              }
              const results = await store.applyEvents(batch);
              for (const r of results) if (r.applied) applied++;
              else duplicates++;
              for (const e of batch) busy.delete(eventKey(e).trackingNumber);
              batches++;
              const wake = settled;
              next = new Promise<void>((r) => (settled = r));
              wake();
            }
          }),
        );
        return events.length / (Number(process.hrtime.bigint() - started) / 1e9);
      };

      // Paired rounds, order alternating, each with its own shipments, so drift on a shared
      // machine hits both sides alike.
      for (let r = 0; r < rounds; r++) {
        // The same rows both ways: the raw INSERT writes them to its own table.
        const events = generate(total, `${runId}${r}`);
        let raw: number;
        let batched: number;
        if (r % 2 === 0) {
          raw = await rawRun(events);
          batched = await batchedRun(events);
        } else {
          batched = await batchedRun(events);
          raw = await rawRun(events);
        }
        perRound.push({ batched: round(batched), raw: round(raw), ratio: round(batched / raw, 4) });
      }

      // Per-event mode (one transaction per event), on a smaller set: it is reported, not a target.
      adapterSeconds = await runWorkers(concurrency, perEvent.length, async (i) => {
        const r = await store.applyEvent(perEvent[i] as ProjectedEvent);
        if (r.applied) applied++;
        else duplicates++;
      });
      // Its reference: the same rows, one autocommitted INSERT each (one commit per event, like
      // the per-event mode), to separate the cost of a commit per event from the adapter's work.
      const singleRows = perEvent.map(historyRow);
      singleSeconds = await runWorkers(concurrency, perEvent.length, async (i) => {
        await store.pool.query(
          `INSERT INTO raw_events_single (event_id, tracking_number, event_time, event_type, late, payload)
           VALUES ($1, $2, $3, $4, false, $5::jsonb)`,
          singleRows[i],
        );
      });
      if (duplicates > 0) throw new Error(`benchmark data produced ${duplicates} duplicates`);
      const check = await store.pool.query<{ a: string; r: string; s: string }>(
        `SELECT (SELECT count(*) FROM shipment_events) AS a, (SELECT count(*) FROM raw_events) AS r,
                (SELECT count(*) FROM raw_events_single) AS s`,
      );
      const expected = [applied, rawRows, perEvent.length];
      if ([check.rows[0]?.a, check.rows[0]?.r, check.rows[0]?.s].some((n, i) => Number(n) !== expected[i])) {
        throw new Error(`row counts differ from ${JSON.stringify(expected)}: ${JSON.stringify(check.rows[0])}`);
      }
    } finally {
      await store.close();
    }
    const adapterRate = perEvent.length / adapterSeconds;
    const singleRate = perEvent.length / singleSeconds;
    const batchedRate = median(perRound.map((x) => x.batched));
    const rawRate = median(perRound.map((x) => x.raw));
    const ratioBatchedVsRaw = median(perRound.map((x) => x.ratio));
    process.stdout.write(
      `${JSON.stringify({
        bench: "store-apply",
        events: total,
        shipments: Math.ceil(total / 10),
        rounds: perRound,
        adapter: { mode: "applyEvent", events: perEvent.length, concurrency, seconds: round(adapterSeconds), eventsPerSec: round(adapterRate) },
        adapterBatched: {
          mode: "applyEvents",
          batch: applyBatch,
          concurrency: applyConcurrency,
          meanBatch: round((total * rounds) / Math.max(1, batches)),
          eventsPerSec: batchedRate,
        },
        rawInsert: { batch, concurrency, rowsPerSec: rawRate },
        ratio: round(adapterRate / rawRate, 4),
        ratioBatchedVsRaw: round(ratioBatchedVsRaw, 4),
        ratioBatchedVsPerEvent: round(batchedRate / adapterRate, 2),
        rawSingleRowCommits: { seconds: round(singleSeconds), rowsPerSec: round(singleRate) },
        ratioVsSingleRowCommits: round(adapterRate / singleRate, 4),
        target: 0.25,
      })}\n`,
    );
    process.stdout.write(
      `store apply: applyEvents (batches of ${applyBatch}, concurrency ${applyConcurrency}) ${batchedRate.toFixed(0)} events/s vs raw unnest INSERT ` +
        `(batches of ${batch}) ${rawRate.toFixed(0)} rows/s: ${(ratioBatchedVsRaw * 100).toFixed(1)}% (median of ${rounds} paired rounds of ${total} events; ` +
        `per round ${perRound.map((x) => `${(x.ratio * 100).toFixed(1)}%`).join(", ")}; target >= 25%); ` +
        `applyEvent ${adapterRate.toFixed(0)} events/s (${perEvent.length} events) vs one-row-per-commit INSERT ${singleRate.toFixed(0)} rows/s\n`,
    );
  } finally {
    await schema.drop();
  }
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
