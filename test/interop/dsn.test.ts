// Interop C (DSN, landing on main): the DSNs Impulse sends back to the sender's MX (an smtp-sink) as NOTIFY, ORCPT, ENVID and RET ask, for failures, relays to MXs without DSN, and delays.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Daemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import { type Report, parseReport, recipientFields } from './dsn-report.js';
import { type Outgoing, injectAll } from './inject.js';
import { type Interop, STANDARD_SINKS, buildInterop, impulseDrained } from './world.js';

let net: Interop;

before(async () => {
  net = await buildInterop({
    sinks: {
      full: STANDARD_SINKS.full!, bare: STANDARD_SINKS.bare!, reject: STANDARD_SINKS.reject!, sender: STANDARD_SINKS.sender!,
      defer: { host: '127.0.0.7', domains: ['defer.test'], deferRcpt: '450 4.2.0 Mailbox busy, try later' },
    },
  });
});

after(async () => {
  await net?.close();
});

/** A second daemon on the same DNS and MXs with the new DSN settings; started by the first test that needs it. */
let tuned: Promise<{ daemon: Daemon; port: number }> | undefined;
function tunedDaemon(): Promise<{ daemon: Daemon; port: number }> {
  tuned ??= (async () => {
    const port = await freePort('127.0.0.1');
    const daemon = await net.world.start({
      listen: [{ address: '127.0.0.1', port }],
      redis: { embedded: true, dir: join(net.world.dir, 'redis-tuned'), appendfsync: 'everysec' },
      dsn_max_return_size: '2KB',
      delay_dsn_after: '2s',
    });
    return { daemon, port };
  })();
  return tuned;
}

function message(opts: { from: string; to: string[]; subject: string; marker?: string; size?: number }): Buffer {
  const lines = [
    `From: ${opts.from}`, `To: ${opts.to.join(', ')}`, `Subject: ${opts.subject}`,
    `Message-ID: <${opts.subject.replace(/\W+/g, '-')}@client.test>`, 'Date: Wed, 01 Jan 2025 00:00:00 +0000',
    'MIME-Version: 1.0', 'Content-Type: text/plain; charset=us-ascii', 'Content-Transfer-Encoding: 7bit',
    '', `The body: ${opts.marker ?? 'no marker'}.`,
  ];
  let text = `${lines.join('\r\n')}\r\n`;
  while (opts.size !== undefined && Buffer.byteLength(text) < opts.size) text += `${'filler '.repeat(10)}\r\n`;
  return Buffer.from(text, 'utf8');
}

async function inject(port: number, m: Outgoing): Promise<string> {
  const [reply] = await injectAll({ host: '127.0.0.1', port, messages: [m], sessions: 1 });
  return /queued as (\S+)/.exec(reply!)![1]!;
}

/** The reports the sender's MX holds for this address (smtp-sink dumps, parsed). */
function reportsTo(sender: string): Report[] {
  return net.sinks.sender!.copiesFor(sender).map((d) => parseReport(d.message));
}

/** Every recipient of a message refused by mx.reject.test; resolves once Impulse's queue is empty. */
async function bounced(m: Outgoing): Promise<Report[]> {
  const qid = await inject(net.world.intakePort, m);
  await net.daemon.waitForLogs((r) => r.qid === qid && r.event === 'permanent_failure', 1);
  // A DSN is queued while the attempt is concluded, so once the queue is empty it has been delivered.
  await impulseDrained(net);
  return reportsTo(m.from);
}

const partTypes = (r: Report) => r.parts.map((p) => p.contentType.split(';')[0]);

test('NOTIFY=NEVER, NOTIFY=SUCCESS and NOTIFY=DELAY get no failure DSN; the one DSN names the others with Original-Envelope-Id and Original-Recipient', async () => {
  const from = 'notify@sender.test';
  const reports = await bounced({
    from, mailParams: 'RET=HDRS ENVID=env-notify-1',
    to: [
      { address: 'never@reject.test', params: 'NOTIFY=NEVER' },
      { address: 'success-only@reject.test', params: 'NOTIFY=SUCCESS' },
      { address: 'delay-only@reject.test', params: 'NOTIFY=DELAY' },
      { address: 'failure@reject.test', params: 'NOTIFY=FAILURE ORCPT=rfc822;original-failure@reject.test' },
      { address: 'default@reject.test' },
    ],
    raw: message({ from, to: ['x@reject.test'], subject: 'notify choices' }),
  });
  assert.equal(reports.length, 1, `DSNs to ${from}: ${reports.length}`);
  const report = reports[0]!;
  const listed = report.perRecipient.map((f) => (f['final-recipient'] ?? '').replace(/^[^;]*;\s*/, '')).sort();
  assert.deepEqual(listed, ['default@reject.test', 'failure@reject.test']);
  assert.equal(report.perMessage['original-envelope-id'], 'env-notify-1');
  const failure = recipientFields(report, 'failure@reject.test')!;
  assert.match(failure['original-recipient'] ?? '', /^rfc822; ?original-failure@reject\.test$/i);
  assert.equal(failure.action, 'failed');
  assert.equal(failure.status, '5.1.1');
});

test('RET=HDRS returns the headers only, as text/rfc822-headers', async () => {
  const from = 'ret-hdrs@sender.test';
  const [report] = await bounced({ from, mailParams: 'RET=HDRS', to: [{ address: 'hdrs@reject.test', params: 'NOTIFY=FAILURE' }],
    raw: message({ from, to: ['hdrs@reject.test'], subject: 'ret hdrs', marker: 'BODY-MARKER-HDRS' }) });
  assert.ok(report, `no DSN to ${from}`);
  assert.deepEqual(partTypes(report).slice(2), ['text/rfc822-headers']);
  assert.match(report.parts[2]!.body, /^Subject: ret hdrs$/m);
  assert.doesNotMatch(report.text, /BODY-MARKER-HDRS/);
});

test('RET=FULL returns the whole message, as message/rfc822', async () => {
  const from = 'ret-full@sender.test';
  const [report] = await bounced({ from, mailParams: 'RET=FULL', to: [{ address: 'full@reject.test', params: 'NOTIFY=FAILURE' }],
    raw: message({ from, to: ['full@reject.test'], subject: 'ret full', marker: 'BODY-MARKER-FULL' }) });
  assert.ok(report, `no DSN to ${from}`);
  assert.deepEqual(partTypes(report).slice(2), ['message/rfc822']);
  assert.match(report.parts[2]!.body, /^Subject: ret full$/m);
  assert.match(report.parts[2]!.body, /BODY-MARKER-FULL/);
});

test('RET=FULL of a message over dsn_max_return_size (default 50KB) returns its headers only', async () => {
  const from = 'ret-full-big@sender.test';
  const [report] = await bounced({ from, mailParams: 'RET=FULL', to: [{ address: 'big@reject.test', params: 'NOTIFY=FAILURE' }],
    raw: message({ from, to: ['big@reject.test'], subject: 'ret full big', marker: 'BODY-MARKER-BIG', size: 60 * 1024 }) });
  assert.ok(report, `no DSN to ${from}`);
  assert.deepEqual(partTypes(report).slice(2), ['text/rfc822-headers']);
  assert.doesNotMatch(report.text, /BODY-MARKER-BIG/);
});

test('a failure DSN for SMTPUTF8 mail is a global report: message/global-delivery-status, utf-8 address type, sent with SMTPUTF8', async () => {
  const from = 'rené.dsn@sender.test';
  const [report] = await bounced({ from, mailParams: 'SMTPUTF8', to: [{ address: 'jörg@reject.test', params: 'NOTIFY=FAILURE' }],
    raw: message({ from, to: ['jörg@reject.test'], subject: 'global report' }) });
  assert.ok(report, `no DSN to ${from}`);
  // report-type stays delivery-status (as Postfix writes it); the status part is the global one.
  assert.equal(report.reportType, 'delivery-status');
  assert.equal(report.status?.contentType.split(';')[0], 'message/global-delivery-status');
  const jorg = recipientFields(report, 'jörg@reject.test');
  assert.ok(jorg, `no recipient group for jörg@reject.test in ${report.status?.body}`);
  assert.match(jorg['final-recipient'] ?? '', /^utf-8;/i);
  assert.equal(jorg.status, '5.1.1');
  const [dump] = net.sinks.sender!.copiesFor(from);
  assert.match(dump!.mailParams, /\bSMTPUTF8\b/i);
});

test('NOTIFY=SUCCESS: a DSN with Action: relayed for the MX without DSN; none for the MX with DSN, which gets NOTIFY passed on', async () => {
  const from = 'success@sender.test';
  const qid = await inject(net.world.intakePort, {
    from, to: [{ address: 'relayed@bare.test', params: 'NOTIFY=SUCCESS' }, { address: 'passed@a.test', params: 'NOTIFY=SUCCESS' }],
    raw: message({ from, to: ['relayed@bare.test', 'passed@a.test'], subject: 'success notices' }),
  });
  await net.daemon.waitForLogs((r) => r.qid === qid && r.event === 'delivery', 2);
  await impulseDrained(net);
  const reports = reportsTo(from);
  assert.equal(reports.length, 1, `DSNs to ${from}: ${reports.length}`);
  const relayed = recipientFields(reports[0]!, 'relayed@bare.test');
  assert.equal(relayed?.action, 'relayed');
  assert.match(relayed?.status ?? '', /^2\.\d+\.\d+$/);
  assert.equal(recipientFields(reports[0]!, 'passed@a.test'), undefined, 'passed@a.test went to an MX that offers DSN');
  const [copy] = net.sinks.full!.copiesFor('passed@a.test');
  assert.match(copy?.rcpts[0]?.params ?? '', /\bNOTIFY=SUCCESS\b/i);
});

test('dsn_max_return_size: 2KB: RET=FULL of a 5 KB message returns headers only, of a 1 KB one the message', async () => {
  const { daemon, port } = await tunedDaemon();
  for (const [from, size, expected] of [['max-big@sender.test', 5 * 1024, 'text/rfc822-headers'], ['max-small@sender.test', 1000, 'message/rfc822']] as const) {
    const qid = await inject(port, { from, mailParams: 'RET=FULL', to: [{ address: 'max@reject.test', params: 'NOTIFY=FAILURE' }],
      raw: message({ from, to: ['max@reject.test'], subject: `max return ${size}`, marker: 'BODY-MARKER-MAX', size }) });
    await daemon.waitForLog((r) => r.qid === qid && r.event === 'permanent_failure');
    await daemon.waitForLog((r) => r.event === 'delivery' && (r.recipients as string[]).includes(from));
    const [report] = reportsTo(from);
    assert.deepEqual(partTypes(report!).slice(2), [expected], `${size} bytes`);
  }
});

test('delay_dsn_after: 2s: one delay DSN (Action: delayed, 4.2.0) for the NOTIFY=DELAY recipient of a deferred message, none for the others', async () => {
  const { daemon, port } = await tunedDaemon();
  const from = 'late@sender.test';
  const qid = await inject(port, {
    from,
    to: [{ address: 'd1@defer.test', params: 'NOTIFY=DELAY,FAILURE' }, { address: 'd2@defer.test', params: 'NOTIFY=FAILURE' }, { address: 'd3@defer.test', params: 'NOTIFY=NEVER' }],
    raw: message({ from, to: ['d1@defer.test'], subject: 'delayed' }),
  });
  await daemon.waitForLog((r) => r.event === 'delivery' && (r.recipients as string[]).includes(from), 30000);
  // Two more deferrals after the DSN went out: it is not repeated at each attempt.
  const seen = daemon.logs.filter((r) => r.qid === qid && r.event === 'transient_failure').length;
  await daemon.waitForLogs((r) => r.qid === qid && r.event === 'transient_failure', seen + 2, 30000);
  const reports = reportsTo(from);
  assert.equal(reports.length, 1, `delay DSNs to ${from}: ${reports.length}`);
  const listed = reports[0]!.perRecipient.map((f) => (f['final-recipient'] ?? '').replace(/^[^;]*;\s*/, ''));
  assert.deepEqual(listed, ['d1@defer.test']);
  const d1 = recipientFields(reports[0]!, 'd1@defer.test')!;
  assert.equal(d1.action, 'delayed');
  assert.equal(d1.status, '4.2.0');
});
