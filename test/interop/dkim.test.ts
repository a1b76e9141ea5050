// Interop D (DKIM): Impulse's signatures, RSA-2048 and Ed25519, checked by dkimpy on each message as smtp-sink received it; a tampered copy fails, mail of an unconfigured From: domain goes out unsigned.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type TestDkimKey, makeDkimKey } from '../helpers/dkim.js';
import { Prng } from '../helpers/prng.js';
import { type DkimpyVerdict, dkimpyVerify } from './dkimpy.js';
import { injectAll } from './inject.js';
import { type Interop, STANDARD_SINKS, buildInterop } from './world.js';

const keyDir = mkdtempSync(join(tmpdir(), 'impulse-interop-dkim-'));
const rsa = makeDkimKey('signed.test', 'rsa2026', 'rsa', 2048, keyDir);
const ed = makeDkimKey('signed.test', 'ed2026', 'ed25519', 0, keyDir);
const news = makeDkimKey('news.signed.test', 'news2026', 'rsa', 2048, keyDir);
const KEYS: TestDkimKey[] = [rsa, ed, news];

let net: Interop;

before(async () => {
  net = await buildInterop({
    sinks: { full: STANDARD_SINKS.full! },
    config: { dkim: KEYS.map((k) => ({ domain: k.domain, selector: k.selector, key_file: k.file })) },
  });
});

after(async () => {
  await net?.close();
  rmSync(keyDir, { recursive: true, force: true });
});

/** A CRLF message from header lines (folds written into them) and body lines. */
function message(headers: string[], body: string[]): Buffer {
  return Buffer.from(`${headers.join('\r\n')}\r\n\r\n${body.join('\r\n')}\r\n`, 'utf8');
}

function standardHeaders(from: string, to: string, subject: string, eightBit = false): string[] {
  return [
    `From: ${from}`, `To: ${to}`, `Subject: ${subject}`, `Message-ID: <${subject.replace(/\W+/g, '-')}@client.test>`,
    'Date: Wed, 01 Jan 2025 00:00:00 +0000', 'MIME-Version: 1.0',
    `Content-Type: text/plain; charset=${eightBit ? 'utf-8' : 'us-ascii'}`, `Content-Transfer-Encoding: ${eightBit ? '8bit' : '7bit'}`,
  ];
}

type Arrived = {
  qid: string;
  /** The message smtp-sink stored, CRLF line ends restored, smtp-sink's own Received header removed. */
  message: Buffer;
  mailParams: string;
  /** The `dkim` labels of Impulse's reception record (`domain:selector`), [] when it signed nothing. */
  signedWith: string[];
};

/** What smtp-sink stored, with the CRs it drops put back: intake refuses bare LF and CR, so every LF was a CRLF on the wire. */
const withCrlf = (stored: Buffer) => Buffer.from(stored.toString('latin1').replace(/\n/g, '\r\n'), 'latin1');

/** Injects one message for `<local>@a.test` at Impulse's intake and returns it as it reached mx.a.test. */
async function deliver(local: string, m: { from: string; raw: Buffer; mailParams?: string }, timeoutMs = 30_000): Promise<Arrived> {
  const rcpt = `${local}@a.test`;
  const [reply] = await injectAll({
    host: '127.0.0.1', port: net.world.intakePort, sessions: 1,
    messages: [{ from: m.from, to: [{ address: rcpt }], raw: m.raw, ...(m.mailParams ? { mailParams: m.mailParams } : {}) }],
  });
  const qid = /queued as (\S+)/.exec(reply!)![1]!;
  const reception = await net.daemon.waitForLog((r) => r.qid === qid && r.event === 'reception');
  await net.daemon.waitForLog((r) => r.qid === qid && r.event === 'delivery', timeoutMs);
  const copies = net.sinks.full!.copiesFor(rcpt);
  assert.equal(copies.length, 1, `copies of ${rcpt} at mx.a.test`);
  return { qid, message: withCrlf(copies[0]!.message), mailParams: copies[0]!.mailParams, signedWith: (reception.dkim as string[] | undefined) ?? [] };
}

const verify = async (messages: Buffer[]) => (await dkimpyVerify(messages, KEYS)).verdicts;

/** Each signature as `d s a pass`, sorted, with dkimpy's notes when it failed: one string to compare. */
function summary(v: DkimpyVerdict): string[] {
  if (v.error) return [`dkimpy could not parse the message: ${v.error}`];
  return v.signatures.map((s) => `${s.d} ${s.s} ${s.a} ${s.pass ? 'pass' : `fail ${JSON.stringify(s.notes)}`}`).sort();
}

const BOTH = ['signed.test ed2026 ed25519-sha256 pass', 'signed.test rsa2026 rsa-sha256 pass'];

/** The header block of a CRLF message, its final CRLF included. */
const headBlock = (m: Buffer) => m.subarray(0, m.indexOf('\r\n\r\n') + 2).toString('latin1');

/** The message as the client sent it: what follows Impulse's Received and DKIM-Signature headers. */
function afterImpulseHeaders(m: Buffer): Buffer {
  const text = m.toString('latin1');
  const lead = /^(?:(?:Received|DKIM-Signature):[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)*/i.exec(text)![0];
  return m.subarray(Buffer.byteLength(lead, 'latin1'));
}

test('a plain 7-bit message carries an RSA-2048 and an Ed25519 signature of signed.test, and dkimpy passes each of them', async (t) => {
  const from = 'plain@signed.test';
  const raw = message(standardHeaders(from, 'plain@a.test', 'plain 7-bit'), ['A plain line of text.', '', 'Another one.']);
  const arrived = await deliver('plain', { from, raw });
  assert.deepEqual(arrived.signedWith.sort(), ['signed.test:ed2026', 'signed.test:rsa2026']);
  assert.equal(headBlock(arrived.message).match(/^DKIM-Signature:/gim)?.length, 2);
  assert.ok(afterImpulseHeaders(arrived.message).equals(raw), 'the message arrived as it was sent, below the headers Impulse added');
  const { version, verdicts: [v] } = await dkimpyVerify([arrived.message], KEYS);
  t.diagnostic(`dkimpy ${version}`);
  // dkimpy's changelog: ed25519-sha256 no longer experimental from 0.8.0 on.
  const [major = 0, minor = 0] = version.split('.').map(Number);
  assert.ok(major > 0 || minor >= 8, `dkimpy ${version}`);
  assert.deepEqual(v!.signatures.map((s) => s.idx), [0, 1]);
  assert.deepEqual(summary(v!), BOTH);
});

test('an 8-bit UTF-8 body sent with BODY=8BITMIME arrives 8-bit (BODY=8BITMIME at the MX), and both signatures pass', async () => {
  const from = 'eight@signed.test';
  const body = [
    'Grüße aus Köln, façade, naïve, smörgåsbord.', 'Ελληνικά κείμενα και Кириллица в одном письме.', '日本語のテキストも一行。',
    // U+00E0 is C3 A0 and U+00A0 is C2 A0 in UTF-8: an A0 byte that a Latin-1 reading takes for a no-break space.
    'Voilà, à la carte, and\u00a0a no-break space.',
  ];
  const raw = message(standardHeaders(from, 'eight@a.test', '8-bit body', true), body);
  const arrived = await deliver('eight', { from, raw, mailParams: 'BODY=8BITMIME' });
  assert.match(arrived.mailParams, /\bBODY=8BITMIME\b/);
  assert.ok(arrived.message.includes(Buffer.from(body.join('\r\n'), 'utf8')), 'the UTF-8 body arrived as it was sent');
  assert.deepEqual(summary((await verify([arrived.message]))[0]!), BOTH);
});

test('lines beginning with dots arrive un-stuffed and both signatures pass', async () => {
  const from = 'dots@signed.test';
  const body = ['.', '..', '...', '.hidden line', '..two dots', '. leading space', '.\tand a tab', 'text', '.'];
  const raw = message(standardHeaders(from, 'dots@a.test', 'dot lines'), body);
  const arrived = await deliver('dots', { from, raw });
  assert.ok(afterImpulseHeaders(arrived.message).equals(raw), 'dot lines arrived as they were sent');
  assert.deepEqual(summary((await verify([arrived.message]))[0]!), BOTH);
});

test('a 5,000-byte line arrives whole (not wrapped at 998) and both signatures pass', async () => {
  const from = 'long@signed.test';
  const long = `${Array.from({ length: 600 }, (_, i) => `word${String(i).padStart(4, '0')}`).join(' ').slice(0, 4999)}Z`;
  assert.equal(long.length, 5000);
  const raw = message(standardHeaders(from, 'long@a.test', 'long line'), ['Before the long line.', long, 'After it.']);
  const arrived = await deliver('long', { from, raw });
  assert.ok(arrived.message.toString('latin1').split('\r\n').includes(long), 'the 5,000-byte line is one line at the MX');
  assert.deepEqual(summary((await verify([arrived.message]))[0]!), BOTH);
});

test('a 10 MB message (base64 lines) is signed over its whole body and both signatures pass', { timeout: 180_000 }, async () => {
  const from = 'big@signed.test';
  const prng = new Prng('dkim-10mb');
  const bytes = Buffer.alloc(7.5 * 1024 * 1024);
  for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE(prng.uint32(), i);
  const b64 = bytes.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  const headers = standardHeaders(from, 'big@a.test', 'ten megabytes').slice(0, 6)
    .concat(['Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64']);
  const raw = message(headers, lines);
  assert.ok(raw.length >= 10 * 1024 * 1024, `${raw.length} bytes`);
  const arrived = await deliver('big', { from, raw }, 120_000);
  assert.ok(afterImpulseHeaders(arrived.message).equals(raw), 'the 10 MB message arrived as it was sent');
  assert.deepEqual(summary((await verify([arrived.message]))[0]!), BOTH);
});

test('folded, odd-spaced, odd-cased and repeated header fields, and a body with runs of blanks: both signatures pass', async () => {
  const from = 'odd@signed.test';
  const headers = [
    'From:   "Odd,  Spacing"\t <odd@signed.test>   ',
    'to:odd@a.test,\r\n\tsecond@a.test,\r\n    third@a.test',
    'SUBJECT: a subject\r\n \twith a tab fold\r\n  and   runs   of    spaces \t ',
    'Message-ID:<odd-spacing@client.test>',
    'Date:\tWed, 01 Jan 2025\r\n 00:00:00 +0000',
    'Cc: first-cc@a.test',
    'Cc:  second-cc@a.test',
    'MIME-Version: 1.0',
    'Content-Type: text/plain;\r\n\tcharset="us-ascii"',
  ];
  const body = ['Trailing blanks here:   \t', 'runs\t\tof   blanks  \t inside', '  leading blanks', '', '', ''];
  const raw = message(headers, body);
  const arrived = await deliver('odd', { from, raw });
  assert.ok(afterImpulseHeaders(arrived.message).equals(raw), 'the header fields arrived as they were written');
  const [v] = await verify([arrived.message]);
  assert.deepEqual(summary(v!), BOTH);
});

test('a From: in news.signed.test is signed with its own key only; one in mail.signed.test with its parent signed.test keys', async () => {
  const newsFrom = 'editor@news.signed.test';
  const mailFrom = 'someone@mail.signed.test';
  const a = await deliver('news', { from: newsFrom, raw: message(standardHeaders(newsFrom, 'news@a.test', 'subdomain key'), ['News.']) });
  const b = await deliver('parent', { from: mailFrom, raw: message(standardHeaders(mailFrom, 'parent@a.test', 'parent keys'), ['Parent.']) });
  assert.deepEqual(a.signedWith, ['news.signed.test:news2026']);
  const [va, vb] = await verify([a.message, b.message]);
  assert.deepEqual(summary(va!), ['news.signed.test news2026 rsa-sha256 pass']);
  assert.deepEqual(summary(vb!), BOTH);
});

test('mail whose From: domain has no key (unsigned.test, which only ends like signed.test) arrives with no DKIM-Signature', async () => {
  const from = 'nobody@unsigned.test';
  const arrived = await deliver('unsigned', { from, raw: message(standardHeaders(from, 'unsigned@a.test', 'no key'), ['Unsigned.']) });
  assert.deepEqual(arrived.signedWith, []);
  assert.doesNotMatch(headBlock(arrived.message), /^DKIM-Signature:/im);
  const [v] = await verify([arrived.message]);
  assert.deepEqual(v, { signatures: [] });
});

test('a copy with its body edited fails in dkimpy with a body hash mismatch, and one with its Subject edited fails, for both signatures', async () => {
  const from = 'tamper@signed.test';
  const raw = message(standardHeaders(from, 'tamper@a.test', 'tamper me'), ['Pay 100 EUR to account 1234.', 'Thanks.']);
  const arrived = await deliver('tamper', { from, raw });
  const text = arrived.message.toString('latin1');
  const bodyEdited = Buffer.from(text.replace('Pay 100 EUR', 'Pay 900 EUR'), 'latin1');
  const subjectEdited = Buffer.from(text.replace('Subject: tamper me', 'Subject: tampered'), 'latin1');
  assert.ok(!bodyEdited.equals(arrived.message) && !subjectEdited.equals(arrived.message));
  const [original, body, subject] = await verify([arrived.message, bodyEdited, subjectEdited]);
  assert.deepEqual(summary(original!), BOTH);
  assert.equal(body!.signatures.length, 2);
  for (const s of body!.signatures) {
    assert.equal(s.pass, false, `${s.a} of the body-edited copy`);
    assert.match(s.notes.join(' '), /body hash mismatch/, `${s.a}: ${JSON.stringify(s.notes)}`);
  }
  assert.equal(subject!.signatures.length, 2);
  for (const s of subject!.signatures) {
    assert.equal(s.pass, false, `${s.a} of the Subject-edited copy`);
    // The body still hashes right: it is the header hash, over the signed Subject, that fails.
    assert.doesNotMatch(s.notes.join(' '), /body hash mismatch/, `${s.a}: ${JSON.stringify(s.notes)}`);
  }
});

test('raw UTF-8 in signed header fields (SMTPUTF8 mail): both signatures pass, A0 bytes in a Subject and a display name included', async () => {
  // An A0 byte (the second of à and Р in UTF-8) is not WSP for RFC 6376's relaxed rule; mailauth's
  // canonicalisation, which Impulse's signer used for these fields, took it for one.
  const from = 'rené@signed.test';
  const headers = standardHeaders(`Françoise à Paris <${from}>`, 'utf8@a.test', 'voilà', true)
    .map((h) => (h.startsWith('Subject:') ? 'Subject: Grüße, voilà: Р и ठ' : h));
  const raw = message(headers, ['Corps en UTF-8 : déjà là.']);
  const arrived = await deliver('utf8', { from, raw, mailParams: 'SMTPUTF8 BODY=8BITMIME' });
  assert.ok(afterImpulseHeaders(arrived.message).equals(raw), 'the UTF-8 header fields arrived as they were sent');
  assert.deepEqual(summary((await verify([arrived.message]))[0]!), BOTH);
});
