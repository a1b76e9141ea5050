// Fetching waits while too many jobs are in transit (taken from Redis, neither held by the
// scheduler nor handed back): with the bound reached, the delivery Worker takes no further job
// from a full queue, whether by its own fetch or by BullMQ's fetch after a job put back, and it
// takes the rest as jobs land back in Redis. Against a real Redis.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DelayedError, Queue } from 'bullmq';
import { DeliveryWorker, JobCopies } from '../../src/queue/delivery-worker.js';
import { DELIVERY_QUEUE } from '../../src/queue/job.js';
import { Transit } from '../../src/queue/transit.js';
import { redisPerFile } from '../helpers/redis.js';
import { Condition } from '../helpers/wait.js';

const redis = redisPerFile();

test('fetches under way take places as jobs do; a place freed lets one waiting fetch go; a job counts and leaves once; open lets all go', async () => {
  const t = new Transit(2);
  const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
  assert.equal(t.room(), undefined, 'a place is free');
  t.fetched();
  const [a, b] = [{}, {}];
  t.enter(a);
  t.enter(a);
  t.enter(b);
  assert.equal(t.size, 2, 'a job entered twice counts once');
  const released: number[] = [];
  for (const n of [1, 2, 3]) void t.room()!.then(() => released.push(n));
  await settle();
  assert.deepEqual(released, []);
  t.leave(a);
  t.leave(a);
  assert.equal(t.size, 1, 'a job that left twice counts once');
  await settle();
  assert.deepEqual(released, [1], 'one place freed, one fetch goes');
  t.fetched();
  await settle();
  assert.deepEqual(released, [1, 2], 'that fetch came back with nothing: the next goes');
  t.open();
  await settle();
  assert.deepEqual(released, [1, 2, 3]);
});

test('a Worker takes no more jobs than the transit bound while they are on their way back, and takes the rest as they land', async () => {
  const prefix = 'transit';
  const queue = new Queue(DELIVERY_QUEUE, { connection: redis(), prefix });
  const total = 30;
  const bound = 4;
  await queue.addBulk(Array.from({ length: total }, (_, i) => ({ name: 'd', data: { i }, opts: { jobId: `j${i}` } })));

  const changed = new Condition();
  let fetchesWaited = 0;
  class Observed extends Transit {
    override room(): Promise<void> | undefined {
      const room = super.room();
      if (room) {
        fetchesWaited++;
        changed.notify();
      }
      return room;
    }
  }
  const transit = new Observed(bound);
  const landings: Array<() => void> = [];
  let parked = 0;
  let peak = 0;
  let landAll = false;
  const worker = new DeliveryWorker(DELIVERY_QUEUE, async (job) => {
    // Each job is put back as a park is, its write held until the test lets it land.
    peak = Math.max(peak, transit.size);
    if (!landAll) {
      await new Promise<void>((resolve) => {
        landings.push(resolve);
        changed.notify();
      });
    }
    await job.moveToDelayed(Date.now() + 3_600_000, job.token);
    parked++;
    changed.notify();
    throw new DelayedError();
  }, { connection: redis(), prefix, concurrency: total }, new JobCopies(), transit);
  try {
    await changed.until(() => (fetchesWaited > 0 && landings.length === bound ? true : undefined), 10_000,
      () => `${landings.length} jobs in transit, ${fetchesWaited} fetches waited`);
    assert.equal(await redis().llen(`${prefix}:${DELIVERY_QUEUE}:active`), bound, 'the Worker holds only the jobs in transit');
    assert.equal(await redis().llen(`${prefix}:${DELIVERY_QUEUE}:wait`), total - bound, 'the rest wait in Redis');

    // One landing at a time: each lets fetching go on until a fetch waits again, or none is left to fetch.
    while (parked < total) {
      const waited = fetchesWaited;
      landings.shift()!();
      await changed.until(() => (fetchesWaited > waited || parked + landings.length === total ? true : undefined), 10_000,
        () => `${parked} of ${total} put back, ${landings.length} in transit`);
      if (parked + landings.length === total) {
        await changed.until(() => (parked === total || landings.length > 0 ? true : undefined), 10_000, () => `${parked} of ${total} put back`);
      }
    }
    assert.equal(await redis().zcard(`${prefix}:${DELIVERY_QUEUE}:delayed`), total);
    assert.equal(await redis().llen(`${prefix}:${DELIVERY_QUEUE}:wait`), 0);
    assert.ok(peak <= bound, `at most ${bound} jobs in transit at once, saw ${peak}`);
  } finally {
    landAll = true;
    for (const land of landings.splice(0)) land();
    await worker.close();
    await queue.close();
  }
});
