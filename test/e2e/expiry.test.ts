// Mail that cannot be delivered within message_expiration fails with 554 5.4.7 and bounces;
// mail from the null sender fails without a bounce.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Daemon, LogRecord } from '../helpers/daemon.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone, mimePart, queueIdOf } from './world.js';

let world: World;
let daemon: Daemon;

before(async () => {
  world = await buildWorld({
    zone: mxZone({ 'gone.test': '127.0.0.7', 'sender.test': '127.0.0.4' }),
    sinks: { sender: { host: '127.0.0.4' } },
    config: { message_expiration: '3s', retry_interval: '1s', max_retry_interval: '1s' },
  });
  daemon = await world.start();
});

after(async () => {
  await world.close();
});

const forQid = (qid: string, event: string) => (r: LogRecord) => r.qid === qid && r.event === event;

async function inject(from: string, to: string): Promise<string> {
  const res = await sendMail({ host: '127.0.0.1', port: world.intakePort, from, to: [to], raw: makeMessage({ from: from || 'mailer-daemon@x.test', to: [to] }) });
  return queueIdOf(res.response);
}

test('undelivered after message_expiration: 554 5.4.7 and a DSN to the sender', async () => {
  const qid = await inject('expire@sender.test', 'x@gone.test');
  const failure = await daemon.waitForLog(forQid(qid, 'permanent_failure'));
  assert.match(failure.reply, /^554 5\.4\.7 .*exceeded max time without delivery/);
  const deferrals = daemon.logs.filter(forQid(qid, 'transient_failure'));
  assert.ok(deferrals.length >= 1, 'retried before expiring');
  const [dsn] = await world.sinks.sender!.waitForRecipients(['expire@sender.test']);
  const status = mimePart(dsn!.raw, 'message/delivery-status') ?? '';
  assert.match(status, /Final-Recipient: rfc822; x@gone\.test/);
  assert.match(status, /Status: 5\.4\.7/);
});

test('a message from the null sender fails without a bounce', async () => {
  const qid = await inject('', 'y@gone.test');
  await daemon.waitForLog(forQid(qid, 'permanent_failure'));
  assert.equal(daemon.logs.filter(forQid(qid, 'bounce_queued')).length, 0);
});
