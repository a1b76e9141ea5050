// Message bodies in Redis, stored once per message whatever its number of domains. A set of the
// message's unfinished job ids decides when the body may go; the TTL reclaims bodies whose
// jobs never got queued (intake failed half-way) or were forgotten by a crash.
import type { Redis } from 'ioredis';

export interface StoredMessage {
  body: Buffer;
  sender: string;
  receivedAt: number;
}

// Also files the job's finished record in the message's history hash, in the same round trip.
const RELEASE = `
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0`;

export class MessageStore {
  constructor(private readonly redis: Redis, private readonly prefix: string) {}

  private bodyKey(qid: string): string {
    return `${this.prefix}:msg:${qid}`;
  }

  private jobsKey(qid: string): string {
    return `${this.prefix}:msg:${qid}:jobs`;
  }

  async put(qid: string, msg: StoredMessage, jobIds: string[], ttlMs: number): Promise<void> {
    const body = this.bodyKey(qid);
    const jobs = this.jobsKey(qid);
    const results = await this.redis.multi()
      .hset(body, { body: msg.body, sender: msg.sender, received_at: String(msg.receivedAt) })
      .sadd(jobs, ...jobIds)
      .pexpire(body, ttlMs)
      .pexpire(jobs, ttlMs)
      .exec();
    const failed = results?.find(([err]) => err);
    if (!results || failed) throw failed?.[0] ?? new Error('Redis MULTI aborted');
  }

  async get(qid: string): Promise<StoredMessage | undefined> {
    const [body, sender, receivedAt] = await this.redis.hmgetBuffer(this.bodyKey(qid), 'body', 'sender', 'received_at');
    if (!body) return undefined;
    return { body, sender: sender?.toString() ?? '', receivedAt: Number(receivedAt?.toString() ?? 0) };
  }

  /** Drops a message whose jobs could not be queued. */
  async discard(qid: string): Promise<void> {
    await this.redis.del(this.bodyKey(qid), this.jobsKey(qid));
  }

  private historyKey(qid: string): string {
    return `${this.prefix}:history:${qid}`;
  }

  /**
   * Marks one job of the message finished, keeping `record` (JSON) for `retentionMs`; the last
   * job removes the body. Idempotent.
   */
  async release(qid: string, jobId: string, record?: string, retentionMs = 0): Promise<boolean> {
    const keep = record !== undefined && retentionMs > 0 ? record : '';
    const removed = await this.redis.eval(RELEASE, 3, this.bodyKey(qid), this.jobsKey(qid), this.historyKey(qid), jobId, keep, retentionMs);
    return removed === 1;
  }

  /** What an operator may ask of a message without reading its body. */
  async describe(qid: string): Promise<{ sender: string; receivedAt: number; size: number; jobs: string[] } | undefined> {
    const [[, fields], [, size], [, jobs]] = await this.redis.multi()
      .hmget(this.bodyKey(qid), 'sender', 'received_at')
      .hstrlen(this.bodyKey(qid), 'body')
      .smembers(this.jobsKey(qid))
      .exec() as [[unknown, Array<string | null>], [unknown, number], [unknown, string[]]];
    if (fields[1] === null) return undefined;
    return { sender: fields[0] ?? '', receivedAt: Number(fields[1]), size, jobs };
  }

  /** Finished records of the message's jobs, by job id. */
  async history(qid: string): Promise<Map<string, string>> {
    return new Map(Object.entries(await this.redis.hgetall(this.historyKey(qid))));
  }
}
