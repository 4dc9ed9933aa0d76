import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { context, propagation, SpanKind, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { MessagingAttributes } from "@logistics/shared/nats";
import { ShipmentStatus } from "@logistics/shared/gen/logistics/common/v1/shipment_pb.js";
import { DeliveryState, NotificationEventType } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { signatureHeader, verifyWebhookSignature } from "../src/signature.js";
import {
  startNotificationHarness,
  startReceiver,
  trackingNumber,
  type NotificationHarness,
  type ReceivedRequest,
  type TestReceiver,
} from "./notification-harness.js";
import { loadReadmeVerifier, type ReadmeVerifier } from "./readme-snippet.js";

const BASE_MS = 50;

describe("notification webhook delivery (nats-server, PostgreSQL, node:http receivers)", () => {
  let h: NotificationHarness;
  const receivers: TestReceiver[] = [];
  const receiver = async (...args: Parameters<typeof startReceiver>) => {
    const r = await startReceiver(...args);
    receivers.push(r);
    return r;
  };
  const subscribe = async (scope: { trackingNumber: string } | { customerId: string } | { carrierCode: string }, url: string, types = [NotificationEventType.STATUS_CHANGED]) => {
    const [key, value] = Object.entries(scope)[0] as [string, string];
    const res = await h.client.subscribe({
      scope: { case: key as "trackingNumber", value },
      eventTypes: types,
      webhookUrl: url,
    });
    return { id: res.subscription?.subscriptionId ?? "", secret: res.signingSecret };
  };
  let readmeVerify: ReadmeVerifier;
  const signed = (r: ReceivedRequest, secret: string) => {
    const header = String(r.headers["logistics-signature"]);
    const ours = verifyWebhookSignature({ body: r.body, header, secret });
    assert.equal(readmeVerify(r.body, header, secret), ours, "the README snippet agrees with signature.ts");
    return ours;
  };

  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });

  beforeAll(async () => {
    trace.setGlobalTracerProvider(provider);
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    readmeVerify = await loadReadmeVerifier();
    h = await startNotificationHarness({
      NOTIFICATION_RETRY_BASE_MS: String(BASE_MS),
      NOTIFICATION_RETRY_MAX_MS: "1000",
      NOTIFICATION_MAX_ATTEMPTS: "7",
      NOTIFICATION_RETRY_JITTER: "equal",
      NOTIFICATION_DELIVERY_TIMEOUT_MS: "2000",
      NOTIFICATION_LEASE_MS: "10000",
      NOTIFICATION_CONCURRENCY: "16",
      NOTIFICATION_ENDPOINT_CONCURRENCY: "2",
      NOTIFICATION_BREAKER_FAILURES: "1000",
    });
  });
  afterAll(async () => {
    await Promise.all(receivers.map((r) => r.close()));
    await h?.close();
    await provider.shutdown();
    trace.disable();
    propagation.disable();
    context.disable();
  });

  it("continues the event's trace: traceparent names the publisher's trace and a webhook CLIENT span", async () => {
    const r = await receiver();
    const tn = trackingNumber();
    await subscribe({ trackingNumber: tn }, r.url);
    const eventId = uniqueName("evt");
    await h.publishStatus({ eventId, trackingNumber: tn, version: 1 });
    await waitFor(() => r.accepted.length === 1);
    const [, traceId, spanId] = String(r.requests[0]?.headers.traceparent).split("-");
    const producer = await waitFor(() =>
      exporter.getFinishedSpans().find((s) => s.kind === SpanKind.PRODUCER && s.attributes[MessagingAttributes.MESSAGE_ID] === eventId),
    );
    assert.equal(traceId, producer.spanContext().traceId, "same trace as the publish");
    const client = await waitFor(() =>
      exporter.getFinishedSpans().find((s) => s.kind === SpanKind.CLIENT && s.attributes["logistics.event_id"] === eventId),
    );
    assert.equal(spanId, client.spanContext().spanId, "the request's parent is the webhook span");
  });

  it("delivers every status change to each matching subscriber once per event id, signed and in order per shipment", async () => {
    const carrier = uniqueName("c").replace(/_/g, "-").slice(0, 30);
    const customer = uniqueName("cust");
    const shipments = [trackingNumber(), trackingNumber(), trackingNumber()];
    // Flaky receivers: every third request fails with 500, so many deliveries need retries.
    const flaky = (_r: ReceivedRequest, i: number) => (i % 3 === 1 ? { status: 500, body: "x".repeat(5000) } : { status: 200 });
    const byTracking = await receiver(flaky);
    const byCustomer = await receiver(flaky);
    const byCarrier = await receiver(flaky);
    const unrelated = await receiver();
    const subs = [
      { r: byTracking, ...(await subscribe({ trackingNumber: shipments[0] as string }, byTracking.url)) },
      { r: byCustomer, ...(await subscribe({ customerId: customer }, byCustomer.url)) },
      { r: byCarrier, ...(await subscribe({ carrierCode: carrier }, byCarrier.url)) },
    ];
    await subscribe({ carrierCode: "other-carrier" }, unrelated.url);

    const events: Array<{ id: string; tn: string; version: number }> = [];
    for (let v = 1; v <= 5; v++) {
      for (const tn of shipments) {
        const id = uniqueName("evt");
        events.push({ id, tn, version: v });
        await h.publishStatus({ eventId: id, trackingNumber: tn, version: v, customerId: customer, carrierCode: carrier });
      }
    }
    // The same event published again under another message id (a re-processed scan): no new delivery.
    const again = events[0] as { id: string; tn: string; version: number };
    await h.publishStatus({ eventId: again.id, trackingNumber: again.tn, version: again.version, customerId: customer, carrierCode: carrier, msgId: `${again.id}-republished` });

    const expected = new Map<TestReceiver, Set<string>>([
      [byTracking, new Set(events.filter((e) => e.tn === shipments[0]).map((e) => e.id))],
      [byCustomer, new Set(events.map((e) => e.id))],
      [byCarrier, new Set(events.map((e) => e.id))],
    ]);
    await waitFor(
      () => [...expected].every(([r, ids]) => new Set(r.accepted.map((a) => a.json.id)).size === ids.size),
      { timeoutMs: 30_000, message: "every subscriber to accept every matching event" },
    );
    for (const { r, secret } of subs) {
      const ids = expected.get(r) as Set<string>;
      const accepted = r.accepted.map((a) => a.json.id);
      assert.deepEqual(new Set(accepted), ids, "no missing and no unexpected event");
      assert.equal(accepted.length, ids.size, "no event accepted twice");
      assert.ok(r.requests.length > accepted.length, "some attempts failed and were retried");
      for (const req of r.requests) {
        assert.ok(signed(req, secret), "every request carries a valid signature");
        assert.equal(req.headers["logistics-event-id"], req.json.id);
        assert.equal(req.headers["content-type"], "application/json");
        assert.match(String(req.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
        assert.equal(req.json.type, "shipment.status_changed");
      }
      for (const tn of shipments) {
        const versions = r.accepted.filter((a) => a.json.data.tracking_number === tn).map((a) => a.json.data.shipment_version);
        assert.deepEqual(versions, [...versions].sort((a, b) => a - b), `in version order for ${tn}`);
      }
    }
    assert.equal(unrelated.requests.length, 0, "a non-matching subscription gets nothing");
    // The response excerpt of the failed attempts is bounded to 1 KiB.
    const listed = await h.client.listDeliveries({ subscriptionId: subs[1]?.id ?? "", pageSize: 500 });
    assert.equal(listed.deliveries.length, events.length);
    const failedAttempts = listed.deliveries.flatMap((d) => d.attempts).filter((a) => a.httpStatus === 500);
    assert.ok(failedAttempts.length > 0);
    for (const a of failedAttempts) assert.ok(Buffer.byteLength(a.responseExcerpt) <= 1024, "excerpt bounded");
  });

  it("verifies real deliveries with the README snippet, and rejects a tampered body or a stale timestamp", async () => {
    const r = await receiver();
    const tn = trackingNumber();
    const { secret } = await subscribe({ trackingNumber: tn }, r.url);
    await h.publishStatus({ eventId: uniqueName("evt"), trackingNumber: tn, version: 1 });
    await waitFor(() => r.accepted.length === 1);
    const req = r.accepted[0] as ReceivedRequest;
    const header = String(req.headers["logistics-signature"]);
    assert.equal(readmeVerify(req.body, header, secret), true);
    const tampered = Buffer.from(req.body.toString("utf8").replace('"version":1', '"version":2').replace(tn, `${tn}X`));
    assert.notDeepEqual(tampered, req.body);
    assert.equal(readmeVerify(tampered, header, secret), false);
    assert.equal(verifyWebhookSignature({ body: tampered, header, secret }), false);
    assert.equal(readmeVerify(req.body, header, `${secret}x`), false, "another secret");
    const old = Math.floor(Date.now() / 1000) - 3600;
    assert.equal(readmeVerify(req.body, signatureHeader(secret, old, req.body), secret), false, "stale");
    assert.equal(readmeVerify(req.body, signatureHeader(secret, old, req.body), secret, 300, old + 10), true);
  });

  it("retries a receiver that fails 5 times with growing delays, then delivers", async (t) => {
    const r = await receiver((_req, i) => (i < 5 ? { status: 503 } : { status: 200 }));
    const tn = trackingNumber();
    const sub = await subscribe({ trackingNumber: tn }, r.url);
    await h.publishStatus({ eventId: uniqueName("evt"), trackingNumber: tn, version: 1 });
    await waitFor(() => r.accepted.length === 1, { timeoutMs: 20_000, message: "the sixth attempt to succeed" });
    assert.equal(r.requests.length, 6);
    const gaps = r.requests.slice(1).map((req, i) => req.at - (r.requests[i] as ReceivedRequest).at);
    // Equal jitter: the n-th wait lies in [ceiling/2, ceiling] with ceiling = 50 ms · 2^(n-1) (cap 1 s).
    gaps.forEach((g, i) => assert.ok(g >= (BASE_MS * 2 ** i) / 2 - 5, `wait ${i + 1} (${g.toFixed(0)} ms) respects its floor`));
    // Wait 5 is at least 400 ms, wait 1 at most 50 ms (plus the same polling overhead in both).
    assert.ok((gaps[4] as number) - (gaps[0] as number) >= 200, `delays grow: ${gaps.map((g) => g.toFixed(0)).join(", ")} ms`);
    await t.annotate(`waits between attempts: ${gaps.map((g) => g.toFixed(0)).join(", ")} ms`);
    const [d] = await waitFor(async () => {
      const res = await h.client.listDeliveries({ subscriptionId: sub.id });
      return res.deliveries[0]?.state === DeliveryState.DELIVERED ? res.deliveries : undefined;
    }, { message: "the delivery recorded as delivered" });
    assert.equal(d?.attemptCount, 6);
    assert.deepEqual(d?.attempts.map((a) => a.httpStatus), [503, 503, 503, 503, 503, 200]);
    assert.equal(d?.lastError, "HTTP 503");
    assert.ok(d?.deliveredAt);
    assert.equal(d?.nextAttemptAt, undefined);
    assert.deepEqual([...new Set(r.requests.map((q) => q.headers["logistics-delivery-attempt"]))], ["1", "2", "3", "4", "5", "6"]);
    assert.equal(r.connections, 1, "the attempts (a short 503 each) shared one kept-alive connection");
  });

  it("dead-letters at once a delivery the receiver refuses with a 4xx", async () => {
    const r = await receiver(() => ({ status: 410, body: "gone" }));
    const tn = trackingNumber();
    const sub = await subscribe({ trackingNumber: tn }, r.url);
    await h.publishStatus({ eventId: uniqueName("evt"), trackingNumber: tn, version: 1 });
    const [d] = await waitFor(async () => {
      const res = await h.client.listDeliveries({ subscriptionId: sub.id, state: DeliveryState.DEAD_LETTERED });
      return res.deliveries.length ? res.deliveries : undefined;
    });
    assert.equal(d?.attemptCount, 1);
    assert.equal(d?.attempts[0]?.httpStatus, 410);
    assert.equal(d?.attempts[0]?.responseExcerpt, "gone");
    assert.equal(r.requests.length, 1);
  });

  it("records an attempt whose answer holds NUL bytes, and the shipment's later events follow it", async () => {
    // The receiver controls every byte of the excerpt; PostgreSQL text cannot hold NUL.
    const r = await receiver(() => ({ status: 200, body: "ok\u0000poison" }));
    const fail = await receiver(() => ({ status: 500, body: "\u0000".repeat(64) }));
    const tn = trackingNumber();
    const sub = await subscribe({ trackingNumber: tn }, r.url);
    const other = await subscribe({ trackingNumber: tn }, fail.url);
    await h.publishStatus({ eventId: uniqueName("evt"), trackingNumber: tn, version: 1 });
    await h.publishStatus({ eventId: uniqueName("evt"), trackingNumber: tn, version: 2, status: ShipmentStatus.DELIVERED });
    await waitFor(() => r.accepted.length === 2, { timeoutMs: 20_000, message: "both events delivered" });
    assert.deepEqual(r.requests.map((q) => q.json.data.shipment_version), [1, 2], "each sent once");
    const delivered = await waitFor(async () => {
      const res = await h.client.listDeliveries({ subscriptionId: sub.id, state: DeliveryState.DELIVERED });
      return res.deliveries.length === 2 ? res.deliveries : undefined;
    });
    for (const d of delivered) assert.equal(d.attempts[0]?.responseExcerpt, "ok\uFFFDpoison");
    // A failing answer full of NUL is recorded as a failed attempt and retried, not left to its lease.
    const [retrying] = await waitFor(async () => {
      const res = await h.client.listDeliveries({ subscriptionId: other.id, state: DeliveryState.RETRYING });
      return res.deliveries.length ? res.deliveries : undefined;
    });
    assert.equal(retrying?.attempts[0]?.httpStatus, 500);
    assert.equal(retrying?.attempts[0]?.responseExcerpt, "\uFFFD".repeat(64));
  });

  it("does not let a slow receiver delay a fast one", async (t) => {
    const carrier = uniqueName("slow").replace(/_/g, "-").slice(0, 30);
    const slow = await receiver(() => ({ status: 200, delayMs: 1200 }));
    const fast = await receiver();
    await subscribe({ carrierCode: carrier }, slow.url);
    await subscribe({ carrierCode: carrier }, fast.url);
    const n = 10;
    for (let i = 0; i < n; i++) {
      await h.publishStatus({ eventId: uniqueName("evt"), trackingNumber: trackingNumber(), version: 1, carrierCode: carrier });
    }
    await waitFor(() => fast.accepted.length === n, { timeoutMs: 20_000, message: "the fast receiver to get everything" });
    const slowDone = slow.accepted.length;
    await t.annotate(`fast receiver got all ${n} while the slow one had answered ${slowDone}`);
    assert.ok(slowDone <= 4, `the fast receiver finished while the slow one had answered only ${slowDone} of ${n}`);
    await waitFor(() => slow.accepted.length === n, { timeoutMs: 30_000, message: "the slow receiver to get everything" });
    assert.ok(slow.maxConcurrent <= 2, `per-endpoint concurrency held (${slow.maxConcurrent})`);
    assert.equal(slow.requests.length, n, "slow but within the timeout: no retries");
  });

  it("holds later events of a shipment until the earlier one is delivered", async () => {
    // The first event fails three times; the next two must not overtake it.
    const r = await receiver((req) => {
      const firstEvent = req.json.data.shipment_version === 1;
      const tries = r.requests.filter((q) => q.json.data.shipment_version === 1).length;
      return firstEvent && tries <= 3 ? { status: 500 } : { status: 200 };
    });
    const tn = trackingNumber();
    await subscribe({ trackingNumber: tn }, r.url, [NotificationEventType.STATUS_CHANGED, NotificationEventType.ETA_CHANGED]);
    await h.publishStatus({ eventId: uniqueName("evt"), trackingNumber: tn, version: 1 });
    await h.publishEta({ eventId: uniqueName("eta"), trackingNumber: tn, version: 2 });
    await h.publishStatus({ eventId: uniqueName("evt"), trackingNumber: tn, version: 3, status: ShipmentStatus.OUT_FOR_DELIVERY });
    await waitFor(() => r.accepted.length === 3, { timeoutMs: 20_000, message: "all three events" });
    assert.deepEqual(r.requests.map((q) => q.json.data.shipment_version), [1, 1, 1, 1, 2, 3], "nothing overtook the failing event");
    assert.deepEqual(r.accepted.map((q) => q.json.type), ["shipment.status_changed", "shipment.eta_changed", "shipment.status_changed"]);
  });
});
