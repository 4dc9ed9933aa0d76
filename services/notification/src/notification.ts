import { NotificationService } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { EventDeadLetterService } from "@logistics/shared/gen/logistics/operations/v1/dead_letters_pb.js";
import { createDeadLetterAdmin, startConsumerLagSampler } from "@logistics/shared/operations";
import { pgTimeouts, type ServiceDefinition } from "@logistics/shared/runtime";
import type { NotificationConfig } from "./config.js";
import { startDeliveryWorker, type DeliveryWorker } from "./delivery-worker.js";
import { createEventDeadLetterHandlers } from "./event-dead-letter-handlers.js";
import { intakeConsumerRefs, startEventIntake } from "./event-intake.js";
import { createNotificationMetrics } from "./notification-metrics.js";
import { createNotificationHandlers } from "./notification-handlers.js";
import { createNotificationStore } from "./notification-store.js";
import { notificationPolicies, registerNotificationRoutes } from "./routes.js";
import { createWebhookSender } from "./webhook-sender.js";
import type { WebhookTargetPolicy } from "./webhook-target.js";

/**
 * The notification service as the runtime starts it (from main.ts, the dev runner and tests):
 * the PostgreSQL store (tables created at start), the RPC handlers, the event intake (durable
 * consumers of StatusChanged / EtaChanged) and, unless disabled, the delivery worker. It also
 * serves EventDeadLetterService, the operators' RPCs over the mesh's JetStream dead letters.
 */
export const notificationService: ServiceDefinition<NotificationConfig> = {
  name: "notification",
  moduleUrl: import.meta.url,
  services: [NotificationService, EventDeadLetterService],
  policies: notificationPolicies,
  async start(ctx) {
    const { config } = ctx;
    const store = createNotificationStore({
      connectionString: config.DATABASE_URL,
      schema: config.NOTIFICATION_DB_SCHEMA,
      poolSize: config.NOTIFICATION_DB_POOL_SIZE,
      timeouts: pgTimeouts(config),
      orderWindowMs: config.NOTIFICATION_ORDER_WINDOW_MS,
    });
    const closers: Array<() => Promise<void>> = [() => store.close()];
    const closeAll = async () => {
      for (const c of closers.splice(0).reverse()) {
        await c().catch((err: unknown) => ctx.log.error({ err }, "notification shutdown step failed"));
      }
    };
    try {
      await store.migrate();
      const targetPolicy: WebhookTargetPolicy = {
        allowHttp: config.NOTIFICATION_ALLOW_HTTP,
        allow: { hosts: config.NOTIFICATION_WEBHOOK_ALLOW_HOSTS, cidrs: config.NOTIFICATION_WEBHOOK_ALLOW_CIDRS },
        allowPorts: config.NOTIFICATION_WEBHOOK_ALLOW_PORTS,
      };
      const metrics = createNotificationMetrics(ctx.metrics.registry);
      let worker: DeliveryWorker | undefined;
      if (config.NOTIFICATION_WORKER_ENABLED) {
        // Keep-alive pools sized to the worker's per-endpoint concurrency; closed after the worker
        // has drained (closers run in reverse order).
        const sender = createWebhookSender({
          maxSocketsPerEndpoint: config.NOTIFICATION_ENDPOINT_CONCURRENCY,
          keepAliveIdleMs: config.NOTIFICATION_KEEPALIVE_IDLE_MS,
        });
        closers.push(async () => sender.close());
        worker = startDeliveryWorker({
          store,
          targetPolicy,
          retry: {
            baseMs: config.NOTIFICATION_RETRY_BASE_MS,
            maxMs: config.NOTIFICATION_RETRY_MAX_MS,
            maxAttempts: config.NOTIFICATION_MAX_ATTEMPTS,
            jitter: config.NOTIFICATION_RETRY_JITTER,
          },
          timeoutMs: config.NOTIFICATION_DELIVERY_TIMEOUT_MS,
          leaseMs: config.NOTIFICATION_LEASE_MS,
          concurrency: config.NOTIFICATION_CONCURRENCY,
          endpointConcurrency: config.NOTIFICATION_ENDPOINT_CONCURRENCY,
          pollIntervalMs: config.NOTIFICATION_POLL_INTERVAL_MS,
          tickMs: config.NOTIFICATION_WORKER_TICK_MS,
          breaker: {
            failureThreshold: config.NOTIFICATION_BREAKER_FAILURES,
            cooldownMs: config.NOTIFICATION_BREAKER_COOLDOWN_MS,
          },
          log: ctx.log,
          send: sender.send,
          onAttempt: (r) => metrics.onAttempt(r),
        });
        const w = worker;
        closers.push(() => w.close());
        metrics.watchBreakers(w.breakers);
      }
      // Every replica reports the backlog, worker or not (it lives in the shared database).
      closers.push(metrics.sampleBacklog(store, config.BACKLOG_SAMPLE_MS, ctx.log));
      const intake = await startEventIntake({
        js: ctx.js,
        jsm: ctx.jsm,
        nc: ctx.nats,
        catalog: ctx.catalog,
        store,
        logger: ctx.log,
        registry: ctx.metrics.registry,
        lingerMs: config.NOTIFICATION_INTAKE_LINGER_MS,
        // New deliveries become due after the order window (on the database's clock, hence a few
        // ms more): look for them then, one claim per worker tick however many batches committed.
        onDeliveriesCreated: () => worker?.wakeAfter(config.NOTIFICATION_ORDER_WINDOW_MS + 5),
      });
      closers.push(() => intake.close());
      const backlog = startConsumerLagSampler({
        js: ctx.js,
        jsm: ctx.jsm,
        registry: ctx.metrics.registry,
        consumers: intakeConsumerRefs(ctx.catalog),
        deadLetterStream: ctx.subjects.streams.deadLetters.name,
        intervalMs: config.BACKLOG_SAMPLE_MS,
        log: ctx.log,
      });
      closers.push(() => backlog.close());
      const handlers = createNotificationHandlers({
        store,
        targetPolicy,
        subscriptionLimits: {
          maxActive: config.NOTIFICATION_MAX_SUBSCRIPTIONS_PER_OWNER,
          maxBroad: config.NOTIFICATION_MAX_BROAD_SUBSCRIPTIONS_PER_OWNER,
        },
        onRedriven: () => worker?.wake(),
      });
      const deadLetters = createEventDeadLetterHandlers({
        admin: createDeadLetterAdmin({
          js: ctx.js,
          jsm: ctx.jsm,
          subjects: ctx.subjects,
          audit: (entry) => ctx.log.info({ audit: "dead-letters", ...entry }, "dead-letter action"),
        }),
      });
      return { routes: (router) => registerNotificationRoutes(router, handlers, deadLetters), close: closeAll };
    } catch (err) {
      await closeAll();
      throw err;
    }
  },
};
