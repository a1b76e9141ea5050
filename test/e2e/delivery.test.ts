// The walking skeleton end to end: injection over SMTP, MX lookup against a real DNS server,
// delivery to sinks on loopback, retries, bounces and DNS outcomes, all through the built daemon.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { Daemon, LogRecord } from '../helpers/daemon.js';
import type { SinkMessage } from '../helpers/sink.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone, mimePart, queueIdOf, splitReceived } from './world.js';

let world: World;
let daemon: Daemon;
const flakySeen = new Set<string>();

before(async () => {
  world = await buildWorld({
    zone: {
      ...mxZone({ 'a.test': '127.0.0.2', 'b.test': '127.0.0.3', 'sender.test': '127.0.0.4', 'flaky.test': '127.0.0.5' }),
      'nullmx.test': { mx: [{ preference: 0, exchange: '.' }] },
      'servfail.test': { rcode: 'SERVFAIL' },
    },
    sinks: {
      a: {
        host: '127.0.0.2',
        behaviour: (ctx) => (ctx.stage === 'rcpt' && ctx.address === 'reject@a.test' ? { code: 550, message: '5.1.1 No such user' } : undefined),
      },
      b: { host: '127.0.0.3' },
      sender: { host: '127.0.0.4' },
      flaky: {
        host: '127.0.0.5',
        behaviour: (ctx) => {
          if (ctx.stage !== 'rcpt' || !ctx.address || flakySeen.has(ctx.address)) return undefined;
          flakySeen.add(ctx.address);
          return { code: 451, message: '4.3.0 Try again later' };
        },
      },
    },
  });
  daemon = await world.start({ routes: { 'routed.test': `127.0.0.3:${world.sinkPort}` } });
});

after(async () => {
  await world.close();
});

async function inject(from: string, to: string[], extra: { subject?: string } = {}): Promise<{ qid: string; raw: string }> {
  const raw = makeMessage({ from, to, ...extra });
  const res = await sendMail({ host: '127.0.0.1', port: world.intakePort, from, to, raw });
  return { qid: queueIdOf(res.response), raw };
}

const forQid = (qid: string, event: string) => (r: LogRecord) => r.qid === qid && r.event === event;

function copiesOf(messages: SinkMessage[], rcpt: string): SinkMessage[] {
  return messages.filter((m) => m.rcptTo.includes(rcpt));
}

test('three messages across two domains: each recipient gets exactly one copy, byte-identical apart from Received', async () => {
  const sent = [
    await inject('s@sender.test', ['u1@a.test', 'u2@b.test']),
    await inject('s@sender.test', ['u3@a.test']),
    await inject('s@sender.test', ['u4@b.test', 'u5@a.test']),
  ];
  await world.sinks.a!.waitForRecipients(['u1@a.test', 'u3@a.test', 'u5@a.test']);
  await world.sinks.b!.waitForRecipients(['u2@b.test', 'u4@b.test']);
  const deliveries = await daemon.waitForLogs((r) => r.event === 'delivery' && sent.some((s) => s.qid === r.qid), 5);

  const expected: Array<[string, number, 'a' | 'b']> = [['u1@a.test', 0, 'a'], ['u2@b.test', 0, 'b'], ['u3@a.test', 1, 'a'], ['u4@b.test', 2, 'b'], ['u5@a.test', 2, 'a']];
  for (const [rcpt, index, sink] of expected) {
    const copies = copiesOf(world.sinks[sink]!.messages, rcpt);
    assert.equal(copies.length, 1, `${rcpt} received ${copies.length} copies`);
    const { received, rest } = splitReceived(copies[0]!.raw);
    assert.equal(rest.toString('latin1'), sent[index]!.raw, `body for ${rcpt} differs from what was injected`);
    assert.match(received, new RegExp(`by impulse\\.test \\(Impulse\\) with ESMTP id ${sent[index]!.qid}`));
    assert.equal(copies[0]!.helo, 'out.impulse.test');
  }
  for (const d of deliveries) {
    assert.equal(d.attempt, 1);
    assert.equal(typeof d.age_s, 'number');
    assert.match(d.reply, /^250 /);
    assert.equal(d.mx_host, `mx.${d.domain}`);
    assert.equal(d.mx_ip, d.domain === 'a.test' ? '127.0.0.2' : '127.0.0.3');
    assert.ok(d.message_id, 'delivery record names the Message-ID');
  }
  const reception = daemon.logs.find(forQid(sent[0]!.qid, 'reception'));
  assert.deepEqual(reception?.recipients, ['u1@a.test', 'u2@b.test']);
});

test('a 451 then 250 is delivered on the retry: one transient failure, then one delivery', async () => {
  const { qid } = await inject('s@sender.test', ['once@flaky.test']);
  await world.sinks.flaky!.waitForRecipients(['once@flaky.test']);
  const delivery = await daemon.waitForLog(forQid(qid, 'delivery'));
  const transient = daemon.logs.filter(forQid(qid, 'transient_failure'));
  assert.equal(transient.length, 1);
  assert.match(transient[0]!.reply, /^451 4\.3\.0 Try again later/);
  assert.deepEqual(transient[0]!.recipients, ['once@flaky.test']);
  assert.equal(transient[0]!.attempt, 1);
  assert.equal(delivery.attempt, 2);
  assert.equal(copiesOf(world.sinks.flaky!.messages, 'once@flaky.test').length, 1);
});

test('550 for one recipient of two: the other is delivered and the sender gets a machine-readable DSN', async () => {
  const { qid } = await inject('bounce-me@sender.test', ['ok@a.test', 'reject@a.test'], { subject: 'partial failure' });
  const [copy] = await world.sinks.a!.waitForRecipients(['ok@a.test']);
  assert.deepEqual(copy!.rcptTo, ['ok@a.test']);
  const [dsn] = await world.sinks.sender!.waitForRecipients(['bounce-me@sender.test']);
  assert.equal(dsn!.mailFrom, '', 'a DSN is sent with the null sender');
  assert.match(dsn!.raw.toString('latin1'), /Content-Type: multipart\/report; report-type=delivery-status/);
  const status = mimePart(dsn!.raw, 'message/delivery-status');
  assert.ok(status, 'the DSN has a message/delivery-status part');
  assert.match(status, /Final-Recipient: rfc822; reject@a\.test/);
  assert.match(status, /Action: failed/);
  assert.match(status, /Status: 5\.1\.1/);
  assert.match(status, /Remote-MTA: dns; mx\.a\.test/);
  assert.match(status, /Diagnostic-Code: smtp; 550 5\.1\.1 No such user/);
  assert.doesNotMatch(status, /ok@a\.test/);
  assert.match(mimePart(dsn!.raw, 'text/rfc822-headers') ?? '', /Subject: partial failure/);
  const failed = await daemon.waitForLog(forQid(qid, 'permanent_failure'));
  assert.deepEqual(failed.recipients, ['reject@a.test']);
  assert.match(failed.reply, /^550 5\.1\.1/);
});

test('null MX and NXDOMAIN fail permanently and bounce', async () => {
  const sender = world.sinks.sender!;
  const before = sender.messages.length;
  const { qid } = await inject('dns-bounce@sender.test', ['x@nullmx.test', 'y@missing.test']);
  const failures = await daemon.waitForLogs(forQid(qid, 'permanent_failure'), 2);
  const byDomain = Object.fromEntries(failures.map((f) => [f.domain, f.reply]));
  assert.match(byDomain['nullmx.test'], /^556 5\.1\.10 /);
  assert.match(byDomain['missing.test'], /^550 5\.1\.2 /);
  await sender.waitForMessages(before + 2);
  const dsns = copiesOf(sender.messages, 'dns-bounce@sender.test');
  assert.equal(dsns.length, 2, 'one DSN per failed domain');
  const statuses = dsns.map((m) => /Status: (\S+)/.exec(mimePart(m.raw, 'message/delivery-status') ?? '')?.[1]).sort();
  assert.deepEqual(statuses, ['5.1.10', '5.1.2']);
});

test('SERVFAIL defers and never bounces', async () => {
  const { qid } = await inject('dns-defer@sender.test', ['z@servfail.test']);
  const deferrals = await daemon.waitForLogs(forQid(qid, 'transient_failure'), 2);
  for (const d of deferrals) assert.match(d.reply, /^451 4\.4\.3 .*servfail\.test/);
  assert.equal(daemon.logs.filter(forQid(qid, 'permanent_failure')).length, 0);
  assert.equal(daemon.logs.filter(forQid(qid, 'bounce_queued')).length, 0);
  assert.equal(copiesOf(world.sinks.sender!.messages, 'dns-defer@sender.test').length, 0);
});

test('a static route delivers to its next hop without any DNS lookup for the domain', async () => {
  const { qid } = await inject('s@sender.test', ['r@routed.test']);
  await world.sinks.b!.waitForRecipients(['r@routed.test']);
  const delivery = await daemon.waitForLog(forQid(qid, 'delivery'));
  assert.equal(delivery.mx_ip, '127.0.0.3');
  assert.equal(world.dns.queries.filter((q) => q.name === 'routed.test').length, 0);
});

test('finished jobs leave nothing behind in Redis', async () => {
  const deferred = daemon.logs.find((r) => r.event === 'transient_failure' && r.domain === 'servfail.test');
  assert.ok(deferred, 'the SERVFAIL message is the only one still queued');
  const redis = new Redis({ path: join(world.dir, 'redis', 'redis.sock') });
  try {
    const keys = await redis.keys('impulse:*');
    const bodies = keys.filter((k) => k.startsWith('impulse:msg:'));
    // One job: the body alone, no job set.
    assert.deepEqual(bodies, [`impulse:msg:${deferred.qid}`]);
    const jobs = keys.filter((k) => /^impulse:delivery:[0-9A-Z]+-\d+/.test(k) && !k.endsWith(':lock'));
    assert.deepEqual(jobs, [`impulse:delivery:${deferred.qid}-0`]);
    // The options every job shares are not stored with each one.
    assert.deepEqual(JSON.parse((await redis.hget(jobs[0]!, 'opts'))!), { attempts: 0, jobId: `${deferred.qid}-0` });
    assert.equal(await redis.exists('impulse:delivery:completed'), 0);
    assert.equal(await redis.exists('impulse:delivery:failed'), 0);
    assert.equal(await redis.zcard('impulse:delivery:delayed'), 1);
    // A completion is recorded without the finished record: that is kept in the message's history only.
    const completions = (await redis.xrange('impulse:delivery:events', '-', '+')).map(([, f]) => f).filter((f) => f[1] === 'completed');
    assert.ok(completions.length > 0, 'the events stream records completions');
    for (const fields of completions) assert.equal(fields[fields.indexOf('returnvalue') + 1], 'null', fields.join(' '));
  } finally {
    await redis.quit();
  }
});
