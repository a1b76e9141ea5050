// The remote faults matrix: every way a receiving MTA or DNS can fail an outbound delivery, each
// classified (temporary: deferred and retried; permanent: failed with a DSN), logged with its
// reply or CONN_ERROR flags, and nothing lost: the mail reaches a sink once the fault is gone,
// or its sender gets a DSN. Faults a smtp-server sink cannot produce (a drop at an exact point, a
// trickled reply) come from test/helpers/scripted-smtp.ts.
//
// Cases tested elsewhere, not repeated here:
// - connection refused: test/e2e/initiator.test.ts "CONNECT: a refused port is marked failed and
//   the next MX is tried at once"; single MX refused, deferred with CONN_ERROR_CONNECT|REQUEUE1:
//   test/e2e/scheduler.test.ts "CONN_ACTION_REQUEUE1 charges one held message per failed
//   connection; the others stay held"; delivered once the MX is back: test/e2e/scheduler.test.ts
//   "mx_failures_to_delay 4 with both MXs down: …" and test/e2e/restart.test.ts "messages queued
//   for a sink that is down survive a stop and are delivered once after restart".
// - connect timeout, only MX, deferred 450 4.4.1 with CONNECT_TIMEOUT|REQUEUE1:
//   test/e2e/initiator.test.ts "CONNECT_TIMEOUT: a listener with a full backlog times out …"
//   (recovery and the failover to a secondary MX are below).
// - 4xx then 250 for one recipient: test/e2e/delivery.test.ts "a 451 then 250 is delivered on
//   the retry …"; 550 for one recipient of two, with the DSN's fields: "550 for one recipient of
//   two: …" (the three-way mix is below).
// - DNS: NXDOMAIN (550 5.1.2) and null MX (556 5.1.10, RFC 7505) bounce: test/e2e/delivery.test.ts
//   "null MX and NXDOMAIN fail permanently and bounce"; SERVFAIL defers and never bounces:
//   "SERVFAIL defers and never bounces"; SERVFAIL and DNS timeout give MX_LOOKUP_FAILED|PURGE_DOMAIN
//   and null MX SMTP_NULL_MX: test/e2e/initiator.test.ts "DNS: SERVFAIL and silence …" and
//   test/unit/initiator.test.ts "DNS failures purge the domain: …" (recovery is below).
// - undelivered past message_expiration: test/e2e/expiry.test.ts.
// - STARTTLS and certificate failures: test/e2e/tls*.test.ts.
// - the reply of each transaction stage, on a scripted client: test/unit/session.test.ts.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type Blackhole, startBlackhole } from '../helpers/blackhole.js';
import type { Daemon, LogRecord } from '../helpers/daemon.js';
import { type Script, type ScriptStage, type ScriptedSmtp, startScriptedSmtp } from '../helpers/scripted-smtp.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import type { SinkBehaviour } from '../helpers/sink.js';
import { type World, buildWorld, mimePart, mxZone, queueIdOf } from './world.js';

const SENDER = 'faults@sender.test';
// Padding that makes a reply trickled a byte per TRICKLE_MS last far beyond its transaction's deadline.
const TRICKLE_MS = 100;
const LONG_REPLY = `250 2.1.0 Ok ${'.'.repeat(100)}`;

let world: World;
let daemon: Daemon;
/** Listeners that never accept, by address; a test that revives one removes it. */
const blackholes = new Map<string, Blackhole>();
const scripted: Record<string, ScriptedSmtp> = {};

/** A fault on the first connection only, so the retry finds the server well. */
const onFirst = (stage: ScriptStage, action: ReturnType<Script>): Script => (ctx) =>
  (ctx.stage === stage && ctx.connection === 1 ? action : undefined);

const deferredOnce = new Set<string>();
const mixed: SinkBehaviour = (ctx) => {
  if (ctx.stage !== 'rcpt' || !ctx.address) return undefined;
  if (ctx.address === 'bad@mixed.test') return { code: 550, message: '5.1.1 No such user' };
  if (deferredOnce.has(ctx.address)) return undefined;
  deferredOnce.add(ctx.address);
  if (ctx.address === 'later@mixed.test') return { code: 451, message: '4.2.0 Mailbox busy, try later' };
  if (ctx.address === 'many@mixed.test') return { code: 552, message: '5.5.3 Too many recipients' };
  return undefined;
};

before(async () => {
  world = await buildWorld({
    zone: {
      ...mxZone({
        'timeout-only.test': '127.0.0.50', 'greet554.test': '127.0.0.52', 'drop-mail.test': '127.0.0.54',
        'drop-rcpt.test': '127.0.0.55', 'drop-data.test': '127.0.0.56', 'drop-dot.test': '127.0.0.57',
        'mixed.test': '127.0.0.58', 'toobig.test': '127.0.0.59', 'slowgreet.test': '127.0.0.60', 'trickle.test': '127.0.0.61',
        'sender.test': '127.0.0.62', 'slowehlo.test': '127.0.0.64',
      }),
      'timeout.test': { mx: [{ preference: 10, exchange: 'mx1.timeout.test' }, { preference: 20, exchange: 'mx2.timeout.test' }] },
      'mx1.timeout.test': { a: ['127.0.0.49'] },
      'mx2.timeout.test': { a: ['127.0.0.51'] },
      'greet421.test': { mx: [{ preference: 10, exchange: 'mx1.greet421.test' }, { preference: 20, exchange: 'mx2.greet421.test' }] },
      'mx1.greet421.test': { a: ['127.0.0.53'] },
      // Not the timeout test's secondary: an idle session there would be taken over instead.
      'mx2.greet421.test': { a: ['127.0.0.63'] },
      'servfail.test': { rcode: 'SERVFAIL' },
      'dns-silent.test': { drop: true },
    },
    sinks: {
      backup: { host: '127.0.0.51' },
      backup421: { host: '127.0.0.63' },
      mixed: { host: '127.0.0.58', behaviour: mixed },
      toobig: { host: '127.0.0.59', behaviour: (ctx) => (ctx.stage === 'data' ? { code: 552, message: '5.3.4 Message too big for system' } : undefined) },
      sender: { host: '127.0.0.62' },
    },
  });
  for (const host of ['127.0.0.49', '127.0.0.50']) blackholes.set(host, await startBlackhole(host, world.sinkPort));
  const port = world.sinkPort;
  const scripts: Record<string, [string, Script]> = {
    greet554: ['127.0.0.52', onFirst('greeting', { reply: '554 5.3.2 No SMTP service here right now' })],
    greet421: ['127.0.0.53', (ctx) => (ctx.stage === 'greeting' ? { reply: '421 4.3.2 Too busy, try another MX' } : undefined)],
    dropMail: ['127.0.0.54', onFirst('mail', { drop: true })],
    dropRcpt: ['127.0.0.55', onFirst('rcpt', { drop: true })],
    dropData: ['127.0.0.56', onFirst('body', { drop: true })],
    dropDot: ['127.0.0.57', onFirst('dot', { drop: true })],
    slowGreet: ['127.0.0.60', onFirst('greeting', { trickle: TRICKLE_MS })],
    trickle: ['127.0.0.61', onFirst('mail', { trickle: TRICKLE_MS, reply: LONG_REPLY })],
    slowEhlo: ['127.0.0.64', onFirst('ehlo', { trickle: TRICKLE_MS, reply: LONG_REPLY })],
  };
  for (const [name, [host, script]] of Object.entries(scripts)) scripted[name] = await startScriptedSmtp({ host, port, script });
  daemon = await world.start({
    connect_timeout: '1s',
    domains: {
      'slowgreet.test': { greeting_timeout: '1s' }, 'trickle.test': { data_timeout: '1s' },
      'slowehlo.test': { greeting_timeout: '1s', data_timeout: '1s' },
    },
  });
});

after(async () => {
  await world.close();
  await Promise.all([...blackholes.values(), ...Object.values(scripted)].map((s) => s.close()));
});

async function inject(to: string[], size?: number): Promise<{ qid: string; raw: string }> {
  const raw = makeMessage({ from: SENDER, to, ...(size ? { size } : {}) });
  const res = await sendMail({ host: '127.0.0.1', port: world.intakePort, from: SENDER, to, raw });
  return { qid: queueIdOf(res.response), raw };
}

const forQid = (qid: string, event: string) => (r: LogRecord) => r.qid === qid && r.event === event;
const eventsOf = (qid: string, event: string) => daemon.logs.filter(forQid(qid, event));

/** The delivery-status part of the DSN the sender got about `recipient`, once it has arrived. */
async function dsnStatusFor(recipient: string): Promise<string> {
  for (let n = 1; ; n++) {
    const dsns = await world.sinks.sender!.waitForMessages(n);
    const status = dsns.map((m) => mimePart(m.raw, 'message/delivery-status') ?? '').find((s) => s.includes(`Final-Recipient: rfc822; ${recipient}`));
    if (status) return status;
  }
}

test('connect timeout: a blackholed primary MX is skipped for the secondary at once; an only MX defers 450 4.4.1 and delivers once it answers', async () => {
  const primary = await inject(['x@timeout.test']);
  const only = await inject(['x@timeout-only.test']);

  const delivered = await daemon.waitForLog(forQid(primary.qid, 'delivery'));
  assert.deepEqual([delivered.mx_ip, delivered.attempt], ['127.0.0.51', 1], 'the secondary MX delivered on the first attempt');
  const timedOut = daemon.logs.find((r) => r.event === 'connection_failure' && r.mx_ip === '127.0.0.49');
  assert.deepEqual(timedOut?.flags, ['CONN_ERROR_CONNECT_TIMEOUT'], 'a timeout with another MX to try charges no message');
  assert.equal(timedOut?.domain, 'timeout.test');
  assert.match(timedOut?.reply, /^450 4\.4\.1 \[internal\] Connection Timed Out/);
  assert.deepEqual(eventsOf(primary.qid, 'transient_failure'), []);

  const deferred = await daemon.waitForLog(forQid(only.qid, 'transient_failure'));
  assert.match(deferred.reply, /^450 4\.4\.1 \[internal\] Connection Timed Out to mx\.timeout-only\.test/);
  assert.deepEqual(deferred.flags, ['CONN_ERROR_CONNECT_TIMEOUT', 'CONN_ACTION_REQUEUE1']);
  await blackholes.get('127.0.0.50')!.close();
  blackholes.delete('127.0.0.50');
  const sink = await world.startSink('revived', '127.0.0.50');
  await sink.waitForRecipients(['x@timeout-only.test']);
  const late = await daemon.waitForLog(forQid(only.qid, 'delivery'));
  assert.ok(late.attempt >= 2, `delivered on a retry, attempt ${late.attempt}`);
  assert.deepEqual(eventsOf(only.qid, 'permanent_failure'), []);
});

test('greeting 554 from the only MX means no service there now (RFC 5321 3.1): deferred, never bounced, delivered once it greets with 220', async () => {
  const { qid } = await inject(['x@greet554.test']);
  const failure = await daemon.waitForLog((r) => r.event === 'connection_failure' && r.domain === 'greet554.test');
  assert.deepEqual(failure.flags, ['CONN_ERROR_CONNECT', 'CONN_ACTION_REQUEUE1']);
  assert.match(failure.reply, /^421 4\.4\.0 mx\.greet554\.test \[127\.0\.0\.52\]:\d+ said: 554 5\.3\.2 No SMTP service here/);
  const deferred = await daemon.waitForLog(forQid(qid, 'transient_failure'));
  assert.equal(deferred.reply, failure.reply);
  const [message] = await scripted.greet554!.waitForMessages(1);
  assert.deepEqual(message!.rcptTo, ['x@greet554.test']);
  assert.equal((await daemon.waitForLog(forQid(qid, 'delivery'))).attempt, 2);
  assert.deepEqual(eventsOf(qid, 'permanent_failure'), []);
  assert.deepEqual(eventsOf(qid, 'bounce_queued'), []);
});

test('greeting 421 from the primary MX: the secondary is tried in the same attempt and delivers', async () => {
  const { qid } = await inject(['x@greet421.test']);
  await world.sinks.backup421!.waitForRecipients(['x@greet421.test']);
  const delivered = await daemon.waitForLog(forQid(qid, 'delivery'));
  assert.deepEqual([delivered.mx_host, delivered.attempt], ['mx2.greet421.test', 1]);
  const failure = daemon.logs.find((r) => r.event === 'connection_failure' && r.domain === 'greet421.test');
  assert.deepEqual(failure?.flags, ['CONN_ERROR_CONNECT']);
  assert.match(failure?.reply, /^421 4\.3\.2 mx1\.greet421\.test \[127\.0\.0\.53\]:\d+ said: 421 4\.3\.2 Too busy, try another MX/);
  assert.equal(scripted.greet421!.messages.length, 0);
});

/** One message through a server that drops its first connection: deferred 451 4.4.2, then delivered; resolves with what was injected. */
async function droppedThenDelivered(server: ScriptedSmtp, to: string, size?: number): Promise<string> {
  const { qid, raw } = await inject([to], size);
  const transient = await daemon.waitForLog(forQid(qid, 'transient_failure'));
  assert.match(transient.reply, /^451 4\.4\.2 \[internal\] connection lost during the transaction \(/);
  assert.deepEqual([transient.recipients, transient.attempt], [[to], 1]);
  const delivered = await daemon.waitForLog(forQid(qid, 'delivery'));
  assert.equal(delivered.attempt, 2);
  assert.equal(server.connections, 2, 'the retry opened a new connection');
  const acknowledged = server.messages.filter((m) => m.acknowledged);
  assert.deepEqual(acknowledged.map((m) => [m.connection, m.rcptTo]), [[2, [to]]]);
  return raw;
}

test('connection dropped after MAIL FROM: deferred 451 4.4.2, retried and delivered', async () => {
  const server = scripted.dropMail!;
  await droppedThenDelivered(server, 'x@drop-mail.test');
  assert.match(server.transcripts[0]!.at(-1)!, /^MAIL FROM:<faults@sender\.test>/);
  assert.equal(server.messages.length, 1);
});

test('connection dropped after RCPT TO: deferred 451 4.4.2, retried and delivered', async () => {
  const server = scripted.dropRcpt!;
  await droppedThenDelivered(server, 'x@drop-rcpt.test');
  assert.match(server.transcripts[0]!.at(-1)!, /^RCPT TO:<x@drop-rcpt\.test>/);
  assert.equal(server.messages.length, 1);
});

test('connection dropped in the middle of the message content: deferred 451 4.4.2, retried and delivered whole', async () => {
  const server = scripted.dropData!;
  // Larger than a socket read, so the server drops with most of the content still to come.
  const raw = await droppedThenDelivered(server, 'x@drop-data.test', 512 * 1024);
  assert.equal(server.transcripts[0]!.at(-1), 'DATA');
  assert.equal(server.messages.length, 1, 'the first connection never got to the final dot');
  assert.ok(server.messages[0]!.raw.toString('latin1').endsWith(raw), 'the retry carried the whole message');
});

test('connection dropped after the final dot, before the reply: retried, so the receiver holds the message twice', async () => {
  const server = scripted.dropDot!;
  await droppedThenDelivered(server, 'x@drop-dot.test');
  const [first, second] = server.messages;
  assert.equal(server.messages.length, 2, 'the message reached the receiver once unacknowledged and once more on the retry');
  assert.deepEqual([first!.connection, first!.acknowledged], [1, false]);
  assert.deepEqual([second!.connection, second!.acknowledged], [2, true]);
  assert.ok(first!.raw.equals(second!.raw), 'the same bytes both times: a duplicate, not a different message');
});

test('per-recipient replies in one transaction: 250 delivered, 550 bounced, 451 and 552 (taken as 452) retried alone', async () => {
  const to = ['ok@mixed.test', 'bad@mixed.test', 'later@mixed.test', 'many@mixed.test'];
  const { qid } = await inject(to);
  const sink = world.sinks.mixed!;
  const [first] = await sink.waitForMessages(1);
  assert.deepEqual(first!.rcptTo, ['ok@mixed.test']);
  assert.equal((await daemon.waitForLog(forQid(qid, 'delivery'))).attempt, 1);

  const failed = await daemon.waitForLog(forQid(qid, 'permanent_failure'));
  assert.deepEqual(failed.recipients, ['bad@mixed.test']);
  assert.match(failed.reply, /^550 5\.1\.1 No such user/);
  const transient = eventsOf(qid, 'transient_failure');
  const byRecipient = Object.fromEntries(transient.flatMap((r) => r.recipients.map((a: string) => [a, r.reply])));
  assert.deepEqual(Object.keys(byRecipient).sort(), ['later@mixed.test', 'many@mixed.test']);
  assert.match(byRecipient['later@mixed.test'], /^451 4\.2\.0 Mailbox busy/);
  assert.match(byRecipient['many@mixed.test'], /^452 4\.5\.3 Too many recipients \(552 to RCPT TO taken as 452/);

  const [, second] = await sink.waitForMessages(2);
  assert.deepEqual(second!.rcptTo.sort(), ['later@mixed.test', 'many@mixed.test'], 'the retry carries the deferred recipients only');
  const retried = await daemon.waitForLog((r) => forQid(qid, 'delivery')(r) && r.attempt === 2);
  assert.deepEqual(retried.recipients.sort(), ['later@mixed.test', 'many@mixed.test']);
  assert.equal(sink.messages.filter((m) => m.rcptTo.includes('ok@mixed.test')).length, 1, 'the accepted recipient is not sent again');

  const status = await dsnStatusFor('bad@mixed.test');
  assert.match(status, /Status: 5\.1\.1/);
  assert.doesNotMatch(status, /later@|many@|ok@/);
});

test('552 at the end of DATA is permanent: failed at once with a DSN, never retried', async () => {
  const { qid } = await inject(['x@toobig.test']);
  const failed = await daemon.waitForLog(forQid(qid, 'permanent_failure'));
  assert.match(failed.reply, /^552 5\.3\.4 Message too big for system/);
  assert.equal(failed.attempt, 1);
  const status = await dsnStatusFor('x@toobig.test');
  assert.match(status, /Action: failed/);
  assert.match(status, /Status: 5\.3\.4/);
  assert.match(status, /Remote-MTA: dns; mx\.toobig\.test/);
  assert.match(status, /Diagnostic-Code: smtp; 552 5\.3\.4 Message too big for system/);
  assert.deepEqual(eventsOf(qid, 'transient_failure'), []);
  assert.equal(world.sinks.toobig!.rejections.length, 1, 'one attempt only');
});

test('a greeting trickled past greeting_timeout: the attempt fails as a timeout, is deferred, and the next connection delivers', async () => {
  const { qid } = await inject(['x@slowgreet.test']);
  const failure = await daemon.waitForLog((r) => r.event === 'connection_failure' && r.domain === 'slowgreet.test');
  assert.deepEqual(failure.flags, ['CONN_ERROR_CONNECT', 'CONN_ACTION_REQUEUE1']);
  assert.match(failure.reply, /^421 4\.4\.0 \[internal\] mx\.slowgreet\.test \[127\.0\.0\.60\]:\d+: ETIMEDOUT: Greeting never received/);
  assert.equal((await daemon.waitForLog(forQid(qid, 'transient_failure'))).reply, failure.reply);
  assert.equal((await daemon.waitForLog(forQid(qid, 'delivery'))).attempt, 2);
});

test('a reply trickled a byte at a time never trips data_timeout (inactivity) but the transaction deadline cuts it off: deferred, then delivered', async () => {
  const { qid } = await inject(['x@trickle.test']);
  const deferred = await daemon.waitForLog(forQid(qid, 'transient_failure'), 20_000);
  // One recipient: MAIL, RCPT, DATA, content and final reply, 1 s each.
  assert.match(deferred.reply, /^451 4\.4\.2 \[internal\] timed out: transaction not finished within 5000 ms/);
  assert.equal((await daemon.waitForLog(forQid(qid, 'delivery'))).attempt, 2);
  const server = scripted.trickle!;
  assert.deepEqual(server.messages.map((m) => [m.connection, m.acknowledged]), [[2, true]]);
});

test('an EHLO reply trickled a byte at a time: the session set-up deadline cuts it off, deferred, then delivered', async () => {
  const { qid } = await inject(['x@slowehlo.test']);
  const failure = await daemon.waitForLog((r) => r.event === 'connection_failure' && r.domain === 'slowehlo.test', 20_000);
  assert.deepEqual(failure.flags, ['CONN_ERROR_CONNECT', 'CONN_ACTION_REQUEUE1']);
  // connect_timeout + greeting_timeout + 3 × data_timeout (EHLO, STARTTLS, EHLO again), 1 s each.
  assert.match(failure.reply, /^421 4\.4\.0 \[internal\] mx\.slowehlo\.test \[127\.0\.0\.64\]:\d+: ETIMEDOUT: session not ready within 5000 ms/);
  assert.equal((await daemon.waitForLog(forQid(qid, 'delivery'))).attempt, 2);
  assert.deepEqual(scripted.slowEhlo!.messages.map((m) => [m.connection, m.acknowledged]), [[2, true]]);
});

test('DNS SERVFAIL and timeout defer; once DNS answers, the mail is delivered', async () => {
  const servfail = await inject(['x@servfail.test']);
  const silent = await inject(['x@dns-silent.test']);
  assert.match((await daemon.waitForLog(forQid(servfail.qid, 'transient_failure'))).reply, /^451 4\.4\.3 .*ESERVFAIL/);
  assert.match((await daemon.waitForLog(forQid(silent.qid, 'transient_failure'))).reply, /^451 4\.4\.3 .*ETIMEOUT/);
  const zone = world.dns.zone;
  for (const domain of ['servfail.test', 'dns-silent.test']) {
    zone[domain] = { mx: [{ preference: 10, exchange: `mx.${domain}` }] };
    zone[`mx.${domain}`] = { a: ['127.0.0.51'] };
  }
  await world.sinks.backup!.waitForRecipients(['x@servfail.test', 'x@dns-silent.test'], 20_000);
  for (const { qid } of [servfail, silent]) {
    assert.ok((await daemon.waitForLog(forQid(qid, 'delivery'))).attempt >= 2);
    assert.deepEqual(eventsOf(qid, 'permanent_failure'), []);
  }
});
