// One webhook's stream in Redis: a stream of its records in the order they were logged, read by
// one poster at a time (a lease) through a consumer group, so a batch taken but not acknowledged
// when its poster died is read again, first, by the next one. Records are deleted once their
// endpoint took them, so the stream's length is what waits for the endpoint.
import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from '../store/redis.js';

const GROUP = 'posters';
/** One consumer name for every node: only the lease holder reads, and it must see what a dead holder took. */
const CONSUMER = 'poster';

/** A record waiting for the endpoint: its stream id (Redis time in ms, then a sequence) and its JSON; none when trimmed away. */
export interface StreamEntry {
  id: string;
  json: string | undefined;
}

// Takes or keeps the lease: set when free, extended when this owner holds it.
const CLAIM = `
local held = redis.call('GET', KEYS[1])
if held == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if held == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`;

type StreamReply = Array<[string, Array<[string, string[] | null]>]> | null;

/** The time in ms an entry was added at, from its id. */
export const entryTime = (id: string): number => Number(id.slice(0, id.indexOf('-')));

export class RecordStream {
  readonly key: string;
  private readonly leaseKey: string;

  constructor(private readonly redis: RedisClient, prefix: string, readonly name: string) {
    this.key = `${prefix}:webhook:${name}`;
    this.leaseKey = `${this.key}:poster`;
  }

  /** Queues a record on the caller's pipeline, so one flush writes a tick's records together. */
  append(pipeline: ChainableCommander, json: string): void {
    pipeline.xadd(this.key, '*', 'r', json);
  }

  /** The consumer group, made with the stream if neither exists; from the stream's start, so nothing appended before it is missed. */
  async prepare(): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.key, GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!/BUSYGROUP/.test((err as Error).message)) throw err;
    }
  }

  /** Whether `owner` holds the poster's lease for `ttlMs` more (taken when free). */
  async claim(owner: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.eval(CLAIM, 1, this.leaseKey, owner, ttlMs)) === 1;
  }

  async release(owner: string): Promise<void> {
    await this.redis.eval(RELEASE, 1, this.leaseKey, owner);
  }

  /**
   * Up to `count` records: those taken before and not acknowledged (`taken`), else new ones,
   * waiting up to `blockMs` for one (0: not at all) on `reader`, a connection of the poster's own.
   */
  async read(reader: RedisClient, count: number, taken: boolean, blockMs: number): Promise<StreamEntry[]> {
    const block = !taken && blockMs > 0 ? ['BLOCK', blockMs] : [];
    const reply = await (reader.xreadgroup as (...args: unknown[]) => Promise<StreamReply>)(
      'GROUP', GROUP, CONSUMER, 'COUNT', count, ...block, 'STREAMS', this.key, taken ? '0' : '>');
    const entries = reply?.[0]?.[1] ?? [];
    return entries.map(([id, fields]) => ({ id, json: fields?.[1] }));
  }

  /** The endpoint took these (or they were trimmed away): acknowledged and deleted together. */
  async settle(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.redis.multi().xack(this.key, GROUP, ...ids).xdel(this.key, ...ids).exec();
  }

  /** Drops records older than `minTime` (ms), then the oldest beyond `maxLen`; returns how many of each. */
  async trim(minTime: number, maxLen: number): Promise<{ expired: number; overflow: number }> {
    const replies = await this.redis.multi().xtrim(this.key, 'MINID', `${minTime}-0`).xtrim(this.key, 'MAXLEN', maxLen).exec();
    const failed = replies?.find(([err]) => err);
    if (!replies || failed) throw failed?.[0] ?? new Error('the trim transaction was aborted');
    return { expired: replies[0]![1] as number, overflow: replies[1]![1] as number };
  }

  /** Records waiting, and the time the oldest was logged. */
  async size(): Promise<{ queued: number; oldest: number | undefined }> {
    const [queued, first] = await Promise.all([this.redis.xlen(this.key), this.redis.xrange(this.key, '-', '+', 'COUNT', 1)]);
    return { queued, oldest: first[0] ? entryTime(first[0][0]) : undefined };
  }
}
