import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { durationMs, timestampMs } from "@bufbuild/protobuf/wkt";
import pg from "pg";
import { DeliveryState, NotificationEventType, type Delivery } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { startNotificationHarness, startReceiver, trackingNumber, type NotificationHarness, type TestReceiver } from "./notification-harness.js";

/** A short time limit: attempts without a response wait it out before they are recorded. */
const TIMEOUT_MS = 500;
const BASE_MS = 50;

/**
 * What ListDeliveries shows of webhook attempts that got no response and of answered ones, through
 * the real service, with real node:http receivers on 127.0.0.1 (allow-listed by the harness).
 */
describe("notification webhook attempts as their subscriber sees them (nats-server, PostgreSQL, node:http receivers)", () => {
  let h: NotificationHarness;
  let db: pg.Pool;
  const receivers: TestReceiver[] = [];
  const receiver = async (...args: Parameters<typeof startReceiver>) => {
    const r = await startReceiver(...args);
    receivers.push(r);
    return r;
  };
  /** A loopback port nothing listens on: connections to it are refused at once. */
  const closedPort = async () => {
    const probe = await startReceiver();
    await probe.close();
    return probe.port;
  };
  const subscribe = async (tn: string, url: string) => {
    const res = await h.client.subscribe({ scope: { case: "trackingNumber", value: tn }, eventTypes: [NotificationEventType.STATUS_CHANGED], webhookUrl: url });
    return res.subscription?.subscriptionId ?? "";
  };
  /** The attempts' durations as the table keeps them (ms), oldest first. */
  const storedDurations = async (deliveryId: string) =>
    (await db.query(`SELECT duration_ms FROM delivery_attempts WHERE delivery_id = $1 ORDER BY n`, [deliveryId])).rows.map((r: { duration_ms: number }) => r.duration_ms);

  beforeAll(async () => {
    h = await startNotificationHarness({
      NOTIFICATION_RETRY_BASE_MS: String(BASE_MS),
      NOTIFICATION_RETRY_MAX_MS: "200",
      NOTIFICATION_RETRY_JITTER: "equal",
      NOTIFICATION_MAX_ATTEMPTS: "3",
      NOTIFICATION_DELIVERY_TIMEOUT_MS: String(TIMEOUT_MS),
      NOTIFICATION_LEASE_MS: "10000",
      NOTIFICATION_BREAKER_FAILURES: "1000",
    });
    db = new pg.Pool({ connectionString: h.schema.connectionString, max: 1 });
  });
  afterAll(async () => {
    await Promise.all(receivers.map((r) => r.close()));
    await db?.end();
    await h?.close();
  });

  it("shows a refused attempt's error class without a duration, and only once its time limit has passed", async () => {
    const tn = trackingNumber();
    const sub = await subscribe(tn, `http://127.0.0.1:${await closedPort()}/hooks`);
    await h.publishStatus({ eventId: uniqueName("evt"), trackingNumber: tn, version: 1 });
    const { d, seenAt } = await waitFor(async () => {
      const [first] = (await h.client.listDeliveries({ subscriptionId: sub })).deliveries;
      return first && first.attemptCount > 0 ? { d: first, seenAt: Date.now() } : undefined;
    }, { intervalMs: 10, message: "the first attempt recorded" });
    const [attempt] = d.attempts;
    assert.ok(attempt?.attemptedAt);
    assert.equal(d.state, DeliveryState.RETRYING);
    assert.equal(attempt.httpStatus, 0);
    assert.equal(attempt.error, "connection failed");
    assert.equal(attempt.duration, undefined, "no duration: how fast it failed would tell a closed port from a filtered one");
    // A refusal takes a millisecond on loopback; it looks like a connection that hung to the end.
    const sent = timestampMs(attempt.attemptedAt);
    assert.ok(seenAt - sent >= TIMEOUT_MS, `listed ${seenAt - sent} ms after it was sent, not before its ${TIMEOUT_MS} ms limit`);
    assert.ok(d.nextAttemptAt && timestampMs(d.nextAttemptAt) - sent >= TIMEOUT_MS + BASE_MS / 2, "its retry counts from the time limit");
    const [stored] = await storedDurations(d.deliveryId);
    assert.ok(stored !== undefined && stored < TIMEOUT_MS, `the table keeps the exact duration for the operator (${stored} ms)`);
  });

  it("shows an answered attempt's duration rounded up to a multiple of 100 ms", async () => {
    const r = await receiver((_req, i) => (i === 0 ? { status: 503, delayMs: 130 } : { status: 200 }));
    const tn = trackingNumber();
    const sub = await subscribe(tn, r.url);
    await h.publishStatus({ eventId: uniqueName("evt"), trackingNumber: tn, version: 1 });
    const d = await waitFor(async () => {
      const [first] = (await h.client.listDeliveries({ subscriptionId: sub })).deliveries;
      return first?.state === DeliveryState.DELIVERED ? first : undefined;
    }, { message: "delivered on the second attempt" });
    assert.deepEqual(d.attempts.map((a) => a.httpStatus), [503, 200]);
    const shown = d.attempts.map((a) => (a.duration ? durationMs(a.duration) : undefined));
    const stored = await storedDurations(d.deliveryId);
    assert.ok((stored[0] as number) >= 130, `the slow answer took ${stored[0]} ms`);
    assert.deepEqual(shown, stored.map((ms) => Math.max(1, Math.ceil(ms / 100)) * 100), `shown ${shown.join(", ")} for ${stored.join(", ")} ms`);
  });

  it("dead-letters the deliveries of a dead receiver, and a redrive delivers them once it is back", async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}/hooks`;
    const tn = trackingNumber();
    const sub = await subscribe(tn, url);
    const ids = [uniqueName("evt"), uniqueName("evt")];
    await h.publishStatus({ eventId: ids[0] as string, trackingNumber: tn, version: 1 });
    await h.publishStatus({ eventId: ids[1] as string, trackingNumber: tn, version: 2 });
    const dead = await waitFor(
      async () => {
        const res = await h.client.listDeliveries({ subscriptionId: sub, state: DeliveryState.DEAD_LETTERED });
        return res.deliveries.length === 2 ? res.deliveries : undefined;
      },
      { timeoutMs: 30_000, message: "both deliveries to be dead-lettered" },
    );
    for (const d of dead) {
      assert.equal(d.attemptCount, 3);
      assert.equal(d.lastError, "connection failed", "a class, not the system's error with the address and port");
      assert.equal(d.nextAttemptAt, undefined);
    }
    const all = await h.client.listDeliveries({ state: DeliveryState.DEAD_LETTERED, pageSize: 500 });
    assert.ok(all.deliveries.some((d) => d.subscriptionId === sub), "listed among all dead letters");

    const back = await receiver(undefined, port);
    const { redriven } = await h.client.redriveDeadLetters({ subscriptionId: sub });
    assert.equal(redriven, 2);
    await waitFor(() => back.accepted.length === 2, { timeoutMs: 10_000, message: "redriven deliveries to arrive" });
    assert.deepEqual(back.accepted.map((a) => a.json.id), ids, "in their original order");
    assert.equal(back.requests.length, 2, "once each");
    // Recorded shortly after the receiver answered (attempts finishing together are recorded together).
    const delivered = await waitFor(async () => {
      const res = await h.client.listDeliveries({ subscriptionId: sub });
      return res.deliveries.every((d) => d.state === DeliveryState.DELIVERED) ? res.deliveries : undefined;
    }, { message: "both recorded as delivered" });
    const last = (d: Delivery) => d.attempts.at(-1);
    assert.ok(delivered.every((d) => last(d)?.httpStatus === 204 && last(d)?.duration !== undefined), "the answered attempts show a duration");
    assert.equal((await h.client.redriveDeadLetters({ subscriptionId: sub })).redriven, 0, "nothing left to redrive");
  });
});
