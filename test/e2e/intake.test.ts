// Intake policy as a client sees it: who may relay, size and recipient limits, and what a client
// is told when the queue cannot take a message.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Daemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import { RawSmtp } from '../helpers/raw-smtp.js';
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

test('a declared SIZE over max_message_size is refused at MAIL FROM with 552 5.3.4, before any data', async () => {
  const replies = await smtpDialogue({ ...intake(), lines: ['EHLO client.test', 'MAIL FROM:<a@sender.test> SIZE=5000', 'RCPT TO:<x@a.test>', 'QUIT'] });
  assert.match(replies[2]!, /^552 5\.3\.4 /);
  // No transaction was opened, so there is nothing to send data for.
  assert.match(replies[3]!, /^503 /);
});

test('an oversize message without SIZE is refused after DATA with 552 5.3.4 and not queued', async () => {
  const raw = makeMessage({ from: 'a@sender.test', to: ['x@a.test'], size: 4096 });
  await assert.rejects(sendMail({ ...intake(), from: 'a@sender.test', to: ['x@a.test'], raw }), (err: { response?: string }) => {
    assert.match(err.response ?? '', /^552 5\.3\.4 /);
    return true;
  });
  assert.equal(daemon.logs.filter((r) => r.event === 'reception').length, 0);
});

test('recipients beyond max_recipients get 452 4.5.3 and the message is queued for the accepted ones', async () => {
  const raw = makeMessage({ from: 'a@sender.test', to: ['1@a.test', '2@a.test', '3@a.test'] }).replace(/\r\n$/, '').split('\r\n');
  const replies = await smtpDialogue({
    ...intake(),
    lines: ['EHLO client.test', 'MAIL FROM:<a@sender.test>', 'RCPT TO:<1@a.test>', 'RCPT TO:<2@a.test>', 'RCPT TO:<3@a.test>', 'DATA', ...raw, '.', 'QUIT'],
  });
  assert.match(replies[3]!, /^250/);
  assert.match(replies[4]!, /^250/);
  assert.match(replies[5]!, /^452 4\.5\.3 /);
  assert.match(replies[7]!, /^250 2\.0\.0 Ok queued as /);
  const reception = await daemon.waitForLog((r) => r.event === 'reception' && r.sender === 'a@sender.test');
  assert.deepEqual(reception.recipients, ['1@a.test', '2@a.test']);
});

test('transactions pipelined in one write, data included, are each answered', async () => {
  const c = await RawSmtp.connect(intake());
  try {
    assert.match(await c.command('EHLO client.test'), /^250/);
    const tx = (n: number) => `MAIL FROM:<p${n}@sender.test>\r\nRCPT TO:<p${n}@a.test>\r\nDATA\r\n`
      + `${makeMessage({ from: `p${n}@sender.test`, to: [`p${n}@a.test`] })}.\r\n`;
    // Sending data before the 354 is not what RFC 2920 asks of a client, but it must not stall
    // the session: the next transaction's data then arrives with the previous one's end.
    c.write(`${tx(1)}${tx(2)}${tx(3)}QUIT\r\n`);
    const replies: string[] = [];
    for (let i = 0; i < 13; i++) replies.push(await c.reply(5000));
    assert.deepEqual(replies.map((r) => r.slice(0, 3)), [...Array(3).fill(['250', '250', '354', '250']).flat(), '221']);
  } finally {
    c.close();
  }
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
