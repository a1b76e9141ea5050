// The delivery queue's shards: which one holds a destination domain's mail, the key prefix of
// each (its hash tag on a Redis Cluster, where BullMQ needs all of a queue's keys in one slot),
// and the layout recorded in Redis so that a daemon with another shard count cannot strand mail.
//
// One shard, not clustered, is the layout from before shards: prefix `impulse`, no hash tag. Any
// other layout gives shard i the tag `{<prefix>:i:k}`, k the first number that puts the tag's slot
// in the i-th of `count` equal parts of the 16,384 slots. `{impulse:i}` alone would not do:
// CRC16 of names that differ in one digit lands close together (16 of them on three masters,
// slots cut in three: 9, 4 and 3 shards), while slots spread evenly spread over the masters of a
// cluster whose slots are cut into even ranges, as redis-cli --cluster create cuts them.
import { Queue } from 'bullmq';
import type { Logger } from 'pino';
import { type RedisClient, isOutage } from '../store/redis.js';
import { MessageStore } from '../store/message-store.js';
import type { CompressionSwitch } from '../store/body-compression.js';
import { SLOTS, keySlot } from '../store/key-slot.js';
import { DELIVERY_QUEUE, type DeliveryJobData } from './job.js';

export interface Shard {
  index: number;
  /** BullMQ's prefix of the shard's queue, and of the shard's own keys: bodies, job sets, history, parked index. */
  prefix: string;
}

/**
 * FNV-1a, 32 bits, over the domain's bytes. CRC16 modulo 16 put d0.test … d59.test on half of 16
 * shards; FNV-1a multiplies after each byte, so names that differ in one character still spread.
 */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(text)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

function spreadTag(prefix: string, index: number, count: number): string {
  const from = Math.floor((index * SLOTS) / count);
  const to = Math.floor(((index + 1) * SLOTS) / count);
  for (let k = 0; ; k++) {
    const tag = `${prefix}:${index}:${k}`;
    const slot = keySlot(tag);
    if (slot >= from && slot < to) return `{${tag}}`;
  }
}

export class ShardLayout {
  readonly shards: readonly Shard[];
  /** Whether keys carry hash tags: any layout but the single untagged queue. */
  readonly tagged: boolean;

  constructor(private readonly prefix: string, count: number, clustered: boolean) {
    this.tagged = clustered || count > 1;
    this.shards = Array.from({ length: count }, (_, index) => ({ index, prefix: this.tagged ? spreadTag(prefix, index, count) : prefix }));
  }

  of(domain: string): Shard {
    return this.shards[fnv1a32(domain) % this.shards.length]!;
  }

  private get recordKey(): string {
    return `${this.prefix}:layout`;
  }

  private get record(): string {
    return JSON.stringify({ shards: this.shards.length, hash_tags: this.tagged });
  }

  /**
   * Records this layout in Redis, or refuses to start when Redis holds mail under another: it
   * would never be read. A queue written before layouts were recorded is the untagged single one.
   */
  async claim(redis: RedisClient): Promise<void> {
    const key = this.recordKey;
    let found = await redis.get(key);
    if (found === null && this.tagged) {
      const base = `${this.prefix}:${DELIVERY_QUEUE}`;
      const [wait, active, delayed, prioritized] = await Promise.all([
        redis.llen(`${base}:wait`), redis.llen(`${base}:active`), redis.zcard(`${base}:delayed`), redis.zcard(`${base}:prioritized`),
      ]);
      const queued = wait + active + delayed + prioritized;
      if (queued > 0) {
        throw new Error(`redis.shards: Redis holds ${queued} jobs in the queue from before shards (${base}:*), which a daemon with `
          + `${this.shards.length} shard(s) under hash tags would never read; let them drain with shards: 1 and no cluster first`);
      }
    }
    if (found === null && (await redis.set(key, this.record, 'NX')) !== 'OK') found = await redis.get(key);
    if (found === null || found === this.record) return;
    throw new Error(`redis.shards: this daemon lays the queue out as ${this.record}, but Redis holds a queue laid out as ${found} (${key}); `
      + 'mail queued there would never be read. Run with the settings that queued it until the queue is empty, then delete that key');
  }
}

/** Something per shard (a queue, a store), and the one for a domain. */
export class Sharded<T> {
  readonly all: readonly T[];

  constructor(private readonly layout: ShardLayout, build: (shard: Shard) => T) {
    this.all = layout.shards.map(build);
  }

  of(domain: string): T {
    return this.all[this.layout.of(domain).index]!;
  }
}

/** A shard's queue and message store, on one connection. */
export interface ShardQueue {
  shard: Shard;
  queue: Queue<DeliveryJobData>;
  store: MessageStore;
}

/** Events kept in BullMQ's stream: nobody reads them, so keep it from growing. */
const EVENTS_MAX_LEN = 1000;

/** Every shard's queue and message store on one connection. */
export function openShards(connection: RedisClient, layout: ShardLayout, compression: CompressionSwitch, log: Logger): Sharded<ShardQueue> {
  return new Sharded(layout, (shard) => {
    const queue = new Queue<DeliveryJobData>(DELIVERY_QUEUE, { connection, prefix: shard.prefix, streams: { events: { maxLen: EVENTS_MAX_LEN } } });
    // Without a listener BullMQ prints each reconnection attempt to stderr; watchRedis logs the outage once.
    queue.on('error', (err) => {
      if (!isOutage(err)) log.error({ event: 'queue_error', err: err.message }, 'queue error');
    });
    return { shard, queue, store: new MessageStore(connection, shard.prefix, compression) };
  });
}
