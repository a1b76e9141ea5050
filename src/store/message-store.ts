// Message bodies in Redis, stored once per message whatever its number of domains, compressed
// when that pays (body-compression.ts says when), and cut into pieces that fit the allocator (body-pieces.ts). A set of the
// message's unfinished job ids decides when the body may go; a message with one job has no set
// (the release script reads a missing set as empty). The TTL reclaims bodies whose jobs never
// got queued (intake failed half-way) or were forgotten by a crash.
import { brotliCompressSync, brotliDecompressSync, constants } from 'node:zlib';
import type { RedisClient } from './redis.js';
import { scriptCommand } from './script-command.js';
import { cutBody, pieceFields } from './body-pieces.js';
import type { CompressionSwitch } from './body-compression.js';
import { jobIdFor } from '../core/ids.js';
import { TurnBatch } from '../core/turn-batch.js';

/** Where bodies stored before they were cut into pieces keep theirs. */
const WHOLE_BODY = 'body';
const RAW_PIECES = pieceFields();
/** Pieces of a body stored compressed (Brotli): the field names say which way a body was stored. */
const COMPRESSED_PIECES = pieceFields('z');

/**
 * Brotli's fastest quality: 5 KB of base64-like text shrinks by a quarter, plain text or HTML to a
 * few percent. Against quality 1 it compresses such text in 30% less CPU and reads it back in
 * 20% less (HTML in half), for a percent more bytes; higher qualities cost two to three times
 * the CPU for a percent less.
 */
const QUALITY = 0;

/** A body is kept compressed only when that saves at least this share of it (else it is stored as it came). */
const MIN_SAVING = 1 / 16;

function compress(body: Buffer): Buffer | undefined {
  if (body.length === 0) return undefined;
  const z = brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: QUALITY, [constants.BROTLI_PARAM_SIZE_HINT]: body.length } });
  return z.length <= body.length * (1 - MIN_SAVING) ? z : undefined;
}

function present(pieces: Array<Buffer | null>): Buffer | undefined {
  const have = pieces.filter((p): p is Buffer => p !== null);
  return have.length > 1 ? Buffer.concat(have) : have[0];
}

// Releases of several messages in one call, three keys and three arguments each: files each job's
// finished record in its message's history hash, and removes a body once its last job is done.
// Returns 1 for each body removed, else 0, in order.
const RELEASE = `
local removed = {}
for i = 0, #KEYS / 3 - 1 do
  local body, jobs, history = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local id, keep, retention = ARGV[3 * i + 1], ARGV[3 * i + 2], ARGV[3 * i + 3]
  if keep ~= '' then
    redis.call('HSET', history, id, keep)
    redis.call('PEXPIRE', history, retention)
  end
  redis.call('SREM', jobs, id)
  removed[i + 1] = 0
  if redis.call('SCARD', jobs) == 0 then
    redis.call('DEL', body, jobs)
    removed[i + 1] = 1
  end
end
return removed`;

/** The number of keys, then the keys, then the arguments (ioredis's form for a script defined without a key count). */
type ReleaseArgs = [keyCount: number, ...keysThenArgs: string[]];

interface Release {
  keys: [string, string, string];
  args: [string, string, string];
}

// One script rather than MULTI: a pipeline on a connection with BullMQ's scripts defined costs
// ioredis some 28 µs to build (it copies every script onto it), a tenth of intake's CPU.
// ARGV: TTL, the number of body fields, those fields and values, then the job ids (none when the
// message's one job has the id derived from its queue id).
const PUT = `
local fields = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], unpack(ARGV, 3, 2 + 2 * fields))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if #ARGV > 2 + 2 * fields then
  redis.call('SADD', KEYS[2], unpack(ARGV, 3 + 2 * fields))
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return 1`;

type PutArgs = [body: string, jobs: string, ttlMs: number, fields: number, ...rest: Array<string | Buffer>];

export class MessageStore {
  private readonly releases = new TurnBatch<Release, boolean>((batch) => this.releaseAll(batch));
  private readonly putBody: (...args: PutArgs) => Promise<number>;
  private readonly releaseBodies: (...args: ReleaseArgs) => Promise<number[]>;

  /** `compression`: whether a body stored now is Brotli-compressed when that saves space. */
  constructor(private readonly redis: RedisClient, private readonly prefix: string, private readonly compression: CompressionSwitch = { on: true }) {
    this.releaseBodies = scriptCommand<ReleaseArgs, number[]>(redis, 'impulseReleaseBodies', RELEASE);
    this.putBody = scriptCommand<PutArgs, number>(redis, 'impulsePutBody', PUT, 2);
  }

  private bodyKey(qid: string): string {
    return `${this.prefix}:msg:${qid}`;
  }

  private jobsKey(qid: string): string {
    return `${this.prefix}:msg:${qid}:jobs`;
  }

  /** Stores the body; sender and arrival time are in the jobs, not here (bodies of earlier versions also hold them). */
  async put(qid: string, body: Buffer, jobIds: string[], ttlMs: number): Promise<void> {
    const fields = Object.entries(this.pieces(body)).flat();
    const ids = jobIds.length > 1 || jobIds[0] !== jobIdFor(qid, 0) ? jobIds : [];
    await this.putBody(this.bodyKey(qid), this.jobsKey(qid), ttlMs, fields.length / 2, ...fields, ...ids);
  }

  private pieces(body: Buffer): Record<string, Buffer> {
    const z = this.compression.on ? compress(body) : undefined;
    return z ? cutBody(z, 'z') : cutBody(body);
  }

  async get(qid: string): Promise<Buffer | undefined> {
    const [whole, ...pieces] = await this.redis.hmgetBuffer(this.bodyKey(qid), WHOLE_BODY, ...RAW_PIECES, ...COMPRESSED_PIECES);
    const z = present(pieces.slice(RAW_PIECES.length));
    return z ? brotliDecompressSync(z) : whole ?? present(pieces.slice(0, RAW_PIECES.length));
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
   * job removes the body. Idempotent. The releases asked in one turn of the event loop leave in
   * one script call.
   */
  release(qid: string, jobId: string, record?: string, retentionMs = 0): Promise<boolean> {
    const keep = record !== undefined && retentionMs > 0 ? record : '';
    return this.releases.ask({ keys: [this.bodyKey(qid), this.jobsKey(qid), this.historyKey(qid)], args: [jobId, keep, String(retentionMs)] });
  }

  private async releaseAll(batch: Release[]): Promise<boolean[]> {
    const removed = await this.releaseBodies(batch.length * 3, ...batch.flatMap((r) => r.keys), ...batch.flatMap((r) => r.args));
    return removed.map((r) => r === 1);
  }

  /** What an operator may ask of a queued message: its size as received, however it is stored, and its unfinished jobs. */
  async describe(qid: string): Promise<{ size: number; jobs: string[] } | undefined> {
    const [body, jobs] = await Promise.all([this.get(qid), this.redis.smembers(this.jobsKey(qid))]);
    if (!body) return undefined;
    return { size: body.length, jobs: jobs.length > 0 ? jobs : [jobIdFor(qid, 0)] };
  }

  /** Finished records of the message's jobs, by job id. */
  async history(qid: string): Promise<Map<string, string>> {
    return new Map(Object.entries(await this.redis.hgetall(this.historyKey(qid))));
  }
}
