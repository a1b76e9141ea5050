// Message bodies in Redis, stored once per message whatever its number of domains, cut into
// pieces that fit the allocator (body-pieces.ts). A set of the message's unfinished job ids
// decides when the body may go; a message with one job has no set (the release script reads a
// missing set as empty). The TTL reclaims bodies whose jobs never got queued (intake failed
// half-way) or were forgotten by a crash.
import type { Redis } from 'ioredis';
import { PIECE_FIELDS, cutBody } from './body-pieces.js';
import { jobIdFor } from './job.js';

/** Where bodies stored before they were cut into pieces keep theirs. */
const WHOLE_BODY = 'body';

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
    const tx = this.redis.multi()
      .hset(body, { ...cutBody(msg.body), sender: msg.sender, received_at: String(msg.receivedAt) })
      .pexpire(body, ttlMs);
    if (jobIds.length > 1 || jobIds[0] !== jobIdFor(qid, 0)) tx.sadd(jobs, ...jobIds).pexpire(jobs, ttlMs);
    const results = await tx.exec();
    const failed = results?.find(([err]) => err);
    if (!results || failed) throw failed?.[0] ?? new Error('Redis MULTI aborted');
  }

  async get(qid: string): Promise<StoredMessage | undefined> {
    const [sender, receivedAt, whole, ...pieces] = await this.redis.hmgetBuffer(this.bodyKey(qid), 'sender', 'received_at', WHOLE_BODY, ...PIECE_FIELDS);
    const present = pieces.filter((p): p is Buffer => p !== null);
    const body = whole ?? (present.length > 0 ? Buffer.concat(present) : undefined);
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
    const tx = this.redis.multi().hmget(this.bodyKey(qid), 'sender', 'received_at').smembers(this.jobsKey(qid));
    for (const f of [WHOLE_BODY, ...PIECE_FIELDS]) tx.hstrlen(this.bodyKey(qid), f);
    const [[, fields], [, jobs], ...lengths] = await tx.exec() as [[unknown, Array<string | null>], [unknown, string[]], ...Array<[unknown, number]>];
    if (fields[1] === null) return undefined;
    const size = lengths.reduce((sum, [, n]) => sum + n, 0);
    return { sender: fields[0] ?? '', receivedAt: Number(fields[1]), size, jobs: jobs.length > 0 ? jobs : [jobIdFor(qid, 0)] };
  }

  /** Finished records of the message's jobs, by job id. */
  async history(qid: string): Promise<Map<string, string>> {
    return new Map(Object.entries(await this.redis.hgetall(this.historyKey(qid))));
  }
}
