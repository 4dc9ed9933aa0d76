import { createHash, randomBytes } from "node:crypto";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { requirePrincipal } from "@logistics/shared/auth";
import type { NotificationService } from "@logistics/shared/gen/logistics/notification/v1/notification_pb.js";
import { disclosedAttempt } from "./attempt-disclosure.js";
import { checkSubscriptionScope, idempotencyScope, ownerOf } from "./notification-access.js";
import { SubscriptionLimitError, type NotificationStore, type SubscriptionLimits } from "./notification-store.js";
import { resolveWebhookTarget, WebhookUrlError, type WebhookTargetPolicy } from "./webhook-target.js";

/** The RPC handlers of NotificationService. */
export type NotificationHandlers = Partial<ServiceImpl<typeof NotificationService>>;

/** Dependencies of the notification handlers (narrow interfaces, built by notification.ts). */
export interface NotificationHandlersDeps {
  store: Pick<
    NotificationStore,
    "createSubscription" | "findByIdempotencyKey" | "unsubscribe" | "listSubscriptions" | "listDeliveries" | "redrive"
  >;
  /** Where webhook URLs may point (checked at Subscribe). */
  targetPolicy: WebhookTargetPolicy;
  /** Caps on a customer's or carrier's active subscriptions (none for internal and operator callers). */
  subscriptionLimits?: SubscriptionLimits;
  /** Called after RedriveDeadLetters moved deliveries (e.g. to wake the delivery worker). */
  onRedriven?: (count: number) => void;
}

/** Default and maximum page sizes of the list RPCs (the maximum is enforced by the proto). */
export const DEFAULT_PAGE_SIZE = 50;

/** A generated signing secret: 32 random bytes, base64url (43 characters). */
export function generateSigningSecret(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * Creates the NotificationService handlers. Requests reach them authenticated, authorized and
 * validated (protovalidate); they add what the proto rules cannot express: ownership
 * (notification-access.ts: a customer or carrier sees and changes only its own subscriptions,
 * deliveries and dead letters), webhook URL checks (https, public address, port), idempotency
 * replay, pagination tokens, what a subscriber is shown of an attempt's duration
 * (attempt-disclosure.ts; the store keeps it exact) and the store.
 *
 * Idempotency keys are scoped to the caller (the token subject, qualified by its customer or
 * carrier): the same key from another caller creates another subscription. A replay returns the
 * original subscription and secret even if the request differs.
 */
export function createNotificationHandlers(deps: NotificationHandlersDeps): NotificationHandlers {
  const { store } = deps;
  return {
    async subscribe(req, ctx) {
      const principal = requirePrincipal(ctx);
      const owner = idempotencyScope(principal);
      const scope = req.scope;
      if (scope.case === undefined) throw new ConnectError("scope is required", Code.InvalidArgument);
      checkSubscriptionScope(principal, scope);
      if (req.idempotencyKey) {
        const existing = await store.findByIdempotencyKey(owner, req.idempotencyKey);
        if (existing) return { subscription: existing.subscription, signingSecret: existing.secret };
      }
      let url: URL;
      try {
        url = (await resolveWebhookTarget(req.webhookUrl, deps.targetPolicy)).url;
      } catch (err) {
        if (err instanceof WebhookUrlError) {
          throw new ConnectError(err.message, err.problem === "forbidden" ? Code.PermissionDenied : Code.InvalidArgument);
        }
        throw err;
      }
      const created = await store
        .createSubscription({
          id: `sub_${randomBytes(12).toString("base64url")}`,
          owner,
          ownedBy: ownerOf(principal),
          scope,
          eventTypes: [...new Set(req.eventTypes)],
          webhookUrl: url.toString(),
          origin: url.origin,
          secret: req.secret || generateSigningSecret(),
          idempotencyKey: req.idempotencyKey || undefined,
          ...(deps.subscriptionLimits ? { limits: deps.subscriptionLimits } : {}),
        })
        .catch((err: unknown) => {
          if (err instanceof SubscriptionLimitError) throw new ConnectError(err.message, Code.ResourceExhausted);
          throw err;
        });
      return { subscription: created.subscription, signingSecret: created.secret };
    },

    async unsubscribe(req, ctx) {
      const outcome = await store.unsubscribe(req.subscriptionId, ownerOf(requirePrincipal(ctx)));
      if (outcome === "not_found") {
        throw new ConnectError(`subscription ${req.subscriptionId} not found`, Code.NotFound);
      }
      return {};
    },

    async listSubscriptions(req, ctx) {
      const ownedBy = ownerOf(requirePrincipal(ctx));
      const filter = {
        ...(req.trackingNumber ? { trackingNumber: req.trackingNumber } : {}),
        ...(req.customerId ? { customerId: req.customerId } : {}),
        ...(req.carrierCode ? { carrierCode: req.carrierCode } : {}),
      };
      const pageSize = req.pageSize || DEFAULT_PAGE_SIZE;
      const after = readPageToken(req.pageToken, filter);
      const page = await store.listSubscriptions({ ...filter, ...(ownedBy ? { ownedBy } : {}) }, pageSize, after);
      return { subscriptions: page.items, nextPageToken: page.nextSeq ? pageToken(page.nextSeq, filter) : "" };
    },

    async listDeliveries(req, ctx) {
      const ownedBy = ownerOf(requirePrincipal(ctx));
      const filter = {
        ...(req.subscriptionId ? { subscriptionId: req.subscriptionId } : {}),
        ...(req.trackingNumber ? { trackingNumber: req.trackingNumber } : {}),
        ...(req.state ? { state: req.state } : {}),
      };
      const pageSize = req.pageSize || DEFAULT_PAGE_SIZE;
      const after = readPageToken(req.pageToken, filter);
      const page = await store.listDeliveries({ ...filter, ...(ownedBy ? { ownedBy } : {}) }, pageSize, after);
      // Attempts as their subscriber may see them: durations coarsened, none without a response.
      const deliveries = page.items.map((d) => ({ ...d, attempts: d.attempts.map(disclosedAttempt) }));
      return { deliveries, nextPageToken: page.nextSeq ? pageToken(page.nextSeq, filter) : "" };
    },

    async redriveDeadLetters(req, ctx) {
      const ownedBy = ownerOf(requirePrincipal(ctx));
      const redriven = await store.redrive({
        ...(ownedBy ? { ownedBy } : {}),
        ...(req.subscriptionId ? { subscriptionId: req.subscriptionId } : {}),
        ...(req.deliveryIds.length ? { deliveryIds: req.deliveryIds } : {}),
      });
      if (redriven > 0) deps.onRedriven?.(redriven);
      return { redriven };
    },
  };
}

const MAX_BIGINT = 2n ** 63n - 1n;

/** Page tokens: the last row's sequence plus a fingerprint of the filters they were issued for. */
function pageToken(seq: string, filter: object): string {
  return Buffer.from(JSON.stringify({ s: seq, f: fingerprint(filter) })).toString("base64url");
}

function readPageToken(token: string, filter: object): string | undefined {
  if (!token) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw new ConnectError("page_token is not a token issued by this service", Code.InvalidArgument);
  }
  const { s, f } = (typeof parsed === "object" && parsed !== null ? parsed : {}) as Record<string, unknown>;
  // A sequence is a PostgreSQL bigint: a longer or larger one was never issued (and would fail the query).
  if (typeof s !== "string" || !/^\d{1,19}$/.test(s) || BigInt(s) > MAX_BIGINT || typeof f !== "string") {
    throw new ConnectError("page_token is not a token issued by this service", Code.InvalidArgument);
  }
  if (f !== fingerprint(filter)) {
    throw new ConnectError("page_token was issued for different filters", Code.InvalidArgument);
  }
  return s;
}

function fingerprint(filter: object): string {
  return createHash("sha256").update(JSON.stringify(filter)).digest("base64url").slice(0, 16);
}
