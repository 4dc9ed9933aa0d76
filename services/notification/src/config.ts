import { bool, defineConfig, int, list, oneOf, str, type ConfigOf } from "@logistics/shared/config";
import { baseConfigSpec, checkBaseConfig, checkPostgresConfig, postgresConfigSpec } from "@logistics/shared/runtime";
import { parseCidr } from "./address-policy.js";
import { parsePortList } from "./port-policy.js";

/**
 * Environment variables of the notification service (see the README's configuration table).
 *
 * Retry defaults: 30 s doubling, capped at 2 h, 32 attempts with full jitter — the ceilings sum
 * to about 48 h, so the expected time from the first attempt to dead-lettering is about 24 h.
 */
export const notificationConfig = defineConfig(
  {
    ...baseConfigSpec({ port: 8084, metricsPort: 9104 }),
    DATABASE_URL: str({
      description: "PostgreSQL connection string for subscriptions and deliveries",
      default: "postgres://postgres@127.0.0.1:5432/test",
      secret: true,
    }),
    ...postgresConfigSpec(),
    NOTIFICATION_DB_SCHEMA: str({
      description: "PostgreSQL schema holding the notification tables (created at start if missing)",
      pattern: /^[a-z_][a-z0-9_]{0,62}$/,
      default: "notification",
    }),
    NOTIFICATION_DB_POOL_SIZE: int({ description: "PostgreSQL connections per replica", min: 1, max: 200, default: 10 }),
    NOTIFICATION_MAX_SUBSCRIPTIONS_PER_OWNER: int({
      description: "active subscriptions one customer or carrier may hold (0 = no cap); Subscribe beyond it fails with ResourceExhausted",
      min: 0,
      max: 10_000_000,
      default: 1000,
    }),
    NOTIFICATION_MAX_BROAD_SUBSCRIPTIONS_PER_OWNER: int({
      description:
        "of those, subscriptions with a customer or carrier scope (every event of the owner becomes one delivery per such subscription; 0 = no cap)",
      min: 0,
      max: 1_000_000,
      default: 16,
    }),
    NOTIFICATION_ALLOW_HTTP: bool({
      description: "accept http:// webhook URLs (local development only; production requires https)",
      default: false,
    }),
    NOTIFICATION_WEBHOOK_ALLOW_HOSTS: list({
      description: "webhook hosts (exact names or IP literals) exempt from the public-address check, comma-separated",
      default: [],
    }),
    NOTIFICATION_WEBHOOK_ALLOW_CIDRS: list({
      description: "address ranges (CIDR) webhook hosts may resolve to although not public, comma-separated",
      default: [],
    }),
    NOTIFICATION_WEBHOOK_ALLOW_PORTS: {
      description:
        "ports webhooks may use besides the scheme's default (443, or 80 for http), comma-separated; hosts in NOTIFICATION_WEBHOOK_ALLOW_HOSTS and addresses in NOTIFICATION_WEBHOOK_ALLOW_CIDRS may use any port",
      parse: parsePortList,
      default: Object.freeze([]) as readonly number[],
    },
    NOTIFICATION_DELIVERY_TIMEOUT_MS: int({
      description: "time limit of one webhook attempt (connect, response headers and the stored body excerpt)",
      min: 100,
      max: 120_000,
      default: 10_000,
    }),
    NOTIFICATION_RETRY_BASE_MS: int({ description: "delay ceiling after the first failed attempt", min: 1, default: 30_000 }),
    NOTIFICATION_RETRY_MAX_MS: int({
      description: "largest delay between two attempts (also caps Retry-After)",
      min: 1,
      default: 7_200_000,
    }),
    NOTIFICATION_MAX_ATTEMPTS: int({ description: "attempts before a delivery is dead-lettered", min: 1, max: 1000, default: 32 }),
    NOTIFICATION_RETRY_JITTER: oneOf({
      description: "full: wait uniform in [0, ceiling]; equal: uniform in [ceiling/2, ceiling]",
      values: ["full", "equal"] as const,
      default: "full",
    }),
    NOTIFICATION_CONCURRENCY: int({ description: "webhook requests in flight per replica", min: 1, max: 10_000, default: 64 }),
    NOTIFICATION_ENDPOINT_CONCURRENCY: int({
      description: "webhook requests in flight per endpoint (scheme://host:port) per replica",
      min: 1,
      max: 1000,
      default: 4,
    }),
    NOTIFICATION_KEEPALIVE_IDLE_MS: int({
      description:
        "how long an idle webhook connection is kept for the next delivery to its endpoint (keep it below the receivers' idle timeout, 5 s on Node and Apache); 0 opens a new connection per delivery",
      min: 0,
      max: 60_000,
      default: 4000,
    }),
    NOTIFICATION_BREAKER_FAILURES: int({
      description: "consecutive failures of an endpoint that open its circuit breaker",
      min: 1,
      default: 5,
    }),
    NOTIFICATION_BREAKER_COOLDOWN_MS: int({
      description: "time an open circuit waits before letting one probe request through",
      min: 1,
      default: 30_000,
    }),
    NOTIFICATION_LEASE_MS: int({
      description: "how long a replica holds a claimed delivery before another may take it over",
      min: 1000,
      default: 60_000,
    }),
    NOTIFICATION_POLL_INTERVAL_MS: int({
      description: "how often the delivery worker looks for due deliveries when idle",
      min: 10,
      max: 60_000,
      default: 1000,
    }),
    NOTIFICATION_ORDER_WINDOW_MS: int({
      description:
        "delay before a new delivery is first attempted, so events of one shipment consumed out of order (by parallel consumers or replicas) are still sent in version order",
      min: 0,
      max: 60_000,
      default: 1000,
    }),
    NOTIFICATION_WORKER_TICK_MS: int({
      description:
        "coalescing period of the delivery worker: attempts finished within it are recorded in one statement, and deliveries created within it are claimed together",
      min: 0,
      max: 1000,
      default: 50,
    }),
    NOTIFICATION_INTAKE_LINGER_MS: int({
      description: "how long an intake batch may wait for more events before its deliveries are inserted (one statement per batch)",
      min: 0,
      max: 1000,
      default: 20,
    }),
    NOTIFICATION_WORKER_ENABLED: bool({ description: "run the delivery worker in this replica", default: true }),
  },
  (c) => {
    const problems = [...checkBaseConfig(c), ...checkPostgresConfig(c)];
    for (const cidr of c.NOTIFICATION_WEBHOOK_ALLOW_CIDRS) {
      if (!parseCidr(cidr)) problems.push(`NOTIFICATION_WEBHOOK_ALLOW_CIDRS: ${JSON.stringify(cidr)} is not a CIDR`);
    }
    if (c.NOTIFICATION_RETRY_MAX_MS < c.NOTIFICATION_RETRY_BASE_MS) {
      problems.push("NOTIFICATION_RETRY_MAX_MS must be >= NOTIFICATION_RETRY_BASE_MS");
    }
    if (c.NOTIFICATION_LEASE_MS <= c.NOTIFICATION_DELIVERY_TIMEOUT_MS) {
      problems.push("NOTIFICATION_LEASE_MS must exceed NOTIFICATION_DELIVERY_TIMEOUT_MS");
    }
    if (c.NOTIFICATION_ENDPOINT_CONCURRENCY > c.NOTIFICATION_CONCURRENCY) {
      problems.push("NOTIFICATION_ENDPOINT_CONCURRENCY must be <= NOTIFICATION_CONCURRENCY");
    }
    return problems;
  },
);

export type NotificationConfig = ConfigOf<typeof notificationConfig.spec>;
