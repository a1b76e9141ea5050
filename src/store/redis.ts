// Redis connections by role, to one Redis, a primary behind Sentinel or a Redis Cluster. The
// queue's own connections wait out an outage (BullMQ needs maxRetriesPerRequest: null); the
// intake's fails fast, so a client gets 451 rather than a hang.
import { isNotConnectionError } from 'bullmq';
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import type { Socket } from 'node:net';
import { batchWrites } from '../core/coalesce.js';

/** A connection to wherever the queue lives: one Redis (alone or behind Sentinel), or a Cluster. */
export type RedisClient = Redis | Cluster;

export type RedisTarget =
  | { url: string }
  | { path: string }
  | { cluster: string[] }
  | { sentinels: Array<{ host: string; port: number }>; name: string };

/** What the `redis` config says about where Redis is, when it is not the embedded one. */
export function externalTarget(redis: { url?: string | undefined; cluster?: string[] | undefined; sentinels?: string[] | undefined; sentinel_name?: string | undefined }): RedisTarget | undefined {
  if (redis.url) return { url: redis.url };
  if (redis.cluster) return { cluster: redis.cluster };
  if (redis.sentinels && redis.sentinel_name) {
    return {
      name: redis.sentinel_name,
      sentinels: redis.sentinels.map((s) => {
        const colon = s.lastIndexOf(':');
        return { host: s.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(s.slice(colon + 1)) };
      }),
    };
  }
  return undefined;
}

/** A command to the intake's connection fails after this long (plus any WAIT it queues behind). */
export const INTAKE_COMMAND_TIMEOUT_MS = 5000;

/**
 * During a Cluster failover a master's slots answer nothing until its replica is promoted (a few
 * node timeouts). The queue's commands retry the slot map this many times, 200 ms apart, enough to
 * outlast a failover; intake's give up sooner and the client retries the message.
 */
const QUEUE_CLUSTER_REDIRECTIONS = 100;
const INTAKE_CLUSTER_REDIRECTIONS = 16;

/** Options of a role's connections; `blockingMs` is how long one command may wait behind a WAIT on the same connection. */
export function connectRedis(target: RedisTarget, role: 'queue' | 'intake', name: string, blockingMs = 0): RedisClient {
  const common: RedisOptions = {
    connectionName: `impulse-${name}`,
    retryStrategy: (times) => Math.min(times * 100, 2000),
  };
  const roleOptions: RedisOptions = role === 'queue'
    ? { maxRetriesPerRequest: null, enableReadyCheck: true }
    // A command in flight when the connection drops fails rather than run again on the next socket:
    // a WAIT there would not count the writes made on the lost one (see replica-wait.ts).
    : { maxRetriesPerRequest: 1, enableOfflineQueue: false, autoResendUnfulfilledCommands: false, commandTimeout: INTAKE_COMMAND_TIMEOUT_MS + blockingMs };
  const options = { ...common, ...roleOptions };
  if ('cluster' in target) return connectCluster(target.cluster, role, options);
  let redis: Redis;
  if ('url' in target) redis = new Redis(target.url, options);
  else if ('path' in target) redis = new Redis({ ...options, path: target.path });
  else redis = new Redis({ ...options, sentinels: target.sentinels, name: target.name, sentinelRetryStrategy: common.retryStrategy! });
  // A new socket at each (re)connection.
  redis.on('connect', () => batchWrites(redis.stream as Socket));
  return redis;
}

function connectCluster(urls: string[], role: 'queue' | 'intake', options: RedisOptions): Cluster {
  // Credentials and TLS of the first URL go to every node: the nodes of one cluster share them.
  const first = new URL(urls[0]!);
  const redisOptions: RedisOptions = {
    ...options,
    ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
    ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
    ...(first.protocol === 'rediss:' ? { tls: {} } : {}),
  };
  // The per-node retry strategy does not apply: a lost node is found again through the slot map.
  delete redisOptions.retryStrategy;
  const clusterOptions: ClusterOptions = {
    redisOptions,
    clusterRetryStrategy: options.retryStrategy!,
    enableOfflineQueue: role === 'queue',
    enableReadyCheck: true,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    maxRedirections: role === 'queue' ? QUEUE_CLUSTER_REDIRECTIONS : INTAKE_CLUSTER_REDIRECTIONS,
  };
  const cluster = new Cluster(urls.map((u) => {
    const url = new URL(u);
    return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port || 6379) };
  }), clusterOptions);
  cluster.on('+node', (node: Redis) => node.on('connect', () => batchWrites(node.stream as Socket)));
  return cluster;
}

/**
 * What a Redis lost, restarting, failing over or behind sentinels still looking for its primary
 * says, beyond BullMQ's own list: the connection's watch reports the outage once (redis_down),
 * so these are not logged again at every attempt.
 */
const OUTAGE = /ECONNRESET|EPIPE|All sentinels are unreachable|CLUSTERDOWN|Failed to refresh slots cache|Too many Cluster redirections|TRYAGAIN|LOADING/;

export function isOutage(err: Error): boolean {
  return !isNotConnectionError(err) || OUTAGE.test(err.message);
}
