// Interop C (ESMTP extensions, landing on main): Impulse's EHLO and enhanced replies, DSN parameters relayed by Postfix and passed on by Impulse, BODY=8BITMIME and SMTPUTF8 passed on or refused with 5.6.7 / 5.6.3.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RawSmtp } from '../helpers/raw-smtp.js';
import { parseReport, recipientFields } from './dsn-report.js';
import { type Outgoing, dotStuff, injectAll } from './inject.js';
import { type Interop, STANDARD_SINKS, buildInterop, impulseDrained, stripReceived } from './world.js';

const MAX_SIZE = 10 * 1024 * 1024;

let net: Interop;

before(async () => {
  net = await buildInterop({
    // mx.b.test is also the MX of bücher.test, whose zone is under its ASCII form.
    sinks: { ...STANDARD_SINKS, full2: { ...STANDARD_SINKS.full2!, domains: ['b.test', 'xn--bcher-kva.test'] } },
    postfix: true,
    daemonConfig: (world) => ({ listen: [{ address: '127.0.0.1', port: world.intakePort, max_message_size: '10MB' }] }),
  });
});

after(async () => {
  await net?.close();
});

/** One command line sent as UTF-8, its reply. */
async function say(c: RawSmtp, line: string): Promise<string> {
  c.write(Buffer.from(`${line}\r\n`, 'utf8'));
  return c.reply();
}

function message(opts: { from: string; to: string[]; subject: string; body?: string; eightBit?: boolean }): Buffer {
  const lines = [
    `From: ${opts.from}`, `To: ${opts.to.join(', ')}`, `Subject: ${opts.subject}`,
    `Message-ID: <${opts.subject.replace(/\W+/g, '-')}@client.test>`, 'Date: Wed, 01 Jan 2025 00:00:00 +0000', 'MIME-Version: 1.0',
    `Content-Type: text/plain; charset=${opts.eightBit ? 'utf-8' : 'us-ascii'}`, `Content-Transfer-Encoding: ${opts.eightBit ? '8bit' : '7bit'}`,
    '', opts.body ?? 'A line of text.', '.a dot line',
  ];
  return Buffer.from(`${lines.join('\r\n')}\r\n`, 'utf8');
}

/** Through Postfix: waits for Postfix's status=sent for every recipient. */
async function viaPostfix(m: Outgoing): Promise<void> {
  const postfix = net.postfix!;
  const [reply] = await injectAll({ host: '127.0.0.1', port: postfix.port, messages: [m], sessions: 1 });
  const id = /queued as ([0-9A-F]+)/.exec(reply!)![1]!;
  await postfix.waitForLines((l) => l.includes(`: ${id}: to=<`) && / status=sent /.test(l), m.to.length);
}

/** Straight into Impulse's intake; resolves with Impulse's queue id. */
async function intoImpulse(m: Outgoing): Promise<string> {
  const [reply] = await injectAll({ host: '127.0.0.1', port: net.world.intakePort, messages: [m], sessions: 1 });
  return /queued as (\S+)/.exec(reply!)![1]!;
}

/** Impulse's first outcome for a message: delivery, transient or permanent failure. */
const outcomeOf = (qid: string) =>
  net.daemon.waitForLog((r) => r.qid === qid && ['delivery', 'transient_failure', 'permanent_failure'].includes(r.event));

const delivered = (address: string) => net.daemon.waitForLog((r) => r.event === 'delivery' && (r.recipients as string[]).includes(address));

test("Impulse's EHLO offers ENHANCEDSTATUSCODES, SIZE with the listener's limit, DSN, SMTPUTF8, 8BITMIME and PIPELINING", async () => {
  const c = await RawSmtp.connect({ host: '127.0.0.1', port: net.world.intakePort });
  try {
    const ehlo = (await say(c, 'EHLO client.test')).split('\n').map((l) => l.slice(4));
    for (const keyword of ['ENHANCEDSTATUSCODES', `SIZE ${MAX_SIZE}`, 'DSN', 'SMTPUTF8', '8BITMIME', 'PIPELINING']) {
      assert.ok(ehlo.includes(keyword), `EHLO reply lacks "${keyword}": ${JSON.stringify(ehlo)}`);
    }
  } finally {
    c.close();
  }
});

test('MAIL, RCPT and the end of DATA are answered with enhanced status codes (2.1.0, 2.1.5, 2.0.0)', async () => {
  const c = await RawSmtp.connect({ host: '127.0.0.1', port: net.world.intakePort });
  try {
    await say(c, 'EHLO client.test');
    assert.match(await say(c, 'MAIL FROM:<s@sender.test>'), /^250 2\.1\.0 /);
    assert.match(await say(c, 'RCPT TO:<enhanced@a.test>'), /^250 2\.1\.5 /);
    assert.match(await say(c, 'DATA'), /^354 /);
    c.write(dotStuff(message({ from: 's@sender.test', to: ['enhanced@a.test'], subject: 'enhanced codes' })));
    assert.match(await c.reply(), /^250 2\.0\.0 /);
  } finally {
    c.close();
  }
});

test('an unknown MAIL or RCPT parameter gets 555 5.5.4; a non-ASCII address without SMTPUTF8 gets 553 5.6.7, with it 250', async () => {
  const c = await RawSmtp.connect({ host: '127.0.0.1', port: net.world.intakePort });
  try {
    await say(c, 'EHLO client.test');
    assert.match(await say(c, 'MAIL FROM:<s@sender.test> XFOO=BAR'), /^555 5\.5\.4 /);
    assert.match(await say(c, 'MAIL FROM:<rené@sender.test>'), /^553 5\.6\.7 /);
    assert.match(await say(c, 'MAIL FROM:<s@sender.test>'), /^250 2\.1\.0 /);
    assert.match(await say(c, 'RCPT TO:<a1@a.test> XFOO=BAR'), /^555 5\.5\.4 /);
    assert.match(await say(c, 'RCPT TO:<jörg@a.test>'), /^553 5\.6\.7 /);
    assert.match(await say(c, 'RSET'), /^250 /);
    assert.match(await say(c, 'MAIL FROM:<rené@sender.test> SMTPUTF8'), /^250 2\.1\.0 /);
    assert.match(await say(c, 'RCPT TO:<jörg@a.test>'), /^250 2\.1\.5 /);
  } finally {
    c.close();
  }
});

test('Postfix relays RET, ENVID, NOTIFY and ORCPT into Impulse, and Impulse passes them on to an MX that offers DSN', async () => {
  const to = ['dsn-1@a.test', 'dsn-2@a.test'];
  await viaPostfix({
    from: 'dsn-pass@sender.test', mailParams: 'RET=HDRS ENVID=env-pass-1',
    to: [{ address: to[0]!, params: 'NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;original-1@a.test' }, { address: to[1]!, params: 'NOTIFY=NEVER' }],
    raw: message({ from: 'dsn-pass@sender.test', to, subject: 'dsn parameters' }),
  });
  // What Postfix sent Impulse.
  const upstream = net.upstreamTap!;
  const sent = upstream.sessions.flatMap((s) => upstream.clientLines(s).map((b) => b.toString('utf8')));
  assert.match(sent.find((l) => l.startsWith('MAIL FROM:<dsn-pass@sender.test>')) ?? '', / RET=HDRS\b/i);
  assert.match(sent.find((l) => l.startsWith('MAIL FROM:<dsn-pass@sender.test>')) ?? '', / ENVID=env-pass-1\b/);
  assert.match(sent.find((l) => l.startsWith(`RCPT TO:<${to[0]}>`)) ?? '', / NOTIFY=SUCCESS,FAILURE\b/i);
  assert.match(sent.find((l) => l.startsWith(`RCPT TO:<${to[0]}>`)) ?? '', / ORCPT=rfc822;original-1@a\.test\b/i);
  assert.match(sent.find((l) => l.startsWith(`RCPT TO:<${to[1]}>`)) ?? '', / NOTIFY=NEVER/i);
  // What Impulse sent the MX.
  await delivered(to[0]!);
  const [copy] = net.sinks.full!.copiesFor(to[0]!);
  assert.ok(copy, 'the copy at mx.a.test');
  assert.match(copy.mailParams, /\bRET=HDRS\b/i);
  assert.match(copy.mailParams, /\bENVID=env-pass-1\b/);
  const rcpt = (a: string) => copy.rcpts.find((r) => r.address === a)?.params ?? '';
  assert.match(rcpt(to[0]!), /\bNOTIFY=SUCCESS,FAILURE\b/i);
  assert.match(rcpt(to[0]!), /\bORCPT=rfc822;original-1@a\.test\b/i);
  assert.match(rcpt(to[1]!), /\bNOTIFY=NEVER\b/i);
  // The MX took the DSN duty: no notice from Postfix (it relayed to a DSN server), none from Impulse.
  await net.postfix!.drained();
  await impulseDrained(net);
  assert.deepEqual(net.sinks.sender!.copiesFor('dsn-pass@sender.test').map((d) => d.file), []);
});

test('BODY=8BITMIME is passed on to an MX that offers 8BITMIME, SMTPUTF8 to one that offers SMTPUTF8 with the UTF-8 address as sent', async () => {
  await viaPostfix({ from: 's@sender.test', mailParams: 'BODY=8BITMIME', to: [{ address: 'eight@a.test' }],
    raw: message({ from: 's@sender.test', to: ['eight@a.test'], subject: 'eight bit', body: 'Grüße aus Köln', eightBit: true }) });
  await viaPostfix({ from: 'rené@sender.test', mailParams: 'SMTPUTF8 BODY=8BITMIME', to: [{ address: 'jörg@a.test' }],
    raw: message({ from: 'rené@sender.test', to: ['jörg@a.test'], subject: 'utf8 address', body: 'Grüße', eightBit: true }) });
  await delivered('eight@a.test');
  await delivered('jörg@a.test');
  const sink = net.sinks.full!;
  assert.match(sink.copiesFor('eight@a.test')[0]?.mailParams ?? '', /\bBODY=8BITMIME\b/i);
  assert.match(sink.copiesFor('jörg@a.test')[0]?.mailParams ?? '', /\bSMTPUTF8\b/i);
  const sentLines = sink.tap.sessions.flatMap((s) => sink.tap.clientLines(s));
  const rcpts = sentLines.filter((l) => l.subarray(0, 8).toString() === 'RCPT TO:').map((l) => l.toString('utf8'));
  assert.ok(rcpts.some((l) => l.startsWith('RCPT TO:<jörg@a.test>')), `RCPT TO:<jörg@a.test> in UTF-8 on the wire; sent ${JSON.stringify(rcpts)}`);
  // Both hops name the protocol in their Received headers (RFC 6531 3.7.3).
  const { received } = stripReceived(sink.copiesFor('jörg@a.test')[0]!.message);
  assert.match(received[0] ?? '', /by impulse\.test \(Impulse\) with UTF8SMTP id /);
  assert.match(received[1] ?? '', /by upstream\.test \(Postfix\) with UTF8SMTP id /);
});

test('a UTF-8 destination domain is looked up in its ASCII form and the address goes on to its MX as received', async () => {
  await viaPostfix({ from: 'rené@sender.test', mailParams: 'SMTPUTF8', to: [{ address: 'käufer@bücher.test' }],
    raw: message({ from: 'rené@sender.test', to: ['käufer@bücher.test'], subject: 'idn domain' }) });
  await delivered('käufer@bücher.test');
  assert.ok(net.world.dns.queries.some((q) => q.name === 'xn--bcher-kva.test' && q.type === 'MX'), 'MX query for xn--bcher-kva.test');
  const sink = net.sinks.full2!;
  const rcpts = sink.tap.sessions.flatMap((s) => sink.tap.clientLines(s)).map((l) => l.toString('utf8')).filter((l) => l.startsWith('RCPT TO:'));
  assert.ok(rcpts.some((l) => l.startsWith('RCPT TO:<käufer@bücher.test>')), JSON.stringify(rcpts));
});

/**
 * The address an ORCPT value names: rfc822 is xtext (RFC 3461: `+XX` for each byte, here of UTF-8);
 * utf-8 is utf-8-addr-xtext or -unitext (RFC 6533: `\\x{HEX}` escapes or UTF-8 as is, no `+`).
 */
function orcptAddress(param: string): { type: string; address: string } {
  const value = /\bORCPT=([^ ]*)/i.exec(param)?.[1] ?? '';
  const semi = value.indexOf(';');
  const type = value.slice(0, semi).toLowerCase();
  const raw = value.slice(semi + 1);
  if (type === 'utf-8') return { type, address: raw.replace(/\\x\{([0-9A-Fa-f]+)\}/g, (_m, hex: string) => String.fromCodePoint(parseInt(hex, 16))) };
  return { type, address: Buffer.from(raw.replace(/\+([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1').toString('utf8') };
}

test('the ORCPT Postfix adds for a UTF-8 recipient (xtext of its UTF-8 bytes) reaches the MX naming the same address', async () => {
  await viaPostfix({ from: 'rené@sender.test', mailParams: 'SMTPUTF8', to: [{ address: 'zoë@a.test' }, { address: 'zoe@a.test', params: 'ORCPT=utf-8;zo\\x{EB}@a.test' }],
    raw: message({ from: 'rené@sender.test', to: ['zoë@a.test'], subject: 'orcpt of utf8' }) });
  await delivered('zoë@a.test');
  const sink = net.sinks.full!;
  const sent = sink.tap.sessions.flatMap((s) => sink.tap.clientLines(s)).map((l) => l.toString('utf8'));
  for (const [rcpt, original] of [['zoë@a.test', 'zoë@a.test'], ['zoe@a.test', 'zoë@a.test']] as const) {
    const line = sent.find((l) => l.startsWith(`RCPT TO:<${rcpt}>`)) ?? '';
    assert.equal(orcptAddress(line).address, original, `ORCPT of ${line}`);
  }
});

test('ORCPT=utf-8 written as UTF-8 (RFC 6533 unitext) goes on to the MX as a valid utf-8 address naming the same address', async () => {
  await intoImpulse({ from: 'rené@sender.test', mailParams: 'SMTPUTF8', to: [{ address: 'unitext@a.test', params: 'ORCPT=utf-8;chloé@a.test' }],
    raw: message({ from: 'rené@sender.test', to: ['unitext@a.test'], subject: 'orcpt unitext' }) });
  await delivered('unitext@a.test');
  const sink = net.sinks.full!;
  const line = sink.tap.sessions.flatMap((s) => sink.tap.clientLines(s)).map((l) => l.toString('utf8')).find((l) => l.startsWith('RCPT TO:<unitext@a.test>')) ?? '';
  assert.doesNotMatch(line, /ORCPT=utf-8;[^ ]*\+/i, `'+' is no part of a utf-8 address's xtext or unitext: ${line}`);
  assert.deepEqual(orcptAddress(line), { type: 'utf-8', address: 'chloé@a.test' }, line);
});

test('a message received with SMTPUTF8 keeps it for every domain, also one whose envelope is all ASCII (its headers are UTF-8)', async () => {
  const to = ['jörg.2@a.test', 'ascii-part@b.test'];
  await viaPostfix({ from: 'utf8-headers@sender.test', mailParams: 'SMTPUTF8', to: to.map((address) => ({ address })),
    raw: message({ from: 'utf8-headers@sender.test', to, subject: 'utf8 headers' }) });
  await delivered('ascii-part@b.test');
  const [copy] = net.sinks.full2!.copiesFor('ascii-part@b.test');
  assert.match(copy?.mailParams ?? '', /\bSMTPUTF8\b/i, `MAIL FROM:<${copy?.mailFrom}> ${copy?.mailParams}`);
});

test('a UTF-8 address at an MX without SMTPUTF8 fails with 5.6.7 and a DSN; the MX never sees it', async () => {
  const qid = await intoImpulse({ from: 'utf8-bounce@sender.test', mailParams: 'SMTPUTF8', to: [{ address: 'jörg@bare.test' }],
    raw: message({ from: 'utf8-bounce@sender.test', to: ['jörg@bare.test'], subject: 'no smtputf8 there' }) });
  const outcome = await outcomeOf(qid);
  assert.equal(outcome.event, 'permanent_failure', JSON.stringify(outcome));
  assert.match(outcome.reply, /^5\d\d 5\.6\.7 /);
  await delivered('utf8-bounce@sender.test');
  const [dsn] = net.sinks.sender!.copiesFor('utf8-bounce@sender.test');
  assert.ok(dsn, 'a DSN reaches the sender');
  assert.equal(recipientFields(parseReport(dsn.message), 'jörg@bare.test')?.status, '5.6.7');
  const bare = net.sinks.bare!;
  assert.deepEqual(bare.copiesFor('jörg@bare.test'), []);
  const sent = bare.tap.sessions.flatMap((s) => bare.tap.clientLines(s)).filter((l) => l.includes(Buffer.from('jörg', 'utf8')));
  assert.deepEqual(sent.map(String), [], 'the UTF-8 address went out to mx.bare.test');
});

test('an 8-bit body at an MX without 8BITMIME fails with 5.6.3 and a DSN, nothing 8-bit goes to it; a 7-bit one is delivered there', async () => {
  const qid = await intoImpulse({ from: 'eight-bounce@sender.test', mailParams: 'BODY=8BITMIME', to: [{ address: 'eight@bare.test' }],
    raw: message({ from: 'eight-bounce@sender.test', to: ['eight@bare.test'], subject: 'no 8bitmime there', body: 'Grüße aus Köln', eightBit: true }) });
  await intoImpulse({ from: 's@sender.test', to: [{ address: 'seven@bare.test' }], raw: message({ from: 's@sender.test', to: ['seven@bare.test'], subject: 'seven bit' }) });
  const outcome = await outcomeOf(qid);
  assert.equal(outcome.event, 'permanent_failure', JSON.stringify(outcome));
  assert.match(outcome.reply, /^5\d\d 5\.6\.3 /);
  await delivered('eight-bounce@sender.test');
  const [dsn] = net.sinks.sender!.copiesFor('eight-bounce@sender.test');
  assert.ok(dsn, 'a DSN reaches the sender');
  assert.equal(recipientFields(parseReport(dsn.message), 'eight@bare.test')?.status, '5.6.3');
  await delivered('seven@bare.test');
  const bare = net.sinks.bare!;
  assert.equal(bare.copiesFor('seven@bare.test').length, 1);
  assert.deepEqual(bare.copiesFor('eight@bare.test'), []);
  for (const s of bare.tap.sessions) {
    const bytes = Buffer.concat(s.chunks.filter((ch) => ch.from === 'client').map((ch) => ch.data));
    assert.equal(bytes.findIndex((b) => b > 0x7f), -1, `8-bit bytes sent to mx.bare.test:\n${bare.tap.transcript(s)}`);
  }
});
