// What an operator reads of a Redis outage: one `redis_down` record when a connection that was up
// is lost, one `redis_up` with the outage's length when it is back, rather than an error record
// for every reconnection attempt in between.
import { performance } from 'node:perf_hooks';
import type { RedisClient } from './redis.js';
import type { Logger } from 'pino';

export function watchRedis(conn: RedisClient, name: string, log: Logger): void {
  let wasReady = false;
  let downSince: number | undefined;
  let lastError: string | undefined;
  conn.on('error', (err: Error) => {
    lastError = err.message;
    if (downSince === undefined) log.warn({ event: 'redis_error', connection: name, err: err.message }, 'redis connection error');
  });
  // 'reconnecting' rather than 'close': a connection closed on purpose (shutdown) does not reconnect.
  conn.on('reconnecting', () => {
    if (!wasReady || downSince !== undefined) return;
    downSince = performance.now();
    log.warn({ event: 'redis_down', connection: name, err: lastError }, 'lost the connection to Redis; reconnecting');
  });
  conn.on('ready', () => {
    wasReady = true;
    lastError = undefined;
    if (downSince === undefined) return;
    log.info({ event: 'redis_up', connection: name, down_ms: Math.round(performance.now() - downSince) }, 'connection to Redis restored');
    downSince = undefined;
  });
}
