/**
 * Delivery claim benchmark: claimDue calls/s of the notification store with a small and with a
 * large backlog of due deliveries, in the same run and on the same server. The claim must not grow
 * with the backlog (it walks an index origin by origin and stops at the batch), so the figure to
 * watch is the large-backlog rate as a share of the small-backlog rate (target: close to 100%).
 *
 *   node perf/dist/notification/claim-bench.js [--small 1000] [--large 50000] [--origins 4] [--claims 60] [--limit 50] [--rounds 3]
 *
 * Each backlog lives in its own schema: `--origins` webhook origins, each with one subscription and
 * an equal share of the due deliveries (one shipment each, so none waits behind another). A claim
 * leases up to `--limit` deliveries (per-origin quota `--limit`); between claims (untimed) the
 * leases are released, so every claim sees the same backlog. Rounds alternate which backlog goes
 * first; the median per-round ratio is reported.
 *
 * DATABASE_URL selects the server (`npm run perf` provides one). Prints one JSON line, then
 * one human-readable line.
 */
import { parseArgs } from "node:util";
import pg from "pg";
import { DeliveryState, NotificationEventType } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { createTestSchema, testDatabaseUrl, type TestSchema } from "@logistics/shared/testing";
import { createNotificationStore, type NotificationStore } from "@logistics/notification/store";

const { values } = parseArgs({
  options: {
    small: { type: "string", default: "1000" },
    large: { type: "string", default: "50000" },
    origins: { type: "string", default: "4" },
    claims: { type: "string", default: "60" },
    limit: { type: "string", default: "50" },
    rounds: { type: "string", default: "3" },
  },
});
const SMALL = Number(values.small);
const LARGE = Number(values.large);
const ORIGINS = Number(values.origins);
const CLAIMS = Number(values.claims);
const LIMIT = Number(values.limit);
const ROUNDS = Number(values.rounds);

interface Backlog {
  size: number;
  schema: TestSchema;
  store: NotificationStore;
  pool: pg.Pool;
}

async function backlog(size: number): Promise<Backlog> {
  const schema = await createTestSchema({ connectionString: testDatabaseUrl(), prefix: "bench_claim" });
  const store = createNotificationStore({ connectionString: schema.connectionString, schema: schema.schema, poolSize: 2 });
  const pool = new pg.Pool({ connectionString: schema.connectionString, max: 1 });
  await store.migrate();
  const subs: string[] = [];
  const origins: string[] = [];
  for (let o = 0; o < ORIGINS; o++) {
    const origin = `http://receiver-${o}.bench:8080`;
    const { subscription } = await store.createSubscription({
      id: `sub_bench_${o}`,
      owner: "bench",
      ownedBy: undefined,
      scope: { case: "carrierCode", value: "acme" },
      eventTypes: [NotificationEventType.STATUS_CHANGED],
      webhookUrl: `${origin}/hook`,
      origin,
      secret: "s".repeat(43),
      idempotencyKey: undefined,
    });
    subs.push(subscription.subscriptionId);
    origins.push(origin);
  }
  const q = `"${schema.schema}"`;
  await pool.query(
    `INSERT INTO ${q}.deliveries (id, subscription_id, event_id, event_type, tracking_number, shipment_version,
                                  event_time, origin, body, state, next_attempt_at)
     SELECT 'dlv_' || k || '_' || g, sub, 'evt_' || g, ${NotificationEventType.STATUS_CHANGED}, 'TN' || g, 1,
            now(), origin, '{}', ${DeliveryState.PENDING}, now() - interval '1 minute' - g * interval '1 millisecond'
     FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(sub, origin, k), generate_series(1, $3::integer) AS g`,
    [subs, origins, Math.ceil(size / ORIGINS)],
  );
  await pool.query(`VACUUM ANALYZE ${q}.deliveries`);
  return { size, schema, store, pool };
}

/** claimDue calls per second over CLAIMS claims, leases released between claims (untimed). */
async function claimRate(b: Backlog): Promise<number> {
  let seconds = 0;
  for (let i = 0; i < CLAIMS; i++) {
    const started = performance.now();
    const got = await b.store.claimDue({ leaseToken: `bench-${i}`, leaseMs: 60_000, limit: LIMIT, perOriginLimit: LIMIT, inFlightByOrigin: new Map() });
    seconds += (performance.now() - started) / 1000;
    if (got.length !== LIMIT) throw new Error(`claim ${i} on the ${b.size} backlog leased ${got.length}, expected ${LIMIT}`);
    await b.pool.query(`UPDATE "${b.schema.schema}".deliveries SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1`, [`bench-${i}`]);
  }
  return CLAIMS / seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

async function main(): Promise<void> {
  const small = await backlog(SMALL);
  const large = await backlog(LARGE);
  try {
    // Warm-up: plans cached, pages in memory.
    await claimRate(small);
    await claimRate(large);
    const rounds: Array<{ small: number; large: number; ratio: number }> = [];
    for (let r = 0; r < ROUNDS; r++) {
      const first = r % 2 === 0 ? await claimRate(small) : await claimRate(large);
      const second = r % 2 === 0 ? await claimRate(large) : await claimRate(small);
      const [s, l] = r % 2 === 0 ? [first, second] : [second, first];
      rounds.push({ small: round(s), large: round(l), ratio: round(l / s, 3) });
    }
    const report = {
      name: "notification-claim-small-vs-large-backlog",
      smallBacklog: SMALL,
      largeBacklog: LARGE,
      origins: ORIGINS,
      claimsPerRound: CLAIMS,
      limit: LIMIT,
      rounds,
      smallClaimsPerSec: median(rounds.map((x) => x.small)),
      largeClaimsPerSec: median(rounds.map((x) => x.large)),
      ratio: median(rounds.map((x) => x.ratio)),
      target: 0.8,
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.stdout.write(
      `notification claimDue (${LIMIT} per claim, ${ORIGINS} origins): ${report.largeClaimsPerSec} claims/s with ${LARGE} due vs ` +
        `${report.smallClaimsPerSec}/s with ${SMALL} due: ${(report.ratio * 100).toFixed(0)}% (median of ${ROUNDS} paired rounds; ` +
        `per round ${rounds.map((x) => `${(x.ratio * 100).toFixed(0)}%`).join(", ")})\n`,
    );
  } finally {
    for (const b of [small, large]) {
      await b.pool.end();
      await b.store.close();
      await b.schema.drop();
    }
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
