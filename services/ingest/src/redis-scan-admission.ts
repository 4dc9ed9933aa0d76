import type { Redis } from "ioredis";
import { createRoundTripCoalescer } from "@logistics/shared/batching";
import { defineScript } from "@logistics/shared/redis";
import type { Admission, AdmissionItem, ScanAdmission } from "./scan-ingestor.js";
import type { BudgetCharge } from "./shipment-budget.js";

/**
 * One script per round does what used to be three separate commands, each its own round trip from
 * every batch: it records the ids stored since the last round (`SET scan:<id> 1 EX ttl NX`), gives
 * back the charges of scans that were not stored (`DECRBY budget:<tn>`, the key deleted at zero),
 * and then, item by item in order, answers whether the id was stored before (`EXISTS`) and, for a
 * new one with a cost, charges its shipment's budget (`INCRBY`, undone past the limit, the key's
 * lifetime renewed when granted).
 *
 * KEYS: R remember keys, F refund keys, N dedupe keys, N budget keys.
 * ARGV: R, F, N, dedupe ttl s, budget limit, budget ttl s, F refund costs, N charge costs.
 * Returns one verdict per item: 2 seen, 1 charged, 3 admitted without a charge, 0 full.
 */
const ADMIT_SCRIPT = `
local r = tonumber(ARGV[1])
local f = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local limit = tonumber(ARGV[5])
for i = 1, r do redis.call('SET', KEYS[i], '1', 'EX', ARGV[4], 'NX') end
for i = 1, f do
  if redis.call('DECRBY', KEYS[r + i], ARGV[6 + i]) <= 0 then redis.call('DEL', KEYS[r + i]) end
end
local out = {}
for i = 1, n do
  if redis.call('EXISTS', KEYS[r + f + i]) == 1 then
    out[i] = 2
  else
    local c = tonumber(ARGV[6 + f + i])
    if c <= 0 then
      out[i] = 3
    else
      local k = KEYS[r + f + n + i]
      if redis.call('INCRBY', k, c) > limit then
        redis.call('DECRBY', k, c)
        out[i] = 0
      else
        redis.call('EXPIRE', k, ARGV[6])
        out[i] = 1
      end
    end
  end
end
return out`;

const VERDICTS: readonly Admission[] = ["full", "charged", "seen", "free"];

/** Options of {@link createRedisScanAdmission}. */
export interface RedisScanAdmissionOptions {
  /** A connected client; its `keyPrefix` (if any) namespaces the keys. */
  redis: Redis;
  /** How long a stored scan id is remembered, in seconds (INGEST_DEDUPE_TTL_DAYS × 86 400). */
  dedupeTtlSeconds: number;
  /**
   * Per-shipment budgets of scan data (INGEST_SHIPMENT_SCAN_BUDGET_BYTES, and the account's
   * lifetime after its last granted charge, INGEST_SHIPMENT_BUDGET_TTL_DAYS × 86 400 s). Without
   * it no scan is charged.
   */
  budget?: { limitBytes: number; ttlSeconds: number };
  /** Called when Redis fails (once per failed round); the round then fails open. */
  onError(op: string, err: unknown): void;
  /**
   * Longest a settlement waits for the next admission round to carry it before it is sent alone,
   * in ms. Default 20.
   */
  settleLingerMs?: number;
  /** Most items (admissions plus settled ids and refunds) one script call carries. Default 1 000. */
  maxItemsPerCall?: number;
}

/** A {@link ScanAdmission} that can be closed (sends what is left to settle). */
export interface RedisScanAdmission extends ScanAdmission {
  /** Sends the pending settlement now and stops waiting for more. */
  close(): void;
}

/**
 * Ingest's dedupe set and shipment budgets in Redis, one round trip per round: keys
 * `scan:<recorded event id>` (a stored scan) and `budget:<tracking number>` (bytes of scan data
 * charged to the shipment).
 *
 * Calls are coalesced (`@logistics/shared/batching`): every `admit` of one event-loop turn, from
 * any batch or stream, shares one script call, and that call also carries whatever was settled
 * (stored ids, refunds) since the last one. A batch used to cost three round trips (the dedupe
 * lookup, the budget charge, the record after the PubAck); on carriers that stream one scan per
 * message, each was a socket write and a read on both ends per scan. A settlement waits at most
 * `settleLingerMs` for an admission round to ride on: meanwhile a resend of a just-stored scan is
 * not yet in the set, and JetStream's duplicate window (keyed by the same id) answers it, as it
 * does whenever Redis is unavailable.
 *
 * Fail-open by design: when Redis is unreachable or slow, every item of the round is admitted
 * uncharged ("free") and its settlement is dropped; the scans stream's duplicate window remains
 * the dedupe of last resort, and budgets are not enforced until Redis is back (see the README).
 */
export function createRedisScanAdmission(opts: RedisScanAdmissionOptions): RedisScanAdmission {
  const scanKey = (id: string) => `scan:${id}`;
  const budgetKey = (tn: string) => `budget:${tn}`;
  const maxItems = opts.maxItemsPerCall ?? 1000;
  const lingerMs = Math.max(0, opts.settleLingerMs ?? 20);
  const limit = opts.budget?.limitBytes ?? 0;
  const budgetTtl = opts.budget?.ttlSeconds ?? 0;
  const admitScript = defineScript(opts.redis, ADMIT_SCRIPT);

  let stored: string[] = [];
  let refunds: BudgetCharge[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;

  /** Takes the pending settlement (at most `room` entries), leaving the rest queued. */
  const takeSettlement = (room: number): { ids: string[]; back: BudgetCharge[] } => {
    const ids = stored.length <= room ? stored : stored.slice(0, room);
    stored = ids === stored ? [] : stored.slice(ids.length);
    const left = room - ids.length;
    const back = refunds.length <= left ? refunds : refunds.slice(0, Math.max(0, left));
    refunds = back === refunds ? [] : refunds.slice(back.length);
    if (stored.length === 0 && refunds.length === 0 && timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    return { ids, back };
  };

  const run = async (items: readonly AdmissionItem[], settle: { ids: string[]; back: BudgetCharge[] }): Promise<Admission[]> => {
    const { ids, back } = settle;
    const n = items.length;
    const keys = new Array<string>(ids.length + back.length + 2 * n);
    const argv = new Array<string | number>(6 + back.length + n);
    let k = 0;
    for (const id of ids) keys[k++] = scanKey(id);
    for (const c of back) keys[k++] = budgetKey(c.shipment);
    for (const it of items) keys[k++] = scanKey(it.id);
    for (const it of items) keys[k++] = budgetKey(it.shipment);
    argv[0] = ids.length;
    argv[1] = back.length;
    argv[2] = n;
    argv[3] = opts.dedupeTtlSeconds;
    argv[4] = limit;
    argv[5] = budgetTtl;
    let a = 6;
    for (const c of back) argv[a++] = c.cost;
    for (const it of items) argv[a++] = opts.budget ? it.cost : 0;
    const reply = await admitScript(keys, argv);
    if (!Array.isArray(reply) || reply.length !== n) throw new Error(`unexpected admission reply of ${Array.isArray(reply) ? reply.length : typeof reply} for ${n} items`);
    return reply.map((v) => VERDICTS[Number(v)] ?? "free");
  };

  const rounds = createRoundTripCoalescer<AdmissionItem, Admission>({
    maxItems,
    async send(items) {
      const settle = takeSettlement(Math.max(0, maxItems - items.length));
      try {
        return await run(items, settle);
      } catch (err) {
        opts.onError("admission", err);
        return new Array<Admission>(items.length).fill("free");
      }
    },
  });

  const sendSettlement = () => {
    timer = undefined;
    if (stored.length === 0 && refunds.length === 0) return;
    const settle = takeSettlement(maxItems);
    run([], settle).catch((err: unknown) => opts.onError("settle", err));
    if (stored.length > 0 || refunds.length > 0) sendSettlement();
  };

  return {
    admit: (items) => (items.length === 0 ? Promise.resolve([]) : rounds.call(items)),
    settle(ids, back) {
      if (ids.length === 0 && (back.length === 0 || !opts.budget)) return;
      for (const id of ids) stored.push(id);
      if (opts.budget) for (const c of back) refunds.push(c);
      if (closed) sendSettlement();
      else if (timer === undefined) {
        timer = setTimeout(sendSettlement, lingerMs);
        timer.unref?.();
      }
    },
    close() {
      closed = true;
      rounds.flushNow();
      if (timer !== undefined) clearTimeout(timer);
      sendSettlement();
    },
  };
}
