import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate, timestampMs, timestampNow, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { StatusChangedSchema } from "@logistics/shared/gen/logistics/events/v1/tracking_events_pb.js";
import {
  DeliveryAttemptSchema,
  DeliveryState,
  NotificationEventType,
} from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { createTestSchema, uniqueName, waitFor, type TestSchema } from "@logistics/shared/testing";
import pg from "pg";
import {
  claimDueSql,
  createNotificationStore,
  type ClaimOptions,
  type NotificationStore,
  type SubscriptionOwner,
} from "../src/notification-store.js";

/** Epoch ms of a timestamp, 0 when unset. */
const ms = (ts: Timestamp | undefined): number => (ts ? timestampMs(ts) : 0);
const attempt = create(DeliveryAttemptSchema, { attemptedAt: timestampNow(), httpStatus: 500, error: "HTTP 500", duration: durationFromMs(3), responseExcerpt: "" });

describe("createNotificationStore (PostgreSQL)", () => {
  let schema: TestSchema;
  let store: NotificationStore;
  let other: NotificationStore;

  beforeAll(async () => {
    schema = await createTestSchema({ prefix: "nstore" });
    store = createNotificationStore({ connectionString: schema.connectionString, schema: schema.schema });
    other = createNotificationStore({ connectionString: schema.connectionString, schema: schema.schema });
    // Two replicas migrating at once, then again: idempotent.
    await Promise.all([store.migrate(), other.migrate()]);
    await store.migrate();
  });
  afterAll(async () => {
    await store?.close();
    await other?.close();
    await schema?.drop();
  });

  let origin = 0;
  const subscribe = async (
    tn: string,
    types = [NotificationEventType.STATUS_CHANGED],
    ownedBy?: SubscriptionOwner,
    on = store,
    o = `http://127.0.0.1:${++origin}`,
  ) => {
    const { subscription } = await on.createSubscription({
      id: uniqueName("sub"),
      owner: "test",
      ownedBy,
      scope: { case: "trackingNumber", value: tn },
      eventTypes: types,
      webhookUrl: `${o}/x`,
      origin: o,
      secret: "s".repeat(43),
      idempotencyKey: undefined,
    });
    return subscription.subscriptionId;
  };
  const event = (tn: string, version: number, status = ShipmentStatus.IN_TRANSIT, customerId = "c") =>
    create(StatusChangedSchema, {
      eventId: uniqueName("evt"),
      trackingNumber: tn,
      customerId,
      shipmentId: "shp_internal",
      carrierCode: "acme",
      status,
      version: BigInt(version),
      statusTime: timestampFromDate(new Date(Date.now() + version)),
    });
  const claim = (s: NotificationStore, over: Partial<ClaimOptions> = {}) =>
    s.claimDue({ leaseToken: uniqueName("lease"), leaseMs: 60_000, limit: 100, perOriginLimit: 100, inFlightByOrigin: new Map(), ...over });
  const mine = <T extends { subscriptionId: string }>(rows: T[], sub: string): T[] => rows.filter((r) => r.subscriptionId === sub);

  it("creates a delivery once per (subscription, event), choosing the first matching type", async () => {
    const tn = uniqueName("T").toUpperCase().replace(/_/g, "");
    const both = await subscribe(tn, [NotificationEventType.STATUS_CHANGED, NotificationEventType.EXCEPTION]);
    const exceptionOnly = await subscribe(tn, [NotificationEventType.EXCEPTION]);
    const eta = await subscribe(tn, [NotificationEventType.ETA_CHANGED]);
    const e = event(tn, 1, ShipmentStatus.EXCEPTION);
    assert.equal(await store.insertDeliveries(e, {}), 2);
    assert.equal(await store.insertDeliveries(e, {}), 0, "a redelivered event creates nothing");
    const [b] = (await store.listDeliveries({ subscriptionId: both }, 10, undefined)).items;
    const [x] = (await store.listDeliveries({ subscriptionId: exceptionOnly }, 10, undefined)).items;
    assert.equal(b?.eventType, NotificationEventType.STATUS_CHANGED);
    assert.equal(x?.eventType, NotificationEventType.EXCEPTION);
    assert.equal((await store.listDeliveries({ subscriptionId: eta }, 10, undefined)).items.length, 0);
    assert.equal(await store.insertDeliveries(event(tn, 2), {}), 1, "a non-exception status reaches STATUS_CHANGED only");
  });

  it("never hands the same delivery to two concurrent claims, and lets another take over after the lease expires", async () => {
    const subs: string[] = [];
    for (let i = 0; i < 6; i++) {
      const tn = uniqueName("L").toUpperCase().replace(/_/g, "");
      subs.push(await subscribe(tn));
      await store.insertDeliveries(event(tn, 1), {});
    }
    const claims = await Promise.all([claim(store), claim(other), claim(store), claim(other)]);
    const ids = claims.flat().filter((d) => subs.includes(d.subscriptionId)).map((d) => d.id);
    assert.equal(ids.length, 6, "each due delivery claimed once");
    assert.equal(new Set(ids).size, 6, "never twice");

    const tn = uniqueName("L").toUpperCase().replace(/_/g, "");
    const sub = await subscribe(tn);
    await store.insertDeliveries(event(tn, 1), {});
    const [first] = mine(await claim(store, { leaseMs: 300 }), sub);
    assert.ok(first);
    assert.equal(mine(await claim(other), sub).length, 0, "leased");
    const takeover = await waitFor(async () => mine(await claim(other), sub)[0], { message: "the lease to expire" });
    assert.equal(takeover.id, first.id);
    assert.equal(await store.recordAttempt(first, attempt, { state: DeliveryState.DELIVERED }), false, "a lost lease writes nothing");
    assert.equal(await other.recordAttempt(takeover, attempt, { state: DeliveryState.DELIVERED }), true);
  });

  it("respects the per-origin quota, counting requests already in flight", async () => {
    const o = `http://127.0.0.1:${++origin}`;
    const subIds: string[] = [];
    for (let i = 0; i < 5; i++) {
      const tn = uniqueName("Q").toUpperCase().replace(/_/g, "");
      subIds.push(await subscribe(tn, undefined, undefined, store, o));
      await store.insertDeliveries(event(tn, 1), {});
    }
    const got = (await claim(store, { perOriginLimit: 3, inFlightByOrigin: new Map([[o, 1]]) })).filter((d) => d.origin === o);
    assert.equal(got.length, 2);
    const more = (await claim(store, { perOriginLimit: 3, inFlightByOrigin: new Map([[o, 3]]) })).filter((d) => d.origin === o);
    assert.equal(more.length, 0);
  });

  it("holds a shipment's later deliveries behind an earlier open one, but not behind a dead letter", async () => {
    const tn = uniqueName("O").toUpperCase().replace(/_/g, "");
    const sub = await subscribe(tn);
    // Inserted out of order: version 2 first.
    await store.insertDeliveries(event(tn, 2), {});
    await store.insertDeliveries(event(tn, 1), {});
    const [v1, ...rest] = mine(await claim(store), sub);
    assert.equal(rest.length, 0, "only the earliest is due");
    assert.ok(v1);
    await store.recordAttempt(v1, attempt, { state: DeliveryState.RETRYING, delayMs: 0 });
    const [again] = mine(await claim(store), sub);
    assert.ok(again);
    assert.equal(again.id, v1.id, "the retry of version 1 comes before version 2");
    await store.recordAttempt(again, attempt, { state: DeliveryState.DEAD_LETTERED });
    const [v2] = mine(await claim(store), sub);
    assert.ok(v2 && v2.id !== v1.id, "a dead letter does not block later events");
    assert.equal(await store.redrive({ subscriptionId: sub }), 1);
    const [redriven] = (await store.listDeliveries({ subscriptionId: sub, state: DeliveryState.PENDING }, 10, undefined)).items;
    assert.equal(redriven?.deliveryId, v1.id);
    assert.equal(redriven?.attemptCount, 2, "attempt history is kept");
  });

  it("holds a retrying delivery's successors until it is due again, so claims do not pass over them meanwhile", async () => {
    const tn = uniqueName("H").toUpperCase().replace(/_/g, "");
    const sub = await subscribe(tn);
    for (const v of [1, 2, 3]) await store.insertDeliveries(event(tn, v), {});
    const [v1, ...rest] = mine(await claim(store), sub);
    assert.ok(v1);
    assert.equal(rest.length, 0);
    await store.recordAttempt(v1, attempt, { state: DeliveryState.RETRYING, delayMs: 3_600_000 });
    const open = (await store.listDeliveries({ subscriptionId: sub }, 10, undefined)).items;
    const retryTs = open.find((d) => d.deliveryId === v1.id)?.nextAttemptAt;
    const retryAt = ms(retryTs);
    assert.ok(retryAt > Date.now() + 3_000_000);
    const later = open.filter((d) => d.deliveryId !== v1.id);
    assert.equal(later.length, 2);
    for (const d of later) assert.ok(ms(d.nextAttemptAt) >= retryAt, "a successor is due no earlier than the retry");
    // A new event of the shipment while the retry waits is held as well.
    await store.insertDeliveries(event(tn, 4), {});
    const v4 = (await store.listDeliveries({ subscriptionId: sub }, 10, undefined)).items.find((d) => !open.some((o) => o.deliveryId === d.deliveryId));
    assert.ok(ms(v4?.nextAttemptAt) >= retryAt);
    assert.equal(mine(await claim(store), sub).length, 0);
  });

  it("claims from a backlog of 30,000 due deliveries reading a bounded number of rows (EXPLAIN ANALYZE)", async () => {
    const own = await createTestSchema({ prefix: "nclaim" });
    const s = createNotificationStore({ connectionString: own.connectionString, schema: own.schema });
    const pool = new pg.Pool({ connectionString: own.connectionString, max: 1 });
    try {
      await s.migrate();
      const origins = ["http://a.test:1", "http://b.test:1", "http://c.test:1"];
      const subs: string[] = [];
      for (const o of origins) subs.push(await subscribe(uniqueName("C").toUpperCase().replace(/_/g, ""), undefined, undefined, s, o));
      const q = `"${own.schema}"`;
      // 10,000 due deliveries per origin, each of its own shipment (none blocks another).
      await pool.query(
        `INSERT INTO ${q}.deliveries (id, subscription_id, event_id, event_type, tracking_number, shipment_version,
                                      event_time, origin, body, state, next_attempt_at)
         SELECT 'dlv_' || k || '_' || g, sub, 'evt_' || g, ${NotificationEventType.STATUS_CHANGED}, 'TN' || g, 1,
                now(), origin, '{}', ${DeliveryState.PENDING}, now() - g * interval '1 millisecond'
         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(sub, origin, k), generate_series(1, 10000) AS g`,
        [subs, origins],
      );
      await pool.query(`ANALYZE ${q}.deliveries`);

      /** Rows of `deliveries` each plan node read (returned or filtered out), over all its loops. */
      const rowsRead = (plan: Record<string, unknown>): { rows: number; seqScans: number } => {
        let rows = 0;
        let seqScans = 0;
        const walk = (n: Record<string, unknown>) => {
          if (n["Relation Name"] === "deliveries") {
            const loops = Number(n["Actual Loops"] ?? 1);
            rows += (Number(n["Actual Rows"] ?? 0) + Number(n["Rows Removed by Filter"] ?? 0) + Number(n["Rows Removed by Index Recheck"] ?? 0)) * loops;
            if (n["Node Type"] === "Seq Scan") seqScans++;
          }
          for (const c of (n["Plans"] as Array<Record<string, unknown>> | undefined) ?? []) walk(c);
        };
        walk(plan);
        return { rows, seqScans };
      };
      const explain = async (inFlight: Map<string, number>) => {
        const client = await pool.connect();
        try {
          await client.query("BEGIN");
          const res = await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${claimDueSql(own.schema)}`, [
            "lease-explain",
            50,
            20,
            [...inFlight.keys()],
            [...inFlight.values()],
            60_000,
            20,
          ]);
          await client.query("ROLLBACK");
          const [top] = (res.rows[0] as { "QUERY PLAN": Array<{ Plan: Record<string, unknown> }> })["QUERY PLAN"];
          return rowsRead(top!.Plan);
        } finally {
          client.release();
        }
      };
      const all = await explain(new Map());
      assert.equal(all.seqScans, 0, "no sequential scan of deliveries");
      assert.ok(all.rows <= 1_000, `claiming 50 of 30,000 read ${all.rows} rows of deliveries`);
      // An origin at its quota costs nothing, however long its queue.
      const full = await explain(new Map([[origins[0]!, 20]]));
      assert.ok(full.rows <= 1_000, `read ${full.rows} rows with one origin at its quota`);

      const got = await s.claimDue({ leaseToken: "lease-1", leaseMs: 60_000, limit: 50, perOriginLimit: 20, inFlightByOrigin: new Map([[origins[0]!, 20]]) });
      assert.equal(got.length, 40, "20 from each origin below its quota");
      assert.ok(got.every((d) => d.origin !== origins[0]));
      const next = await s.claimDue({ leaseToken: "lease-2", leaseMs: 60_000, limit: 50, perOriginLimit: 20, inFlightByOrigin: new Map() });
      assert.equal(next.length, 50);
      assert.equal(new Set([...got, ...next].map((d) => d.id)).size, 90, "leased rows are passed over");
    } finally {
      await pool.end();
      await s.close();
      await own.drop();
    }
  });

  it("delivers a customer's tracking-number subscription only events of that customer's shipments", async () => {
    const tn = uniqueName("W").toUpperCase().replace(/_/g, "");
    const guessed = await subscribe(tn, [NotificationEventType.STATUS_CHANGED], { customerId: "intruder" });
    const own = await subscribe(tn, [NotificationEventType.STATUS_CHANGED], { customerId: "c" });
    const internal = await subscribe(tn, [NotificationEventType.STATUS_CHANGED]);
    assert.equal(await store.insertDeliveries(event(tn, 1), {}), 2);
    assert.equal((await store.listDeliveries({ subscriptionId: guessed }, 10, undefined)).items.length, 0, "a guessed number yields nothing");
    assert.equal((await store.listDeliveries({ subscriptionId: own }, 10, undefined)).items.length, 1);
    assert.equal((await store.listDeliveries({ subscriptionId: internal }, 10, undefined)).items.length, 1);
    // Listing, unsubscribing and redriving are confined to the owner.
    assert.deepEqual(
      (await store.listDeliveries({ trackingNumber: tn, ownedBy: { customerId: "c" } }, 10, undefined)).items.map((d) => d.subscriptionId),
      [own],
    );
    assert.deepEqual((await store.listSubscriptions({ trackingNumber: tn, ownedBy: { customerId: "c" } }, 10, undefined)).items.map((x) => x.subscriptionId), [own]);
    assert.equal(await store.unsubscribe(own, { customerId: "intruder" }), "not_found");
    assert.equal(await store.unsubscribe(own, { customerId: "c" }), "deleted");
  });

  it("sends a carrier's subscription the body without the shipper's account and internal ids", async () => {
    const tn = uniqueName("K").toUpperCase().replace(/_/g, "");
    const carrierSub = await subscribe(tn, [NotificationEventType.STATUS_CHANGED], { carrierCode: "acme" });
    const otherCarrier = await subscribe(tn, [NotificationEventType.STATUS_CHANGED], { carrierCode: "globex" });
    await store.insertDeliveries(event(tn, 1), {});
    assert.equal((await store.listDeliveries({ subscriptionId: otherCarrier }, 10, undefined)).items.length, 0);
    const [d] = mine(await claim(store), carrierSub);
    assert.ok(d);
    const data = (JSON.parse(d.body) as { data: Record<string, unknown> }).data;
    assert.equal(data["tracking_number"], tn);
    assert.equal("customer_id" in data, false);
    assert.equal("shipment_id" in data, false);
  });

  it("counts the delivery backlog (waiting, due, oldest due age) and hands out each delivery's creation time until redriven", async () => {
    const own = await createTestSchema({ prefix: "nbacklog" });
    const s = createNotificationStore({ connectionString: own.connectionString, schema: own.schema, orderWindowMs: 0 });
    try {
      await s.migrate();
      assert.deepEqual(await s.backlog(), { waiting: 0, due: 0, oldestDueAgeSeconds: 0 });
      const tns = [1, 2].map(() => uniqueName("B").toUpperCase().replace(/_/g, ""));
      const subs = [await subscribe(tns[0]!, undefined, undefined, s), await subscribe(tns[1]!, undefined, undefined, s)];
      for (const tn of tns) await s.insertDeliveries(event(tn, 1), {});
      const due = await waitFor(async () => ((await s.backlog()).due === 2 ? s.backlog() : undefined), { message: "both due" });
      assert.equal(due.waiting, 2);
      assert.ok(due.oldestDueAgeSeconds >= 0 && due.oldestDueAgeSeconds < 60);
      const claimed = await claim(s);
      assert.equal(claimed.length, 2);
      assert.ok(claimed.every((d) => d.createdAt instanceof Date && Math.abs(d.createdAt.getTime() - Date.now()) < 60_000));
      const [a, b] = [mine(claimed, subs[0]!)[0]!, mine(claimed, subs[1]!)[0]!];
      await s.recordAttempt(a, attempt, { state: DeliveryState.RETRYING, delayMs: 3_600_000 });
      await s.recordAttempt(b, attempt, { state: DeliveryState.DEAD_LETTERED });
      assert.deepEqual(await s.backlog(), { waiting: 1, due: 0, oldestDueAgeSeconds: 0 }, "a retry not yet due waits; a dead letter is not backlog");
      assert.equal(await s.redrive({ deliveryIds: [b.id] }), 1);
      const [again] = mine(await claim(s), subs[1]!);
      assert.equal(again?.id, b.id);
      assert.equal(again?.createdAt, undefined, "a redriven delivery has no creation time for the latency metric");
    } finally {
      await s.close();
      await own.drop();
    }
  });
});

describe("notification schema migrations (PostgreSQL)", () => {
  it("adopts a schema created before versioning and adds the owner columns once", async () => {
    const schema = await createTestSchema({ prefix: "nmigr" });
    const store = createNotificationStore({ connectionString: schema.connectionString, schema: schema.schema });
    const pool = new pg.Pool({ connectionString: schema.connectionString, max: 1 });
    try {
      await store.migrate();
      // Back to the shape of a database from before versioned migrations, with a subscription in it.
      const q = `"${schema.schema}"`;
      await pool.query(`ALTER TABLE ${q}.subscriptions DROP COLUMN owner_customer_id, DROP COLUMN owner_carrier_code`);
      await pool.query(`DROP TABLE ${q}.schema_migrations`);
      await pool.query(
        `INSERT INTO ${q}.subscriptions (id, owner, tracking_number, event_types, webhook_url, origin, secret)
         VALUES ('sub_legacy', 'old-client', 'LEGACY000001', '{1}', 'https://example.com/', 'https://example.com', 's')`,
      );
      await Promise.all([store.migrate(), store.migrate()]);
      const versions = await pool.query(`SELECT version FROM ${q}.schema_migrations ORDER BY version`);
      assert.deepEqual(versions.rows.map((r: { version: number }) => r.version), [1, 2, 3]);
      const [legacy] = (await store.listSubscriptions({ trackingNumber: "LEGACY000001" }, 10, undefined)).items;
      assert.equal(legacy?.subscriptionId, "sub_legacy");
      const owned = (await store.listSubscriptions({ trackingNumber: "LEGACY000001", ownedBy: { customerId: "old-client" } }, 10, undefined)).items;
      assert.equal(owned.length, 0, "subscriptions from before owners belong to no customer");
    } finally {
      await pool.end();
      await store.close();
      await schema.drop();
    }
  });
});
