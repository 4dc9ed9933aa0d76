export { createFailOpenRedis, type FailOpenRedis, type FailOpenRedisLog, type FailOpenRedisOptions } from "./fail-open-redis.js";
