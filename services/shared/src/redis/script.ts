import { createHash } from "node:crypto";
import type { Redis } from "ioredis";

/** Runs a Lua script with its keys (the client's `keyPrefix` added) and arguments. */
export type RedisScript = (keys: readonly string[], args: ReadonlyArray<string | number | Buffer>) => Promise<unknown>;

type ScriptCommand = (numKeys: number, ...keysAndArgs: Array<string | number | Buffer>) => Promise<unknown>;

/**
 * A Lua script that is sent by its SHA1 (EVALSHA) rather than its text: the text goes over the
 * wire once per connection, and again only when the server answers NOSCRIPT (after a restart or
 * SCRIPT FLUSH), which ioredis's script commands handle themselves (also inside a pipeline or an
 * auto-pipeline). `EVAL` sent the whole script with every call, and the server hashed it every
 * time: a kilobyte per call for the admission and rate-limit scripts, which run for every
 * ingest round, and for every cache write of tracking.
 */
export function defineScript(redis: Redis, lua: string): RedisScript {
  const name = `script_${createHash("sha1").update(lua).digest("hex").slice(0, 16)}`;
  const commands = redis as unknown as Record<string, ScriptCommand | undefined>;
  if (typeof commands[name] !== "function") redis.defineCommand(name, { lua });
  const command = commands[name] as ScriptCommand;
  return (keys, args) => command.call(redis, keys.length, ...keys, ...args);
}
