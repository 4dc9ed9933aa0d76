import { fromBinary } from "@bufbuild/protobuf";
import type { Redis } from "ioredis";
import { ShipmentSchema, type Shipment } from "@logistics/shared/gen/logistics/tracking/v1/tracking_pb.js";
import { defineScript } from "@logistics/shared/redis";
import { shipmentBinary } from "./shipment-binary.js";

/** The shipment snapshot cache tracking reads through. */
export interface ShipmentCache {
  /** The cached full Shipment, or undefined on a miss. Rejects when the cache is unreachable. */
  get(trackingNumber: string): Promise<Shipment | undefined>;
  /**
   * Stores `shipment` unless the cache already holds the same or a newer version; resolves true
   * when it was written. Rejects when the cache is unreachable.
   */
  put(shipment: Shipment): Promise<boolean>;
}

/** Options of {@link createRedisShipmentCache}. */
export interface RedisShipmentCacheOptions {
  /**
   * A client configured to fail fast (`enableOfflineQueue: false`, a short `commandTimeout`); its
   * `keyPrefix` namespaces the keys.
   */
  redis: Redis;
  /** Lifetime of an entry in seconds; bounds how long an entry missed by an outage can be stale. */
  ttlSeconds: number;
}

/**
 * Compare-and-set on the version: the snapshot is written only if the cached one is older, so
 * a slow read-through fill (which read version n from the store) can never overwrite version n+1
 * written by the projector. KEYS[1] = hash key; ARGV = version, snapshot bytes, ttl in ms.
 */
const PUT_IF_NEWER = `
local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if cur >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

/**
 * A Redis cache of Shipment snapshots: one hash `shipment:<tracking number>` with the version
 * (`v`) and the binary Protobuf of the full Shipment (`d`). Reads are one HGET; writes one
 * version-guarded script call (see {@link PUT_IF_NEWER}).
 */
export function createRedisShipmentCache(opts: RedisShipmentCacheOptions): ShipmentCache {
  const { redis } = opts;
  const ttlMs = String(Math.max(1, Math.round(opts.ttlSeconds * 1000)));
  const key = (tn: string) => `shipment:${tn}`;
  const putIfNewer = defineScript(redis, PUT_IF_NEWER);
  return {
    async get(trackingNumber) {
      const bytes = await redis.hgetBuffer(key(trackingNumber), "d");
      return bytes ? fromBinary(ShipmentSchema, bytes) : undefined;
    },
    async put(shipment) {
      const bytes = shipmentBinary(shipment);
      const written = await putIfNewer([key(shipment.trackingNumber)], [shipment.version.toString(), bytes, ttlMs]);
      return written === 1;
    },
  };
}
