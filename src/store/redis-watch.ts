// What an operator reads of a Redis outage: one `redis_down` record when a connection that was up
// is lost, one `redis_up` with the outage's length when it is back, rather than an error record
// for every reconnection attempt in between. A Cluster client stays up while one master is lost
// and its replica takes over: that node's loss is one `redis_node_lost` record.
import { performance } from 'node:perf_hooks';
import { Cluster, type Redis } from 'ioredis';
import type { RedisClient } from './redis.js';
import type { Logger } from 'pino';

export function watchRedis(conn: RedisClient, name: string, log: Logger): void {
  if (conn instanceof Cluster) {
    // The client adds a dead node back at each look at the slots until the cluster forgets it: once per loss.
    const lost = new Set<string>();
    const keyOf = (node: Redis) => `${node.options.host}:${node.options.port}`;
    conn.on('+node', (node: Redis) => node.once('ready', () => lost.delete(keyOf(node))));
    conn.on('-node', (node: Redis) => {
      // Only a node lost while the client is up: it drops nodes that serve no slot while it connects, and every node when it stops.
      if (lost.has(keyOf(node)) || conn.status !== 'ready') return;
      lost.add(keyOf(node));
      log.warn({ event: 'redis_node_lost', connection: name, node: keyOf(node) }, 'a Redis Cluster node is gone from this connection; its slots are looked up again');
    });
  }
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
