// Redis connections by role. The queue's own connections wait out an outage (BullMQ needs
// maxRetriesPerRequest: null); the intake's fails fast, so a client gets 451 rather than a hang.
import { Redis, type RedisOptions } from 'ioredis';
import type { Socket } from 'node:net';
import { batchWrites } from '../core/coalesce.js';

export type RedisTarget = { url: string } | { path: string };

export function connectRedis(target: RedisTarget, role: 'queue' | 'intake', name: string): Redis {
  const common: RedisOptions = {
    connectionName: `impulse-${name}`,
    retryStrategy: (times) => Math.min(times * 100, 2000),
  };
  const roleOptions: RedisOptions = role === 'queue'
    ? { maxRetriesPerRequest: null, enableReadyCheck: true }
    : { maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 5000 };
  const options = { ...common, ...roleOptions };
  const redis = 'url' in target ? new Redis(target.url, options) : new Redis({ ...options, path: target.path });
  // A new socket at each (re)connection.
  redis.on('connect', () => batchWrites(redis.stream as Socket));
  return redis;
}
