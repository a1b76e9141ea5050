// Redis dies while a delivery is in flight and stays down past job_lock_timeout: intake answers
// 451 4.3.0 meanwhile, the delivery completes, the daemon logs the outage and reconnects by itself,
// and the message, whose claim lapsed before its outcome could be written, is not sent again.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { startRedis, waitForQueueEmpty } from '../helpers/redis.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { buildWorld, mxZone, queueIdOf } from './world.js';

/** The outage outlasts it, so the job's claim in Redis has lapsed when Redis comes back. */
const JOB_LOCK_MS = 2000;

test('Redis killed during a delivery: 451 4.3.0 while down, the delivery is recorded once, nothing sent twice, intake accepts again', async (t) => {
  const redis = await startRedis({ appendfsync: 'always' });
  t.after(() => redis.stop());
  let reachedData!: () => void;
  const atData = new Promise<void>((resolve) => {
    reachedData = resolve;
  });
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const world = await buildWorld({
    zone: mxZone({ 'outage.test': '127.0.0.23' }),
    sinks: {
      mx: {
        host: '127.0.0.23',
        // The first message is held at its final dot until the test lets it through.
        behaviour: async (ctx) => {
          if (ctx.stage !== 'data' || !ctx.message?.rcptTo.includes('held@outage.test')) return undefined;
          reachedData();
          await released;
          return undefined;
        },
      },
    },
  });
  t.after(() => world.close());
  const sink = world.sinks.mx!;
  const daemon = await world.start({ redis: { url: redis.url }, job_lock_timeout: `${JOB_LOCK_MS}ms` });
  const intake = { host: '127.0.0.1', port: world.intakePort, from: 's@sender.test' };

  const held = queueIdOf((await sendMail({ ...intake, to: ['held@outage.test'], raw: makeMessage({ from: intake.from, to: ['held@outage.test'] }) })).response);
  await atData;
  await redis.kill9();
  await daemon.waitForLog((r) => r.event === 'redis_down' && r.connection === 'worker');

  const asked = Date.now();
  await assert.rejects(sendMail({ ...intake, to: ['during@outage.test'], raw: makeMessage({ from: intake.from, to: ['during@outage.test'] }) }),
    (err: { response?: string }) => {
      assert.match(err.response ?? '', /^451 4\.3\.0 /);
      return true;
    });
  assert.ok(Date.now() - asked < 3000, `refused after ${Date.now() - asked} ms`);

  release();
  await sink.waitForRecipients(['held@outage.test']);
  await daemon.waitForLog((r) => r.event === 'delivery' && r.qid === held);
  // Redis stays down past the job's claim: what it holds of the job when it returns is a lapsed claim.
  await delay(JOB_LOCK_MS + 1000);
  await redis.restart();
  const up = await daemon.waitForLog((r) => r.event === 'redis_up' && r.connection === 'worker');
  assert.ok(up.down_ms >= JOB_LOCK_MS, `outage of ${up.down_ms} ms logged`);

  // The lapsed job is handed out again; its copy takes the outcome already reached.
  await daemon.waitForLog((r) => r.event === 'job_reclaimed' && r.qid === held);
  await daemon.waitForLog((r) => r.event === 'redis_up' && r.connection === 'intake');
  const after = queueIdOf((await sendMail({ ...intake, to: ['after@outage.test'], raw: makeMessage({ from: intake.from, to: ['after@outage.test'] }) })).response);
  await sink.waitForRecipients(['after@outage.test']);
  await waitForQueueEmpty(redis.url, 15_000);

  assert.deepEqual(sink.messages.map((m) => m.rcptTo).sort(), [['after@outage.test'], ['held@outage.test']], 'each message once, the refused one never');
  const deliveries = daemon.logs.filter((r) => r.event === 'delivery');
  assert.deepEqual(deliveries.map((d) => d.qid).sort(), [after, held].sort(), 'a delivery record for each message the sink has, once');
  assert.equal(daemon.logs.filter((r) => r.event === 'reception_failed').length, 1);
  assert.equal(await daemon.stop('SIGTERM'), 0);
});
