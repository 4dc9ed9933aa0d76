import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate, timestampMs, timestampNow, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { EtaChangedSchema, StatusChangedSchema } from "@logistics/shared/gen/logistics/events/v1/tracking_events_pb.js";
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
  DELIVERIES_FILLFACTOR,
  type ClaimOptions,
  type NotificationStore,
  type SubscriptionOwner,
  type SubscriptionScope,
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

  it("inserts a batch of events over several subscriptions in one statement: each delivery once, also when the batch comes again", async () => {
    const u = uniqueName("b").replace(/[^a-z0-9]/gi, "");
    const [customer, carrier] = [`cust_${u}`, `carrier_${u}`];
    const [t1, t2, t3, t4] = [1, 2, 3, 4].map((i) => `BATCH${i}${u}`.toUpperCase()) as [string, string, string, string];
    const subscribeTo = async (scope: SubscriptionScope, eventTypes: NotificationEventType[], ownedBy?: SubscriptionOwner) => {
      const o = `http://127.0.0.1:${++origin}`;
      const { subscription } = await store.createSubscription({
        id: uniqueName("sub"),
        owner: "test",
        ownedBy,
        scope,
        eventTypes,
        webhookUrl: `${o}/x`,
        origin: o,
        secret: "s".repeat(43),
        idempotencyKey: undefined,
      });
      return subscription.subscriptionId;
    };
    const { STATUS_CHANGED: STATUS, EXCEPTION, ETA_CHANGED: ETA } = NotificationEventType;
    const subs = {
      t1: await subscribeTo({ case: "trackingNumber", value: t1 }, [STATUS]),
      t2Exception: await subscribeTo({ case: "trackingNumber", value: t2 }, [EXCEPTION]),
      t2Intruder: await subscribeTo({ case: "trackingNumber", value: t2 }, [STATUS], { customerId: `other_${u}` }),
      customerAll: await subscribeTo({ case: "customerId", value: customer }, [EXCEPTION, STATUS, ETA], { customerId: customer }),
      carrierStatus: await subscribeTo({ case: "carrierCode", value: carrier }, [STATUS], { carrierCode: carrier }),
    };
    const at = (tn: string, status = ShipmentStatus.IN_TRANSIT) =>
      create(StatusChangedSchema, { eventId: uniqueName("evt"), trackingNumber: tn, customerId: customer, shipmentId: "shp_internal", carrierCode: carrier, status, version: 1n, statusTime: timestampNow() });
    const eta = create(EtaChangedSchema, {
      eventId: uniqueName("eta"),
      trackingNumber: t4,
      customerId: customer,
      carrierCode: carrier,
      version: 1n,
      changedAt: timestampNow(),
    });
    const [e1, e2, e3] = [at(t1), at(t2, ShipmentStatus.EXCEPTION), at(t3)];
    const trace = { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" };
    // e1 twice (a duplicate within the batch); e2 matches customerAll as STATUS (its first listed type
    // among the event's), t2Exception as EXCEPTION, never the intruder.
    const batch = [e1, e2, e3, eta, e1].map((e) => ({ event: e, traceContext: trace }));
    const expected = new Map<string, Array<[string, NotificationEventType]>>([
      [subs.t1, [[e1.eventId, STATUS]]],
      [subs.t2Exception, [[e2.eventId, EXCEPTION]]],
      [subs.t2Intruder, []],
      [subs.customerAll, [[e1.eventId, STATUS], [e2.eventId, STATUS], [e3.eventId, STATUS], [eta.eventId, ETA]]],
      [subs.carrierStatus, [[e1.eventId, STATUS], [e2.eventId, STATUS], [e3.eventId, STATUS]]],
    ]);
    const total = [...expected.values()].reduce((n, l) => n + l.length, 0);
    assert.equal(await store.insertDeliveriesBatch(batch), total, "the number of rows inserted");
    assert.equal(await store.insertDeliveriesBatch(batch), 0, "the same batch again creates nothing");
    assert.equal(await store.insertDeliveriesBatch(batch.slice(1, 3)), 0, "nor does part of it");
    for (const [sub, want] of expected) {
      const got = (await store.listDeliveries({ subscriptionId: sub }, 100, undefined)).items.map((d) => [d.eventId, d.eventType]);
      assert.deepEqual(got.sort(), [...want].sort(), `deliveries of ${sub}`);
    }
    const claimed = (await claim(store)).filter((d) => [...Object.values(subs)].includes(d.subscriptionId));
    assert.equal(claimed.length, total);
    for (const d of claimed) {
      const data = (JSON.parse(d.body) as { data: Record<string, unknown> }).data;
      assert.equal("customer_id" in data, d.subscriptionId !== subs.carrierStatus, "the carrier's body has no customer id");
      assert.deepEqual(d.traceContext, trace);
    }
  });

  it("makes two events of one shipment in one batch due in their order, also behind an earlier retrying delivery", async () => {
    const own = await createTestSchema({ prefix: "nbatchorder" });
    const s = createNotificationStore({ connectionString: own.connectionString, schema: own.schema, orderWindowMs: 200 });
    try {
      await s.migrate();
      const [free, heldTn] = [1, 2].map(() => uniqueName("R").toUpperCase().replace(/_/g, "")) as [string, string];
      const [freeSub, heldSub] = [await subscribe(free, undefined, undefined, s), await subscribe(heldTn, undefined, undefined, s)];
      // The held shipment's version 1 is retrying in an hour.
      await s.insertDeliveries(event(heldTn, 1), {});
      const [v1] = await waitFor(async () => {
        const got = mine(await claim(s), heldSub);
        return got.length ? got : undefined;
      }, { message: "version 1 due" });
      assert.ok(v1);
      await s.recordAttempt(v1, attempt, { state: DeliveryState.RETRYING, delayMs: 3_600_000 });
      // One batch: the free shipment's versions 2 then 1, the held shipment's versions 3 then 2.
      const batch = [event(free, 2), event(free, 1), event(heldTn, 3), event(heldTn, 2)].map((e) => ({ event: e, traceContext: {} }));
      assert.equal(await s.insertDeliveriesBatch(batch), 4);
      const dueOf = async (sub: string) => {
        const items = (await s.listDeliveries({ subscriptionId: sub }, 10, undefined)).items;
        return new Map(items.map((d) => [d.eventId, ms(d.nextAttemptAt)]));
      };
      const [f, h] = [await dueOf(freeSub), await dueOf(heldSub)];
      const [f1, f2] = [f.get(batch[1]!.event.eventId)!, f.get(batch[0]!.event.eventId)!];
      assert.ok(f1 > 0 && f2 >= f1, "the later version is not due before the earlier one");
      const retryAt = h.get(v1.eventId)!;
      const [h2, h3] = [h.get(batch[3]!.event.eventId)!, h.get(batch[2]!.event.eventId)!];
      assert.ok(h2 >= retryAt && h3 >= h2, "both wait for the retry, version 3 not before version 2");
      // The free shipment's deliveries go in version order.
      const first = await waitFor(async () => mine(await claim(s), freeSub)[0], { message: "version 1 of the free shipment due" });
      assert.equal(first.eventId, batch[1]!.event.eventId);
      assert.deepEqual(await s.recordAttempts([{ delivery: first, attempt, next: { state: DeliveryState.DELIVERED } }]), [{ written: true, successorDue: true }]);
      const [second] = mine(await claim(s), freeSub);
      assert.equal(second?.eventId, batch[0]!.event.eventId);
    } finally {
      await s.close();
      await own.drop();
    }
  });

  it("records attempts finished together in one statement, each under its own lease, a retry holding its successors", async () => {
    const tns = [1, 2, 3].map(() => uniqueName("A").toUpperCase().replace(/_/g, ""));
    const subs: string[] = [];
    for (const tn of tns) {
      subs.push(await subscribe(tn));
      await store.insertDeliveriesBatch([1, 2].map((v) => ({ event: event(tn, v), traceContext: {} })));
    }
    const claimed = (await claim(store)).filter((d) => subs.includes(d.subscriptionId));
    assert.equal(claimed.length, 3, "version 1 of each shipment");
    const [a, b, c] = subs.map((sub) => mine(claimed, sub)[0]!);
    const results = await store.recordAttempts([
      { delivery: a!, attempt, next: { state: DeliveryState.DELIVERED } },
      { delivery: b!, attempt, next: { state: DeliveryState.RETRYING, delayMs: 3_600_000 } },
      { delivery: { ...c!, leaseToken: "someone-else" }, attempt, next: { state: DeliveryState.DELIVERED } },
    ]);
    assert.deepEqual(results, [
      { written: true, successorDue: true },
      { written: true, successorDue: false },
      { written: false, successorDue: false },
    ]);
    const list = async (sub: string) => (await store.listDeliveries({ subscriptionId: sub }, 10, undefined)).items;
    const [la, lb, lc] = [await list(subs[0]!), await list(subs[1]!), await list(subs[2]!)];
    assert.equal(la.find((d) => d.deliveryId === a!.id)?.state, DeliveryState.DELIVERED);
    assert.equal(la.find((d) => d.deliveryId === a!.id)?.attempts.length, 1);
    const retry = lb.find((d) => d.deliveryId === b!.id);
    assert.equal(retry?.state, DeliveryState.RETRYING);
    assert.ok(ms(lb.find((d) => d.deliveryId !== b!.id)?.nextAttemptAt) >= ms(retry?.nextAttemptAt), "the retry holds its successor");
    assert.equal(lc.find((d) => d.deliveryId === c!.id)?.attemptCount, 0, "a lost lease writes nothing");
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

  it("claims with HOT updates: a claim adds no index entries (deliveries keep room on their pages)", async () => {
    /**
     * Inserts 200 due deliveries as the intake writes them (a webhook body of ~600 bytes: several
     * pages of them) into a fresh schema, with `fillfactor` set first when given, and claims the 10
     * due first (the first inserted) in a transaction of its own: how many rows the claim updated
     * and how many of those were HOT, and the table's settings.
     */
    const claimOnFreshTable = async (fillfactor?: number) => {
      const own = await createTestSchema({ prefix: "nhot" });
      const s = createNotificationStore({ connectionString: own.connectionString, schema: own.schema });
      const pool = new pg.Pool({ connectionString: own.connectionString, max: 1 });
      try {
        await s.migrate();
        const o = "http://hot.test:1";
        const sub = await subscribe(uniqueName("H").toUpperCase().replace(/_/g, ""), undefined, undefined, s, o);
        const q = `"${own.schema}".deliveries`;
        if (fillfactor !== undefined) await pool.query(`ALTER TABLE ${q} SET (fillfactor = ${fillfactor})`);
        await pool.query(
          `INSERT INTO ${q} (id, subscription_id, event_id, event_type, tracking_number, shipment_version,
                             event_time, origin, body, state, next_attempt_at)
           SELECT 'dlv_' || g, $1, 'evt_' || g, ${NotificationEventType.STATUS_CHANGED}, 'TN' || g, 1, now(), $2,
                  repeat('x', 600), ${DeliveryState.PENDING}, now() - interval '1 minute' + g * interval '1 millisecond'
           FROM generate_series(1, 200) AS g`,
          [sub, o],
        );
        const client = await pool.connect();
        try {
          await client.query("BEGIN");
          const claimed = await client.query(claimDueSql(own.schema), [uniqueName("lease"), 10, 10, [], [], 60_000, 10]);
          const { rows } = await client.query<{ updated: string; hot: string; options: string[] | null }>(
            `SELECT pg_stat_get_xact_tuples_updated($1::regclass) AS updated, pg_stat_get_xact_tuples_hot_updated($1::regclass) AS hot,
                    (SELECT reloptions FROM pg_class WHERE oid = $1::regclass) AS options`,
            [q],
          );
          await client.query("COMMIT");
          return { claimed: claimed.rowCount, updated: Number(rows[0]!.updated), hot: Number(rows[0]!.hot), options: rows[0]!.options };
        } finally {
          client.release();
        }
      } finally {
        await pool.end();
        await s.close();
        await own.drop();
      }
    };
    assert.deepEqual(await claimOnFreshTable(), { claimed: 10, updated: 10, hot: 10, options: [`fillfactor=${DELIVERIES_FILLFACTOR}`] });
    // Pages filled to the brim (the table before migration 4): no claim fits beside its row, so
    // each one is a new row version on another page, with an entry in every index.
    assert.deepEqual(await claimOnFreshTable(100), { claimed: 10, updated: 10, hot: 0, options: ["fillfactor=100"] });
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
      assert.deepEqual(versions.rows.map((r: { version: number }) => r.version), [1, 2, 3, 4]);
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
