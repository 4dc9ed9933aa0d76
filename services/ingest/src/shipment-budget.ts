import type { Redis } from "ioredis";
import { createRoundTripCoalescer } from "@logistics/shared/batching";
import type { ScanRecorded } from "@logistics/shared/gen/logistics/events/v1/ingest_events_pb.js";

/*
 * How much scan data one shipment may accumulate. Tracking keeps each shipment in one document
 * whose derivation lists every applied event (its timeline entry with the carrier's status text,
 * its event id), and a document is bounded (tracking's MAX_DOCUMENT_BYTES, 256 KiB): an event
 * that would take it past the bound can never be stored, so tracking dead-letters it, and every
 * later event of the shipment with it. A carrier that keeps scanning one parcel (a loop, a bug, an
 * attack: 2,000 short scans, or 150 with 512-character texts) would freeze that shipment at the
 * version before. Ingest is where that is decided instead: each accepted scan is charged what it
 * adds to the document, and a scan that would take its shipment past the budget is rejected
 * (REJECT_REASON_SHIPMENT_FULL), so what ingest accepts, tracking can hold.
 */

/** Fixed part of a scan's cost: the timeline entry's keys, time, kind and status, and a route revision's event id it may cause. */
const SCAN_COST_BASE = 200;

const utf8 = (s: string) => Buffer.byteLength(s, "utf8");
/** Bytes of `s` as a JSON string (escapes included: a control character is six). */
const jsonBytes = (s: string) => utf8(JSON.stringify(s));

/**
 * What a scan adds to its shipment's tracking document, in bytes (an upper estimate): its event id
 * twice (timeline entry and event list), the carrier's status code and text as JSON, the hub.
 */
export function scanDocumentCost(event: ScanRecorded): number {
  const scan = event.scan;
  return (
    SCAN_COST_BASE +
    2 * utf8(event.eventId) +
    jsonBytes(scan?.rawStatus?.code ?? "") +
    jsonBytes(scan?.rawStatus?.text ?? "") +
    utf8(scan?.hubCode ?? "")
  );
}

/** One charge against a shipment's budget. */
export interface BudgetCharge {
  readonly shipment: string;
  readonly cost: number;
}

/**
 * Per-shipment budgets of scan data. Implementations fail open: when the store is unreachable
 * every charge is granted (a Redis outage must not stop scans; see the README).
 */
export interface ShipmentBudget {
  /** Charges each item in order, atomically per item; true where granted, false where the shipment would go past its budget. */
  reserve(items: readonly BudgetCharge[]): Promise<boolean[]>;
  /** Gives back granted charges whose scans were not stored (publish failed, or a duplicate after all). Fire and forget. */
  release(items: readonly BudgetCharge[]): void;
}

/** Charges each key in order: INCRBY, and back with DECRBY when past the limit; a granted charge renews the key's lifetime. */
const RESERVE_SCRIPT = `
local limit = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local c = tonumber(ARGV[2 + i])
  local v = redis.call('INCRBY', KEYS[i], c)
  if v > limit then
    redis.call('DECRBY', KEYS[i], c)
    out[i] = 0
  else
    redis.call('EXPIRE', KEYS[i], ARGV[2])
    out[i] = 1
  end
end
return out`;

const RELEASE_SCRIPT = `
for i = 1, #KEYS do
  if redis.call('DECRBY', KEYS[i], ARGV[i]) <= 0 then redis.call('DEL', KEYS[i]) end
end
return #KEYS`;

/** Options of {@link createRedisShipmentBudget}. */
export interface RedisShipmentBudgetOptions {
  /** A connected client; its `keyPrefix` (if any) namespaces the keys. */
  redis: Redis;
  /** Bytes of scan data one shipment may accumulate (INGEST_SHIPMENT_SCAN_BUDGET_BYTES). */
  limitBytes: number;
  /** How long a shipment's account lives after its last accepted scan, in seconds (INGEST_SHIPMENT_BUDGET_TTL_DAYS × 86 400). */
  ttlSeconds: number;
  /** Called when Redis fails (once per failed round); the budget then grants everything. */
  onError(op: string, err: unknown): void;
  /** Most charges one script call carries. Default 1 000. */
  maxKeysPerCall?: number;
}

/**
 * The budgets in Redis: one counter `budget:<tracking number>` per shipment, charged by one script
 * call per round (every reserve of one event-loop turn shares it, as the dedupe's lookups do).
 */
export function createRedisShipmentBudget(opts: RedisShipmentBudgetOptions): ShipmentBudget {
  const key = (tn: string) => `budget:${tn}`;
  const maxItems = opts.maxKeysPerCall ?? 1000;
  const reserves = createRoundTripCoalescer<BudgetCharge, boolean>({
    maxItems,
    async send(items) {
      try {
        const granted = (await opts.redis.eval(
          RESERVE_SCRIPT,
          items.length,
          ...items.map((c) => key(c.shipment)),
          opts.limitBytes,
          opts.ttlSeconds,
          ...items.map((c) => c.cost),
        )) as number[];
        return granted.map((g) => g === 1);
      } catch (err) {
        opts.onError("budget_reserve", err);
        return new Array<boolean>(items.length).fill(true);
      }
    },
  });
  return {
    reserve: (items) => (items.length === 0 ? Promise.resolve([]) : reserves.call(items)),
    release(items) {
      if (items.length === 0) return;
      opts.redis.eval(RELEASE_SCRIPT, items.length, ...items.map((c) => key(c.shipment)), ...items.map((c) => c.cost)).catch((err: unknown) => {
        opts.onError("budget_release", err);
      });
    },
  };
}
