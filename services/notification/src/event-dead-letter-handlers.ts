import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { requirePrincipal } from "@logistics/shared/auth";
import {
  DeadLetterReason,
  EventDeadLetterSchema,
  type EventDeadLetter,
  type EventDeadLetterFilter,
  type EventDeadLetterService,
} from "@logistics/shared/gen/logistics/operations/v1/dead_letters_pb.js";
import type { DeadLetter, DeadLetterAdmin, DeadLetterFilter, DeadLetterReasonClass } from "@logistics/shared/operations";

/** The RPC handlers of EventDeadLetterService. */
export type EventDeadLetterHandlers = Partial<ServiceImpl<typeof EventDeadLetterService>>;

/** Page size of ListEventDeadLetters when the request sets none. */
export const DEFAULT_DEAD_LETTER_PAGE_SIZE = 100;
/** Most dead letters one redrive or purge handles when the request sets no limit. */
export const DEFAULT_DEAD_LETTER_BATCH = 1000;

const CLASS_OF: Readonly<Record<number, DeadLetterReasonClass | undefined>> = {
  [DeadLetterReason.POISON]: "poison",
  [DeadLetterReason.RETRIES_EXHAUSTED]: "retries_exhausted",
  [DeadLetterReason.UNSETTLED]: "unsettled",
  [DeadLetterReason.OTHER]: "other",
};
const REASON_OF: Readonly<Record<DeadLetterReasonClass, DeadLetterReason>> = {
  poison: DeadLetterReason.POISON,
  retries_exhausted: DeadLetterReason.RETRIES_EXHAUSTED,
  unsettled: DeadLetterReason.UNSETTLED,
  other: DeadLetterReason.OTHER,
};

/**
 * The operator RPCs over the mesh's JetStream dead letters, on the shared dead-letter tooling
 * (the same library as `npm run dlq`; it writes the audit line of each call, with the token's
 * subject as the actor). Who may call is the method policy's business (`admin` only).
 */
export function createEventDeadLetterHandlers(deps: { admin: DeadLetterAdmin }): EventDeadLetterHandlers {
  const { admin } = deps;
  return {
    async listEventDeadLetters(req, ctx) {
      const actor = requirePrincipal(ctx).subject;
      const pageSize = req.pageSize || DEFAULT_DEAD_LETTER_PAGE_SIZE;
      const after = pageToken(req.pageToken);
      const found = await admin.list(
        { ...toFilter(req.filter), limit: pageSize + 1, ...(after !== undefined ? { afterSequence: after } : {}) },
        { actor, withPayload: req.includePayload },
      );
      const page = found.slice(0, pageSize);
      return {
        deadLetters: page.map((d) => toMessage(d, req.includePayload)),
        nextPageToken: found.length > pageSize ? String(page.at(-1)!.sequence) : "",
      };
    },

    async redriveEventDeadLetters(req, ctx) {
      const actor = requirePrincipal(ctx).subject;
      const r = await admin.redrive(
        { ...toFilter(req.filter), limit: req.limit || DEFAULT_DEAD_LETTER_BATCH },
        { actor, dryRun: req.dryRun, newMessageId: req.newMessageId },
      );
      return {
        matched: r.matched,
        redriven: r.redriven,
        deferred: r.deferred,
        ...(r.eligibleAt ? { deferredUntil: timestampFromDate(r.eligibleAt) } : {}),
        sequences: r.sequences.map(BigInt),
      };
    },

    async purgeEventDeadLetters(req, ctx) {
      const actor = requirePrincipal(ctx).subject;
      const r = await admin.purge({ ...toFilter(req.filter), limit: req.limit || DEFAULT_DEAD_LETTER_BATCH }, { actor, dryRun: req.dryRun });
      return { matched: r.matched, purged: r.purged, sequences: r.sequences.map(BigInt) };
    },
  };
}

function pageToken(token: string): number | undefined {
  if (token === "") return undefined;
  const n = Number(token);
  if (!/^\d+$/.test(token) || !Number.isSafeInteger(n)) throw new ConnectError("page_token is not one this service issued", Code.InvalidArgument);
  return n;
}

function toFilter(f: EventDeadLetterFilter | undefined): DeadLetterFilter {
  if (!f) return {};
  const reason = CLASS_OF[f.reason];
  return {
    ...(f.consumer ? { consumer: f.consumer } : {}),
    ...(reason ? { reason } : {}),
    ...(f.subject ? { subject: f.subject } : {}),
    ...(f.deadLetteredAfter ? { since: timestampDate(f.deadLetteredAfter) } : {}),
    ...(f.deadLetteredBefore ? { until: timestampDate(f.deadLetteredBefore) } : {}),
    ...(f.sequences.length > 0 ? { sequences: f.sequences.map(Number) } : {}),
  };
}

function toMessage(d: DeadLetter, withPayload: boolean): EventDeadLetter {
  return create(EventDeadLetterSchema, {
    sequence: BigInt(d.sequence),
    deadLetteredAt: timestampFromDate(d.deadLetteredAt),
    consumer: d.consumer,
    reason: REASON_OF[d.reasonClass],
    reasonText: d.reason,
    stream: d.original.stream,
    streamSequence: BigInt(d.original.sequence),
    subject: d.original.subject,
    eventId: d.original.msgId ?? "",
    deliveries: d.original.deliveries,
    payloadType: d.payloadType ?? "",
    payloadSize: d.payloadSize,
    ...(withPayload
      ? {
          payload: d.payload,
          headers: Object.fromEntries(Object.entries(d.headers).flatMap(([k, v]) => (v[0] === undefined ? [] : [[k, v[0]]]))),
        }
      : {}),
  });
}
