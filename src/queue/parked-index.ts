// The Redis index of parked jobs. A job parked because its ready queue was full or its domain
// suspended waits in BullMQ's delayed set with a long fallback delay, and its id goes into a
// sorted set of its binding × domain ready queue. When the queue has room the scheduler promotes
// the oldest ids (BullMQ's own promote), so a backlog moves as fast as its queue drains and costs
// nothing while it waits. The fallback delay only matters if an id is lost (a crash between the
// two writes): the job then comes back on its own. Each shard keeps the index of its own domains'
// queues, in its slot, beside the jobs the ids name.
import type { ParkedIndex } from '../scheduler/backlog.js';
import type { ReadyQueueId } from '../scheduler/ready-queue.js';
import type { RedisClient } from '../store/redis.js';
import { scriptCommand } from '../store/script-command.js';
import { promoteDelayed } from './promote.js';
import type { ShardQueue, Sharded } from './shards.js';

// Files an id in its queue's sorted set and the queue in the index of queues. One script rather
// than a pipeline (see script-command.ts): with a park per job, the pipelines' copies of BullMQ's
// scripts were three quarters of what outlived V8's young generation while a suspended domain's
// mail came in.
const FILE = `
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1`;

// Pops the oldest ids and reports how many stay; an emptied queue leaves the index of queues.
const POP = `
local ids = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local remaining = redis.call('ZCARD', KEYS[1])
if remaining == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
local out = { remaining }
for i = 1, #ids, 2 do out[#out + 1] = ids[i] end
return out`;

export class RedisParkedIndex implements ParkedIndex {
  private readonly fileId: (ids: string, index: string, at: number, jobId: string, member: string) => Promise<number>;
  private readonly popIds: (ids: string, index: string, count: number, member: string) => Promise<[number, ...string[]]>;

  constructor(private readonly redis: RedisClient, private readonly shards: Sharded<ShardQueue>) {
    this.fileId = scriptCommand(redis, 'impulseFileParked', FILE, 2);
    this.popIds = scriptCommand(redis, 'impulsePopParked', POP, 2);
  }

  private indexKey(prefix: string): string {
    return `${prefix}:parked-pairs`;
  }

  private member(queue: ReadyQueueId): string {
    return `${queue.binding}/${queue.domain}`;
  }

  /** The queue's sorted set and the index of queues, in the shard of its domain. */
  private keys(queue: ReadyQueueId): { ids: string; index: string; part: ShardQueue } {
    const part = this.shards.of(queue.domain);
    return { ids: `${part.shard.prefix}:parked:${this.member(queue)}`, index: this.indexKey(part.shard.prefix), part };
  }

  /** Files a job just put in the delayed set as a park. */
  async file(queue: ReadyQueueId, jobId: string, at: number): Promise<void> {
    const { ids, index } = this.keys(queue);
    await this.fileId(ids, index, at, jobId, this.member(queue));
  }

  /** Drops an id whose job came back by itself: it must not be promoted early once it waits for something else. */
  async unfile(queue: ReadyQueueId, jobId: string): Promise<void> {
    await this.redis.zrem(this.keys(queue).ids, jobId);
  }

  /**
   * Makes up to `count` of the queue's oldest parked jobs due now. Ids whose job left the delayed
   * set meanwhile (it came back on its own, or was failed) are dropped. Returns how many moved
   * and how many stay parked.
   */
  async promote(queue: ReadyQueueId, count: number): Promise<{ promoted: number; remaining: number }> {
    const { ids: key, index, part } = this.keys(queue);
    const [remaining, ...ids] = await this.popIds(key, index, count, this.member(queue));
    return { promoted: await promoteDelayed(part.queue, ids), remaining };
  }

  /** Every queue with parked jobs, whoever parked them: what a starting daemon looks at first. */
  async queues(): Promise<ReadyQueueId[]> {
    const members = (await Promise.all(this.shards.all.map((part) => this.redis.smembers(this.indexKey(part.shard.prefix))))).flat();
    return members.flatMap((m) => {
      const slash = m.lastIndexOf('/');
      return slash > 0 ? [{ binding: m.slice(0, slash), domain: m.slice(slash + 1) }] : [];
    });
  }
}
