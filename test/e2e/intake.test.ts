// Intake policy as a client sees it: who may relay, size and recipient limits, and what a client
// is told when the queue cannot take a message.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Daemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import { startRedis } from '../helpers/redis.js';
import { makeMessage, sendMail, smtpDialogue } from '../helpers/smtp-client.js';
import { type World, buildWorld } from './world.js';

let world: World;
let daemon: Daemon;

before(async () => {
  world = await buildWorld({ zone: {}, sinks: {} });
  daemon = await world.start({
    listen: [{ address: '127.0.0.1', port: world.intakePort, relay_from: ['127.0.0.1/32'], max_message_size: '2KB', max_recipients: 2 }],
  });
});

after(async () => {
  await world.close();
});

const intake = () => ({ host: '127.0.0.1', port: world.intakePort });

test('a client outside relay_from is refused with 554 5.7.1 and the refusal is logged with its address', async () => {
  const replies = await smtpDialogue({ ...intake(), localAddress: '127.0.0.9', lines: ['EHLO outsider.test'] });
  assert.match(replies[0]!, /^554 5\.7\.1 /);
  const refusal = await daemon.waitForLog((r) => r.event === 'relay_refused');
  assert.equal(refusal.client, '127.0.0.9');
  assert.equal(daemon.logs.filter((r) => r.event === 'reception').length, 0);
});

test('a declared SIZE over max_message_size is refused at MAIL FROM with 552 5.3.4', async () => {
  const replies = await smtpDialogue({ ...intake(), lines: ['EHLO client.test', 'MAIL FROM:<a@sender.test> SIZE=5000', 'QUIT'] });
  assert.match(replies[2]!, /^552 5\.3\.4 /);
});

test('an oversize message without SIZE is refused after DATA with 552 5.3.4 and not queued', async () => {
  const raw = makeMessage({ from: 'a@sender.test', to: ['x@a.test'], size: 4096 });
  await assert.rejects(sendMail({ ...intake(), from: 'a@sender.test', to: ['x@a.test'], raw }), (err: { response?: string }) => {
    assert.match(err.response ?? '', /^552 5\.3\.4 /);
    return true;
  });
  assert.equal(daemon.logs.filter((r) => r.event === 'reception').length, 0);
});

test('recipients beyond max_recipients get 452 4.5.3', async () => {
  const replies = await smtpDialogue({
    ...intake(),
    lines: ['EHLO client.test', 'MAIL FROM:<a@sender.test>', 'RCPT TO:<1@a.test>', 'RCPT TO:<2@a.test>', 'RCPT TO:<3@a.test>', 'QUIT'],
  });
  assert.match(replies[3]!, /^250/);
  assert.match(replies[4]!, /^250/);
  assert.match(replies[5]!, /^452 4\.5\.3 /);
});

test('when Redis cannot take the message the client gets 451 4.3.0', async (t) => {
  const redis = await startRedis();
  // Stopped even when the daemon fails to start: a live redis-server would hold the run open.
  t.after(() => redis.stop());
  const port = await freePort();
  const other = await world.start({
    redis: { url: redis.url },
    listen: [{ address: '127.0.0.1', port }],
  });
  try {
    const raw = makeMessage({ from: 'a@sender.test', to: ['x@a.test'] });
    await redis.kill9();
    await assert.rejects(sendMail({ host: '127.0.0.1', port, from: 'a@sender.test', to: ['x@a.test'], raw }),
      (err: { response?: string }) => {
        assert.match(err.response ?? '', /^451 4\.3\.0 /);
        return true;
      });
    await other.waitForLog((r) => r.event === 'reception_failed');
    assert.equal(other.logs.filter((r) => r.event === 'reception').length, 0);
    await redis.restart();
  } finally {
    await other.stop();
    await redis.stop();
  }
});
