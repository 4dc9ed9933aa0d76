import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type pg from "pg";
import { createPgPool, inTransaction, migrate, named, type Migration, type PgTimeouts } from "@logistics/shared/postgres";
import {
  DeliveryAttemptSchema,
  DeliverySchema,
  DeliveryState,
  SubscriptionSchema,
  type Delivery,
  type DeliveryAttempt,
  type Subscription,
} from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { eventTimeOf, webhookBodies, type NotificationEvent } from "./webhook-payload.js";

/** Options of {@link createNotificationStore}. */
export interface NotificationStoreOptions {
  /** PostgreSQL connection string. */
  connectionString: string;
  /** Schema holding the tables (created if missing); lowercase `[a-z_][a-z0-9_]*`. */
  schema: string;
  /** Pool size. Default 10. */
  poolSize?: number;
  /** Connection and statement timeouts of the pool (`createPgPool`'s defaults when left out). */
  timeouts?: PgTimeouts;
  /**
   * How long after creation a delivery first becomes due. Events of one shipment can be consumed
   * out of order (parallel consumers, replicas); holding new deliveries this long lets an earlier
   * event's delivery be created first, so the ordering rule of {@link NotificationStore.claimDue}
   * sees it. Default 0.
   */
  orderWindowMs?: number;
}

/** Which shipments a subscription covers: exactly one of the three (the contract's `scope` oneof). */
export type SubscriptionScope = Exclude<Subscription["scope"], { case: undefined }>;

/**
 * The customer or carrier a subscription belongs to (the caller that created it, when that caller
 * was confined to one); neither for subscriptions of internal services and operators.
 */
export type SubscriptionOwner =
  | { readonly customerId: string; readonly carrierCode?: undefined }
  | { readonly carrierCode: string; readonly customerId?: undefined };

/** One page of a listing, newest first. */
export interface Page<T> {
  readonly items: T[];
  /** Cursor of the next page (`afterSeq`); undefined on the last page. */
  readonly nextSeq: string | undefined;
}

/** A new subscription. */
export interface NewSubscription {
  readonly id: string;
  /** The idempotency scope (the caller's identity): keys are unique per value. */
  readonly owner: string;
  /** The customer or carrier it belongs to; undefined for internal and operator callers. */
  readonly ownedBy: SubscriptionOwner | undefined;
  readonly scope: SubscriptionScope;
  readonly eventTypes: readonly number[];
  readonly webhookUrl: string;
  /** `scheme://host:port` of the URL: the unit of per-endpoint limits. */
  readonly origin: string;
  readonly secret: string;
  readonly idempotencyKey: string | undefined;
  /**
   * Caps on the owner's active subscriptions, checked with the insert under a lock per owner (so
   * concurrent calls cannot pass them together); absent, or no `ownedBy`: none. A replay of an
   * idempotency key returns its subscription even at a cap.
   */
  readonly limits?: SubscriptionLimits;
}

/** Caps on one customer's or carrier's active subscriptions (0 = none). */
export interface SubscriptionLimits {
  /** All of them. */
  readonly maxActive: number;
  /**
   * Those of a customer or carrier scope, which every event of the owner fans out to (one
   * delivery each); tracking-number scopes see only their shipment's events.
   */
  readonly maxBroad: number;
}

/** A subscription refused because its owner is at a cap of {@link SubscriptionLimits}. */
export class SubscriptionLimitError extends Error {
  override readonly name = "SubscriptionLimitError";
}

/** An event to turn into deliveries, with the trace context its webhooks continue. */
export interface DeliveryIntake {
  readonly event: NotificationEvent;
  readonly traceContext: Readonly<Record<string, string>>;
}

/** A due delivery leased to one worker. */
export interface ClaimedDelivery {
  readonly id: string;
  /** Proof of the lease: results are only written while it is still held. */
  readonly leaseToken: string;
  readonly subscriptionId: string;
  readonly eventId: string;
  readonly trackingNumber: string;
  readonly body: string;
  /** W3C trace context (traceparent, tracestate) of the consumer span that created the delivery. */
  readonly traceContext: Readonly<Record<string, string>>;
  /** Attempts made since the delivery was created or last redriven. */
  readonly attemptsInBudget: number;
  readonly origin: string;
  readonly webhookUrl: string;
  readonly secret: string;
  /**
   * When the delivery was created, for the delivery latency metric; unset for a redriven delivery
   * (its wait includes the time it spent dead-lettered).
   */
  readonly createdAt?: Date;
}

/** A finished attempt of a claimed delivery and what it leads to. */
export interface AttemptRecord {
  readonly delivery: ClaimedDelivery;
  readonly attempt: DeliveryAttempt;
  readonly next: DeliveryTransition;
}

/** What recording one attempt did. */
export interface RecordedAttempt {
  /** False when nothing was written: the lease was lost or the delivery was cancelled. */
  readonly written: boolean;
  /**
   * The delivery was closed (delivered or dead-lettered) and a later open delivery of its
   * subscription and shipment, which it held back, is due: a claim can take that one now.
   */
  readonly successorDue: boolean;
}

/** The deliveries still to be made, for the backlog metrics. */
export interface DeliveryBacklog {
  /** PENDING or RETRYING deliveries (due or not). */
  readonly waiting: number;
  /** Of those, the ones due now (next attempt time reached). */
  readonly due: number;
  /** Seconds since the oldest due delivery became due; 0 when none is due. */
  readonly oldestDueAgeSeconds: number;
}

/** What an attempt leads to. */
export type DeliveryTransition =
  | { readonly state: DeliveryState.DELIVERED }
  | { readonly state: DeliveryState.RETRYING; readonly delayMs: number }
  | { readonly state: DeliveryState.DEAD_LETTERED };

/** Filters of {@link NotificationStore.listSubscriptions}. */
export interface SubscriptionFilter {
  readonly trackingNumber?: string;
  readonly customerId?: string;
  readonly carrierCode?: string;
  /** Only subscriptions of this owner; unset: every subscription (internal callers, operators). */
  readonly ownedBy?: SubscriptionOwner;
}

/** Filters of {@link NotificationStore.listDeliveries}. */
export interface DeliveryFilter {
  readonly subscriptionId?: string;
  readonly trackingNumber?: string;
  readonly state?: DeliveryState;
  /** Only deliveries of this owner's subscriptions; unset: every delivery. */
  readonly ownedBy?: SubscriptionOwner;
}

/** Parameters of {@link NotificationStore.claimDue}. */
export interface ClaimOptions {
  /** Unique per claim call (e.g. replica id + counter). */
  readonly leaseToken: string;
  readonly leaseMs: number;
  /** Most deliveries to claim. */
  readonly limit: number;
  /** Most in flight per origin, counting `inFlightByOrigin`. */
  readonly perOriginLimit: number;
  /** Requests this replica already has in flight, per origin. */
  readonly inFlightByOrigin: ReadonlyMap<string, number>;
}

/** Subscriptions and deliveries in PostgreSQL. */
export interface NotificationStore {
  /** Creates the schema, tables and indexes if missing (safe to run from many replicas at once). */
  migrate(): Promise<void>;
  /**
   * Inserts a subscription. With an idempotency key already used by the same owner, inserts
   * nothing and returns the existing one (`created: false`).
   */
  createSubscription(s: NewSubscription): Promise<{ subscription: Subscription; secret: string; created: boolean }>;
  /** The subscription an owner created with this idempotency key, with its secret. */
  findByIdempotencyKey(owner: string, key: string): Promise<{ subscription: Subscription; secret: string } | undefined>;
  /**
   * Deactivates a subscription and cancels its pending deliveries (they become dead-lettered with
   * the reason "subscription deleted" and are never redriven). "not_found" if the id never existed
   * or, with `ownedBy`, belongs to someone else (callers learn nothing about others' ids).
   */
  unsubscribe(id: string, ownedBy?: SubscriptionOwner): Promise<"deleted" | "already_deleted" | "not_found">;
  /** Up to `limit` subscriptions newest first, after the `afterSeq` cursor. */
  listSubscriptions(filter: SubscriptionFilter, limit: number, afterSeq: string | undefined): Promise<Page<Subscription>>;
  /**
   * Creates one PENDING delivery, due after the order window, per active subscription matching the event (scope and
   * event type); a subscription gets the first matching type of {@link webhookBodies}. Idempotent per
   * (subscription, event id). A subscription owned by a customer matches only events of that
   * customer's shipments, one owned by a carrier only that carrier's (so a guessed tracking number
   * yields nothing), and gets the body variant for its owner. Returns how many rows were inserted.
   */
  insertDeliveries(event: NotificationEvent, traceContext: Readonly<Record<string, string>>): Promise<number>;
  /**
   * {@link insertDeliveries} for many events in one statement (one round trip and one commit for a
   * consumer's batch); all or nothing. Two events of one shipment in the batch are due in their
   * order, as if inserted one after the other. Returns how many rows were inserted in all.
   */
  insertDeliveriesBatch(entries: readonly DeliveryIntake[]): Promise<number>;
  /**
   * Leases due deliveries (`SELECT … FOR UPDATE SKIP LOCKED`, so replicas never claim the same
   * row): PENDING or RETRYING, due, not leased (or the lease expired), whose subscription+shipment
   * has no earlier (lower shipment version, then event time, then creation) PENDING or RETRYING
   * delivery, within the per-origin quota; oldest due first. Its cost follows `limit` and the number
   * of origins with open deliveries, not the backlog (see {@link claimDueSql}).
   */
  claimDue(opts: ClaimOptions): Promise<ClaimedDelivery[]>;
  /**
   * Appends an attempt and applies the transition, only if the lease is still held and the
   * delivery is still PENDING or RETRYING. Returns false when nothing was written.
   */
  recordAttempt(delivery: ClaimedDelivery, attempt: DeliveryAttempt, next: DeliveryTransition): Promise<boolean>;
  /**
   * {@link recordAttempt} for attempts that finished together, in one statement (all or nothing).
   * Returns one result per record, in order.
   */
  recordAttempts(records: readonly AttemptRecord[]): Promise<RecordedAttempt[]>;
  /** Up to `limit` deliveries newest first, each with its last `attemptsPerDelivery` attempts (oldest first). */
  listDeliveries(
    filter: DeliveryFilter,
    limit: number,
    afterSeq: string | undefined,
    attemptsPerDelivery?: number,
  ): Promise<Page<Delivery>>;
  /**
   * Moves DEAD_LETTERED deliveries of active subscriptions back to PENDING, due now, with a fresh
   * attempt budget. Returns how many moved.
   */
  redrive(target: { subscriptionId?: string; deliveryIds?: readonly string[]; ownedBy?: SubscriptionOwner }): Promise<number>;
  /** Counts the deliveries still to be made (an index scan of the due index). */
  backlog(): Promise<DeliveryBacklog>;
  /** Closes the pool. */
  close(): Promise<void>;
}

const PENDING = DeliveryState.PENDING;
const RETRYING = DeliveryState.RETRYING;
const DEAD = DeliveryState.DEAD_LETTERED;
const DELIVERED = DeliveryState.DELIVERED;

/**
 * How full an insert leaves a page of `deliveries` (migration 4): the rest is room for the claim's
 * update of the same rows, which then stays on the page and adds no index entries (HOT).
 */
export const DELIVERIES_FILLFACTOR = 50;

/**
 * The statement of {@link NotificationStore.claimDue} for the tables of `schema`; parameters: $1
 * lease token, $2 limit, $3 per-origin limit, $4 origins with requests in flight, $5 their counts,
 * $6 lease ms, $7 the lesser of limit and per-origin limit. Exported so its plan can be checked on a large backlog.
 */
export function claimDueSql(schema: string): string {
  const dels = `"${schema}".deliveries`;
  const subs = `"${schema}".subscriptions`;
  // Bounded by the batch, not the backlog: origins with open deliveries come from a skip scan of
  // the claim index (one probe per origin); per origin the index is read in due order and stops
  // after the origin's free quota (leased and order-blocked rows are passed over, and successors
  // of a retrying delivery are due only with it, see recordAttemptsSql).
  return (
    `WITH RECURSIVE origins AS (
       (SELECT d.origin FROM ${dels} d WHERE d.state IN (${PENDING}, ${RETRYING}) ORDER BY d.origin LIMIT 1)
       UNION ALL
       SELECT (SELECT d.origin FROM ${dels} d
               WHERE d.state IN (${PENDING}, ${RETRYING}) AND d.origin > o.origin
               ORDER BY d.origin LIMIT 1)
       FROM origins o WHERE o.origin IS NOT NULL
     ),
     quota AS (SELECT * FROM unnest($4::text[], $5::int[]) AS u(origin, used)),
     candidates AS (
       SELECT c.id, COALESCE(quota.used, 0) AS used,
              row_number() OVER (PARTITION BY o.origin ORDER BY c.next_attempt_at, c.seq) AS rn
       FROM origins o
       LEFT JOIN quota ON quota.origin = o.origin
       CROSS JOIN LATERAL (
         SELECT d.id, d.next_attempt_at, d.seq
         FROM ${dels} d
         WHERE d.origin = o.origin
           AND d.state IN (${PENDING}, ${RETRYING})
           AND d.next_attempt_at <= now()
           AND (d.lease_until IS NULL OR d.lease_until < now())
           AND NOT EXISTS (
             SELECT 1 FROM ${dels} e
             WHERE e.subscription_id = d.subscription_id
               AND e.tracking_number = d.tracking_number
               AND e.state IN (${PENDING}, ${RETRYING})
               AND (e.shipment_version, e.event_time, e.seq) < (d.shipment_version, d.event_time, d.seq))
         ORDER BY d.next_attempt_at, d.seq
         -- A plain parameter (the planner sees the bound: a sane cost, no JIT compilation);
         -- the origin's requests in flight are subtracted below.
         LIMIT $7
       ) c
       WHERE o.origin IS NOT NULL
     ),
     picked AS (
       -- By primary key (an array, so the planner cannot choose to hash the whole table).
       SELECT d.id
       FROM ${dels} d
       WHERE d.id = ANY (ARRAY(SELECT c.id FROM candidates c WHERE c.rn <= $3 - c.used))
         AND d.state IN (${PENDING}, ${RETRYING})
         AND (d.lease_until IS NULL OR d.lease_until < now())
       ORDER BY d.next_attempt_at, d.seq
       LIMIT $2
       FOR UPDATE OF d SKIP LOCKED
     )
     UPDATE ${dels} d
     SET lease_owner = $1, lease_until = now() + $6 * interval '1 millisecond'
     FROM picked, ${subs} s
     WHERE d.id = picked.id AND s.id = d.subscription_id
     RETURNING d.id, d.subscription_id, d.event_id, d.tracking_number, d.body, d.trace_context,
               d.attempt_count - d.budget_start AS attempts_in_budget, d.origin, s.webhook_url, s.secret,
               d.next_attempt_at, d.seq, d.created_at, d.budget_start`
  );
}

/** What every statement of one store needs: its pool, tables and settings. */
interface StoreContext {
  readonly pool: pg.Pool;
  readonly schema: string;
  /** Qualified table names. */
  readonly subs: string;
  readonly dels: string;
  readonly atts: string;
  /** {@link claimDueSql} of the schema, built once. */
  readonly claimSql: string;
  /** {@link insertDeliveriesSql} of the schema, built once. */
  readonly insertSql: string;
  /** {@link recordAttemptsSql} of the schema, built once. */
  readonly recordSql: string;
  readonly orderWindowMs: number;
}

/** Creates the PostgreSQL store. Connects lazily (the pool opens connections on first use). */
export function createNotificationStore(opts: NotificationStoreOptions): NotificationStore {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(opts.schema)) throw new RangeError(`invalid schema name ${opts.schema}`);
  const q = `"${opts.schema}"`;
  const tables = { subs: `${q}.subscriptions`, dels: `${q}.deliveries`, atts: `${q}.delivery_attempts` };
  const ctx: StoreContext = {
    pool: createPgPool({ ...opts.timeouts, connectionString: opts.connectionString, max: opts.poolSize ?? 10, applicationName: "notification" }),
    schema: opts.schema,
    ...tables,
    claimSql: claimDueSql(opts.schema),
    insertSql: insertDeliveriesSql(tables),
    recordSql: recordAttemptsSql(tables),
    orderWindowMs: opts.orderWindowMs ?? 0,
  };
  return {
    migrate: async () => {
      await migrate(ctx.pool, { lockName: `notification-migrate:${ctx.schema}`, schema: ctx.schema, migrations: notificationMigrations(ctx) });
    },
    createSubscription: (s) => createSubscription(ctx, s),
    findByIdempotencyKey: (owner, key) => findByIdempotencyKey(ctx, owner, key),
    unsubscribe: (id, ownedBy) => unsubscribe(ctx, id, ownedBy),
    listSubscriptions: (filter, limit, afterSeq) => listSubscriptions(ctx, filter, limit, afterSeq),
    insertDeliveries: (event, traceContext) => insertDeliveriesBatch(ctx, [{ event, traceContext }]),
    insertDeliveriesBatch: (entries) => insertDeliveriesBatch(ctx, entries),
    claimDue: (o) => claimDue(ctx, o),
    recordAttempt: async (delivery, attempt, next) => (await recordAttempts(ctx, [{ delivery, attempt, next }]))[0]?.written ?? false,
    recordAttempts: (records) => recordAttempts(ctx, records),
    listDeliveries: (filter, limit, afterSeq, attemptsPerDelivery) => listDeliveries(ctx, filter, limit, afterSeq, attemptsPerDelivery),
    redrive: (target) => redrive(ctx, target),
    backlog: () => backlog(ctx),
    close: () => ctx.pool.end(),
  };
}

const SUB_COLUMNS = "id, seq, tracking_number, customer_id, carrier_code, event_types, webhook_url, created_at, active";

/** A subscriptions row (any superset of {@link SUB_COLUMNS}) as the contract's Subscription. */
function rowToSubscription(r: Record<string, unknown>): Subscription {
  const scope: SubscriptionScope =
    r.tracking_number != null
      ? { case: "trackingNumber", value: String(r.tracking_number) }
      : r.customer_id != null
        ? { case: "customerId", value: String(r.customer_id) }
        : { case: "carrierCode", value: String(r.carrier_code) };
  return create(SubscriptionSchema, {
    subscriptionId: String(r.id),
    scope,
    eventTypes: (r.event_types as number[]).map(Number),
    webhookUrl: String(r.webhook_url),
    createdAt: timestampFromDate(r.created_at as Date),
    active: Boolean(r.active),
  });
}

/** The SQL condition (on a subscriptions alias) and its argument for an owner filter. */
function ownerCondition(alias: string, o: SubscriptionOwner): [string, string] {
  return o.customerId !== undefined ? [`${alias}owner_customer_id = ?`, o.customerId] : [`${alias}owner_carrier_code = ?`, o.carrierCode];
}

/** A WHERE clause built condition by condition, each `?` numbered as the next parameter. */
function whereBuilder() {
  const where: string[] = [];
  const args: unknown[] = [];
  return {
    args,
    add(sql: string, v: unknown) {
      args.push(v);
      where.push(sql.replace("?", `$${args.length}`));
    },
    sql: () => (where.length ? `WHERE ${where.join(" AND ")}` : ""),
  };
}

/** The first `limit` rows and the cursor after them, from `limit + 1` rows read. */
function pageOf<T>(rows: ReadonlyArray<Record<string, unknown>>, limit: number, toItem: (r: Record<string, unknown>) => T): Page<T> {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { items: page.map(toItem), nextSeq: rows.length > limit && last ? String(last.seq) : undefined };
}

async function createSubscription(ctx: StoreContext, s: NewSubscription): Promise<{ subscription: Subscription; secret: string; created: boolean }> {
  const limits = s.limits;
  const ownedBy = s.ownedBy;
  if (!ownedBy || !limits || (limits.maxActive <= 0 && limits.maxBroad <= 0)) return insertSubscription(ctx, ctx.pool, s);
  return inTransaction(ctx.pool, async (client) => {
    const [cond, value] = ownerCondition("", ownedBy);
    // One owner's Subscribe calls queue here, so a count and the insert after it are one step.
    await client.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`notification:subscriptions:${cond}:${value}`]);
    if (s.idempotencyKey) {
      const replay = await findByIdempotencyKey(ctx, s.owner, s.idempotencyKey, client);
      if (replay) return { ...replay, created: false };
    }
    const counts = await client.query<{ total: number; broad: number }>(
      `SELECT count(*)::int AS total, (count(*) FILTER (WHERE tracking_number IS NULL))::int AS broad
         FROM ${ctx.subs} WHERE ${cond.replace("?", "$1")} AND active`,
      [value],
    );
    const { total, broad } = counts.rows[0] ?? { total: 0, broad: 0 };
    const who = ownedBy.customerId !== undefined ? `customer ${ownedBy.customerId}` : `carrier ${ownedBy.carrierCode}`;
    if (limits.maxActive > 0 && total >= limits.maxActive) {
      throw new SubscriptionLimitError(`${who} has ${total} active subscriptions, the most allowed; unsubscribe one first`);
    }
    if (limits.maxBroad > 0 && s.scope.case !== "trackingNumber" && broad >= limits.maxBroad) {
      throw new SubscriptionLimitError(
        `${who} has ${broad} active customer- or carrier-wide subscriptions, the most allowed; unsubscribe one first or subscribe by tracking number`,
      );
    }
    return insertSubscription(ctx, client, s);
  });
}

async function insertSubscription(
  ctx: StoreContext,
  db: pg.Pool | pg.PoolClient,
  s: NewSubscription,
): Promise<{ subscription: Subscription; secret: string; created: boolean }> {
  const scopeCol = { trackingNumber: "tracking_number", customerId: "customer_id", carrierCode: "carrier_code" }[s.scope.case];
  const res = await db.query(
    `INSERT INTO ${ctx.subs} (id, owner, ${scopeCol}, event_types, webhook_url, origin, secret, idempotency_key,
                          owner_customer_id, owner_carrier_code)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
     ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
     RETURNING ${SUB_COLUMNS}, secret`,
    [
      s.id,
      s.owner,
      s.scope.value,
      [...s.eventTypes],
      s.webhookUrl,
      s.origin,
      s.secret,
      s.idempotencyKey ?? null,
      s.ownedBy?.customerId ?? null,
      s.ownedBy?.carrierCode ?? null,
    ],
  );
  const row = res.rows[0] as Record<string, unknown> | undefined;
  if (row) return { subscription: rowToSubscription(row), secret: String(row.secret), created: true };
  const existing = await findByIdempotencyKey(ctx, s.owner, s.idempotencyKey ?? "", db);
  if (!existing) throw new Error("idempotency conflict without an existing subscription");
  return { ...existing, created: false };
}

async function findByIdempotencyKey(
  ctx: StoreContext,
  owner: string,
  key: string,
  db: pg.Pool | pg.PoolClient = ctx.pool,
): Promise<{ subscription: Subscription; secret: string } | undefined> {
  const res = await db.query(`SELECT ${SUB_COLUMNS}, secret FROM ${ctx.subs} WHERE owner = $1 AND idempotency_key = $2`, [owner, key]);
  const row = res.rows[0] as Record<string, unknown> | undefined;
  return row ? { subscription: rowToSubscription(row), secret: String(row.secret) } : undefined;
}

async function unsubscribe(ctx: StoreContext, id: string, ownedBy: SubscriptionOwner | undefined): Promise<"deleted" | "already_deleted" | "not_found"> {
  const [cond, arg] = ownedBy ? ownerCondition("", ownedBy) : ["true", null];
  return inTransaction(ctx.pool, async (client) => {
    const found = await client.query(
      `SELECT active FROM ${ctx.subs} WHERE id = $1 AND (${cond.replace("?", "$2")} OR $2::text IS NULL) FOR UPDATE`,
      [id, arg],
    );
    const row = found.rows[0] as { active: boolean } | undefined;
    if (!row) return "not_found";
    if (!row.active) return "already_deleted";
    await client.query(`UPDATE ${ctx.subs} SET active = false, deleted_at = now() WHERE id = $1`, [id]);
    await client.query(
      `UPDATE ${ctx.dels} SET state = ${DEAD}, next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL,
         last_error = 'cancelled: subscription deleted'
       WHERE subscription_id = $1 AND state IN (${PENDING}, ${RETRYING})`,
      [id],
    );
    return "deleted";
  });
}

async function listSubscriptions(
  ctx: StoreContext,
  filter: SubscriptionFilter,
  limit: number,
  afterSeq: string | undefined,
): Promise<Page<Subscription>> {
  const w = whereBuilder();
  if (filter.trackingNumber) w.add("tracking_number = ?", filter.trackingNumber);
  if (filter.customerId) w.add("customer_id = ?", filter.customerId);
  if (filter.carrierCode) w.add("carrier_code = ?", filter.carrierCode);
  if (filter.ownedBy) w.add(...ownerCondition("", filter.ownedBy));
  if (afterSeq !== undefined) w.add("seq < ?", afterSeq);
  w.args.push(limit + 1);
  const res = await ctx.pool.query(`SELECT ${SUB_COLUMNS} FROM ${ctx.subs} ${w.sql()} ORDER BY seq DESC LIMIT $${w.args.length}`, w.args);
  return pageOf(res.rows as Array<Record<string, unknown>>, limit, rowToSubscription);
}

/**
 * The statement of {@link NotificationStore.insertDeliveriesBatch}: one row per (event, webhook
 * type) in the parallel arrays $1..$10, $11 the order window in ms. Each row joins the active
 * subscriptions it matches; a subscription keeps the first row of an event it matches (the event's
 * first matching type, and the first copy of an event listed twice).
 */
function insertDeliveriesSql({ subs, dels }: Pick<StoreContext, "subs" | "dels">): string {
  return `WITH ev AS (
       SELECT * FROM unnest($1::text[], $2::smallint[], $3::text[], $4::bigint[], $5::timestamptz[],
                            $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
         WITH ORDINALITY AS ev(event_id, event_type, tracking_number, shipment_version, event_time,
                               body, carrier_body, trace_context, customer_id, carrier_code, n)
     ),
     matched AS (
       SELECT DISTINCT ON (ev.event_id, s.id)
              ev.*, s.id AS subscription_id, s.origin, s.owner_carrier_code IS NOT NULL AS for_carrier
       FROM ev
       JOIN ${subs} s
         ON s.active
        AND (s.tracking_number = ev.tracking_number OR s.customer_id = ev.customer_id OR s.carrier_code = ev.carrier_code)
        AND (s.owner_customer_id IS NULL OR s.owner_customer_id = ev.customer_id)
        AND (s.owner_carrier_code IS NULL OR s.owner_carrier_code = ev.carrier_code)
        AND ev.event_type = ANY (s.event_types)
       ORDER BY ev.event_id, s.id, ev.n
     )
     INSERT INTO ${dels} (id, subscription_id, event_id, event_type, tracking_number, shipment_version,
                          event_time, origin, body, trace_context, state, next_attempt_at)
     SELECT 'dlv_' || replace(gen_random_uuid()::text, '-', ''), m.subscription_id, m.event_id, m.event_type,
            m.tracking_number, m.shipment_version, m.event_time, m.origin,
            CASE WHEN m.for_carrier THEN m.carrier_body ELSE m.body END, m.trace_context::jsonb, ${PENDING},
            -- Due no earlier than the shipment's earlier open delivery (a retry in an hour holds its
            -- successors that long), so blocked rows stay out of the due range. Rows of this batch
            -- need no term of their own: now() is the same for all of them, and whatever is earlier
            -- than an earlier event of the batch is earlier than the later one too, so a later event
            -- is never due before an earlier one.
            GREATEST(now() + $11::integer * interval '1 millisecond',
                     (SELECT max(e.next_attempt_at) FROM ${dels} e
                      WHERE e.subscription_id = m.subscription_id AND e.tracking_number = m.tracking_number
                        AND e.state IN (${PENDING}, ${RETRYING})
                        AND (e.shipment_version, e.event_time) < (m.shipment_version, m.event_time)))
     FROM matched m
     -- Sequence numbers (the claim's last tie-break) in the order of the batch.
     ORDER BY m.n, m.subscription_id
     ON CONFLICT (subscription_id, event_id) DO NOTHING`;
}

async function insertDeliveriesBatch(ctx: StoreContext, entries: readonly DeliveryIntake[]): Promise<number> {
  if (entries.length === 0) return 0;
  const cols = {
    eventId: [] as string[],
    type: [] as number[],
    trackingNumber: [] as string[],
    version: [] as string[],
    eventTime: [] as Date[],
    body: [] as string[],
    carrierBody: [] as string[],
    traceContext: [] as string[],
    customerId: [] as string[],
    carrierCode: [] as string[],
  };
  // A batch's entries usually share one trace context object: serialized once.
  const traceJson = new Map<Readonly<Record<string, string>>, string>();
  for (const { event, traceContext } of entries) {
    const eventTime = eventTimeOf(event);
    const time = eventTime ? timestampDate(eventTime) : new Date(0);
    let tc = traceJson.get(traceContext);
    if (tc === undefined) traceJson.set(traceContext, (tc = JSON.stringify(traceContext)));
    for (const { type, body, carrierBody } of webhookBodies(event)) {
      cols.eventId.push(event.eventId);
      cols.type.push(type);
      cols.trackingNumber.push(event.trackingNumber);
      cols.version.push(event.version.toString());
      cols.eventTime.push(time);
      cols.body.push(body);
      cols.carrierBody.push(carrierBody);
      cols.traceContext.push(tc);
      cols.customerId.push(event.customerId);
      cols.carrierCode.push(event.carrierCode);
    }
  }
  // One statement, so one implicit transaction: the batch is all or nothing without BEGIN/COMMIT.
  const res = await ctx.pool.query(named(ctx.insertSql), [
    cols.eventId,
    cols.type,
    cols.trackingNumber,
    cols.version,
    cols.eventTime,
    cols.body,
    cols.carrierBody,
    cols.traceContext,
    cols.customerId,
    cols.carrierCode,
    ctx.orderWindowMs,
  ]);
  return res.rowCount ?? 0;
}

async function claimDue(ctx: StoreContext, o: ClaimOptions): Promise<ClaimedDelivery[]> {
  const origins = [...o.inFlightByOrigin.keys()];
  const used = origins.map((k) => o.inFlightByOrigin.get(k) ?? 0);
  // Unnamed on purpose: with a cached generic plan (named) the claim cost 1.6× as much with 20,000
  // due deliveries as with 1,000 (the perf claim bench); planned per call it does not grow with the
  // backlog, and it runs once per worker tick, so planning is cheap.
  const res = await ctx.pool.query(ctx.claimSql, [
    o.leaseToken,
    o.limit,
    o.perOriginLimit,
    origins,
    used,
    o.leaseMs,
    Math.max(0, Math.min(o.limit, o.perOriginLimit)),
  ]);
  return (res.rows as Array<Record<string, unknown>>)
    .sort((a, b) => (a.next_attempt_at as Date).getTime() - (b.next_attempt_at as Date).getTime())
    .map((r) => ({
      id: String(r.id),
      leaseToken: o.leaseToken,
      subscriptionId: String(r.subscription_id),
      eventId: String(r.event_id),
      trackingNumber: String(r.tracking_number),
      body: String(r.body),
      traceContext: (r.trace_context ?? {}) as Record<string, string>,
      attemptsInBudget: Number(r.attempts_in_budget),
      origin: String(r.origin),
      webhookUrl: String(r.webhook_url),
      secret: String(r.secret),
      ...(Number(r.budget_start) === 0 ? { createdAt: r.created_at as Date } : {}),
    }));
}

async function backlog(ctx: StoreContext): Promise<DeliveryBacklog> {
  const res = await ctx.pool.query(
    `SELECT count(*) AS waiting,
            count(*) FILTER (WHERE next_attempt_at <= now()) AS due,
            COALESCE(EXTRACT(EPOCH FROM now() - min(next_attempt_at) FILTER (WHERE next_attempt_at <= now())), 0) AS oldest
     FROM ${ctx.dels} WHERE state IN (${PENDING}, ${RETRYING})`,
  );
  const r = res.rows[0] as Record<string, unknown>;
  return { waiting: Number(r.waiting), due: Number(r.due), oldestDueAgeSeconds: Math.max(0, Number(r.oldest)) };
}

/**
 * The statement of {@link NotificationStore.recordAttempts}: one row per attempt in the parallel
 * arrays $1 delivery ids, $2 lease tokens, $3 next states, $4 retry delays (ms), $5 attempt times,
 * $6 errors, $7 HTTP statuses, $8 durations (ms), $9 response excerpts. Returns, per written row,
 * its position in the arrays (`n`) and whether a successor it held back is due now.
 */
function recordAttemptsSql({ dels, atts }: Pick<StoreContext, "dels" | "atts">): string {
  return `WITH a AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bigint[], $5::timestamptz[],
                            $6::text[], $7::integer[], $8::integer[], $9::text[])
         WITH ORDINALITY AS a(id, lease_owner, state, delay_ms, attempted_at, error, http_status, duration_ms, response_excerpt, n)
     ),
     u AS (
       UPDATE ${dels} d
       SET attempt_count = d.attempt_count + 1,
           state = a.state,
           next_attempt_at = CASE WHEN a.state = ${RETRYING} THEN now() + a.delay_ms * interval '1 millisecond' END,
           delivered_at = CASE WHEN a.state = ${DELIVERED} THEN now() END,
           last_error = CASE WHEN a.error <> '' THEN a.error ELSE d.last_error END,
           lease_owner = NULL,
           lease_until = NULL
       FROM a
       WHERE d.id = a.id AND d.lease_owner = a.lease_owner AND d.state IN (${PENDING}, ${RETRYING})
       RETURNING a.n, a.attempted_at, a.error, a.http_status, a.duration_ms, a.response_excerpt,
                 d.id, d.attempt_count, d.state, d.subscription_id, d.tracking_number, d.shipment_version,
                 d.event_time, d.seq, d.next_attempt_at),
     -- A retry holds the shipment's later open deliveries (they may not go first): they become
     -- due with it, so claimDue does not pass over them again and again meanwhile. Rows of this
     -- statement are left to their own update (a row is updated once per statement).
     held AS (
       UPDATE ${dels} e SET next_attempt_at = h.next_attempt_at
       FROM (SELECT f.id, max(u.next_attempt_at) AS next_attempt_at
             FROM u JOIN ${dels} f ON f.subscription_id = u.subscription_id AND f.tracking_number = u.tracking_number
             WHERE u.state = ${RETRYING}
               AND f.state IN (${PENDING}, ${RETRYING}) AND f.id <> ALL ($1::text[])
               AND (f.shipment_version, f.event_time, f.seq) > (u.shipment_version, u.event_time, u.seq)
               AND f.next_attempt_at < u.next_attempt_at
             GROUP BY f.id) h
       WHERE e.id = h.id),
     recorded AS (
       INSERT INTO ${atts} (delivery_id, n, attempted_at, http_status, error, duration_ms, response_excerpt)
       SELECT id, attempt_count, attempted_at, http_status, error, duration_ms, response_excerpt FROM u)
     -- A delivered or dead-lettered delivery no longer holds its successors back: one that is due
     -- can be claimed at once instead of at the next poll.
     SELECT u.n, u.state <> ${RETRYING} AND EXISTS (
              SELECT 1 FROM ${dels} e
              WHERE e.subscription_id = u.subscription_id AND e.tracking_number = u.tracking_number
                AND e.state IN (${PENDING}, ${RETRYING}) AND e.id <> ALL ($1::text[])
                AND (e.shipment_version, e.event_time, e.seq) > (u.shipment_version, u.event_time, u.seq)
                AND e.next_attempt_at <= now()) AS successor_due
     FROM u`;
}

/**
 * Text as a PostgreSQL `text` column holds it: NUL (which PostgreSQL refuses in text) becomes
 * U+FFFD. The attempt's error and response excerpt come from the receiver, which controls every
 * byte of them: one NUL made its attempt unrecordable, so the delivery was sent again at every
 * lease expiry and never retried, dead-lettered or followed by the shipment's later events.
 */
function storableText(s: string): string {
  return s.includes("\u0000") ? s.replaceAll("\u0000", "\uFFFD") : s;
}

async function recordAttempts(ctx: StoreContext, records: readonly AttemptRecord[]): Promise<RecordedAttempt[]> {
  if (records.length === 0) return [];
  const res = await ctx.pool.query(named(ctx.recordSql), [
    records.map((r) => r.delivery.id),
    records.map((r) => r.delivery.leaseToken),
    records.map((r) => r.next.state),
    records.map((r) => (r.next.state === RETRYING ? r.next.delayMs : 0)),
    records.map((r) => (r.attempt.attemptedAt ? timestampDate(r.attempt.attemptedAt) : new Date())),
    records.map((r) => storableText(r.attempt.error)),
    records.map((r) => r.attempt.httpStatus),
    records.map((r) => (r.attempt.duration ? Math.round(durationMs(r.attempt.duration)) : 0)),
    records.map((r) => storableText(r.attempt.responseExcerpt)),
  ]);
  const results: RecordedAttempt[] = records.map(() => ({ written: false, successorDue: false }));
  for (const row of res.rows as Array<{ n: string; successor_due: boolean }>) {
    results[Number(row.n) - 1] = { written: true, successorDue: row.successor_due };
  }
  return results;
}

async function listDeliveries(
  ctx: StoreContext,
  filter: DeliveryFilter,
  limit: number,
  afterSeq: string | undefined,
  attemptsPerDelivery = 20,
): Promise<Page<Delivery>> {
  const w = whereBuilder();
  if (filter.subscriptionId) w.add("subscription_id = ?", filter.subscriptionId);
  if (filter.trackingNumber) w.add("tracking_number = ?", filter.trackingNumber);
  if (filter.state) w.add("state = ?", filter.state);
  if (filter.ownedBy) {
    const [cond, arg] = ownerCondition("", filter.ownedBy);
    w.add(`subscription_id IN (SELECT id FROM ${ctx.subs} WHERE ${cond})`, arg);
  }
  if (afterSeq !== undefined) w.add("seq < ?", afterSeq);
  w.args.push(limit + 1);
  const res = await ctx.pool.query(
    `SELECT id, seq, subscription_id, event_id, tracking_number, event_type, state, attempt_count,
            next_attempt_at, last_error, created_at, delivered_at
     FROM ${ctx.dels} ${w.sql()}
     ORDER BY seq DESC LIMIT $${w.args.length}`,
    w.args,
  );
  const rows = (res.rows as Array<Record<string, unknown>>).slice(0, limit);
  const attempts = rows.length ? await attemptsOf(ctx, rows.map((r) => String(r.id)), attemptsPerDelivery) : new Map<string, DeliveryAttempt[]>();
  return pageOf(res.rows as Array<Record<string, unknown>>, limit, (r) => rowToDelivery(r, attempts.get(String(r.id)) ?? []));
}

/** The last `perDelivery` attempts of each delivery, oldest first. */
async function attemptsOf(ctx: StoreContext, ids: readonly string[], perDelivery: number): Promise<Map<string, DeliveryAttempt[]>> {
  const res = await ctx.pool.query(
    `SELECT a.* FROM unnest($1::text[]) AS ids(id)
     CROSS JOIN LATERAL (
       SELECT delivery_id, n, attempted_at, http_status, error, duration_ms, response_excerpt
       FROM ${ctx.atts} WHERE delivery_id = ids.id ORDER BY n DESC LIMIT $2) a
     ORDER BY a.delivery_id, a.n`,
    [ids, perDelivery],
  );
  const attempts = new Map<string, DeliveryAttempt[]>();
  for (const r of res.rows as Array<Record<string, unknown>>) {
    const list = attempts.get(String(r.delivery_id)) ?? [];
    list.push(
      create(DeliveryAttemptSchema, {
        attemptedAt: timestampFromDate(r.attempted_at as Date),
        httpStatus: Number(r.http_status),
        error: String(r.error),
        duration: durationFromMs(Number(r.duration_ms)),
        responseExcerpt: String(r.response_excerpt),
      }),
    );
    attempts.set(String(r.delivery_id), list);
  }
  return attempts;
}

/** A deliveries row as the contract's Delivery. */
function rowToDelivery(r: Record<string, unknown>, attempts: DeliveryAttempt[]): Delivery {
  const nextAttemptAt = r.next_attempt_at as Date | null;
  const deliveredAt = r.delivered_at as Date | null;
  return create(DeliverySchema, {
    deliveryId: String(r.id),
    subscriptionId: String(r.subscription_id),
    eventId: String(r.event_id),
    trackingNumber: String(r.tracking_number),
    eventType: Number(r.event_type),
    state: Number(r.state) as DeliveryState,
    attemptCount: Number(r.attempt_count),
    attempts,
    ...(nextAttemptAt ? { nextAttemptAt: timestampFromDate(nextAttemptAt) } : {}),
    lastError: String(r.last_error),
    createdAt: timestampFromDate(r.created_at as Date),
    ...(deliveredAt ? { deliveredAt: timestampFromDate(deliveredAt) } : {}),
  });
}

async function redrive(
  ctx: StoreContext,
  target: { subscriptionId?: string; deliveryIds?: readonly string[]; ownedBy?: SubscriptionOwner },
): Promise<number> {
  const res = await ctx.pool.query(
    `UPDATE ${ctx.dels} d
     SET state = ${PENDING}, next_attempt_at = now(), budget_start = d.attempt_count,
         lease_owner = NULL, lease_until = NULL
     FROM ${ctx.subs} s
     WHERE s.id = d.subscription_id AND s.active AND d.state = ${DEAD}
       AND ($1::text IS NULL OR d.subscription_id = $1)
       AND ($2::text[] IS NULL OR d.id = ANY ($2))
       AND ($3::text IS NULL OR s.owner_customer_id = $3)
       AND ($4::text IS NULL OR s.owner_carrier_code = $4)`,
    [
      target.subscriptionId || null,
      target.deliveryIds?.length ? [...target.deliveryIds] : null,
      target.ownedBy?.customerId ?? null,
      target.ownedBy?.carrierCode ?? null,
    ],
  );
  return res.rowCount ?? 0;
}

/**
 * The schema's versioned migrations, applied in order under the advisory lock, each recorded in
 * `schema_migrations`. Version 1 is the original schema (written with IF NOT EXISTS, so a
 * database created before versioning is adopted as is); later versions only ALTER.
 */
function notificationMigrations({ subs, dels, atts }: Pick<StoreContext, "subs" | "dels" | "atts">): Migration[] {
  return [
    {
      version: 1,
      name: "subscriptions, deliveries, delivery attempts",
      async up(client) {
        const run = (sql: string) => client.query(sql);
        await run(`
          CREATE TABLE IF NOT EXISTS ${subs} (
            id text PRIMARY KEY,
            seq bigserial NOT NULL,
            owner text NOT NULL,
            tracking_number text,
            customer_id text,
            carrier_code text,
            event_types smallint[] NOT NULL,
            webhook_url text NOT NULL,
            origin text NOT NULL,
            secret text NOT NULL,
            idempotency_key text,
            active boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            deleted_at timestamptz,
            CHECK (num_nonnulls(tracking_number, customer_id, carrier_code) = 1)
          )`);
        await run(
          `CREATE UNIQUE INDEX IF NOT EXISTS subscriptions_idempotency ON ${subs} (owner, idempotency_key) WHERE idempotency_key IS NOT NULL`,
        );
        await run(`CREATE INDEX IF NOT EXISTS subscriptions_seq ON ${subs} (seq DESC)`);
        for (const col of ["tracking_number", "customer_id", "carrier_code"]) {
          await run(`CREATE INDEX IF NOT EXISTS subscriptions_${col} ON ${subs} (${col}) WHERE ${col} IS NOT NULL`);
        }
        await run(`
          CREATE TABLE IF NOT EXISTS ${dels} (
            id text PRIMARY KEY,
            seq bigserial NOT NULL,
            subscription_id text NOT NULL REFERENCES ${subs} (id),
            event_id text NOT NULL,
            event_type smallint NOT NULL,
            tracking_number text NOT NULL,
            shipment_version bigint NOT NULL,
            event_time timestamptz NOT NULL,
            origin text NOT NULL,
            body text NOT NULL,
            trace_context jsonb NOT NULL DEFAULT '{}',
            state smallint NOT NULL,
            attempt_count integer NOT NULL DEFAULT 0,
            budget_start integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz,
            lease_owner text,
            lease_until timestamptz,
            last_error text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            delivered_at timestamptz,
            UNIQUE (subscription_id, event_id)
          )`);
        await run(
          `CREATE INDEX IF NOT EXISTS deliveries_due ON ${dels} (next_attempt_at) WHERE state IN (${PENDING}, ${RETRYING})`,
        );
        await run(
          `CREATE INDEX IF NOT EXISTS deliveries_open_order ON ${dels} (subscription_id, tracking_number, shipment_version, event_time, seq) WHERE state IN (${PENDING}, ${RETRYING})`,
        );
        await run(`CREATE INDEX IF NOT EXISTS deliveries_seq ON ${dels} (seq DESC)`);
        await run(`CREATE INDEX IF NOT EXISTS deliveries_subscription ON ${dels} (subscription_id, seq DESC)`);
        await run(`CREATE INDEX IF NOT EXISTS deliveries_tracking ON ${dels} (tracking_number, seq DESC)`);
        await run(`CREATE INDEX IF NOT EXISTS deliveries_state ON ${dels} (state, seq DESC)`);
        await run(`
          CREATE TABLE IF NOT EXISTS ${atts} (
            delivery_id text NOT NULL REFERENCES ${dels} (id),
            n integer NOT NULL,
            attempted_at timestamptz NOT NULL,
            http_status integer NOT NULL,
            error text NOT NULL,
            duration_ms integer NOT NULL,
            response_excerpt text NOT NULL,
            PRIMARY KEY (delivery_id, n)
          )`);
      },
    },
    {
      version: 2,
      name: "subscription owners: the customer or carrier a subscription belongs to",
      async up(client) {
        const run = (sql: string) => client.query(sql);
        await run(`ALTER TABLE ${subs} ADD COLUMN IF NOT EXISTS owner_customer_id text, ADD COLUMN IF NOT EXISTS owner_carrier_code text`);
        await run(`CREATE INDEX IF NOT EXISTS subscriptions_owner_customer ON ${subs} (owner_customer_id, seq DESC) WHERE owner_customer_id IS NOT NULL`);
        await run(`CREATE INDEX IF NOT EXISTS subscriptions_owner_carrier ON ${subs} (owner_carrier_code, seq DESC) WHERE owner_carrier_code IS NOT NULL`);
      },
    },
    {
      version: 3,
      name: "claim index: open deliveries by origin in due order",
      async up(client) {
        // claimDue walks this index origin by origin, in due order, and stops at each origin's
        // quota: its cost follows the batch and the number of origins, not the backlog.
        await client.query(
          `CREATE INDEX IF NOT EXISTS deliveries_claim ON ${dels} (origin, next_attempt_at, seq) WHERE state IN (${PENDING}, ${RETRYING})`,
        );
      },
    },
    {
      version: 4,
      name: "deliveries leave room on their pages for the claim's update",
      async up(client) {
        // A claim writes only the lease (lease_owner, lease_until), which no index holds, so it can
        // be a HOT update (no new index entries) when the new row version fits on the row's page.
        // With pages filled to 100% it never did: every claim put the row on another page with a
        // new entry in each of the table's nine indexes, and WAL-logged a lock of the old row
        // first. At 50% the claim of every row of a page fits beside it (README, "Storage"). Pages
        // written from now on keep the room; no table rewrite.
        await client.query(`ALTER TABLE ${dels} SET (fillfactor = ${DELIVERIES_FILLFACTOR})`);
      },
    },
  ];
}
