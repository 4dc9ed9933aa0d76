import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { describe, it } from "vitest";
import { DeliveryState } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { silentNatsLog } from "@logistics/shared/nats";
import { waitFor } from "@logistics/shared/testing";
import { createCircuitBreakers } from "./circuit-breaker.js";
import { createNotificationMetrics, MAX_BREAKER_ENDPOINTS } from "./notification-metrics.js";

const values = async (registry: Registry, name: string) => (await registry.getSingleMetric(name)!.get()).values;

describe("notification metrics", () => {
  it("reports open breakers per state and per endpoint, the endpoints bounded", async () => {
    const registry = new Registry();
    const m = createNotificationMetrics(registry);
    let now = 0;
    const b = createCircuitBreakers({ failureThreshold: 1, cooldownMs: 1000, now: () => now });
    m.watchBreakers(b);
    for (let i = 0; i < MAX_BREAKER_ENDPOINTS + 5; i++) {
      now = i;
      b.record(`https://hook-${i}.example.com`, false);
    }
    now = 1002; // hook-0..2 half-open, the rest still open
    const states = Object.fromEntries((await values(registry, "logistics_webhook_breakers")).map((v) => [v.labels.state, v.value]));
    assert.deepEqual(states, { open: MAX_BREAKER_ENDPOINTS + 2, half_open: 3 });
    const endpoints = await values(registry, "logistics_webhook_breaker_open");
    assert.equal(endpoints.length, MAX_BREAKER_ENDPOINTS, "at most MAX_BREAKER_ENDPOINTS endpoint series");
    assert.equal(endpoints[0]!.labels.endpoint, "https://hook-0.example.com", "the longest open first");
    assert.equal(endpoints[0]!.labels.state, "half_open");
    b.record("https://hook-0.example.com", true);
    assert.ok(!(await values(registry, "logistics_webhook_breaker_open")).some((v) => v.labels.endpoint === "https://hook-0.example.com"), "a closed breaker's series goes away");
  });

  it("observes the delivery latency of delivered, not redriven, deliveries only", async () => {
    const registry = new Registry();
    const m = createNotificationMetrics(registry);
    const base = { deliveryId: "d", origin: "https://a", httpStatus: 200, durationMs: 40 };
    m.onAttempt({ ...base, next: DeliveryState.DELIVERED, attempt: 1, sinceCreatedMs: 1500 });
    m.onAttempt({ ...base, next: DeliveryState.DELIVERED, attempt: 3, sinceCreatedMs: 90_000 });
    m.onAttempt({ ...base, next: DeliveryState.DELIVERED, attempt: 1 });
    m.onAttempt({ ...base, httpStatus: 500, next: DeliveryState.RETRYING, sinceCreatedMs: 900 });
    const delivery = await values(registry, "logistics_webhook_delivery_seconds");
    const series = (name: string, attempt: string) =>
      delivery.find((v) => (v as { metricName?: string }).metricName === `logistics_webhook_delivery_seconds_${name}` && v.labels.attempt === attempt)?.value;
    assert.deepEqual([series("count", "first"), series("sum", "first")], [1, 1.5], "first-attempt deliveries");
    assert.deepEqual([series("count", "retry"), series("sum", "retry")], [1, 90], "delivered after retries");
    const attempts = Object.fromEntries((await values(registry, "logistics_webhook_attempts_total")).map((v) => [v.labels.outcome, v.value]));
    assert.deepEqual(attempts, { delivered: 3, retry: 1 });
  });

  it("samples the delivery backlog, and counts a failed sample without dropping the last values", async () => {
    const registry = new Registry();
    const m = createNotificationMetrics(registry);
    let fail = false;
    let calls = 0;
    const store = {
      async backlog() {
        calls++;
        if (fail) throw new Error("database down");
        return { waiting: 7, due: 3, oldestDueAgeSeconds: 42 };
      },
    };
    const stop = m.sampleBacklog(store, 20, silentNatsLog);
    const gauge = async (name: string) => (await values(registry, name))[0]?.value;
    await waitFor(async () => (await gauge("logistics_notification_oldest_due_age_seconds")) === 42, { message: "sampled" });
    assert.deepEqual(
      [await gauge("logistics_notification_deliveries_waiting"), await gauge("logistics_notification_deliveries_due")],
      [7, 3],
    );
    fail = true;
    const before = calls;
    await waitFor(async () => ((await gauge("logistics_notification_backlog_sample_errors_total")) ?? 0) >= 1, { message: "a failed sample" });
    await stop();
    assert.ok(calls > before);
    assert.equal(await gauge("logistics_notification_deliveries_due"), 3, "the last values are kept");
  });
});
