import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { exemplarsEnabled, observeWithExemplar } from "@logistics/shared/telemetry";
import { DeliveryState } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import type { NatsLog } from "@logistics/shared/nats";
import type { CircuitBreakers } from "./circuit-breaker.js";
import type { AttemptReport } from "./delivery-worker.js";
import type { NotificationStore } from "./notification-store.js";

const OUTCOME: Readonly<Record<number, string>> = {
  [DeliveryState.DELIVERED]: "delivered",
  [DeliveryState.RETRYING]: "retry",
  [DeliveryState.DEAD_LETTERED]: "dead_letter",
};

/** Most endpoints reported one by one in `logistics_webhook_breaker_open` (the longest open first). */
export const MAX_BREAKER_ENDPOINTS = 20;

/** The notification service's instruments. */
export interface NotificationMetrics {
  /** Records one attempt (attempt outcome, its duration and, once delivered, the delivery latency). */
  onAttempt(r: AttemptReport): void;
  /** Reports the breakers of this replica's delivery worker at every scrape. */
  watchBreakers(breakers: CircuitBreakers): void;
  /** Samples the delivery backlog every `intervalMs` (0: never). Returns the stop function. */
  sampleBacklog(store: Pick<NotificationStore, "backlog">, intervalMs: number, log: NatsLog): () => Promise<void>;
}

/**
 * Registers on `registry`:
 * - `logistics_webhook_attempts_total{outcome}` (delivered, retry, dead_letter) and
 *   `logistics_webhook_attempt_duration_seconds` (one HTTP attempt);
 * - `logistics_webhook_delivery_seconds{attempt}`: from a delivery's creation (its event reaching
 *   the intake) to the receiver's 2xx, delivered deliveries only, redriven ones excluded;
 *   `attempt="first"` when the first attempt delivered it (the webhook latency SLO counts these:
 *   the mesh's own delay, not a failing receiver's retry schedule), else `retry`;
 * - `logistics_notification_deliveries_waiting` / `_due` and
 *   `logistics_notification_oldest_due_age_seconds`: the delivery backlog in PostgreSQL (shared by
 *   all replicas: aggregate with `max`), sampled;
 * - `logistics_webhook_breakers{state}` (open, half_open): endpoints whose circuit breaker is not
 *   closed on this replica, and `logistics_webhook_breaker_open{endpoint, state}` for the
 *   {@link MAX_BREAKER_ENDPOINTS} longest open of them (the label set stays bounded).
 */
export function createNotificationMetrics(registry: Registry): NotificationMetrics {
  const registers = [registry];
  const attempts = new Counter({
    name: "logistics_webhook_attempts_total",
    help: "Webhook attempts by what they led to (delivered, retry, dead_letter)",
    labelNames: ["outcome"],
    registers,
  });
  const duration = new Histogram({
    name: "logistics_webhook_attempt_duration_seconds",
    help: "Time from sending a webhook to its response headers (or failure)",
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
    enableExemplars: exemplarsEnabled(registry),
  });
  const delivery = new Histogram({
    name: "logistics_webhook_delivery_seconds",
    help: "Time from a webhook delivery's creation (its event consumed) to the receiver's 2xx, by whether the first attempt delivered it (attempt=first|retry); redriven deliveries excluded",
    labelNames: ["attempt"],
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
    registers,
    enableExemplars: exemplarsEnabled(registry),
  });
  const waiting = new Gauge({
    name: "logistics_notification_deliveries_waiting",
    help: "Webhook deliveries pending or retrying (due or not), all replicas together",
    registers,
  });
  const due = new Gauge({
    name: "logistics_notification_deliveries_due",
    help: "Webhook deliveries whose next attempt time has come and that no worker has finished yet",
    registers,
  });
  const oldestDue = new Gauge({
    name: "logistics_notification_oldest_due_age_seconds",
    help: "Seconds since the oldest due webhook delivery became due; 0 when none is due",
    registers,
  });
  const backlogErrors = new Counter({
    name: "logistics_notification_backlog_sample_errors_total",
    help: "Failed samples of the delivery backlog (database unreachable); the backlog gauges keep their last value",
    registers,
  });
  const watched: CircuitBreakers[] = [];
  new Gauge({
    name: "logistics_webhook_breakers",
    help: "Webhook endpoints whose circuit breaker is open or half-open on this replica",
    labelNames: ["state"],
    registers,
    collect() {
      const counts = { open: 0, half_open: 0 };
      for (const b of watched) for (const c of b.notClosed()) counts[c.state === "open" ? "open" : "half_open"]++;
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  new Gauge({
    name: "logistics_webhook_breaker_open",
    help: `1 for each webhook endpoint (origin) whose circuit breaker is open or half-open on this replica, the ${MAX_BREAKER_ENDPOINTS} longest open`,
    labelNames: ["endpoint", "state"],
    registers,
    collect() {
      this.reset();
      const all = watched.flatMap((b) => b.notClosed()).sort((a, b) => a.openedAt - b.openedAt);
      for (const c of all.slice(0, MAX_BREAKER_ENDPOINTS)) this.set({ endpoint: c.key, state: c.state === "open" ? "open" : "half_open" }, 1);
    },
  });

  return {
    onAttempt(r) {
      attempts.inc({ outcome: OUTCOME[r.next] ?? "other" });
      observeWithExemplar(duration, {}, r.durationMs / 1000);
      if (r.next === DeliveryState.DELIVERED && r.sinceCreatedMs !== undefined) {
        observeWithExemplar(delivery, { attempt: (r.attempt ?? 1) > 1 ? "retry" : "first" }, r.sinceCreatedMs / 1000);
      }
    },
    watchBreakers(breakers) {
      watched.push(breakers);
    },
    sampleBacklog(store, intervalMs, log) {
      if (intervalMs <= 0) return async () => {};
      let running: Promise<void> | undefined;
      let failing = false;
      const sample = () =>
        (running ??= store
          .backlog()
          .then((b) => {
            waiting.set(b.waiting);
            due.set(b.due);
            oldestDue.set(b.oldestDueAgeSeconds);
            failing = false;
          })
          .catch((err: unknown) => {
            backlogErrors.inc();
            if (!failing) log.warn({ err }, "cannot sample the webhook delivery backlog");
            failing = true;
          })
          .finally(() => {
            running = undefined;
          }));
      const timer = setInterval(() => void sample(), intervalMs);
      timer.unref();
      void sample();
      return async () => {
        clearInterval(timer);
        await running;
      };
    },
  };
}
