import * as assert from "node:assert/strict";
import pg from "pg";
import { afterAll, describe, it } from "vitest";
import { createTestSchema, testDatabaseUrl, type TestSchema } from "@logistics/shared/testing";
import { createPostgresShipmentStore, type PostgresShipmentStore, type ProjectedEvent } from "@logistics/tracking/store";
import { ShipmentGenerator, type GeneratorOptions } from "../src/datagen/generate.js";
import { bulkLoad } from "../src/datagen/load.js";

/*
 * The data generator's bulk load writes exactly the rows the store's batched apply writes: the
 * same generated shipments go once through `applyEvents` (batches interleaving shipments, in
 * arrival order, as the projector hands them over) and once through the COPY load, into two
 * schemas, and every row of the three tables is compared (all columns but the history's
 * `applied_at`, which is the time of writing).
 */
describe("datagen bulk load", () => {
  const schemas: TestSchema[] = [];
  const stores: PostgresShipmentStore[] = [];
  afterAll(async () => {
    for (const s of stores) await s.close();
    for (const s of schemas) await s.drop();
  });

  async function freshStore(): Promise<PostgresShipmentStore> {
    const schema = await createTestSchema({ connectionString: testDatabaseUrl(), prefix: "datagen" });
    schemas.push(schema);
    const store = await createPostgresShipmentStore({ connectionString: schema.connectionString, maxConnections: 4 });
    stores.push(store);
    // Event times span the run's days and the transit before them: the months behind too.
    await store.ensurePartitions(1, { monthsBehind: 2 });
    return store;
  }

  async function rows(pool: pg.Pool): Promise<Record<string, string[]>> {
    const q = async (sql: string) => (await pool.query<{ r: string }>(sql)).rows.map((x) => x.r);
    return {
      shipments: await q(
        `SELECT concat_ws('|', tracking_number, customer_id, carrier_code, status, updated_at, lat, lon, version, doc::text) AS r
           FROM shipments ORDER BY tracking_number`,
      ),
      events: await q(
        `SELECT concat_ws('|', event_id, tracking_number, event_time, event_type, late, payload::text, tableoid::regclass::text) AS r
           FROM shipment_events ORDER BY event_id`,
      ),
      applied: await q(`SELECT concat_ws('|', event_id, tracking_number, event_time) AS r FROM applied_events ORDER BY event_id`),
    };
  }

  it("COPYs the rows applyEvents writes for the same events (documents, history with late flags, partitions, dedupe)", async () => {
    const options: GeneratorOptions = {
      prefix: "DGT",
      days: 2,
      total: 40,
      seed: 24,
      nowMs: Date.now(),
      lateShare: 0.4,
      inFlightShare: 0.3,
      replanShare: 0.3,
      templates: 30,
    };
    const count = 40;

    // Through the store's batched apply.
    const applied = await freshStore();
    const gen = new ShipmentGenerator(options);
    const perShipment = Array.from({ length: count }, () => gen.generate().events);
    const interleaved: ProjectedEvent[] = [];
    for (let i = 0; perShipment.some((evs) => i < evs.length); i++) for (const evs of perShipment) if (evs[i]) interleaved.push(evs[i]!);
    let late = 0;
    for (let i = 0; i < interleaved.length; i += 64) {
      const results = await applied.applyEvents(interleaved.slice(i, i + 64));
      assert.ok(results.every((r) => r.applied), "every generated event applies");
      late += results.filter((r) => r.late).length;
    }

    // Through the generator's COPY load (a new generator with the same options: the same shipments).
    const loaded = await freshStore();
    const stats = await bulkLoad(loaded.pool, new ShipmentGenerator(options), count);

    assert.equal(stats.events, interleaved.length);
    assert.ok(late > 0, "the sample has late events");
    assert.equal(stats.lateEvents, late);
    assert.ok(
      perShipment.every((evs) => evs.length >= 3) && perShipment.some((evs) => evs.length >= 10),
      `events per shipment: ${perShipment.map((e) => e.length).join(",")}`,
    );

    const a = await rows(applied.pool);
    const b = await rows(loaded.pool);
    assert.equal(a.shipments!.length, count);
    assert.equal(a.events!.length, interleaved.length);
    assert.deepEqual(b.shipments, a.shipments);
    assert.deepEqual(b.events, a.events);
    assert.deepEqual(b.applied, a.applied);
    // The rebuilt indexes are the migrations' own.
    const defs = async (pool: pg.Pool) =>
      (
        await pool.query<{ d: string }>(
          `SELECT tablename || ':' || indexname || ':' || regexp_replace(indexdef, ' ON (ONLY )?[a-z0-9_]+\\.', ' ON \\1') AS d FROM pg_indexes
            WHERE schemaname = current_schema() ORDER BY 1`,
        )
      ).rows.map((r) => r.d);
    assert.deepEqual(await defs(loaded.pool), await defs(applied.pool));
  });
});
