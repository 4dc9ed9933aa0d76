import { createPgPool, migrate, type Migration } from "@logistics/shared/postgres";
import { DeliveryState } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import type { WebhookEvent } from "./webhook-payload.js";

/** Options of {@link createNotificationStore}. */
export interface NotificationStoreOptions {
  /** PostgreSQL connection string. */
  connectionString: string;
  /** Schema holding the tables (created if missing); lowercase `[a-z_][a-z0-9_]*`. */
  schema: string;
  /** Pool size. Default 10. */
  poolSize?: number;
  /**
   * How long after creation a delivery first becomes due. Events of one shipment can be consumed
   * out of order (parallel consumers, replicas); holding new deliveries this long lets an earlier
   * event's delivery be created first, so the ordering rule of {@link NotificationStore.claimDue}
   * sees it. Default 0.
   */
  orderWindowMs?: number;
}

/** Which shipments a subscription covers: exactly one of the three. */
export type SubscriptionScope =
  | { readonly kind: "trackingNumber"; readonly value: string }
  | { readonly kind: "customerId"; readonly value: string }
  | { readonly kind: "carrierCode"; readonly value: string };

/**
 * The customer or carrier a subscription belongs to (the caller that created it, when that caller
 * was confined to one); neither for subscriptions of internal services and operators.
 */
export type SubscriptionOwner =
  | { readonly customerId: string; readonly carrierCode?: undefined }
  | { readonly carrierCode: string; readonly customerId?: undefined };

/** A stored subscription (without its secret). */
export interface SubscriptionRecord {
  readonly id: string;
  readonly scope: SubscriptionScope;
  readonly eventTypes: readonly number[];
  readonly webhookUrl: string;
  readonly createdAt: Date;
  readonly active: boolean;
  /** Listing order key (newest = largest). */
  readonly seq: string;
  /** Whose it is; undefined for internal and operator subscriptions. */
  readonly ownedBy: SubscriptionOwner | undefined;
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
}

/** One HTTP attempt. */
export interface AttemptRecord {
  readonly attemptedAt: Date;
  readonly httpStatus: number;
  readonly error: string;
  readonly durationMs: number;
  readonly responseExcerpt: string;
}

/** A stored delivery with its most recent attempts. */
export interface DeliveryRecord {
  readonly id: string;
  readonly seq: string;
  readonly subscriptionId: string;
  readonly eventId: string;
  readonly trackingNumber: string;
  readonly eventType: number;
  readonly state: DeliveryState;
  readonly attemptCount: number;
  readonly attempts: readonly AttemptRecord[];
  readonly nextAttemptAt: Date | undefined;
  readonly lastError: string;
  readonly createdAt: Date;
  readonly deliveredAt: Date | undefined;
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
  createSubscription(s: NewSubscription): Promise<{ subscription: SubscriptionRecord; secret: string; created: boolean }>;
  /** The subscription an owner created with this idempotency key, with its secret. */
  findByIdempotencyKey(owner: string, key: string): Promise<{ subscription: SubscriptionRecord; secret: string } | undefined>;
  /**
   * Deactivates a subscription and cancels its pending deliveries (they become dead-lettered with
   * the reason "subscription deleted" and are never redriven). "not_found" if the id never existed
   * or, with `ownedBy`, belongs to someone else (callers learn nothing about others' ids).
   */
  unsubscribe(id: string, ownedBy?: SubscriptionOwner): Promise<"deleted" | "already_deleted" | "not_found">;
  /** Subscriptions newest first, after the `afterSeq` cursor. */
  listSubscriptions(filter: SubscriptionFilter, limit: number, afterSeq: string | undefined): Promise<SubscriptionRecord[]>;
  /**
   * Creates one PENDING delivery, due after the order window, per active subscription matching the event (scope and
   * event type); a subscription gets the first matching type of `event.bodies`. Idempotent per
   * (subscription, event id). A subscription owned by a customer matches only events of that
   * customer's shipments, one owned by a carrier only that carrier's (so a guessed tracking number
   * yields nothing), and gets the body variant for its owner. Returns how many rows were inserted.
   */
  insertDeliveries(event: WebhookEvent, traceContext: Readonly<Record<string, string>>): Promise<number>;
  /**
   * {@link insertDeliveries} for many events in one transaction (one commit for a consumer's
   * batch); all or nothing. Returns how many rows were inserted in all.
   */
  insertDeliveriesBatch(entries: ReadonlyArray<{ readonly event: WebhookEvent; readonly traceContext: Readonly<Record<string, string>> }>): Promise<number>;
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
  recordAttempt(delivery: ClaimedDelivery, attempt: AttemptRecord, next: DeliveryTransition): Promise<boolean>;
  /** Deliveries newest first, each with its last `attemptsPerDelivery` attempts (oldest first). */
  listDeliveries(
    filter: DeliveryFilter,
    limit: number,
    afterSeq: string | undefined,
    attemptsPerDelivery?: number,
  ): Promise<DeliveryRecord[]>;
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
  // of a retrying delivery are due only with it, see recordAttempt).
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

/** Creates the PostgreSQL store. Connects lazily (the pool opens connections on first use). */
export function createNotificationStore(opts: NotificationStoreOptions): NotificationStore {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(opts.schema)) throw new RangeError(`invalid schema name ${opts.schema}`);
  const pool = createPgPool({ connectionString: opts.connectionString, max: opts.poolSize ?? 10, applicationName: "notification" });
  const q = `"${opts.schema}"`;
  const subs = `${q}.subscriptions`;
  const dels = `${q}.deliveries`;
  const atts = `${q}.delivery_attempts`;
  const claimSql = claimDueSql(opts.schema);

  const toSubscription = (r: Record<string, unknown>): SubscriptionRecord => {
    const scope: SubscriptionScope =
      r.tracking_number != null
        ? { kind: "trackingNumber", value: String(r.tracking_number) }
        : r.customer_id != null
          ? { kind: "customerId", value: String(r.customer_id) }
          : { kind: "carrierCode", value: String(r.carrier_code) };
    return {
      id: String(r.id),
      scope,
      eventTypes: (r.event_types as number[]).map(Number),
      webhookUrl: String(r.webhook_url),
      createdAt: r.created_at as Date,
      active: Boolean(r.active),
      seq: String(r.seq),
      ownedBy:
        r.owner_customer_id != null
          ? { customerId: String(r.owner_customer_id) }
          : r.owner_carrier_code != null
            ? { carrierCode: String(r.owner_carrier_code) }
            : undefined,
    };
  };
  /** The SQL condition (on a subscriptions alias) and its argument for an owner filter. */
  const ownerCondition = (alias: string, o: SubscriptionOwner): [string, string] =>
    o.customerId !== undefined ? [`${alias}owner_customer_id = ?`, o.customerId] : [`${alias}owner_carrier_code = ?`, o.carrierCode];

  /**
   * The schema's versioned migrations, applied in order under the advisory lock, each recorded in
   * `schema_migrations`. Version 1 is the original schema (written with IF NOT EXISTS, so a
   * database created before versioning is adopted as is); later versions only ALTER.
   */
  const migrations: Migration[] = [
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
  ];

  const SUB_COLUMNS =
    "id, seq, tracking_number, customer_id, carrier_code, event_types, webhook_url, created_at, active, owner_customer_id, owner_carrier_code";

  return {
    async migrate() {
      await migrate(pool, { lockName: `notification-migrate:${opts.schema}`, schema: opts.schema, migrations });
    },

    async createSubscription(s) {
      const scopeCol = { trackingNumber: "tracking_number", customerId: "customer_id", carrierCode: "carrier_code" }[s.scope.kind];
      const res = await pool.query(
        `INSERT INTO ${subs} (id, owner, ${scopeCol}, event_types, webhook_url, origin, secret, idempotency_key,
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
      if (row) return { subscription: toSubscription(row), secret: String(row.secret), created: true };
      const existing = await this.findByIdempotencyKey(s.owner, s.idempotencyKey ?? "");
      if (!existing) throw new Error("idempotency conflict without an existing subscription");
      return { ...existing, created: false };
    },

    async findByIdempotencyKey(owner, key) {
      const res = await pool.query(
        `SELECT ${SUB_COLUMNS}, secret FROM ${subs} WHERE owner = $1 AND idempotency_key = $2`,
        [owner, key],
      );
      const row = res.rows[0] as Record<string, unknown> | undefined;
      return row ? { subscription: toSubscription(row), secret: String(row.secret) } : undefined;
    },

    async unsubscribe(id, ownedBy) {
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        const [cond, arg] = ownedBy ? ownerCondition("", ownedBy) : ["true", null];
        const found = await client.query(
          `SELECT active FROM ${subs} WHERE id = $1 AND (${cond.replace("?", "$2")} OR $2::text IS NULL) FOR UPDATE`,
          [id, arg],
        );
        const row = found.rows[0] as { active: boolean } | undefined;
        if (!row) {
          await client.query("ROLLBACK");
          return "not_found";
        }
        if (!row.active) {
          await client.query("ROLLBACK");
          return "already_deleted";
        }
        await client.query(`UPDATE ${subs} SET active = false, deleted_at = now() WHERE id = $1`, [id]);
        await client.query(
          `UPDATE ${dels} SET state = ${DEAD}, next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL,
             last_error = 'cancelled: subscription deleted'
           WHERE subscription_id = $1 AND state IN (${PENDING}, ${RETRYING})`,
          [id],
        );
        await client.query("COMMIT");
        return "deleted";
      } catch (err) {
        await client.query("ROLLBACK").catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },

    async listSubscriptions(filter, limit, afterSeq) {
      const where: string[] = [];
      const args: unknown[] = [];
      const add = (sql: string, v: unknown) => {
        args.push(v);
        where.push(sql.replace("?", `$${args.length}`));
      };
      if (filter.trackingNumber) add("tracking_number = ?", filter.trackingNumber);
      if (filter.customerId) add("customer_id = ?", filter.customerId);
      if (filter.carrierCode) add("carrier_code = ?", filter.carrierCode);
      if (filter.ownedBy) add(...ownerCondition("", filter.ownedBy));
      if (afterSeq !== undefined) add("seq < ?", afterSeq);
      args.push(limit);
      const res = await pool.query(
        `SELECT ${SUB_COLUMNS} FROM ${subs} ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
         ORDER BY seq DESC LIMIT $${args.length}`,
        args,
      );
      return res.rows.map((r) => toSubscription(r as Record<string, unknown>));
    },

    insertDeliveries(event, traceContext) {
      return this.insertDeliveriesBatch([{ event, traceContext }]);
    },

    async insertDeliveriesBatch(entries) {
      let inserted = 0;
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        for (const { event, traceContext } of entries) {
          const seen: number[] = [];
          for (const { type, body, carrierBody } of event.bodies) {
            // A subscription to several matching types gets one delivery, of the first type listed.
            const res = await client.query(
              `INSERT INTO ${dels} (id, subscription_id, event_id, event_type, tracking_number, shipment_version,
                                    event_time, origin, body, trace_context, state, next_attempt_at)
               SELECT 'dlv_' || replace(gen_random_uuid()::text, '-', ''), s.id, $1, $2, $3, $4, $5, s.origin,
                      CASE WHEN s.owner_carrier_code IS NOT NULL THEN $12 ELSE $6 END, $7,
                      ${PENDING},
                      -- Due no earlier than the shipment's earlier open delivery (a retry in an hour
                      -- holds its successors that long), so blocked rows stay out of the due range.
                      GREATEST(now() + $11::integer * interval '1 millisecond',
                               (SELECT max(e.next_attempt_at) FROM ${dels} e
                                WHERE e.subscription_id = s.id AND e.tracking_number = $3
                                  AND e.state IN (${PENDING}, ${RETRYING})
                                  AND (e.shipment_version, e.event_time) < ($4::bigint, $5::timestamptz)))
               FROM ${subs} s
               WHERE s.active
                 AND (s.tracking_number = $3 OR s.customer_id = $8 OR s.carrier_code = $9)
                 AND (s.owner_customer_id IS NULL OR s.owner_customer_id = $8)
                 AND (s.owner_carrier_code IS NULL OR s.owner_carrier_code = $9)
                 AND $2 = ANY (s.event_types)
                 AND NOT (s.event_types && $10::smallint[])
               ON CONFLICT (subscription_id, event_id) DO NOTHING`,
              [
                event.eventId,
                type,
                event.trackingNumber,
                event.version.toString(),
                event.eventTime,
                body,
                JSON.stringify(traceContext),
                event.customerId,
                event.carrierCode,
                seen,
                opts.orderWindowMs ?? 0,
                carrierBody,
              ],
            );
            inserted += res.rowCount ?? 0;
            seen.push(type);
          }
        }
        await client.query("COMMIT");
        return inserted;
      } catch (err) {
        await client.query("ROLLBACK").catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },

    async claimDue(o) {
      const origins = [...o.inFlightByOrigin.keys()];
      const used = origins.map((k) => o.inFlightByOrigin.get(k) ?? 0);
      const res = await pool.query(
        claimSql,
        [o.leaseToken, o.limit, o.perOriginLimit, origins, used, o.leaseMs, Math.max(0, Math.min(o.limit, o.perOriginLimit))],
      );
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
    },

    async backlog() {
      const res = await pool.query(
        `SELECT count(*) AS waiting,
                count(*) FILTER (WHERE next_attempt_at <= now()) AS due,
                COALESCE(EXTRACT(EPOCH FROM now() - min(next_attempt_at) FILTER (WHERE next_attempt_at <= now())), 0) AS oldest
         FROM ${dels} WHERE state IN (${PENDING}, ${RETRYING})`,
      );
      const r = res.rows[0] as Record<string, unknown>;
      return { waiting: Number(r.waiting), due: Number(r.due), oldestDueAgeSeconds: Math.max(0, Number(r.oldest)) };
    },

    async recordAttempt(d, a, next) {
      const delayMs = next.state === RETRYING ? next.delayMs : 0;
      const res = await pool.query(
        `WITH u AS (
           UPDATE ${dels}
           SET attempt_count = attempt_count + 1,
               state = $3::smallint,
               next_attempt_at = CASE WHEN $3::smallint = ${RETRYING} THEN now() + $4::bigint * interval '1 millisecond' END,
               delivered_at = CASE WHEN $3::smallint = ${DELIVERED} THEN now() END,
               last_error = CASE WHEN $6::text <> '' THEN $6::text ELSE last_error END,
               lease_owner = NULL,
               lease_until = NULL
           WHERE id = $1 AND lease_owner = $2 AND state IN (${PENDING}, ${RETRYING})
           RETURNING id, attempt_count, state, subscription_id, tracking_number, shipment_version, event_time, seq, next_attempt_at),
         -- A retry holds the shipment's later open deliveries (they may not go first): they become
         -- due with it, so claimDue does not pass over them again and again meanwhile.
         held AS (
           UPDATE ${dels} e SET next_attempt_at = u.next_attempt_at
           FROM u
           WHERE u.state = ${RETRYING}
             AND e.subscription_id = u.subscription_id AND e.tracking_number = u.tracking_number
             AND e.state IN (${PENDING}, ${RETRYING}) AND e.id <> u.id
             AND (e.shipment_version, e.event_time, e.seq) > (u.shipment_version, u.event_time, u.seq)
             AND e.next_attempt_at < u.next_attempt_at)
         INSERT INTO ${atts} (delivery_id, n, attempted_at, http_status, error, duration_ms, response_excerpt)
         SELECT id, attempt_count, $5::timestamptz, $7::integer, $6::text, $8::integer, $9::text FROM u`,
        [d.id, d.leaseToken, next.state, delayMs, a.attemptedAt, a.error, a.httpStatus, a.durationMs, a.responseExcerpt],
      );
      return (res.rowCount ?? 0) > 0;
    },

    async listDeliveries(filter, limit, afterSeq, attemptsPerDelivery = 20) {
      const where: string[] = [];
      const args: unknown[] = [];
      const add = (sql: string, v: unknown) => {
        args.push(v);
        where.push(sql.replace("?", `$${args.length}`));
      };
      if (filter.subscriptionId) add("subscription_id = ?", filter.subscriptionId);
      if (filter.trackingNumber) add("tracking_number = ?", filter.trackingNumber);
      if (filter.state) add("state = ?", filter.state);
      if (filter.ownedBy) {
        const [cond, arg] = ownerCondition("", filter.ownedBy);
        add(`subscription_id IN (SELECT id FROM ${subs} WHERE ${cond})`, arg);
      }
      if (afterSeq !== undefined) add("seq < ?", afterSeq);
      args.push(limit);
      const res = await pool.query(
        `SELECT id, seq, subscription_id, event_id, tracking_number, event_type, state, attempt_count,
                next_attempt_at, last_error, created_at, delivered_at
         FROM ${dels} ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
         ORDER BY seq DESC LIMIT $${args.length}`,
        args,
      );
      const rows = res.rows as Array<Record<string, unknown>>;
      const attempts = new Map<string, AttemptRecord[]>();
      if (rows.length) {
        const ar = await pool.query(
          `SELECT a.* FROM unnest($1::text[]) AS ids(id)
           CROSS JOIN LATERAL (
             SELECT delivery_id, n, attempted_at, http_status, error, duration_ms, response_excerpt
             FROM ${atts} WHERE delivery_id = ids.id ORDER BY n DESC LIMIT $2) a
           ORDER BY a.delivery_id, a.n`,
          [rows.map((r) => r.id), attemptsPerDelivery],
        );
        for (const r of ar.rows as Array<Record<string, unknown>>) {
          const list = attempts.get(String(r.delivery_id)) ?? [];
          list.push({
            attemptedAt: r.attempted_at as Date,
            httpStatus: Number(r.http_status),
            error: String(r.error),
            durationMs: Number(r.duration_ms),
            responseExcerpt: String(r.response_excerpt),
          });
          attempts.set(String(r.delivery_id), list);
        }
      }
      return rows.map((r) => ({
        id: String(r.id),
        seq: String(r.seq),
        subscriptionId: String(r.subscription_id),
        eventId: String(r.event_id),
        trackingNumber: String(r.tracking_number),
        eventType: Number(r.event_type),
        state: Number(r.state) as DeliveryState,
        attemptCount: Number(r.attempt_count),
        attempts: attempts.get(String(r.id)) ?? [],
        nextAttemptAt: (r.next_attempt_at as Date | null) ?? undefined,
        lastError: String(r.last_error),
        createdAt: r.created_at as Date,
        deliveredAt: (r.delivered_at as Date | null) ?? undefined,
      }));
    },

    async redrive(target) {
      const res = await pool.query(
        `UPDATE ${dels} d
         SET state = ${PENDING}, next_attempt_at = now(), budget_start = d.attempt_count,
             lease_owner = NULL, lease_until = NULL
         FROM ${subs} s
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
    },

    close: () => pool.end(),
  };
}
