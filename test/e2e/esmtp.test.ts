// The ESMTP an upstream MTA speaks, end to end through the built daemon: what intake's EHLO
// offers and refuses, DSN parameters kept and passed on to a hop that offers DSN, BODY=8BITMIME and
// SMTPUTF8 passed on or refused for a hop that cannot carry them, and the DSNs NOTIFY asks for.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Daemon } from '../helpers/daemon.js';
import type { SinkMessage } from '../helpers/sink.js';
import { smtpDialogue } from '../helpers/smtp-client.js';
import { type World, buildWorld, mimePart, mxZone, queueIdOf, splitReceived } from './world.js';

let world: World;
let daemon: Daemon;
let deferrals = 0;

before(async () => {
  world = await buildWorld({
    zone: mxZone({
      'dsn.test': '127.0.0.70', 'plain.test': '127.0.0.71', 'seven.test': '127.0.0.72', 'refuse.test': '127.0.0.73',
      'later.test': '127.0.0.74', 'sender.test': '127.0.0.75',
    }),
    sinks: {
      dsn: { host: '127.0.0.70', extensions: { dsn: true } },
      plain: { host: '127.0.0.71' },
      seven: { host: '127.0.0.72', extensions: { eightBitMime: false, smtputf8: false } },
      refuse: { host: '127.0.0.73', behaviour: (ctx) => (ctx.stage === 'rcpt' ? { code: 550, message: '5.1.1 No such user' } : undefined) },
      later: {
        host: '127.0.0.74',
        behaviour: (ctx) => {
          if (ctx.stage !== 'rcpt') return undefined;
          deferrals++;
          return { code: 451, message: '4.2.0 Mailbox busy' };
        },
      },
      sender: { host: '127.0.0.75' },
    },
    config: { delay_dsn_after: '2s', dsn_max_return_size: '2KB' },
  });
  daemon = await world.start();
});

after(async () => {
  await world.close();
});

/** One message over a raw session: MAIL and RCPT lines as given (parameters included), the body's lines. */
async function inject(mail: string, rcpts: string[], body: string[]): Promise<{ replies: string[]; qid: string }> {
  const replies = await smtpDialogue({
    host: '127.0.0.1', port: world.intakePort,
    lines: ['EHLO upstream.test', `MAIL FROM:${mail}`, ...rcpts.map((r) => `RCPT TO:${r}`), 'DATA', ...body, '.', 'QUIT'],
  });
  const queued = replies.find((r) => r.startsWith('250 2.0.0 Ok queued as'));
  return { replies, qid: queued ? queueIdOf(queued) : '' };
}

const message = (subject: string, extra: string[] = []) => [
  'From: s@sender.test', 'To: r@dsn.test', `Subject: ${subject}`, `Message-ID: <${subject.replace(/\W/g, '')}@sender.test>`, '', 'Hello.', ...extra,
];

/** The DSNs that reached the sender about one queue id, with their delivery-status parts. */
function dsnsAbout(qid: string): Array<{ raw: SinkMessage; status: string }> {
  return world.sinks.sender!.messages
    .map((raw) => ({ raw, status: mimePart(raw.raw, 'message/(global-)?delivery-status') ?? '' }))
    .filter((d) => d.status.includes(qid));
}

function waitForDsn(qid: string, n = 1): Promise<Array<{ raw: SinkMessage; status: string }>> {
  return world.sinks.sender!.waitUntil(() => {
    const got = dsnsAbout(qid);
    return got.length >= n ? got : undefined;
  }, `${n} DSN(s) about ${qid}`);
}

test('EHLO offers SIZE with its limit, ENHANCEDSTATUSCODES, PIPELINING, 8BITMIME, SMTPUTF8 and DSN; every reply has an enhanced code; unknown parameters get 555, a UTF-8 address without SMTPUTF8 553 5.6.7', async () => {
  const replies = await smtpDialogue({
    host: '127.0.0.1', port: world.intakePort,
    lines: [
      'EHLO upstream.test',
      'MAIL FROM:<s@sender.test> FOO=bar', 'MAIL FROM:<jürgen@sender.test>', 'MAIL FROM:<s@sender.test> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=x1',
      'RCPT TO:<r@dsn.test> XYZ', 'RCPT TO:<jörg@dsn.test>', 'RCPT TO:<r@dsn.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r@dsn.test',
      'RSET', 'MAIL FROM:<jürgen@sender.test> SMTPUTF8', 'RCPT TO:<jörg@dsn.test>', 'QUIT',
    ],
  });
  const ehlo = replies[1]!.split('\n').map((l) => l.slice(4));
  for (const keyword of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'DSN', `SIZE ${25 * 1024 * 1024}`]) {
    assert.ok(ehlo.includes(keyword), `EHLO offers ${keyword}: ${ehlo.join(' | ')}`);
  }
  assert.ok(!ehlo.includes('REQUIRETLS'));
  assert.match(replies[2]!, /^555 5\.5\.4 MAIL FROM parameter FOO not recognised/);
  assert.match(replies[3]!, /^553 5\.6\.7 Sender address with non-ASCII characters needs SMTPUTF8/);
  assert.match(replies[4]!, /^250 2\.1\.0 /);
  assert.match(replies[5]!, /^555 5\.5\.4 RCPT TO parameter XYZ not recognised/);
  assert.match(replies[6]!, /^553 5\.6\.7 Recipient address with non-ASCII characters needs SMTPUTF8/);
  assert.match(replies[7]!, /^250 2\.1\.5 /);
  assert.match(replies[8]!, /^250 2\.0\.0 /, 'RSET');
  assert.match(replies[9]!, /^250 2\.1\.0 /);
  assert.match(replies[10]!, /^250 2\.1\.5 /, 'with SMTPUTF8 the UTF-8 address is taken');
  assert.match(replies[11]!, /^221 2\.0\.0 /);
});

test('a hop that offers them gets RET, ENVID, each recipient\'s NOTIFY and ORCPT, BODY=8BITMIME and SMTPUTF8; the Received line says UTF8SMTP', async () => {
  const { qid } = await inject('<s@sender.test> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=env+2B1', [
    '<a@dsn.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;A+2BB@upstream.test', '<jürgen@dsn.test>',
    '<zoë@dsn.test> ORCPT=rfc822;zo+C3+AB@upstream.test', '<chloé@dsn.test> ORCPT=utf-8;chloé@upstream.test',
  ], message('eight bit', ['Grüße, café.']));
  const [got] = await world.sinks.dsn!.waitForRecipients(['a@dsn.test']);
  assert.deepEqual(got!.rcptTo, ['a@dsn.test', 'jürgen@dsn.test', 'zoë@dsn.test', 'chloé@dsn.test'], 'one transaction');
  // The sink (smtp-server too) decodes xtext one byte to a character: read its bytes as UTF-8.
  const asUtf8 = (v: string | true | undefined) => Buffer.from(String(v), 'latin1').toString('utf8');
  assert.equal(asUtf8(got!.rcptParams['zoë@dsn.test']!.ORCPT), 'rfc822;zoë@upstream.test', 'a UTF-8 ORCPT goes on naming the same address');
  assert.equal(got!.rcptParams['chloé@dsn.test']!.ORCPT, 'utf-8;chlo\\x{E9}@upstream.test', 'a utf-8 one as utf-8-addr-xtext (RFC 6533 3)');
  assert.equal(got!.mailParams.BODY, '8BITMIME');
  assert.equal(got!.mailParams.SMTPUTF8, true);
  assert.equal(got!.mailParams.RET, 'HDRS');
  assert.equal(got!.mailParams.ENVID, 'env+1');
  assert.deepEqual(got!.rcptParams['a@dsn.test'], { NOTIFY: 'SUCCESS,FAILURE', ORCPT: 'rfc822;A+B@upstream.test' });
  assert.deepEqual(got!.rcptParams['jürgen@dsn.test'], {}, 'no request, nothing added');
  const { received, rest } = splitReceived(got!.raw);
  assert.match(received, new RegExp(`with UTF8SMTP id ${qid}`));
  assert.ok(rest.toString('utf8').includes('Grüße, café.'), 'the 8-bit body arrives as sent');
  await daemon.waitForLogs((r) => r.event === 'delivery' && r.qid === qid, 1);
  assert.equal(daemon.logs.filter((r) => r.event === 'bounce_queued' && r.qid === qid).length, 0, 'the hop offers DSN: it reports success, not Impulse');
});

test('NOTIFY=SUCCESS through a hop without DSN: the sender gets a DSN with Action: relayed', async () => {
  const { qid } = await inject('<s@sender.test> ENVID=rel1', ['<a@plain.test> NOTIFY=SUCCESS ORCPT=rfc822;a@plain.test', '<b@plain.test>'], message('relayed'));
  const [dsn] = await waitForDsn(qid);
  assert.match(dsn!.status, /Original-Envelope-Id: rel1/);
  assert.match(dsn!.status, /Original-Recipient: rfc822; ?a@plain\.test/);
  assert.match(dsn!.status, /Final-Recipient: rfc822; ?a@plain\.test\r\nAction: relayed\r\nStatus: 2\.0\.0/);
  assert.ok(!dsn!.status.includes('b@plain.test'), 'b gave no NOTIFY: no success report for it');
});

test('failure DSNs follow NOTIFY and RET: none for NEVER or SUCCESS only; RET=FULL returns the message, RET=HDRS and an oversize FULL its headers', async () => {
  const never = await inject('<s@sender.test>', ['<x@refuse.test> NOTIFY=NEVER'], message('never'));
  const success = await inject('<s@sender.test>', ['<y@refuse.test> NOTIFY=SUCCESS'], message('success only'));
  const full = await inject('<s@sender.test> RET=FULL ENVID=full1', ['<z@refuse.test> ORCPT=rfc822;Z@upstream.test'], message('full'));
  const hdrs = await inject('<s@sender.test> RET=HDRS', ['<w@refuse.test>'], message('headers'));
  const big = await inject('<s@sender.test> RET=FULL', ['<v@refuse.test>'], message('big', Array.from({ length: 60 }, (_, i) => `line ${i} ${'x'.repeat(60)}`)));
  for (const m of [never, success]) await daemon.waitForLogs((r) => r.event === 'permanent_failure' && r.qid === m.qid, 1);
  const [fullDsn] = await waitForDsn(full.qid);
  assert.match(fullDsn!.status, /Original-Envelope-Id: full1/);
  assert.match(fullDsn!.status, /Original-Recipient: rfc822; ?Z@upstream\.test/);
  assert.match(fullDsn!.status, /Action: failed\r\nStatus: 5\.1\.1/);
  const returned = mimePart(fullDsn!.raw.raw, 'message/rfc822');
  assert.ok(returned?.includes('Hello.'), 'RET=FULL returns the body');
  const [hdrsDsn] = await waitForDsn(hdrs.qid);
  assert.equal(mimePart(hdrsDsn!.raw.raw, 'message/rfc822'), undefined);
  assert.match(mimePart(hdrsDsn!.raw.raw, 'text/rfc822-headers') ?? '', /Subject: headers/);
  const [bigDsn] = await waitForDsn(big.qid);
  assert.equal(mimePart(bigDsn!.raw.raw, 'message/rfc822'), undefined, 'over dsn_max_return_size: headers only');
  assert.match(mimePart(bigDsn!.raw.raw, 'text/rfc822-headers') ?? '', /Subject: big/);
  for (const m of [never, success]) assert.deepEqual(dsnsAbout(m.qid), [], 'no DSN');
  assert.equal(daemon.logs.filter((r) => r.event === 'bounce_queued' && (r.qid === never.qid || r.qid === success.qid)).length, 0);
});

test('a hop without SMTPUTF8 never gets a UTF-8 address (5.6.7), one without 8BITMIME never 8-bit content (5.6.3): failed with a DSN, nothing sent', async () => {
  const utf8 = await inject('<s@sender.test> SMTPUTF8', ['<jörg@seven.test>'], message('utf8'));
  const eight = await inject('<s@sender.test> BODY=8BITMIME', ['<e@seven.test>'], message('eight', ['naïve']));
  const seven = await inject('<s@sender.test> BODY=8BITMIME', ['<ok@seven.test>'], message('seven'));
  await world.sinks.seven!.waitForRecipients(['ok@seven.test']);
  const [u] = await waitForDsn(utf8.qid);
  assert.match(u!.status, /Status: 5\.6\.7/);
  assert.ok(mimePart(u!.raw.raw, 'message/global-delivery-status'), 'SMTPUTF8 mail gets a message/global-delivery-status report (RFC 6533)');
  assert.equal(u!.raw.mailParams.SMTPUTF8, true, 'the DSN itself is sent as SMTPUTF8 mail');
  const [e] = await waitForDsn(eight.qid);
  assert.match(e!.status, /Status: 5\.6\.3/);
  assert.deepEqual(world.sinks.seven!.messages.map((m) => m.rcptTo), [['ok@seven.test']], 'declared 8BITMIME, 7-bit content: sent; the others never');
  assert.equal(seven.replies.at(-2)!.slice(0, 3), '250');
});

test('delay_dsn_after: one delay DSN per recipient once mail has waited that long, however often it is retried', async () => {
  const { qid } = await inject('<s@sender.test>', ['<d@later.test>', '<n@later.test> NOTIFY=FAILURE'], message('delayed'));
  const [dsn] = await waitForDsn(qid);
  assert.match(dsn!.status, /Final-Recipient: rfc822; ?d@later\.test\r\nAction: delayed\r\nStatus: 4\.2\.0/);
  assert.match(dsn!.status, /Will-Retry-Until: /);
  assert.ok(!dsn!.status.includes('n@later.test'), 'NOTIFY without DELAY: no delay DSN');
  const before = deferrals;
  await daemon.waitForLogs((r) => r.event === 'transient_failure' && r.qid === qid && r.attempt >= 4, 1, 30_000);
  assert.ok(deferrals > before);
  assert.equal(daemon.logs.filter((r) => r.event === 'bounce_queued' && r.qid === qid).length, 1, 'still one');
});
