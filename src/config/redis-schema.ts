// The `redis` section of the configuration: where the queue lives (an embedded redis-server, one
// Redis by URL, a primary behind Sentinel, or a Redis Cluster), how many shards the delivery queue
// is split into, and how many replicas must hold a message before intake answers 250.
import { z } from 'zod';
import { parseDuration } from './units.js';
import { urlOf } from './url.js';

/** Shards of the delivery queue on a Redis Cluster when `shards` is not set: enough to spread over a few masters. */
const CLUSTER_SHARDS = 16;
/** WAIT blocks the intake's connection while it waits; longer would hold every other message's writes as long. */
const MAX_WAIT_TIMEOUT_MS = 10_000;
const DEFAULT_WAIT_TIMEOUT = '1s';

const redisUrl = urlOf(['redis:', 'rediss:'], 'expected a redis:// or rediss:// URL such as redis://10.0.0.1:6379');

const sentinelAddress = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, {
  message: 'expected host:port of a sentinel, such as 10.0.0.1:26379',
});

/** The ways to reach Redis; exactly one may be set (none means embedded). */
const TOPOLOGY_KEYS = ['url', 'embedded', 'cluster', 'sentinels'] as const;

export function redisSchema<DO extends z.ZodType, S extends z.ZodType>(durationOpt: () => DO, size: (d: string) => S) {
  return z.strictObject({
    url: redisUrl.optional().describe('redis:// or rediss:// URL of one external Redis; excludes embedded, cluster and sentinels'),
    embedded: z.boolean().optional().describe('start and stop a private redis-server under dir (the default when no other way to reach Redis is set)'),
    cluster: z.array(redisUrl).min(1).optional()
      .describe('redis:// URLs of some nodes of a Redis Cluster (the rest are discovered); the delivery queue is split into shards spread over its masters'),
    sentinels: z.array(sentinelAddress).min(1).optional()
      .describe('host:port of the Sentinels watching the primary named sentinel_name; the daemon follows the primary through failovers'),
    sentinel_name: z.string().min(1).optional().describe('the name the sentinels monitor the primary under (their `sentinel monitor <name> …`); needs sentinels'),
    shards: z.number().int().min(1).max(1024).optional()
      .describe(`delivery queues, each in one hash slot, mail going to one by a hash of its destination domain; default: ${CLUSTER_SHARDS} with cluster, else 1 (one queue, keys without hash tags, as before shards existed). Changing it leaves queued mail unread: the daemon refuses to start on a Redis laid out with another count`),
    wait_replicas: z.number().int().min(1).optional()
      .describe('intake answers 250 only once Redis WAIT confirms this many replicas hold the message\'s writes; fewer within wait_timeout answer 451 4.3.0 and the message is removed. Without it a failover can lose acknowledged mail'),
    // Checked as written (a bare number is seconds), before the caller's duration type takes it.
    wait_timeout: z.union([z.string(), z.number()]).refine((v) => {
      const ms = parseDuration(v);
      return ms === undefined || (ms > 0 && ms <= MAX_WAIT_TIMEOUT_MS);
    }, { message: `wait_timeout must be above 0 (WAIT 0 waits for ever) and at most ${MAX_WAIT_TIMEOUT_MS / 1000}s (each WAIT holds intake's connection)` })
      .pipe(durationOpt() as unknown as z.ZodType<z.output<DO>, string | number>).optional().describe(`how long WAIT waits for wait_replicas replicas (above 0, at most ${MAX_WAIT_TIMEOUT_MS / 1000}s); needs wait_replicas; default: ${DEFAULT_WAIT_TIMEOUT}`),
    dir: z.string().default('var/redis').describe('data directory of the embedded Redis (relative to the config file)'),
    appendfsync: z.enum(['always', 'everysec', 'no']).default('always')
      .describe('embedded Redis fsync policy: always makes every 250 reply survive a power loss'),
    binary: z.string().default('redis-server').describe('redis-server executable for the embedded Redis'),
    prefix: z.string().default('impulse').describe('key prefix of every Impulse key in Redis'),
    compress_bodies: z.boolean().default(true)
      .describe('store message bodies Brotli-compressed (fastest quality) when that saves at least 1/16 of a body: less Redis memory and AOF, some CPU; false never compresses'),
    compress_bodies_above: size('64MB')
      .describe('with compress_bodies, bodies are compressed while Redis\'s used memory (the fullest master\'s, on a Cluster) is at least this, and stored as they came again below three quarters of it: mail that leaves within seconds never pays the CPU; 0 compresses every body'),
  }).superRefine((r, ctx) => {
    const ways = TOPOLOGY_KEYS.filter((k) => (k === 'embedded' ? r.embedded === true : r[k] !== undefined));
    if (ways.length > 1) {
      const named = ways.map((k) => (k === 'embedded' ? 'embedded: true' : k));
      ctx.addIssue({
        code: 'custom', path: [ways[1]!],
        message: `set only one of url, embedded: true, cluster or sentinels: they are different ways to reach Redis (found ${named.join(' and ')})`,
      });
    }
    if (r.sentinels !== undefined && r.sentinel_name === undefined) {
      ctx.addIssue({ code: 'custom', path: ['sentinel_name'], message: 'sentinels needs sentinel_name, the name they monitor the primary under' });
    }
    if (r.sentinel_name !== undefined && r.sentinels === undefined) {
      ctx.addIssue({ code: 'custom', path: ['sentinel_name'], message: 'sentinel_name needs sentinels, the host:port of the sentinels to ask' });
    }
    if (r.wait_timeout !== undefined && r.wait_replicas === undefined) {
      ctx.addIssue({ code: 'custom', path: ['wait_timeout'], message: 'wait_timeout needs wait_replicas' });
    }
    if (r.wait_replicas !== undefined && (ways.length === 0 || r.embedded === true)) {
      ctx.addIssue({ code: 'custom', path: ['wait_replicas'], message: 'wait_replicas needs a Redis with replicas (url, sentinels or cluster): the embedded Redis has none' });
    }
    if ((r.cluster !== undefined || (r.shards ?? 1) > 1) && /[{}]/.test(r.prefix)) {
      ctx.addIssue({ code: 'custom', path: ['prefix'], message: 'prefix may not contain { or } with cluster or shards: each shard\'s keys carry the prefix in a hash tag' });
    }
  }).transform((r) => ({
    ...r,
    shards: r.shards ?? (r.cluster ? CLUSTER_SHARDS : 1),
    // Embedded unless another way to reach Redis is set.
    ...(r.url === undefined && r.cluster === undefined && r.sentinels === undefined ? { embedded: true } : {}),
    // Filled in here rather than as a default, so that wait_timeout alone is refused above.
    ...(r.wait_replicas !== undefined && r.wait_timeout === undefined ? { wait_timeout: durationOpt().parse(DEFAULT_WAIT_TIMEOUT) as z.output<DO> } : {}),
  }));
}
