import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import type { RunningService } from "@logistics/shared/runtime";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { NotificationEventType } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import {
  startNotificationHarness,
  startReceiver,
  trackingNumber,
  type NotificationHarness,
  type ReceivedRequest,
  type TestReceiver,
} from "./notification-harness.js";

async function attemptsCounted(svc: RunningService): Promise<number> {
  const text = await (await fetch(svc.metricsUrl)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("logistics_webhook_attempts_total{")) total += Number(line.split(" ").pop());
  }
  return total;
}

describe("notification with two replicas on one database and one durable consumer", () => {
  let h: NotificationHarness;
  let second: RunningService;
  const receivers: TestReceiver[] = [];

  beforeAll(async () => {
    h = await startNotificationHarness({
      NOTIFICATION_RETRY_BASE_MS: "20",
      NOTIFICATION_RETRY_MAX_MS: "200",
      NOTIFICATION_MAX_ATTEMPTS: "20",
      NOTIFICATION_DELIVERY_TIMEOUT_MS: "2000",
      NOTIFICATION_LEASE_MS: "10000",
      NOTIFICATION_BREAKER_FAILURES: "1000",
    });
    second = await h.startReplica();
  });
  afterAll(async () => {
    await Promise.all(receivers.map((r) => r.close()));
    await h?.close();
  });

  it("delivers each event once per subscriber, in per-shipment order, with the replicas sharing the work", async (t) => {
    const carrier = uniqueName("rep").replace(/_/g, "-").slice(0, 30);
    for (let i = 0; i < 3; i++) {
      receivers.push(await startReceiver((_r: ReceivedRequest, n: number) => (n % 4 === 2 ? { status: 502 } : { status: 200 })));
    }
    for (const r of receivers) {
      await h.client.subscribe({
        scope: { case: "carrierCode", value: carrier },
        eventTypes: [NotificationEventType.STATUS_CHANGED],
        webhookUrl: r.url,
      });
    }
    const shipments = Array.from({ length: 5 }, () => trackingNumber());
    const ids = new Set<string>();
    for (let v = 1; v <= 6; v++) {
      await Promise.all(
        shipments.map((tn) => {
          const eventId = uniqueName("evt");
          ids.add(eventId);
          return h.publishStatus({ eventId, trackingNumber: tn, version: v, carrierCode: carrier });
        }),
      );
    }
    await waitFor(() => receivers.every((r) => new Set(r.accepted.map((a) => a.json.id)).size === ids.size), {
      timeoutMs: 40_000,
      message: "all receivers to accept all events",
    });
    for (const r of receivers) {
      assert.equal(r.accepted.length, ids.size, "no event accepted twice");
      assert.deepEqual(new Set(r.accepted.map((a) => a.json.id)), ids);
      for (const tn of shipments) {
        const versions = r.accepted.filter((a) => a.json.data.tracking_number === tn).map((a) => a.json.data.shipment_version);
        assert.deepEqual(versions, [1, 2, 3, 4, 5, 6], `in order for ${tn}`);
      }
    }
    const requests = receivers.reduce((n, r) => n + r.requests.length, 0);
    const [a, b] = await waitFor(async () => {
      const counts = [await attemptsCounted(h.svc), await attemptsCounted(second)];
      return (counts[0] ?? 0) + (counts[1] ?? 0) === requests ? counts : undefined;
    });
    assert.equal((a ?? 0) + (b ?? 0), requests, "every request was made by exactly one replica's attempt");
    await t.annotate(`replica split of ${requests} attempts: ${a} / ${b}`);
  });
});
