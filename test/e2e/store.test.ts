// The message store against a real Redis: a body comes back byte for byte whatever its size, a
// body stored whole by an earlier version is still read, a message with one job keeps no job set
// and its body goes with that job, a message with several goes with the last.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { MessageStore } from '../../src/queue/store.js';
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
    await store.put(`Q${i}`, { body, sender: 's@x.test', receivedAt: 1000 + i }, [`Q${i}-0`], DAY);
    const got = await store.get(`Q${i}`);
    assert.ok(got?.body.equals(body), `body of ${size} bytes`);
    assert.equal(got!.sender, 's@x.test');
    assert.equal(got!.receivedAt, 1000 + i);
    assert.equal((await store.describe(`Q${i}`))?.size, size);
  }
});

test('a body stored whole, as before it was cut into pieces, is still read', async () => {
  const body = Buffer.from('Subject: old\r\n\r\nstill here\r\n');
  await redis.hset('impulse:msg:OLD', { body, sender: 'o@x.test', received_at: '42' });
  await redis.sadd('impulse:msg:OLD:jobs', 'OLD-0', 'OLD-1');
  assert.ok((await store.get('OLD'))?.body.equals(body));
  const described = await store.describe('OLD');
  assert.deepEqual({ ...described, jobs: described?.jobs.sort() }, { sender: 'o@x.test', receivedAt: 42, size: body.length, jobs: ['OLD-0', 'OLD-1'] });
});

test('one job: no job set, its release removes the body; several: the last release does', async () => {
  await store.put('ONE', { body: Buffer.from('x'), sender: '', receivedAt: 1 }, ['ONE-0'], DAY);
  assert.equal(await redis.exists('impulse:msg:ONE:jobs'), 0, 'no set for a single job');
  assert.deepEqual((await store.describe('ONE'))?.jobs, ['ONE-0']);
  assert.equal(await store.release('ONE', 'ONE-0'), true);
  assert.equal(await store.get('ONE'), undefined);

  await store.put('TWO', { body: Buffer.from('y'), sender: '', receivedAt: 1 }, ['TWO-0', 'TWO-1'], DAY);
  assert.equal(await store.release('TWO', 'TWO-0'), false);
  assert.ok(await store.get('TWO'), 'kept while a job remains');
  assert.equal(await store.release('TWO', 'TWO-1'), true);
  assert.equal(await redis.exists('impulse:msg:TWO', 'impulse:msg:TWO:jobs'), 0);
});
