import * as assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import pg from "pg";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ScanKind } from "@logistics/shared/gen/logistics/common/v1/scan_pb.js";
import { ScanRecordedSchema } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { createTestSchema, type TestSchema } from "@logistics/shared/testing";
import { migrate, MIGRATIONS } from "../../src/store/postgres/migrations.js";
import { listPartitions } from "../../src/store/postgres/partitions.js";
import { runPartitionsCli } from "../../src/store/postgres/partitions-cli.js";
import { buildSearchSql, createPostgresShipmentStore, type PostgresShipmentStore } from "../../src/store/postgres/postgres-shipment-store.js";
import { DocumentTooLargeError } from "../../src/store/errors.js";
import type { ProjectedEvent, ShipmentQuery } from "../../src/store/ports.js";
import { normalizeQuery } from "../../src/store/query.js";
import { runShipmentStoreContract, uniqueTrackingNumber } from "./contract.js";
import { created, routeWithLegs } from "./event-builders.js";

function scan(tn: string, id: string, time: string, kind = ScanKind.HUB_ARRIVAL, rawStatus = { code: "X", text: "" }): ProjectedEvent {
  const scanned = { eventId: id, trackingNumber: tn, eventTime: timestampFromMs(Date.parse(time)), carrierCode: "acme", rawStatus };
  return { type: "scan.recorded", message: create(ScanRecordedSchema, { eventId: id, kind, scan: scanned }) };
}

async function withClient<T>(connectionString: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

describe("PostgresShipmentStore", () => {
  let schema: TestSchema;
  beforeAll(async () => {
    schema = await createTestSchema({ prefix: "store" });
  });
  afterAll(async () => {
    await schema.drop();
  });

  runShipmentStoreContract("postgres", (opts) =>
    createPostgresShipmentStore({ connectionString: schema.connectionString, maxConnections: 10, ...opts }),
  );

  describe("applyEvents (group commit)", () => {
    let store: PostgresShipmentStore;
    beforeAll(async () => {
      store = await createPostgresShipmentStore({ connectionString: schema.connectionString, maxConnections: 2, maxDocumentBytes: 8192 });
    });
    afterAll(async () => {
      await store.close();
    });

    it("rejects the whole batch when a document cannot fit even trimmed, naming the first event after which it could not", async () => {
      const other = uniqueTrackingNumber();
      const tn = uniqueTrackingNumber();
      const t0 = Date.now() - 3_600_000;
      const big = (i: number) =>
        scan(tn, `${tn}-${i}`, new Date(t0 + i * 1000).toISOString(), ScanKind.HUB_ARRIVAL, { code: "HUB", text: "x".repeat(1500) });
      // A route plan that takes most of the limit: what a trim cannot drop.
      const hubs = Array.from({ length: 42 }, (_, i) => `HUB${String(i).padStart(2, "0")}`);
      const plan = routeWithLegs(tn, `${tn}-r`, t0 + 6_500, t0 + 86_400_000, hubs, 1);
      const batch = [scan(other, `${other}-1`, new Date(t0).toISOString()), ...Array.from({ length: 6 }, (_, i) => big(i)), plan, big(7), big(8)];
      let error: unknown;
      await store.applyEvents(batch).catch((err: unknown) => {
        error = err;
      });
      assert.ok(error instanceof DocumentTooLargeError, `expected DocumentTooLargeError, got ${String(error)}`);
      assert.equal(error.batchIndex, 7, "the route event; the big scans before it were trimmed");
      assert.equal(await store.getShipment(other), undefined, "nothing of the batch was written");
      assert.equal(await store.getShipment(tn), undefined);
      const ok = await store.applyEvents(batch.slice(0, 7));
      assert.ok(ok.every((r) => r.applied));
      assert.equal((await store.getShipment(tn))?.version, 6);
      assert.ok((await store.getShipment(tn))?.derivation.trimmed, "the scans alone were trimmed to fit");
      await assert.rejects(store.applyEvents(batch.slice(7)), (err: unknown) => err instanceof DocumentTooLargeError && err.batchIndex === 0);
      assert.ok((await store.applyEvents(batch.slice(8))).every((r) => r.applied), "the events after it fit without it");
    });

    it("writes a batch of many shipments in one transaction", async () => {
      const tns = Array.from({ length: 50 }, () => uniqueTrackingNumber());
      const t = new Date().toISOString();
      const results = await store.applyEvents(tns.map((tn) => scan(tn, `${tn}-1`, t, ScanKind.PICKUP)));
      assert.ok(results.every((r) => r.applied && r.version === 1));
      const xids = await store.pool.query<{ n: number }>(
        `SELECT count(DISTINCT xmin::text)::int AS n FROM (
           SELECT xmin FROM shipments WHERE tracking_number = ANY($1)
           UNION ALL SELECT xmin FROM shipment_events WHERE tracking_number = ANY($1)
           UNION ALL SELECT xmin FROM applied_events WHERE tracking_number = ANY($1)) x`,
        [tns],
      );
      assert.equal(xids.rows[0]?.n, 1, "documents, history and dedupe rows share one transaction id");
    });

    it("reports what it wrote: each event's history payload and applied_at, and each shipment's last document", async () => {
      const tn = uniqueTrackingNumber();
      const t0 = Date.now() - 3_600_000;
      const at = (i: number) => new Date(t0 + i * 60_000).toISOString();
      await store.applyEvents([scan(tn, `${tn}-1`, at(1), ScanKind.PICKUP)]);
      const batch = [scan(tn, `${tn}-2`, at(2)), scan(tn, `${tn}-1`, at(1), ScanKind.PICKUP), scan(tn, `${tn}-3`, at(3))];
      const results = await store.applyEvents(batch);
      assert.deepEqual(results.map((r) => [r.applied, r.stored !== undefined, r.stored?.docJson !== undefined]), [
        [true, true, false],
        [false, false, false],
        [true, true, true],
      ]);
      assert.deepEqual(JSON.parse(results[2]?.stored?.docJson ?? "null"), await store.getShipment(tn), "the last document as stored");
      const history = (await store.listEvents(tn, { pageSize: 10 })).items;
      for (const [i, id] of [[0, `${tn}-2`], [2, `${tn}-3`]] as const) {
        const row = history.find((h) => h.eventId === id);
        const stored = results[i]?.stored;
        assert.ok(row && stored);
        assert.deepEqual(stored.appliedAt.getTime(), Number(row.appliedAt.seconds) * 1000 + row.appliedAt.nanos / 1e6, `${id}: applied_at`);
        const payload = await store.pool.query<{ payload: unknown }>("SELECT payload FROM shipment_events WHERE event_id = $1", [id]);
        assert.deepEqual(JSON.parse(stored.eventJson), payload.rows[0]?.payload, `${id}: payload`);
      }
    });
  });

  describe("query plans", () => {
    let store: PostgresShipmentStore;
    beforeAll(async () => {
      store = await createPostgresShipmentStore({ connectionString: schema.connectionString, maxConnections: 2 });
      await store.pool.query("ANALYZE shipments");
    });
    afterAll(async () => {
      await store.close();
    });

    async function plan(sql: string, values: unknown[]): Promise<string> {
      return withClient(schema.connectionString, async (c) => {
        await c.query("SET enable_seqscan = off");
        const res = await c.query<{ "QUERY PLAN": string }>(`EXPLAIN ${sql}`, values);
        return res.rows.map((r) => r["QUERY PLAN"]).join("\n");
      });
    }

    it("looks a shipment up by tracking number through the primary key", async () => {
      const p = await plan("SELECT doc FROM shipments WHERE tracking_number = $1", ["TN12345678"]);
      assert.match(p, /shipments_pkey/, p);
    });

    it("serves customer + status + updated searches from the compound index", async () => {
      const q = buildSearchSql(
        normalizeQuery({
          customerId: "cust-1",
          statuses: [ShipmentStatus.IN_TRANSIT],
          updatedAfter: "2026-01-01T00:00:00Z",
          pageSize: 20,
        }),
      );
      const p = await plan(q.text, q.values);
      assert.match(p, /shipments_customer_status_updated_idx/, p);
    });

    it("serves radius searches from the grid-cell index in sort order, and continent-sized ones from the GiST index", async () => {
      const q = buildSearchSql(normalizeQuery({ near: { lat: 48.85, lon: 2.35, radiusKm: 25 }, pageSize: 20 }));
      const p = await plan(q.text, q.values);
      assert.match(p, /shipments_geo_cell8_updated_idx/, p);
      assert.doesNotMatch(p, /Seq Scan on shipments/, p);
      const wide = buildSearchSql(normalizeQuery({ near: { lat: 48.85, lon: 2.35, radiusKm: 2500 }, pageSize: 20 }));
      assert.match(await plan(wide.text, wide.values), /shipments_geo_idx|shipments_updated_idx/);
    });

    it("serves carrier + status searches from the carrier index in sort order", async () => {
      const q = buildSearchSql(normalizeQuery({ carrierCode: "acme", statuses: [ShipmentStatus.IN_TRANSIT], pageSize: 20 }));
      const p = await plan(q.text, q.values);
      assert.match(p, /shipments_carrier_status_updated_idx/, p);
    });

    it("reads a shipment's history through the tracking-number index of the partitions", async () => {
      const p = await plan(
        "SELECT payload FROM shipment_events WHERE tracking_number = $1 ORDER BY event_time, event_id LIMIT 11",
        ["TN12345678"],
      );
      assert.match(p, /Index (Only )?Scan using shipment_events_\w+_tracking_number_event_time_event_id_idx/, p);
      assert.doesNotMatch(p, /Seq Scan/, p);
    });
  });

  describe("searches read key by key", () => {
    let fresh: TestSchema;
    let store: PostgresShipmentStore;
    beforeAll(async () => {
      fresh = await createTestSchema({ prefix: "store_keyed" });
      store = await createPostgresShipmentStore({ connectionString: fresh.connectionString, maxConnections: 2 });
      // Shipments clustered around places that stress the grid (cell edges, the antimeridian, a
      // pole), with few distinct update times (ties broken by tracking number).
      const places = [
        { lat: 48.85, lon: 2.35 },
        { lat: 0, lon: 0 },
        { lat: 10, lon: 179.97 },
        { lat: 10, lon: -179.97 },
        { lat: 89.9, lon: 45 },
        { lat: -45.25, lon: 100.5 },
      ];
      let seed = 11;
      const random = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296);
      await store.pool.query(
        `INSERT INTO shipments (tracking_number, customer_id, carrier_code, status, updated_at, lat, lon, version, doc)
         SELECT tn, c, cr, st, t, la, lo, 1, jsonb_build_object('trackingNumber', tn, 'updatedAt', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
           FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::timestamptz[], $6::float8[], $7::float8[])
             AS x(tn, c, cr, st, t, la, lo)`,
        (() => {
          const cols: unknown[][] = [[], [], [], [], [], [], []];
          for (let i = 0; i < 1500; i++) {
            const p = places[i % places.length]!;
            const row = [
              `KEYED${String(i).padStart(6, "0")}`,
              `cust-${i % 3}`,
              ["acme", "dhl"][i % 2],
              [ShipmentStatus.IN_TRANSIT, ShipmentStatus.DELIVERED, ShipmentStatus.OUT_FOR_DELIVERY][Math.floor(random() * 3)],
              new Date(Date.UTC(2026, 0, 1) + Math.floor(random() * 40) * 60_000).toISOString(),
              i % 10 === 9 ? null : Math.max(-90, Math.min(90, p.lat + (random() - 0.5) * 0.8)),
              i % 10 === 9 ? null : ((p.lon + (random() - 0.5) * 0.8 + 540) % 360) - 180,
            ];
            row.forEach((v, j) => cols[j]!.push(v));
          }
          return cols;
        })(),
      );
      await store.pool.query("ANALYZE shipments");
    });
    afterAll(async () => {
      await store.close();
      await fresh.drop();
    });

    /** Every page of a search, through the store. */
    async function allPages(query: Omit<ShipmentQuery, "pageSize" | "cursor">): Promise<string[]> {
      const out: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await store.searchShipments({ ...query, pageSize: 7, ...(cursor ? { cursor } : {}) });
        out.push(...page.items.map((d) => d.trackingNumber));
        cursor = page.nextCursor;
      } while (cursor);
      return out;
    }

    /** The same search as one plain query over the whole table. */
    async function reference(where: string, values: unknown[]): Promise<string[]> {
      const res = await store.pool.query<{ tracking_number: string }>(
        `SELECT tracking_number FROM shipments WHERE ${where} ORDER BY updated_at DESC, tracking_number DESC`,
        values,
      );
      return res.rows.map((r) => r.tracking_number);
    }

    it("pages through an area exactly as a plain scan of the table orders it", async () => {
      for (const [lat, lon, km] of [
        [48.85, 2.35, 25],
        [0.1, -0.1, 40],
        [10, 179.99, 30],
        [89.95, 0, 50],
        [-45.3, 100.4, 5],
        [48.9, 2.3, 60],
        [-45.25, 100.5, 12],
      ] as const) {
        const want = await reference(
          "lat IS NOT NULL AND earth_distance(ll_to_earth($1, $2), ll_to_earth(lat, lon)) <= $3",
          [lat, lon, km * 1000],
        );
        assert.ok(want.length > 0, `${lat},${lon}: the sample has shipments in the area`);
        assert.deepEqual(await allPages({ near: { lat, lon, radiusKm: km } }), want, `${lat},${lon} ${km} km`);
      }
      const within = await reference(
        "lat IS NOT NULL AND earth_distance(ll_to_earth(48.85, 2.35), ll_to_earth(lat, lon)) <= 30000 AND customer_id = 'cust-1' AND status = 2",
        [],
      );
      assert.deepEqual(await allPages({ near: { lat: 48.85, lon: 2.35, radiusKm: 30 }, customerId: "cust-1", statuses: [2] }), within);
    });

    it("decides shipments on the rim of an area as earth_distance does, to the millimetre", async () => {
      // Points a hair inside, on and outside a 10 km circle, in every direction: the search's
      // chord test must leave each one where earth_distance puts it.
      const center = { lat: -20.3, lon: 60.4 };
      const km = 10;
      const R = 6378.168;
      const rows: Array<[string, number, number]> = [];
      let n = 0;
      for (const f of [1 - 1e-6, 1 - 1e-9, 1 - 1e-12, 1, 1 + 1e-12, 1 + 1e-9, 1 + 1e-6]) {
        for (let b = 0; b < 12; b++) {
          const bearing = (b / 12) * 2 * Math.PI + 0.1;
          const d = (km * f) / R;
          const lat1 = (center.lat * Math.PI) / 180;
          const lat2 = Math.asin(Math.sin(lat1) * Math.cos(d) + Math.cos(lat1) * Math.sin(d) * Math.cos(bearing));
          const dLon = Math.atan2(Math.sin(bearing) * Math.sin(d) * Math.cos(lat1), Math.cos(d) - Math.sin(lat1) * Math.sin(lat2));
          rows.push([`RIM${String(n++).padStart(6, "0")}`, (lat2 * 180) / Math.PI, center.lon + (dLon * 180) / Math.PI]);
        }
      }
      await store.pool.query(
        `INSERT INTO shipments (tracking_number, customer_id, carrier_code, status, updated_at, lat, lon, version, doc)
         SELECT tn, 'cust-rim', 'rim', 2, '2026-01-02T00:00:00Z', la, lo, 1,
                jsonb_build_object('trackingNumber', tn, 'updatedAt', '2026-01-02T00:00:00.000Z')
           FROM unnest($1::text[], $2::float8[], $3::float8[]) AS x(tn, la, lo)`,
        [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2])],
      );
      const want = await reference("lat IS NOT NULL AND earth_distance(ll_to_earth($1, $2), ll_to_earth(lat, lon)) <= $3", [center.lat, center.lon, km * 1000]);
      assert.ok(want.length > 12 && want.length < rows.length - 12, `${want.length} of ${rows.length} rim points are inside`);
      assert.deepEqual(await allPages({ near: { ...center, radiusKm: km } }), want);
    });

    it("pages through a customer's or carrier's shipments, by status or all, exactly as a plain scan orders them", async () => {
      assert.deepEqual(await allPages({ customerId: "cust-2" }), await reference("customer_id = 'cust-2'", []));
      assert.deepEqual(
        await allPages({ customerId: "cust-0", statuses: [ShipmentStatus.IN_TRANSIT, ShipmentStatus.OUT_FOR_DELIVERY] }),
        await reference("customer_id = 'cust-0' AND status IN (2, 3)", []),
      );
      assert.deepEqual(
        await allPages({ carrierCode: "dhl", updatedAfter: "2026-01-01T00:20:00Z" }),
        await reference("carrier_code = 'dhl' AND updated_at >= '2026-01-01T00:20:00Z'", []),
      );
    });
  });

  describe("a customer's search reads that customer's entries, not the area's", () => {
    let fresh: TestSchema;
    let store: PostgresShipmentStore;
    const paris = { lat: 48.85, lon: 2.35 };
    const SMALL = "cust-small";

    beforeAll(async () => {
      fresh = await createTestSchema({ prefix: "store_tenant" });
      store = await createPostgresShipmentStore({ connectionString: fresh.connectionString, maxConnections: 2 });
      // A busy area: 24 000 shipments of 60 customers within about 30 km of Paris (a third spread
      // out, the rest at six depots), 6 000 elsewhere in Europe; one small customer with 12
      // shipments in Paris and 4 in Lyon. Deterministic: positions and times come from i.
      const row = `jsonb_build_object('trackingNumber', tn, 'updatedAt', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))`;
      await store.pool.query(`
        INSERT INTO shipments (tracking_number, customer_id, carrier_code, status, updated_at, lat, lon, version, doc)
        SELECT tn, c, 'acme', st, t, la, lo, 1, ${row}
          FROM (SELECT 'AREA' || lpad(i::text, 8, '0') AS tn, 'cust-' || (i / 7 % 60) AS c, (ARRAY[2, 3, 4, 7])[1 + i % 4] AS st,
                       timestamptz '2026-01-01' + (i * 7919 % 4320) * interval '1 minute' AS t,
                       CASE WHEN i % 3 = 0 THEN 48.85 + (i * 31 % 1000 - 500) / 2000.0 ELSE (ARRAY[48.95, 48.75, 48.86, 48.80, 48.90, 48.70])[1 + i % 6] + (i * 13 % 100 - 50) / 2500.0 END AS la,
                       CASE WHEN i % 3 = 0 THEN 2.35 + (i * 17 % 1000 - 500) / 1400.0 ELSE (ARRAY[2.25, 2.45, 2.35, 2.55, 2.10, 2.30])[1 + i % 6] + (i * 29 % 100 - 50) / 1700.0 END AS lo
                  FROM generate_series(1, 24000) i
                UNION ALL
                SELECT 'EURO' || lpad(i::text, 8, '0'), 'cust-' || (i / 7 % 60), 2, timestamptz '2026-01-01' + (i * 7919 % 4320) * interval '1 minute',
                       40 + (i * 37 % 1500) / 100.0, -5 + (i * 53 % 2500) / 100.0
                  FROM generate_series(1, 6000) i
                UNION ALL
                SELECT 'SMALL' || lpad(i::text, 7, '0'), '${SMALL}', (ARRAY[2, 3, 4, 7])[1 + i % 4], timestamptz '2026-01-01' + (i * 263 % 4320) * interval '1 minute',
                       CASE WHEN i <= 12 THEN 48.85 + (i - 6) / 100.0 ELSE 45.76 END, CASE WHEN i <= 12 THEN 2.35 + (6 - i) / 80.0 ELSE 4.83 END
                  FROM generate_series(1, 16) i) x`);
      await store.pool.query("VACUUM ANALYZE shipments");
    });
    afterAll(async () => {
      await store.close();
      await fresh.drop();
    });

    interface PlanNode {
      "Node Type": string;
      "Index Name"?: string;
      "Actual Rows": number;
      "Actual Loops": number;
      "Rows Removed by Filter"?: number;
      "Shared Hit Blocks": number;
      "Shared Read Blocks": number;
      Plans?: PlanNode[];
    }
    const nodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodes)];
    const SCANS = new Set(["Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Index Scan"]);

    /**
     * The search's plan as run, with what its scans read to find the page: the indexes they used
     * and the entries they went through (returned plus filtered out, over all loops; EXPLAIN
     * gives each as a mean per loop, rounded, so this may exceed the truth by up to one entry per
     * loop), leaving out the primary-key lookups of the page's documents.
     */
    async function explain(query: ShipmentQuery) {
      const q = buildSearchSql(normalizeQuery(query));
      const res = await store.pool.query<{ "QUERY PLAN": Array<{ Plan: PlanNode }> }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${q.text}`, q.values);
      const root = res.rows[0]!["QUERY PLAN"][0]!.Plan;
      const scans = nodes(root).filter((n) => SCANS.has(n["Node Type"]) && n["Index Name"] !== "shipments_pkey");
      return {
        indexes: [...new Set(scans.map((n) => n["Index Name"] ?? n["Node Type"]))],
        entries: Math.round(scans.reduce((sum, n) => sum + (n["Actual Rows"] + (n["Rows Removed by Filter"] ?? 0)) * n["Actual Loops"], 0)),
        loops: scans.reduce((sum, n) => sum + n["Actual Loops"], 0),
        buffers: root["Shared Hit Blocks"] + root["Shared Read Blocks"],
      };
    }

    const count = async (where: string) =>
      Number((await store.pool.query<{ n: string }>(`SELECT count(*) AS n FROM shipments WHERE ${where}`)).rows[0]?.n);
    const within = (km: number) => `lat IS NOT NULL AND earth_distance(ll_to_earth(${paris.lat}, ${paris.lon}), ll_to_earth(lat, lon)) <= ${km * 1000}`;

    it("searches a city-sized area through the customer's own entries of each grid cell", async (t) => {
      const query = { customerId: SMALL, near: { ...paris, radiusKm: 25 }, pageSize: 50 };
      const area = await count(within(25));
      const own = await count(`customer_id = '${SMALL}' AND ${within(25)}`);
      assert.ok(area > 20_000 && own === 12, `${area} shipments in the area, ${own} of them the customer's`);
      const plan = await explain(query);
      await t.annotate(`${plan.entries} entries read in ${plan.loops} scans, ${plan.buffers} buffers; ${area} shipments in the area`);
      assert.deepEqual(plan.indexes, ["shipments_customer_geo_cell8_updated_idx"]);
      assert.ok(plan.entries <= own + plan.loops, `${plan.entries} entries read for ${own} of the customer's shipments`);
      const found = await store.searchShipments(query);
      assert.deepEqual(found.items.map((d) => d.trackingNumber), await reference(`customer_id = '${SMALL}' AND ${within(25)}`));
    });

    it("searches an area too wide for the grid through the customer's shipments, not the GiST box of everyone's", async (t) => {
      const query = { customerId: SMALL, near: { ...paris, radiusKm: 500 }, pageSize: 50 };
      const all = await count(`customer_id = '${SMALL}'`);
      const plan = await explain(query);
      await t.annotate(`${plan.entries} entries read in ${plan.loops} scans, ${plan.buffers} buffers; ${await count(within(500))} shipments in the area`);
      assert.ok(!plan.indexes.includes("shipments_geo_idx") && !plan.indexes.includes("shipments_geo_cell8_updated_idx"), plan.indexes.join(", "));
      assert.ok(plan.entries <= all + plan.loops, `${plan.entries} entries read for the customer's ${all} shipments`);
      const found = await store.searchShipments(query);
      assert.deepEqual(found.items.map((d) => d.trackingNumber), await reference(`customer_id = '${SMALL}' AND ${within(500)}`));
      assert.equal(found.items.length, 16, "Paris and Lyon, nobody else's");
    });

    it("returns a large customer's first page of an area, in order, with nobody else's shipments, reading its own entries only", async () => {
      const all = await count("customer_id = 'cust-7'");
      for (const radiusKm of [25, 500]) {
        const query = { customerId: "cust-7", near: { ...paris, radiusKm }, pageSize: 30 };
        const want = await reference(`customer_id = 'cust-7' AND ${within(radiusKm)}`);
        assert.ok(want.length > 300, `${want.length} shipments of the customer in ${radiusKm} km`);
        const plan = await explain(query);
        assert.ok(plan.entries <= all, `${radiusKm} km: ${plan.entries} entries read, the customer has ${all} shipments`);
        const found = await store.searchShipments(query);
        assert.deepEqual(found.items.map((d) => d.trackingNumber), want.slice(0, 30), `${radiusKm} km`);
      }
    });

    async function reference(where: string): Promise<string[]> {
      const res = await store.pool.query<{ tracking_number: string }>(
        `SELECT tracking_number FROM shipments WHERE ${where} ORDER BY updated_at DESC, tracking_number DESC`,
      );
      return res.rows.map((r) => r.tracking_number);
    }
  });

  describe("migrations", () => {
    it("are applied once when several replicas start at the same time", async () => {
      const fresh = await createTestSchema({ prefix: "store_mig" });
      try {
        const stores = await Promise.all(
          Array.from({ length: 3 }, () => createPostgresShipmentStore({ connectionString: fresh.connectionString, maxConnections: 2 })),
        );
        try {
          const rows = await stores[0]?.pool.query<{ version: number }>("SELECT version FROM schema_migrations");
          assert.deepEqual(rows?.rows.map((r) => r.version).sort((a, b) => a - b), MIGRATIONS.map((m) => m.version));
          const tn = uniqueTrackingNumber();
          const r = await stores[2]?.applyEvent(scan(tn, `${tn}-1`, new Date().toISOString()));
          assert.equal(r?.applied, true);
        } finally {
          for (const s of stores) await s.close();
        }
      } finally {
        await fresh.drop();
      }
    });
  });

  describe("migration 4 (events and positions as proto JSON)", () => {
    it("turns the hand-written event and document shapes of version 1 into what the store reads now", async () => {
      const legacy = await createTestSchema({ prefix: "store_v1" });
      const pool = new pg.Pool({ connectionString: legacy.connectionString, max: 1 });
      try {
        await migrate(pool, MIGRATIONS.filter((m) => m.version === 1));
        const tn = uniqueTrackingNumber();
        const t = (h: number) => new Date(Date.UTC(2026, 10, 1, h)).toISOString();
        const events = [
          { type: "shipment_created", eventId: `${tn}-c`, trackingNumber: tn, eventTime: t(8), shipmentId: "s1", carrierCode: "acme",
            customerId: "cust", serviceLevel: 2, origin: { countryCode: "DE", city: "Berlin", location: { lat: 52.52, lon: 13.4 } } },
          { type: "route_planned", eventId: `${tn}-r`, trackingNumber: tn, eventTime: t(9), eta: { estimatedArrival: t(30) },
            reason: 1, routeId: "r1", legs: [{ fromHub: "BER1", toHub: "HAM1", mode: 3, plannedDeparture: t(10) }], revision: 1, plannedAt: t(9) },
          { type: "scan", eventId: `${tn}-s`, trackingNumber: tn, eventTime: t(11), carrierCode: "acme", kind: 2, status: 2,
            rawStatus: { code: "ARR", text: "arrived" }, hubCode: "HAM1", location: { lat: 53.55, lon: 9.99 }, attributes: { a: "b" } },
        ];
        for (const e of events) {
          await pool.query(
            "INSERT INTO shipment_events (event_id, tracking_number, event_time, event_type, late, payload) VALUES ($1, $2, $3, $4, false, $5)",
            [e.eventId, tn, e.eventTime, e.type, JSON.stringify(e)],
          );
        }
        const doc = { trackingNumber: tn, status: 2, location: { lat: 53.55, lon: 9.99 }, origin: events[0]?.origin, updatedAt: t(11), version: 3,
          derivation: { timeline: [], eventIds: events.map((e) => e.eventId) } };
        await pool.query(
          "INSERT INTO shipments (tracking_number, status, updated_at, lat, lon, version, doc) VALUES ($1, 2, $2, 53.55, 9.99, 3, $3)",
          [tn, t(11), JSON.stringify(doc)],
        );

        const store = await createPostgresShipmentStore({ pool });
        try {
          const history = (await store.listEvents(tn, { pageSize: 10 })).items;
          assert.deepEqual(history.map((h) => [h.event.type, h.eventTime]), [
            ["shipment.created", t(8)],
            ["route.planned", t(9)],
            ["scan.recorded", t(11)],
          ]);
          const [c, r, s] = history.map((h) => h.event);
          assert.ok(c?.type === "shipment.created" && r?.type === "route.planned" && s?.type === "scan.recorded");
          assert.deepEqual([c.message.origin?.location?.latitude, c.message.origin?.location?.longitude], [52.52, 13.4]);
          assert.deepEqual(r.message.route?.legs.map((l) => [l.fromHub, l.toHub, l.mode]), [["BER1", "HAM1", 3]]);
          assert.equal(r.message.route?.revision, 1);
          assert.deepEqual([s.message.kind, s.message.scan?.hubCode, s.message.scan?.location?.longitude, s.message.scan?.attributes], [2, "HAM1", 9.99, { a: "b" }]);
          const got = await store.getShipment(tn);
          assert.deepEqual(got?.location, { latitude: 53.55, longitude: 9.99 });
          assert.deepEqual(got?.origin?.location, { latitude: 52.52, longitude: 13.4 });
          const next = await store.applyEvent(scan(tn, `${tn}-d`, t(12), ScanKind.DELIVERED));
          assert.equal(next.after.version, 4, "a migrated document takes new events");
        } finally {
          await store.close();
        }
      } finally {
        await pool.end();
        await legacy.drop();
      }
    });
  });

  describe("migration 6 (partner carriers in the document)", () => {
    it("copies the partners of the creation that set each document's static fields, as applying it now does", async () => {
      const before6 = await createTestSchema({ prefix: "store_v5" });
      const pool = new pg.Pool({ connectionString: before6.connectionString, max: 2 });
      try {
        await migrate(pool, MIGRATIONS.filter((m) => m.version <= 5));
        const store = await createPostgresShipmentStore({ pool, migrate: false });
        const t = (h: number) => Date.UTC(2026, 10, 1, h);
        const [a, b, c] = [uniqueTrackingNumber(), uniqueTrackingNumber(), uniqueTrackingNumber()];
        // b has two creations: the newer one (its static fields) names other partners.
        await store.applyEvents([
          created(a, `${a}-c`, t(8), "cust", "acme", ["lastmile", "air-x", "lastmile"]),
          scan(a, `${a}-s`, new Date(t(9)).toISOString()),
          created(b, `${b}-c2`, t(8), "cust", "acme", ["courier-b"]),
          created(b, `${b}-c1`, t(7), "cust", "acme", ["air-x"]),
          created(c, `${c}-c`, t(8), "cust"),
        ]);
        const now = async () => {
          const rows = await pool.query<{ tracking_number: string; doc: unknown }>("SELECT tracking_number, doc FROM shipments");
          return new Map(rows.rows.map((r) => [r.tracking_number, r.doc]));
        };
        const applied = await now();
        assert.deepEqual((applied.get(a) as { partnerCarrierCodes?: string[] }).partnerCarrierCodes, ["lastmile", "air-x"]);
        // What a release before this one wrote: no partners in the documents.
        await pool.query(`UPDATE shipments SET doc = (doc #- '{derivation,createdPartners}'::text[]) - 'partnerCarrierCodes'::text`);
        assert.equal(JSON.stringify([...(await now()).values()]).includes("air-x"), false);

        assert.deepEqual(await migrate(pool, MIGRATIONS.filter((m) => m.version <= 6)), [6]);
        assert.deepEqual(await now(), applied);
        await store.close();
      } finally {
        await pool.end();
        await before6.drop();
      }
    });
  });

  describe("migration 8 (documents compressed with lz4)", () => {
    it("compresses the documents written after it with lz4 when the server has lz4, and leaves pglz otherwise", async () => {
      const fresh = await createTestSchema({ prefix: "store_lz4" });
      const pool = new pg.Pool({ connectionString: fresh.connectionString, max: 2 });
      try {
        const lz4 = (await pool.query<{ lz4: boolean }>(
          `SELECT coalesce('lz4' = ANY(enumvals), false) AS lz4 FROM pg_settings WHERE name = 'default_toast_compression'`,
        )).rows[0]!.lz4;
        await migrate(pool, MIGRATIONS.filter((m) => m.version <= 7));
        const store = await createPostgresShipmentStore({ pool, migrate: false });
        const tn = uniqueTrackingNumber();
        const t0 = Date.UTC(2026, 10, 1, 8);
        // Enough events for a document well past the ~2 KB where PostgreSQL compresses it.
        await store.applyEvents(Array.from({ length: 30 }, (_, i) => scan(tn, `${tn}-a${i}`, new Date(t0 + i * 60_000).toISOString())));
        const compression = async () =>
          (await pool.query<{ c: string | null; bytes: number }>(
            "SELECT pg_column_compression(doc) AS c, octet_length(doc::text) AS bytes FROM shipments WHERE tracking_number = $1",
            [tn],
          )).rows[0]!;
        const before = await compression();
        assert.ok(before.bytes > 4000, `the document is ${before.bytes} bytes of JSON`);
        assert.equal(before.c, "pglz", "before the migration: the server's default");

        assert.deepEqual(await migrate(pool, MIGRATIONS.filter((m) => m.version <= 8)), [8]);
        const attcompression = (await pool.query<{ c: string }>(
          "SELECT attcompression AS c FROM pg_attribute WHERE attrelid = 'shipments'::regclass AND attname = 'doc'",
        )).rows[0]!.c;
        assert.equal(attcompression, lz4 ? "l" : "", lz4 ? "the column is set to lz4" : "a server without lz4 keeps its default");
        assert.equal((await compression()).c, "pglz", "no document is rewritten by the migration");
        const next = await store.applyEvent(scan(tn, `${tn}-b`, new Date(t0 + 31 * 60_000).toISOString()));
        assert.equal(next.version, 31);
        assert.equal((await compression()).c, lz4 ? "lz4" : "pglz", "the next write compresses the new way");
        assert.equal((await store.getShipment(tn))?.version, 31, "and the document reads back");
        await store.close();
      } finally {
        await pool.end();
        await fresh.drop();
      }
    });
  });

  describe("partition maintenance", () => {
    let store: PostgresShipmentStore;
    beforeAll(async () => {
      store = await createPostgresShipmentStore({ connectionString: schema.connectionString, maxConnections: 2 });
    });
    afterAll(async () => {
      await store.close();
    });

    const count = async (table: string, tn: string) =>
      Number((await store.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE tracking_number = $1`, [tn])).rows[0]?.n);

    it("keeps monthly partitions ready ahead of time", async () => {
      const now = new Date();
      const ahead = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 3, 1));
      const name = `shipment_events_p${ahead.getUTCFullYear()}${String(ahead.getUTCMonth() + 1).padStart(2, "0")}`;
      assert.ok((await listPartitions(store.pool)).includes(name), "the store created three months ahead at start");
      const created = await store.ensurePartitions(6);
      assert.equal(created.length, 3);
      assert.deepEqual(await store.ensurePartitions(6), [], "idempotent");
    });

    it("gives every partition, and the hot tables, their autovacuum settings", async () => {
      const options = async (table: string) =>
        (await store.pool.query<{ o: string[] | null }>("SELECT reloptions AS o FROM pg_class WHERE oid = $1::regclass", [table])).rows[0]?.o ?? [];
      for (const name of [...(await listPartitions(store.pool)), "shipment_events_default"]) {
        assert.ok((await options(name)).includes("autovacuum_vacuum_insert_scale_factor=0.02"), name);
      }
      assert.ok((await options("shipments")).includes("autovacuum_vacuum_scale_factor=0.01"));
      assert.ok((await options("applied_events")).includes("autovacuum_vacuum_insert_scale_factor=0.02"));
    });

    it("moves events out of the default partition when their month's partition is created", async () => {
      const tn = uniqueTrackingNumber();
      await store.applyEvent(scan(tn, `${tn}-old`, "2019-06-10T10:00:00.000Z"));
      assert.equal(await count("shipment_events_default", tn), 1);
      const created = await store.ensurePartitions(0, { now: new Date("2019-06-15T00:00:00Z"), monthsBehind: 0 });
      assert.deepEqual(created, ["shipment_events_p201906"]);
      assert.equal(await count("shipment_events_default", tn), 0);
      assert.equal(await count("shipment_events_p201906", tn), 1);
    });

    it("detaches old months into archive tables while hot data stays queryable", async () => {
      await store.ensurePartitions(1, { now: new Date("2020-02-15T00:00:00Z"), monthsBehind: 1 });
      const tn = uniqueTrackingNumber();
      const recent = new Date().toISOString();
      await store.applyEvent(scan(tn, `${tn}-jan`, "2020-01-10T10:00:00.000Z", ScanKind.PICKUP));
      await store.applyEvent(scan(tn, `${tn}-now`, recent, ScanKind.OUT_FOR_DELIVERY));
      assert.equal(await count("shipment_events_p202001", tn), 1);

      const archived = await store.detachPartitionsOlderThan(new Date("2020-02-01T00:00:00Z"));
      assert.ok(archived.includes("shipment_events_archive_202001"), String(archived));
      assert.ok(archived.includes("shipment_events_archive_201906"), String(archived));
      assert.ok(!(await listPartitions(store.pool)).some((p) => p <= "shipment_events_p202001"));
      assert.ok((await listPartitions(store.pool)).includes("shipment_events_p202002"), "a month ending after the cutoff stays");
      assert.equal(await count("shipment_events_archive_202001", tn), 1, "old data kept in the archive table");

      const history = await store.listEvents(tn, { pageSize: 10 });
      assert.deepEqual(history.items.map((e) => e.eventId), [`${tn}-now`]);
      assert.equal((await store.getShipment(tn))?.status, ShipmentStatus.OUT_FOR_DELIVERY);
      const more = await store.applyEvent(scan(tn, `${tn}-next`, new Date(Date.parse(recent) + 1000).toISOString(), ScanKind.DELIVERED));
      assert.equal(more.after.status, ShipmentStatus.DELIVERED);
      assert.deepEqual(await store.detachPartitionsOlderThan(new Date("2020-02-01T00:00:00Z")), []);
    });

    it("runs from the command line", async () => {
      const out: string[] = [];
      const io = { stdout: (l: string) => out.push(l), stderr: (l: string) => out.push(l) };
      assert.equal(await runPartitionsCli(["ensure", "1"], { DATABASE_URL: schema.connectionString }, io), 0);
      assert.deepEqual(JSON.parse(out[0] ?? "{}"), { command: "ensure", created: [] });
      assert.equal(await runPartitionsCli(["detach-older-than", "2019-01-01"], { DATABASE_URL: schema.connectionString }, io), 0);
      assert.equal(await runPartitionsCli(["bogus"], { DATABASE_URL: schema.connectionString }, io), 2);
    });
  });
});
