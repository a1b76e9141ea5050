// The message store against a real Redis: a body comes back byte for byte whatever its size, its
// hash holding nothing but its pieces; a body that compresses is stored compressed and one that
// does not as it came; a body stored whole by an earlier version is still read; a message with
// one job keeps no job set and its body goes with that job, a message with several goes with the last;
// the releases of one turn go in one call.
// A message written half-way (its body or one of its jobs refused) leaves nothing to deliver.
// With compress_bodies_above, bodies are compressed only while Redis's used memory is high.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { Enqueuer } from '../../src/queue/enqueue.js';
import { ShardLayout, Sharded } from '../../src/queue/shards.js';
import type { DeliveryJobData } from '../../src/queue/job.js';
import { BodyCompression, fixedCompression } from '../../src/store/body-compression.js';
import { MessageStore } from '../../src/store/message-store.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';

let server: TestRedis;
let redis: Redis;
let store: MessageStore;
const DAY = 86_400_000;

before(async () => {
  server = await startRedis();
  redis = new Redis(server.url);
  store = new MessageStore(redis, 'impulse');
});

after(async () => {
  redis.disconnect();
  await server.stop();
});

test('bodies of any size come back byte for byte; the stored size is the body\'s', async () => {
  for (const [i, size] of [0, 1, 5305, 65_536, 100_000, 1_500_000].entries()) {
    const body = Buffer.from(Array.from({ length: size }, (_, k) => (k * 31 + i) % 256));
    await store.put(`Q${i}`, body, [`Q${i}-0`], DAY);
    assert.ok((await store.get(`Q${i}`))?.equals(body), `body of ${size} bytes`);
    assert.equal((await store.describe(`Q${i}`))?.size, size);
  }
});

/** Bytes the message's hash holds in its body fields, and those fields' names. */
async function stored(qid: string): Promise<{ fields: string[]; bytes: number }> {
  const fields = (await redis.hkeys(`impulse:msg:${qid}`)).sort();
  let bytes = 0;
  for (const f of fields) bytes += await redis.hstrlen(`impulse:msg:${qid}`, f);
  return { fields, bytes };
}

test('a body that compresses is stored compressed, one that does not as it came; both come back byte for byte', async () => {
  const text = Buffer.from('Subject: invoice\r\n\r\n' + 'Thank you for your order; your invoice is attached.\r\n'.repeat(200));
  await store.put('TEXT', text, ['TEXT-0'], DAY);
  const t = await stored('TEXT');
  assert.ok(t.fields.every((f) => /^z\d$/.test(f)), `compressed pieces only: ${t.fields.join(',')}`);
  assert.ok(t.bytes < text.length / 10, `${t.bytes} bytes stored for ${text.length}`);
  assert.ok((await store.get('TEXT'))?.equals(text));
  assert.equal((await store.describe('TEXT'))?.size, text.length, 'the size is the body\'s as received');

  // Bytes from a fixed pseudo-random sequence: no compressor shrinks them by a sixteenth.
  let x = 0x12345678;
  const noise = Buffer.from(Array.from({ length: 6000 }, () => {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    return x & 0xff;
  }));
  await store.put('NOISE', noise, ['NOISE-0'], DAY);
  const n = await stored('NOISE');
  assert.ok(n.fields.every((f) => /^\d$/.test(f)), `pieces as received: ${n.fields.join(',')}`);
  assert.equal(n.bytes, noise.length);
  assert.ok((await store.get('NOISE'))?.equals(noise));
});

test('with compress_bodies off a compressible body is stored as it came, and compressed ones stored before are still read', async () => {
  const plain = new MessageStore(redis, 'impulse', fixedCompression(false));
  const text = Buffer.from('Subject: plain\r\n\r\n' + 'the same line again and again\r\n'.repeat(100));
  await plain.put('PLAIN', text, ['PLAIN-0'], DAY);
  const p = await stored('PLAIN');
  assert.ok(p.fields.every((f) => /^\d$/.test(f)), `pieces as received: ${p.fields.join(',')}`);
  assert.equal(p.bytes, text.length);
  assert.ok((await plain.get('PLAIN'))?.equals(text));
  await store.put('ZIPPED', text, ['ZIPPED-0'], DAY);
  assert.ok((await plain.get('ZIPPED'))?.equals(text), 'a store with compression off reads compressed bodies');
});

test('with compress_bodies_above, bodies are stored as they came while Redis uses less, compressed from when it uses that much, and as they came below three quarters of it', async () => {
  const records: Array<{ event: string; on: boolean; redis_used_memory: number; threshold: number }> = [];
  const log = pino({}, { write: (line: string) => records.push(JSON.parse(line) as (typeof records)[number]) });
  const usedNow = async () => Number(/^used_memory:(\d+)/m.exec(await redis.info('memory'))![1]);
  const above = await usedNow() + 8 * 1024 * 1024;
  const compression = new BodyCompression(redis, above, log);
  const switched = new MessageStore(redis, 'impulse', compression);
  const text = Buffer.from('Subject: switched\r\n\r\n' + 'a line that compresses well\r\n'.repeat(100));

  await compression.refresh();
  await switched.put('LOW', text, ['LOW-0'], DAY);
  assert.ok((await stored('LOW')).fields.every((f) => /^\d$/.test(f)), 'stored as it came below the threshold');
  assert.equal(records.length, 0, 'nothing logged while nothing changed');

  // 10 MB of other data takes Redis over the threshold: in small values, as one large one would
  // hold Redis's query buffer (and so its used memory) up for a while after it is deleted.
  const ballast = Array.from({ length: 640 }, (_, i) => `ballast:${i}`);
  const filling = redis.pipeline();
  for (const key of ballast) filling.set(key, Buffer.alloc(16 * 1024, 1));
  await filling.exec();
  await compression.refresh();
  await switched.put('HIGH', text, ['HIGH-0'], DAY);
  assert.ok((await stored('HIGH')).fields.every((f) => /^z\d$/.test(f)), 'compressed above the threshold');
  assert.deepEqual(records.map((r) => [r.event, r.on, r.threshold]), [['body_compression', true, above]]);
  assert.ok(records[0]!.redis_used_memory >= above, `logged with the memory it saw: ${records[0]!.redis_used_memory}`);

  await redis.del(...ballast);
  await compression.refresh();
  await switched.put('LOW2', text, ['LOW2-0'], DAY);
  assert.ok((await stored('LOW2')).fields.every((f) => /^\d$/.test(f)), 'stored as it came again once well below');
  assert.deepEqual(records.map((r) => r.on), [true, false]);
  for (const qid of ['LOW', 'HIGH', 'LOW2']) assert.ok((await switched.get(qid))?.equals(text), `${qid} reads back`);
});

test('a body stored whole, as before it was cut into pieces, is still read', async () => {
  const body = Buffer.from('Subject: old\r\n\r\nstill here\r\n');
  await redis.hset('impulse:msg:OLD', { body, sender: 'o@x.test', received_at: '42' });
  await redis.sadd('impulse:msg:OLD:jobs', 'OLD-0', 'OLD-1');
  assert.ok((await store.get('OLD'))?.equals(body));
  const described = await store.describe('OLD');
  assert.deepEqual({ ...described, jobs: described?.jobs.sort() }, { size: body.length, jobs: ['OLD-0', 'OLD-1'] });
});

test('one job: no job set, its release removes the body; several: the last release does', async () => {
  await store.put('ONE', Buffer.from('x'), ['ONE-0'], DAY);
  assert.equal(await redis.exists('impulse:msg:ONE:jobs'), 0, 'no set for a single job');
  assert.deepEqual((await store.describe('ONE'))?.jobs, ['ONE-0']);
  assert.equal(await store.release('ONE', 'ONE-0'), true);
  assert.equal(await store.get('ONE'), undefined);

  await store.put('TWO', Buffer.from('y'), ['TWO-0', 'TWO-1'], DAY);
  assert.equal(await store.release('TWO', 'TWO-0'), false);
  assert.ok(await store.get('TWO'), 'kept while a job remains');
  assert.equal(await store.release('TWO', 'TWO-1'), true);
  assert.equal(await redis.exists('impulse:msg:TWO', 'impulse:msg:TWO:jobs'), 0);
});

test('releases asked in one turn leave in one script call, each with its own answer and history record', async () => {
  await store.put('B1', Buffer.from('1'), ['B1-0'], DAY);
  await store.put('B2', Buffer.from('2'), ['B2-0', 'B2-1'], DAY);
  await store.put('B3', Buffer.from('3'), ['B3-0'], DAY);
  const calls = async () => Number(/^cmdstat_evalsha:calls=(\d+)/m.exec(await redis.info('commandstats'))?.[1] ?? 0);
  const before = await calls();
  const removed = await Promise.all([
    store.release('B1', 'B1-0', '{"n":1}', DAY),
    store.release('B2', 'B2-0', '{"n":2}', DAY),
    store.release('B3', 'B3-0'),
  ]);
  assert.equal(await calls() - before, 1);
  assert.deepEqual(removed, [true, false, true]);
  assert.equal(await store.get('B1'), undefined);
  assert.ok(await store.get('B2'), 'kept while a job remains');
  assert.deepEqual(Object.fromEntries(await store.history('B2')), { 'B2-0': '{"n":2}' });
  assert.equal((await store.history('B3')).size, 0, 'no record asked, none kept');
});

test('a message whose body Redis refuses leaves no job, and one whose jobs it refuses leaves no body', async () => {
  const message = (qid: string) => ({
    qid, sender: 's@x.test', jobs: [{ domain: 'one.test', recipients: ['a@one.test'] }, { domain: 'two.test', recipients: ['b@two.test'] }],
    body: Buffer.from('Subject: t\r\n\r\nbody\r\n'), receivedAt: Date.now(),
  });
  const queued = async (queue: Queue) => Object.values(await queue.getJobCounts()).reduce((a, b) => a + b, 0);
  const unsharded = (prefix: string, queue: Queue<DeliveryJobData>) =>
    new Sharded(new ShardLayout(prefix, 1, false), (shard) => ({ shard, queue, store: new MessageStore(redis, prefix) }));

  // A key of another type where the body goes: the body's write fails, the jobs' adds do not.
  const first = new Queue<DeliveryJobData>('delivery', { connection: redis, prefix: 'enq1' });
  await redis.set('enq1:msg:BODYLESS', 'not a hash');
  await assert.rejects(new Enqueuer(unsharded('enq1', first), () => DAY).enqueue(message('BODYLESS')), /WRONGTYPE/);
  assert.equal(await queued(first), 0, 'the jobs added beside the refused body were removed');
  assert.equal(await redis.exists('enq1:msg:BODYLESS', 'enq1:msg:BODYLESS:jobs'), 0);

  // A queue whose metadata key has the wrong type: every job's add fails, the body's write does not.
  const second = new Queue<DeliveryJobData>('delivery', { connection: redis, prefix: 'enq2' });
  await redis.set('enq2:delivery:meta', 'not a hash');
  await assert.rejects(new Enqueuer(unsharded('enq2', second), () => DAY).enqueue(message('JOBLESS')), /WRONGTYPE/);
  assert.equal(await redis.exists('enq2:msg:JOBLESS', 'enq2:msg:JOBLESS:jobs'), 0, 'the body stored beside the refused jobs was dropped');
  await redis.del('enq2:delivery:meta');
  assert.equal(await queued(second), 0);
  await Promise.all([first.close(), second.close()]);
});
