import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Scope } from "@logistics/shared/auth";
import {
  DeliveryState,
  NotificationEventType,
  NotificationService,
} from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { codeOf, startNotificationHarness, startReceiver, trackingNumber, type NotificationHarness } from "./notification-harness.js";

describe("NotificationService RPCs (https required, SSRF protection)", () => {
  let h: NotificationHarness;
  let closedPort: number;
  const STATUS = [NotificationEventType.STATUS_CHANGED];

  beforeAll(async () => {
    h = await startNotificationHarness({
      NOTIFICATION_ALLOW_HTTP: "false",
      NOTIFICATION_RETRY_BASE_MS: "60000",
      NOTIFICATION_DELIVERY_TIMEOUT_MS: "2000",
      NOTIFICATION_LEASE_MS: "10000",
    });
    const probe = await startReceiver();
    closedPort = probe.port;
    await probe.close();
  });
  afterAll(async () => {
    await h?.close();
  });

  it("refuses webhook URLs that are or resolve to non-public addresses with PermissionDenied", async () => {
    for (const url of [
      "https://localhost/hooks",
      "https://10.0.0.1/hooks",
      "https://192.168.1.10/hooks",
      "https://172.16.5.4/hooks",
      "https://169.254.169.254/latest/meta-data",
      "https://100.64.0.1/hooks",
      "https://0.0.0.0/hooks",
      "https://224.0.0.1/hooks",
      "https://[::1]/hooks",
      "https://[fd00::1]/hooks",
      "https://[fe80::1]/hooks",
      "https://127.0.0.2/hooks",
    ]) {
      const code = await codeOf(
        h.client.subscribe({ scope: { case: "trackingNumber", value: trackingNumber() }, eventTypes: STATUS, webhookUrl: url }),
      );
      assert.equal(code, Code.PermissionDenied, url);
    }
  });

  it("refuses http, other schemes and credentials in the URL with InvalidArgument", async () => {
    for (const url of ["http://127.0.0.1:8080/hooks", "ftp://127.0.0.1/hooks", "https://user:pw@127.0.0.1/hooks", "not a url"]) {
      const code = await codeOf(
        h.client.subscribe({ scope: { case: "trackingNumber", value: trackingNumber() }, eventTypes: STATUS, webhookUrl: url }),
      );
      assert.equal(code, Code.InvalidArgument, url);
    }
    const noTypes = await codeOf(
      h.client.subscribe({ scope: { case: "trackingNumber", value: trackingNumber() }, eventTypes: [], webhookUrl: "https://127.0.0.1/" }),
    );
    assert.equal(noTypes, Code.InvalidArgument);
  });

  it("generates a 32-byte base64url secret when none is given, and keeps a caller's secret", async () => {
    const generated = await h.client.subscribe({
      scope: { case: "trackingNumber", value: trackingNumber() },
      eventTypes: STATUS,
      webhookUrl: "https://127.0.0.1/hooks",
    });
    assert.match(generated.signingSecret, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(generated.signingSecret, "base64url").length, 32);
    assert.equal(generated.subscription?.active, true);
    assert.match(generated.subscription?.subscriptionId ?? "", /^[A-Za-z0-9_-]{1,64}$/);
    const mine = "s".repeat(40);
    const chosen = await h.client.subscribe({
      scope: { case: "trackingNumber", value: trackingNumber() },
      eventTypes: STATUS,
      webhookUrl: "https://127.0.0.1/hooks",
      secret: mine,
    });
    assert.equal(chosen.signingSecret, mine);
  });

  it("replays Subscribe by idempotency key (per caller) without creating anything", async () => {
    const tn = trackingNumber();
    const req = {
      scope: { case: "trackingNumber" as const, value: tn },
      eventTypes: STATUS,
      webhookUrl: "https://127.0.0.1/hooks",
      idempotencyKey: uniqueName("idem"),
    };
    const first = await h.client.subscribe(req);
    const second = await h.client.subscribe(req);
    assert.equal(second.subscription?.subscriptionId, first.subscription?.subscriptionId);
    assert.equal(second.signingSecret, first.signingSecret);
    assert.equal((await h.client.listSubscriptions({ trackingNumber: tn })).subscriptions.length, 1);

    const other = createClient(NotificationService, createConnectTransport({ baseUrl: h.svc.url, httpVersion: "1.1" }));
    const headers = { authorization: `Bearer ${await h.token([Scope.SubscriptionsWrite], "another-client")}` };
    const third = await other.subscribe(req, { headers });
    assert.notEqual(third.subscription?.subscriptionId, first.subscription?.subscriptionId);
    assert.equal((await h.client.listSubscriptions({ trackingNumber: tn })).subscriptions.length, 2);
  });

  it("lists subscriptions newest first in pages, without secrets, rejecting a token reused with other filters", async () => {
    const customer = uniqueName("cust");
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await h.client.subscribe({ scope: { case: "customerId", value: customer }, eventTypes: STATUS, webhookUrl: `https://127.0.0.1/h${i}` });
      ids.push(res.subscription?.subscriptionId ?? "");
    }
    const p1 = await h.client.listSubscriptions({ customerId: customer, pageSize: 2 });
    assert.deepEqual(p1.subscriptions.map((s) => s.subscriptionId), [ids[2], ids[1]]);
    assert.ok(p1.nextPageToken);
    const p2 = await h.client.listSubscriptions({ customerId: customer, pageSize: 2, pageToken: p1.nextPageToken });
    assert.deepEqual(p2.subscriptions.map((s) => s.subscriptionId), [ids[0]]);
    assert.equal(p2.nextPageToken, "");
    assert.equal(p2.subscriptions[0]?.scope.case, "customerId");
    assert.equal(
      await codeOf(h.client.listSubscriptions({ customerId: uniqueName("cust"), pageSize: 2, pageToken: p1.nextPageToken })),
      Code.InvalidArgument,
    );
    assert.equal(await codeOf(h.client.listSubscriptions({ pageToken: "garbage" })), Code.InvalidArgument);
    // A forged token with the right filters and a sequence past PostgreSQL's bigint: refused, not an Internal error.
    const { f } = JSON.parse(Buffer.from(p1.nextPageToken, "base64url").toString()) as { f: string };
    for (const seq of ["9999999999999999999", "9223372036854775808"]) {
      const forged = Buffer.from(JSON.stringify({ s: seq, f })).toString("base64url");
      assert.equal(await codeOf(h.client.listSubscriptions({ customerId: customer, pageSize: 2, pageToken: forged })), Code.InvalidArgument, seq);
    }
    const last = Buffer.from(JSON.stringify({ s: "9223372036854775807", f })).toString("base64url");
    assert.equal((await h.client.listSubscriptions({ customerId: customer, pageSize: 2, pageToken: last })).subscriptions.length, 2);
  });

  it("unsubscribes (idempotently), cancels pending retries, and answers NotFound for unknown ids", async () => {
    const tn = trackingNumber();
    const res = await h.client.subscribe({
      scope: { case: "trackingNumber", value: tn },
      eventTypes: STATUS,
      webhookUrl: `https://127.0.0.1:${closedPort}/hooks`,
    });
    const id = res.subscription?.subscriptionId ?? "";
    await h.publishStatus({ eventId: uniqueName("evt"), trackingNumber: tn, version: 1 });
    const [retrying] = await waitFor(async () => {
      const l = await h.client.listDeliveries({ subscriptionId: id, state: DeliveryState.RETRYING });
      return l.deliveries.length ? l.deliveries : undefined;
    });
    assert.ok(retrying?.nextAttemptAt, "a retry is scheduled");
    assert.equal(retrying?.attempts[0]?.httpStatus, 0);

    await h.client.unsubscribe({ subscriptionId: id });
    await h.client.unsubscribe({ subscriptionId: id });
    const [listed] = (await h.client.listSubscriptions({ trackingNumber: tn })).subscriptions;
    assert.equal(listed?.active, false);
    const [cancelled] = (await h.client.listDeliveries({ subscriptionId: id })).deliveries;
    assert.equal(cancelled?.state, DeliveryState.DEAD_LETTERED);
    assert.match(cancelled?.lastError ?? "", /subscription deleted/);
    assert.equal((await h.client.redriveDeadLetters({ subscriptionId: id })).redriven, 0, "never redriven");
    assert.equal(await codeOf(h.client.unsubscribe({ subscriptionId: "sub_neverexisted" })), Code.NotFound);
  });

  it("enforces the scopes of each RPC", async () => {
    const bare = createClient(NotificationService, createConnectTransport({ baseUrl: h.svc.url, httpVersion: "1.1" }));
    const as = async (scopes: string[]) => ({ headers: { authorization: `Bearer ${await h.token(scopes)}` } });
    const sub = { scope: { case: "trackingNumber" as const, value: trackingNumber() }, eventTypes: STATUS, webhookUrl: "https://127.0.0.1/" };
    assert.equal(await codeOf(bare.subscribe(sub)), Code.Unauthenticated);
    assert.equal(await codeOf(bare.subscribe(sub, await as([Scope.SubscriptionsRead]))), Code.PermissionDenied);
    assert.equal(await codeOf(bare.listDeliveries({}, await as([Scope.SubscriptionsRead]))), "ok");
    assert.equal(
      await codeOf(bare.redriveDeadLetters({ subscriptionId: "sub_x" }, await as([Scope.SubscriptionsWrite, Scope.SubscriptionsRead]))),
      Code.PermissionDenied,
    );
    assert.equal(await codeOf(bare.redriveDeadLetters({}, await as([Scope.DeliveriesAdmin]))), Code.InvalidArgument);
  });
});
