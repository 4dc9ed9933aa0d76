import type { Redis } from "ioredis";
import { parseShipmentRecord, StoreUnavailableError, type ShipmentStore } from "./shipment-creator.js";

/** Options of {@link createRedisShipmentStore}. */
export interface RedisShipmentStoreOptions {
  redis: Redis;
  /** Lifetime of idempotency records in seconds (INGEST_IDEMPOTENCY_TTL_HOURS × 3 600; at least 24 h). */
  idempotencyTtlSeconds: number;
}

/**
 * CreateShipment's idempotency records (`idem:<event id>` → JSON, `SET NX EX`) in Redis. Every
 * failure is raised as {@link StoreUnavailableError}, which the creator treats as "store down".
 * (Tracking numbers are claimed in the shipment directory, not here.)
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
  };
}
