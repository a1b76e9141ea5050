// The queue's layout against a real Redis: the first daemon records it, a daemon with the same one
// starts, one with another shard count is refused, and a sharded daemon is refused while the queue
// of before shards still holds jobs, with an error that says what to do; a sharded enqueue puts a
// message for several shards in each, every key of a shard in its slot.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Queue } from 'bullmq';
import { Enqueuer } from '../../src/queue/enqueue.js';
import type { DeliveryJobData } from '../../src/queue/job.js';
import { ShardLayout, Sharded } from '../../src/queue/shards.js';
import { MessageStore } from '../../src/store/message-store.js';
import { keySlot } from '../../src/store/key-slot.js';
import { redisPerFile } from '../helpers/redis.js';

const redis = redisPerFile();

test('the first start records the layout; the same layout starts again, another is refused naming both', async () => {
  await new ShardLayout('lay1', 4, false).claim(redis());
  assert.equal(await redis().get('lay1:layout'), '{"shards":4,"hash_tags":true}');
  await new ShardLayout('lay1', 4, false).claim(redis());
  await assert.rejects(new ShardLayout('lay1', 16, true).claim(redis()),
    /^Error: redis\.shards: this daemon lays the queue out as \{"shards":16,"hash_tags":true\}, but Redis holds a queue laid out as \{"shards":4,"hash_tags":true\} \(lay1:layout\); mail queued there would never be read/);
});

test('a queue from before shards: kept by one untagged shard, and a sharded daemon refused while it holds jobs', async () => {
  const legacy = new Queue<DeliveryJobData>('delivery', { connection: redis(), prefix: 'lay2' });
  await legacy.add('x.test', { qid: 'Q', domain: 'x.test', sender: '', recipients: ['a@x.test'], receivedAt: 0, attempts: 0 }, { jobId: 'Q-0' });
  await assert.rejects(new ShardLayout('lay2', 16, true).claim(redis()),
    /^Error: redis\.shards: Redis holds 1 jobs in the queue from before shards \(lay2:delivery:\*\), which a daemon with 16 shard\(s\) under hash tags would never read/);
  assert.equal(await redis().get('lay2:layout'), null, 'nothing recorded by the refused daemon');
  await new ShardLayout('lay2', 1, false).claim(redis());
  assert.equal(await redis().get('lay2:layout'), '{"shards":1,"hash_tags":false}');
  await legacy.obliterate({ force: true });
  await legacy.close();
});

test('a message for domains in two shards keeps a body in each, beside that shard\'s jobs and in its slot; each shard\'s last job removes its copy', async () => {
  const layout = new ShardLayout('lay3', 4, false);
  const shards = new Sharded(layout, (shard) => ({
    shard, queue: new Queue<DeliveryJobData>('delivery', { connection: redis(), prefix: shard.prefix }), store: new MessageStore(redis(), shard.prefix),
  }));
  const domains = ['a.test', 'b.test', 'c.test', 'd.test', 'e.test', 'f.test'];
  const [one, two] = [domains[0]!, domains.find((d) => layout.of(d) !== layout.of(domains[0]!))!];
  await new Enqueuer(shards, () => 86_400_000).enqueue({
    qid: 'TWO', sender: 's@x.test', receivedAt: Date.now(), body: Buffer.from('Subject: t\r\n\r\nbody\r\n'),
    jobs: [{ domain: one, recipients: [`r@${one}`] }, { domain: two, recipients: [`r@${two}`] }],
  });
  for (const [i, domain] of [one, two].entries()) {
    const part = shards.of(domain);
    const job = await part.queue.getJob(`TWO-${i}`);
    assert.equal(job?.data.domain, domain, `job ${i} in the shard of ${domain}`);
    assert.deepEqual(await part.store.describe('TWO'), { size: 20, jobs: [`TWO-${i}`] });
    const slot = keySlot(`${part.shard.prefix}:delivery:TWO-${i}`);
    assert.equal(keySlot(`${part.shard.prefix}:msg:TWO`), slot);
    assert.equal(keySlot(`${part.shard.prefix}:msg:TWO:jobs`), slot);
  }
  assert.equal(await shards.of(one).store.release('TWO', 'TWO-0'), true, 'the first shard\'s only job frees its copy');
  assert.ok(await shards.of(two).store.get('TWO'), 'the other shard keeps its own');
  assert.equal(await shards.of(two).store.release('TWO', 'TWO-1'), true);
  await Promise.all(shards.all.map(async (p) => {
    await p.queue.obliterate({ force: true });
    await p.queue.close();
  }));
});
