import type { Redis } from "ioredis";
import { parseShipmentRecord, StoreUnavailableError, type ShipmentStore } from "./shipment-creator.js";

/** Options of {@link createRedisShipmentStore}. */
export interface RedisShipmentStoreOptions {
  redis: Redis;
  /** Lifetime of idempotency records in seconds (INGEST_IDEMPOTENCY_TTL_HOURS × 3 600; at least 24 h). */
  idempotencyTtlSeconds: number;
  /** Lifetime of tracking-number claims in seconds (INGEST_TRACKING_NUMBER_TTL_DAYS × 86 400). */
  trackingNumberTtlSeconds: number;
}

/**
 * CreateShipment's idempotency records (`idem:<event id>` → JSON, `SET NX EX`) and
 * tracking-number claims (`tn:<number>` → shipment id, `SET NX EX`) in Redis. Every failure is
 * raised as {@link StoreUnavailableError}, which the creator treats as "store down".
 */
export function createRedisShipmentStore(opts: RedisShipmentStoreOptions): ShipmentStore {
  const { redis } = opts;
  const idem = (key: string) => `idem:${key}`;
  const guard = async <T>(op: string, f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (err) {
      throw new StoreUnavailableError(`redis ${op} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  };
  const read = async (key: string) => {
    const text = await redis.get(idem(key));
    return text === null ? undefined : parseShipmentRecord(text);
  };
  return {
    get: (key) => guard("get", () => read(key)),
    reserve: (key, record) =>
      guard("reserve", async () => {
        const ok = await redis.set(idem(key), JSON.stringify(record), "EX", opts.idempotencyTtlSeconds, "NX");
        if (ok === "OK") return undefined;
        return (await read(key)) ?? record;
      }),
    update: (key, record) =>
      guard("update", async () => {
        await redis.set(idem(key), JSON.stringify(record), "KEEPTTL", "XX");
      }),
    claimTrackingNumber: (trackingNumber, shipmentId) =>
      guard("claim", async () => {
        const key = `tn:${trackingNumber}`;
        const ok = await redis.set(key, shipmentId, "EX", opts.trackingNumberTtlSeconds, "NX");
        if (ok === "OK") return true;
        return (await redis.get(key)) === shipmentId;
      }),
  };
}
