import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { NotificationEventType } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { uniqueName, waitFor } from "@logistics/shared/testing";
import { startNotificationHarness, startReceiver, trackingNumber, type NotificationHarness, type TestReceiver } from "./notification-harness.js";

/**
 * The webhook port rule through the real service. Public addresses are given as literals, so
 * Subscribe needs no DNS; no event is published for their tracking numbers, so nothing is sent.
 */
describe("NotificationService webhook ports (nats-server, PostgreSQL)", () => {
  let h: NotificationHarness;
  let receiver: TestReceiver | undefined;
  const STATUS = [NotificationEventType.STATUS_CHANGED];
  const PUBLIC = "93.184.216.34";

  beforeAll(async () => {
    h = await startNotificationHarness({
      // The harness allows http and the host 127.0.0.1; one range and one port besides.
      NOTIFICATION_WEBHOOK_ALLOW_CIDRS: "127.0.0.0/8",
      NOTIFICATION_WEBHOOK_ALLOW_PORTS: "8443",
    });
  });
  afterAll(async () => {
    await receiver?.close();
    await h?.close();
  });

  const subscribe = (tn: string, webhookUrl: string) =>
    h.client.subscribe({ scope: { case: "trackingNumber", value: tn }, eventTypes: STATUS, webhookUrl });

  it("refuses a port that is neither the scheme's default nor allowed with InvalidArgument, and creates nothing", async () => {
    for (const [url, port, scheme, allowed] of [
      [`https://${PUBLIC}:22/hooks`, 22, "https", "443 (the default) or 8443"],
      [`https://${PUBLIC}:6379/hooks`, 6379, "https", "443 (the default) or 8443"],
      [`https://${PUBLIC}:80/hooks`, 80, "https", "443 (the default) or 8443"],
      [`http://${PUBLIC}:443/hooks`, 443, "http", "80 (the default) or 8443"],
      ["https://[2606:2800:220:1:248:1893:25c8:1946]:25/hooks", 25, "https", "443 (the default) or 8443"],
    ] as const) {
      const tn = trackingNumber();
      const err = await subscribe(tn, url).then(
        () => assert.fail(`${url} was accepted`),
        (e: unknown) => ConnectError.from(e),
      );
      assert.equal(err.code, Code.InvalidArgument, url);
      assert.equal(
        err.rawMessage,
        `webhook_url may not use port ${port}: ${scheme} webhooks go to port ${allowed}; ` +
          "the service can allow more ports with NOTIFICATION_WEBHOOK_ALLOW_PORTS",
        url,
      );
      assert.deepEqual((await h.client.listSubscriptions({ trackingNumber: tn })).subscriptions, [], url);
    }
  });

  it("accepts the scheme's default port and the allowed one", async () => {
    for (const [url, stored] of [
      [`https://${PUBLIC}/hooks`, `https://${PUBLIC}/hooks`],
      [`https://${PUBLIC}:443/hooks`, `https://${PUBLIC}/hooks`],
      [`https://${PUBLIC}:8443/hooks`, `https://${PUBLIC}:8443/hooks`],
      [`http://${PUBLIC}:8443/hooks`, `http://${PUBLIC}:8443/hooks`],
      [`http://${PUBLIC}/hooks`, `http://${PUBLIC}/hooks`],
    ] as const) {
      const res = await subscribe(trackingNumber(), url);
      assert.equal(res.subscription?.webhookUrl, stored, url);
      assert.equal(res.subscription?.active, true, url);
    }
  });

  it("lets an allow-listed range use any port, and nothing outside it", async () => {
    assert.equal((await subscribe(trackingNumber(), "https://127.0.0.2:6379/hooks")).subscription?.active, true);
    // Outside the range the address rule answers first.
    const outside = await subscribe(trackingNumber(), "https://10.0.0.1:6379/hooks").catch((e: unknown) => ConnectError.from(e));
    assert.ok(outside instanceof ConnectError);
    assert.equal(outside.code, Code.PermissionDenied);
  });

  it("delivers to an allow-listed host on any port (a local receiver on a random port)", async () => {
    receiver = await startReceiver();
    assert.ok(receiver.port !== 80 && receiver.port !== 8443);
    const tn = trackingNumber();
    await subscribe(tn, receiver.url);
    const eventId = uniqueName("evt");
    await h.publishStatus({ eventId, trackingNumber: tn, version: 1 });
    const r = receiver;
    await waitFor(() => r.accepted.length === 1, { timeoutMs: 20_000, message: "the webhook to arrive" });
    assert.equal(r.accepted[0]?.json.id, eventId);
  });
});
