export { createFailOpenRedis, type FailOpenRedis, type FailOpenRedisLog, type FailOpenRedisOptions } from "./fail-open-redis.js";
export { defineScript, type RedisScript } from "./script.js";
