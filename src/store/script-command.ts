// A Lua script as an ioredis command of one connection: sent by EVALSHA, so its text is neither sent
// nor hashed at each call, and called on its own, not in a pipeline (ioredis copies every script a
// connection defines onto each of its pipelines, BullMQ's dozens included).
import type { RedisClient } from './redis.js';

/**
 * `lua` as a function of `redis`, defined on the connection under `name` the first time (one name,
 * one script). Without `numberOfKeys` the caller passes the number of keys first.
 */
export function scriptCommand<Args extends unknown[], Result>(redis: RedisClient, name: string, lua: string, numberOfKeys?: number): (...args: Args) => Promise<Result> {
  if (!(name in redis)) redis.defineCommand(name, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua });
  // Looked up at each call, as ioredis puts it on the connection, so a wrapper put there later counts.
  const commands = redis as unknown as Record<string, (...args: Args) => Promise<Result>>;
  return (...args) => commands[name]!(...args);
}
