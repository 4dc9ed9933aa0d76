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
 *   node perf/dist/store/apply-bench.js [--events 40000] [--rounds 3] [--per-event 1000] [--concurrency 8]
 *     [--batch 500] [--apply-batch 256] [--apply-concurrency 2]
 *
 * The batched mode and the raw INSERT run in `--rounds` paired rounds of `--events` events each
 * (order alternating; the median per-round ratio is the figure, target >= 25%); the per-event mode
 * and its one-row-per-commit reference run once over `--per-event` events. A round must be long
 * enough for the raw side to last well over the scheduler's and the disk's hiccups: at 3,000
 * events it lasted ~50 ms and rounds swung from 5% to 32%; 40,000 events keep it near 0.5 s or
 * more. Every round has its own shipments (ten events each, interleaved), so a batch holds ~256
 * shipments, each written once.
 * A second reference, reported beside the target and not instead of it: every row the apply
 * writes, raw (history rows, applied_events claims and an upsert of each shipment's document
 * into a copy of the shipments table with the same indexes; documents derived before the clock
 * starts), in the raw INSERT's chunks and concurrency. Its ratio to the history-only INSERT bounds
 * what any apply writing those rows can reach against the target's reference.
 * Each round also reports the client CPU seconds (this process) of the batched and raw sides.
 * --concurrency: workers of the per-event mode and of the raw references; --batch: rows per raw
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
import { applyToDoc, createPostgresShipmentStore, eventJson, eventKey, type ProjectedEvent, type ShipmentDoc } from "@logistics/tracking/store";

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

/**
 * Each event's document after it (its shipment's events derived in order, in memory), for the
 * all-rows reference: the documents the apply writes, computed before the clock starts.
 */
function docsAfter(events: readonly ProjectedEvent[]): ShipmentDoc[] {
  const current = new Map<string, ShipmentDoc>();
  return events.map((e) => {
    const tn = eventKey(e).trackingNumber;
    const doc = applyToDoc(current.get(tn), e).doc;
    current.set(tn, doc);
    return doc;
  });
}

/** Client CPU seconds (user + system) of this process since `from`. */
const cpuSeconds = (from: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(from);
  return (u.user + u.system) / 1e6;
};

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
      events: { type: "string", default: "40000" },
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
    let shipmentsWritten = 0;
    const perRound: Array<{
      batched: number;
      raw: number;
      ratio: number;
      batchedSeconds: number;
      rawSeconds: number;
      batchedClientCpuSeconds: number;
      rawClientCpuSeconds: number;
      rawAllRows: number;
      ratioBatchedVsRawAllRows: number;
      ratioRawAllRowsVsRaw: number;
    }> = [];
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
      // Second reference: every row the apply writes, raw — the history rows (as above), the
      // applied_events claims and the shipments rows (same columns and indexes as the store's).
      await store.pool.query("CREATE TABLE raw_all_events (LIKE raw_events INCLUDING ALL)");
      await store.pool.query("CREATE TABLE raw_all_applied (LIKE applied_events INCLUDING ALL)");
      await store.pool.query("CREATE TABLE raw_all_shipments (LIKE shipments INCLUDING ALL)");

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
        return seconds;
      };
      // The all-rows reference: per chunk of --batch events, one statement inserting their history
      // rows and claims and upserting each shipment's document after its last event of the chunk
      // (documents derived and serialized before the clock starts), --concurrency chunks at once.
      const rawAllRun = async (events: ProjectedEvent[]) => {
        const history = events.map(historyRow);
        const docs = docsAfter(events);
        const chunks = Array.from({ length: Math.ceil(events.length / batch) }, (_, b) => {
          const rows = history.slice(b * batch, (b + 1) * batch);
          const last = new Map<string, ShipmentDoc>();
          docs.slice(b * batch, (b + 1) * batch).forEach((d) => last.set(d.trackingNumber, d));
          const ship = [...last.values()].sort((a, b) => (a.trackingNumber < b.trackingNumber ? -1 : 1));
          return [
            rows.map((r) => r[0]),
            rows.map((r) => r[1]),
            rows.map((r) => r[2]),
            rows.map((r) => r[3]),
            rows.map((r) => r[4]),
            ship.map((d) => d.trackingNumber),
            ship.map((d) => d.customerId ?? null),
            ship.map((d) => d.carrierCode ?? null),
            ship.map((d) => d.status),
            ship.map((d) => d.updatedAt),
            ship.map((d) => d.location?.latitude ?? null),
            ship.map((d) => d.location?.longitude ?? null),
            ship.map((d) => d.version),
            ship.map((d) => JSON.stringify(d)),
          ];
        });
        return runWorkers(concurrency, chunks.length, async (b) => {
          await store.pool.query(
            `WITH h AS (
               INSERT INTO raw_all_events (event_id, tracking_number, event_time, event_type, late, payload)
               SELECT e, t, et, ty, false, p FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::jsonb[]) AS u(e, t, et, ty, p)),
             c AS (
               INSERT INTO raw_all_applied (event_id, tracking_number, event_time)
               SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]))
             INSERT INTO raw_all_shipments (tracking_number, customer_id, carrier_code, status, updated_at, lat, lon, version, doc)
             SELECT * FROM unnest($6::text[], $7::text[], $8::text[], $9::smallint[], $10::timestamptz[], $11::float8[], $12::float8[],
                                  $13::bigint[], $14::jsonb[])
             ON CONFLICT (tracking_number) DO UPDATE SET customer_id = EXCLUDED.customer_id, carrier_code = EXCLUDED.carrier_code,
               status = EXCLUDED.status, updated_at = EXCLUDED.updated_at, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
               version = EXCLUDED.version, doc = EXCLUDED.doc`,
            chunks[b],
          );
        });
      };
      // Batches through applyEvents, one transaction each, scheduled as the projector's batch
      // consumer does: in order, at most --apply-batch events, and never a shipment that is in
      // a batch still in flight (its events wait for the next batch).
      const batchedRun = async (events: ProjectedEvent[]) => {
        // Each event's tracking number, read before the clock starts: the projector's batch
        // consumer has it from the message subject, so the scheduling below costs what its does
        // (a few set lookups per waiting event), not key extraction counted against the store.
        const shipmentOf = new Map(events.map((e) => [e, eventKey(e).trackingNumber]));
        const tn = (e: ProjectedEvent) => shipmentOf.get(e) as string;
        let waiting = events;
        const busy = new Set<string>();
        let settled: () => void = () => {};
        let next = new Promise<void>((r) => (settled = r));
        const take = (): ProjectedEvent[] => {
          const batch: ProjectedEvent[] = [];
          const rest: ProjectedEvent[] = [];
          const blocked = new Set<string>();
          let i = 0;
          for (; i < waiting.length && batch.length < applyBatch; i++) {
            const e = waiting[i] as ProjectedEvent;
            const t = tn(e);
            if (!busy.has(t) && !blocked.has(t)) batch.push(e);
            else {
              blocked.add(t);
              rest.push(e);
            }
          }
          // Once the batch is full the rest waits, in order (the same batches as a full scan, without
          // a pass over every waiting event per batch).
          waiting = i === waiting.length ? rest : rest.length === 0 ? waiting.slice(i) : rest.concat(waiting.slice(i));
          for (const e of batch) busy.add(tn(e));
          shipmentsWritten += new Set(batch.map(tn)).size;
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
              for (const e of batch) busy.delete(tn(e));
              batches++;
              const wake = settled;
              next = new Promise<void>((r) => (settled = r));
              wake();
            }
          }),
        );
        return Number(process.hrtime.bigint() - started) / 1e9;
      };

      // Paired rounds, order alternating, each with its own shipments, so drift on a shared
      // machine hits both sides alike.
      for (let r = 0; r < rounds; r++) {
        // The same rows both ways: the raw INSERT writes them to its own table.
        const events = generate(total, `${runId}${r}`);
        const cpu = { raw: 0, batched: 0 };
        const timed = async (side: "raw" | "batched", run: () => Promise<number>) => {
          const from = process.cpuUsage();
          const seconds = await run();
          cpu[side] = cpuSeconds(from);
          return seconds;
        };
        let raw: number;
        let batched: number;
        let rawAll: number;
        // Order alternating (the all-rows reference always between the two).
        if (r % 2 === 0) {
          raw = await timed("raw", () => rawRun(events));
          rawAll = await rawAllRun(events);
          batched = await timed("batched", () => batchedRun(events));
        } else {
          batched = await timed("batched", () => batchedRun(events));
          rawAll = await rawAllRun(events);
          raw = await timed("raw", () => rawRun(events));
        }
        perRound.push({
          batched: round(total / batched),
          raw: round(total / raw),
          ratio: round(raw / batched, 4),
          batchedSeconds: round(batched, 3),
          rawSeconds: round(raw, 3),
          batchedClientCpuSeconds: round(cpu.batched, 3),
          rawClientCpuSeconds: round(cpu.raw, 3),
          rawAllRows: round(total / rawAll),
          ratioBatchedVsRawAllRows: round(rawAll / batched, 4),
          ratioRawAllRowsVsRaw: round(raw / rawAll, 4),
        });
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
      const check = await store.pool.query<{ a: string; r: string; s: string; ra: string; rc: string }>(
        `SELECT (SELECT count(*) FROM shipment_events) AS a, (SELECT count(*) FROM raw_events) AS r,
                (SELECT count(*) FROM raw_events_single) AS s, (SELECT count(*) FROM raw_all_events) AS ra,
                (SELECT count(*) FROM raw_all_applied) AS rc`,
      );
      const expected = [applied, rawRows, perEvent.length, rawRows, rawRows];
      const got = check.rows[0];
      if ([got?.a, got?.r, got?.s, got?.ra, got?.rc].some((n, i) => Number(n) !== expected[i])) {
        throw new Error(`row counts differ from ${JSON.stringify(expected)}: ${JSON.stringify(got)}`);
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
          meanShipmentsPerBatch: round(shipmentsWritten / Math.max(1, batches)),
          eventsPerSec: batchedRate,
        },
        rawInsert: { batch, concurrency, rowsPerSec: rawRate },
        rawAllRows: { batch, concurrency, eventsPerSec: median(perRound.map((x) => x.rawAllRows)) },
        ratioBatchedVsRawAllRows: median(perRound.map((x) => x.ratioBatchedVsRawAllRows)),
        ratioRawAllRowsVsRaw: median(perRound.map((x) => x.ratioRawAllRowsVsRaw)),
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
        `second reference, every row the apply writes raw: ${(median(perRound.map((x) => x.ratioRawAllRowsVsRaw)) * 100).toFixed(1)}% of the history-only INSERT, ` +
        `applyEvents ${(median(perRound.map((x) => x.ratioBatchedVsRawAllRows)) * 100).toFixed(1)}% of it; ` +
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
