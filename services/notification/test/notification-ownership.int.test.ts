import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Scope } from "@logistics/shared/auth";
import { NotificationEventType, NotificationService } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { waitFor } from "@logistics/shared/testing";
import { codeOf, startNotificationHarness, startReceiver, trackingNumber, type NotificationHarness, type TestReceiver } from "./notification-harness.js";

const STATUS = [NotificationEventType.STATUS_CHANGED];
const CUSTOMER_SCOPES = [Scope.SubscriptionsWrite, Scope.SubscriptionsRead, Scope.DeliveriesAdmin];

/** A NotificationService client of the harness with a token for `extra`'s customer or carrier. */
async function clientOf(h: NotificationHarness, extra: { customer?: string; carrier?: string }, scopes: string[] = CUSTOMER_SCOPES): Promise<Client<typeof NotificationService>> {
  const token = await h.token(scopes, `${extra.customer ?? extra.carrier}-portal`, extra);
  return createClient(
    NotificationService,
    createConnectTransport({
      baseUrl: h.svc.url,
      httpVersion: "1.1",
      interceptors: [
        (next) => (req) => {
          req.header.set("authorization", `Bearer ${token}`);
          return next(req);
        },
      ],
    }),
  );
}

describe("notification ownership: a customer touches only its own subscriptions (real tokens, PostgreSQL, webhooks)", () => {
  let h: NotificationHarness;
  const receivers: TestReceiver[] = [];
  let clientFor: (extra: { customer?: string; carrier?: string }, scopes?: string[]) => Promise<Client<typeof NotificationService>>;

  beforeAll(async () => {
    h = await startNotificationHarness({ NOTIFICATION_ORDER_WINDOW_MS: "0" });
    clientFor = (extra, scopes = CUSTOMER_SCOPES) => clientOf(h, extra, scopes);
  });
  afterAll(async () => {
    for (const r of receivers) await r.close();
    await h?.close();
  });
  const receiver = async () => {
    const r = await startReceiver();
    receivers.push(r);
    return r;
  };

  it("keeps another customer's subscriptions, webhook URLs, deliveries and dead letters out of reach", async () => {
    const alice = await clientFor({ customer: "alice" });
    const mallory = await clientFor({ customer: "mallory" });
    const aliceHook = await receiver();
    const tn = trackingNumber();
    const sub = await alice.subscribe({ scope: { case: "customerId", value: "alice" }, eventTypes: STATUS, webhookUrl: `${aliceHook.url}/alice` });
    const id = sub.subscription?.subscriptionId ?? "";
    await h.publishStatus({ eventId: `ev-${tn}`, trackingNumber: tn, version: 1, customerId: "alice" });
    await waitFor(() => aliceHook.accepted.length === 1, { message: "alice's webhook receives her shipment's event" });

    const listed = await mallory.listSubscriptions({});
    assert.deepEqual(listed.subscriptions, [], "no other customer's subscriptions or webhook URLs");
    assert.deepEqual((await mallory.listSubscriptions({ customerId: "alice" })).subscriptions, []);
    assert.deepEqual((await mallory.listDeliveries({ subscriptionId: id })).deliveries, []);
    assert.deepEqual((await mallory.listDeliveries({ trackingNumber: tn })).deliveries, []);
    assert.equal((await mallory.redriveDeadLetters({ subscriptionId: id })).redriven, 0);
    assert.equal(await codeOf(mallory.unsubscribe({ subscriptionId: id })), Code.NotFound, "answered as if it did not exist");

    assert.deepEqual((await alice.listSubscriptions({})).subscriptions.map((s) => s.subscriptionId), [id]);
    assert.equal((await alice.listDeliveries({ subscriptionId: id })).deliveries.length, 1);
    const all = await h.client.listSubscriptions({});
    assert.ok(all.subscriptions.some((s) => s.subscriptionId === id), "internal callers and operators see every subscription");
    assert.equal(await codeOf(alice.unsubscribe({ subscriptionId: id })), "ok");
  });

  it("refuses a subscription to another customer's account or to a carrier, and delivers nothing for a guessed tracking number", async () => {
    const alice = await clientFor({ customer: "alice" });
    const mallory = await clientFor({ customer: "mallory" });
    const hook = await receiver();
    assert.equal(
      await codeOf(mallory.subscribe({ scope: { case: "customerId", value: "alice" }, eventTypes: STATUS, webhookUrl: `${hook.url}/m` })),
      Code.PermissionDenied,
    );
    assert.equal(
      await codeOf(mallory.subscribe({ scope: { case: "carrierCode", value: "acme" }, eventTypes: STATUS, webhookUrl: `${hook.url}/m` })),
      Code.PermissionDenied,
    );
    // Mallory guesses the tracking number of Alice's parcel; Alice subscribes to it too.
    const tn = trackingNumber();
    const aliceHook = await receiver();
    await alice.subscribe({ scope: { case: "trackingNumber", value: tn }, eventTypes: STATUS, webhookUrl: `${aliceHook.url}/a` });
    const guessed = await mallory.subscribe({ scope: { case: "trackingNumber", value: tn }, eventTypes: STATUS, webhookUrl: `${hook.url}/m` });
    await h.publishStatus({ eventId: `ev-g-${tn}`, trackingNumber: tn, version: 1, customerId: "alice" });
    await waitFor(() => aliceHook.accepted.length === 1, { message: "the owner is notified" });
    // Both subscriptions were matched in the same transaction: if Mallory's had matched, its delivery would exist now.
    assert.deepEqual((await h.client.listDeliveries({ subscriptionId: guessed.subscription?.subscriptionId ?? "" })).deliveries, []);
    assert.equal(hook.requests.length, 0, "the guesser's webhook receives nothing");
  });

  it("lets a carrier token subscribe to its own carrier only, and sends it no shipper data", async () => {
    const acme = await clientFor({ carrier: "acme" });
    const hook = await receiver();
    assert.equal(
      await codeOf(acme.subscribe({ scope: { case: "carrierCode", value: "globex" }, eventTypes: STATUS, webhookUrl: `${hook.url}/x` })),
      Code.PermissionDenied,
    );
    assert.equal(
      await codeOf(acme.subscribe({ scope: { case: "customerId", value: "alice" }, eventTypes: STATUS, webhookUrl: `${hook.url}/x` })),
      Code.PermissionDenied,
    );
    await acme.subscribe({ scope: { case: "carrierCode", value: "acme" }, eventTypes: STATUS, webhookUrl: `${hook.url}/acme` });
    const tn = trackingNumber();
    await h.publishStatus({ eventId: `ev-c-${tn}`, trackingNumber: tn, version: 1, customerId: "alice", carrierCode: "acme" });
    await waitFor(() => hook.accepted.some((r) => r.json.data.tracking_number === tn), { message: "the carrier's webhook is called" });
    const body = hook.accepted.find((r) => r.json.data.tracking_number === tn)?.json.data as unknown as Record<string, unknown>;
    assert.equal("customer_id" in body, false);
    assert.equal("shipment_id" in body, false);
  });
});

describe("notification caps: a customer holds at most so many active subscriptions (real tokens, PostgreSQL)", () => {
  let h: NotificationHarness;
  let hook: TestReceiver;
  let clientFor: (customer: string) => Promise<Client<typeof NotificationService>>;

  beforeAll(async () => {
    h = await startNotificationHarness({ NOTIFICATION_MAX_SUBSCRIPTIONS_PER_OWNER: "5", NOTIFICATION_MAX_BROAD_SUBSCRIPTIONS_PER_OWNER: "2" });
    hook = await startReceiver();
    clientFor = (customer) => clientOf(h, { customer });
  });
  afterAll(async () => {
    await hook?.close();
    await h?.close();
  });

  it("refuses customer-wide subscriptions past their cap and all subscriptions past theirs, counts concurrent calls, and frees a slot on unsubscribe", async () => {
    const customer = `cap-${trackingNumber().toLowerCase()}`;
    const c = await clientFor(customer);
    const broad = (key?: string) =>
      c.subscribe({ scope: { case: "customerId", value: customer }, eventTypes: STATUS, webhookUrl: `${hook.url}/b`, ...(key ? { idempotencyKey: key } : {}) });
    const byNumber = () => c.subscribe({ scope: { case: "trackingNumber", value: trackingNumber() }, eventTypes: STATUS, webhookUrl: `${hook.url}/t` });

    const first = await broad("first-of-all");
    // Ten more at once: the cap of 2 holds (the count and the insert are one step per owner).
    const settled = await Promise.allSettled(Array.from({ length: 10 }, () => broad()));
    assert.equal(settled.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of settled) if (r.status === "rejected") assert.equal(ConnectError.from(r.reason).code, Code.ResourceExhausted, ConnectError.from(r.reason).message);
    const refused = settled.find((r) => r.status === "rejected") as PromiseRejectedResult;
    assert.match(ConnectError.from(refused.reason).rawMessage, /2 active customer- or carrier-wide subscriptions/);

    // A replay of an idempotency key at the cap returns the subscription it made.
    assert.equal((await broad("first-of-all")).subscription?.subscriptionId, first.subscription?.subscriptionId);

    // Tracking-number scopes count toward the total only: 3 more fit, the 6th does not.
    for (let i = 0; i < 3; i++) await byNumber();
    assert.equal(await codeOf(byNumber()), Code.ResourceExhausted);

    // Another customer is not held back.
    const other = await clientFor(`${customer}-other`);
    await other.subscribe({ scope: { case: "customerId", value: `${customer}-other` }, eventTypes: STATUS, webhookUrl: `${hook.url}/o` });

    // Unsubscribing frees the slot.
    await c.unsubscribe({ subscriptionId: first.subscription?.subscriptionId ?? "" });
    await broad();
    assert.equal(await codeOf(broad()), Code.ResourceExhausted);
  });
});
