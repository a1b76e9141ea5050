// The DSN builder: each report is parsed back (boundaries, part order, fields) and checked against RFC 3461, 3464, 6522 and 6533.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Dsn, type DsnAction, type DsnInput, type DsnRecipient, buildDsn } from '../../src/outcome/dsn.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2024, 0, 2, 3, 4, 5);
const NOW_TEXT = 'Tue, 02 Jan 2024 03:04:05 +0000';
const ORIGINAL = Buffer.from('From: alice@sender.test\r\nSubject: hello\r\nMessage-ID: <m1@sender.test>\r\n\r\nThe body.\r\n');
const ORIGINAL_HEADERS = ORIGINAL.subarray(0, ORIGINAL.indexOf('\r\n\r\n') + 2);
const REPLIES = {
  failed: { code: 550, enhanced: '5.1.1', text: 'no such user' },
  delayed: { code: 451, enhanced: '4.4.1', text: 'try later' },
  relayed: { code: 250, enhanced: '2.0.0', text: 'queued' },
};

function rcpt(action: DsnAction, recipient = `${action}@rcpt.test`, extra: Partial<DsnRecipient> = {}): DsnRecipient {
  return { recipient, action, reply: REPLIES[action], ...extra };
}

function input(over: Partial<DsnInput> = {}): DsnInput {
  return {
    reportingMta: 'mx.impulse.test', originalSender: 'alice@sender.test', queueId: 'Q1', arrival: NOW - DAY, now: NOW,
    ret: 'HDRS', maxReturnSize: 50_000, utf8: false, originalMessage: ORIGINAL, recipients: [rcpt('failed')], ...over,
  };
}

interface Part { type: string; fields: Map<string, string>; content: Buffer }
interface Report {
  dsn: Dsn;
  header: Map<string, string>;
  parts: Part[];
  human: string[];
  statusText: string;
  perMessage: Array<[string, string]>;
  perRecipient: Array<Map<string, string>>;
}

/** A header block's fields in order, unfolded, names lower-cased; fails on a line that is no field or a field given twice. */
function fields(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.replace(/\r\n[ \t]/g, ' ').split('\r\n').filter(Boolean)) {
    const m = /^([\x21-\x39\x3b-\x7e]+):[ \t]*(.*)$/.exec(line);
    assert.ok(m, `not a header field: ${JSON.stringify(line)}`);
    assert.ok(!out.has(m[1]!.toLowerCase()), `field twice: ${m[1]}`);
    out.set(m[1]!.toLowerCase(), m[2]!);
  }
  return out;
}

/** Builds the DSN and parses it as a MIME reader would (RFC 2046 §5.1.1), failing on anything malformed. */
function report(over: Partial<DsnInput> = {}): Report {
  const dsn = buildDsn(input(over));
  const raw = dsn.body;
  for (const line of raw.toString('latin1').split('\r\n')) {
    assert.doesNotMatch(line, /[\r\n]/, 'CRLF line ends only');
    assert.ok(line.length <= 998, `line of ${line.length} octets`);
  }
  const split = raw.indexOf('\r\n\r\n');
  const header = fields(raw.subarray(0, split).toString('utf8'));
  const boundary = /^multipart\/report; report-type=delivery-status; boundary="([^"]+)"$/.exec(header.get('content-type') ?? '')?.[1];
  assert.ok(boundary, `Content-Type: ${header.get('content-type')}`);
  const body = raw.subarray(split + 4);
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const cuts: number[] = [];
  for (let at = body.indexOf(delimiter); at >= 0; at = body.indexOf(delimiter, at + 1)) cuts.push(at);
  assert.equal(body.subarray(0, cuts[0]).toString(), 'This is a MIME-encapsulated message.\r\n', 'preamble');
  assert.equal(body.subarray(cuts.at(-1)! + delimiter.length).toString(), '--\r\n', 'the close delimiter ends the message');
  const parts = cuts.slice(0, -1).map((at, i) => {
    const chunk = body.subarray(at + delimiter.length, cuts[i + 1]);
    assert.equal(chunk.subarray(0, 2).toString(), '\r\n', 'nothing follows a delimiter on its line');
    const end = chunk.indexOf('\r\n\r\n');
    const partFields = fields(chunk.subarray(2, end + 2).toString('utf8'));
    return { type: partFields.get('content-type')!, fields: partFields, content: chunk.subarray(end + 4) };
  });
  assert.ok(parts.length >= 2, 'a human part and a status part at least');
  const statusText = parts[1]!.content.toString('utf8');
  assert.ok(statusText.endsWith('\r\n') && !statusText.endsWith('\r\n\r\n'), 'the last field ends with one CRLF');
  const [first, ...groups] = statusText.split('\r\n\r\n');
  assert.equal(groups.length, input(over).recipients.length, 'one field group per recipient');
  return {
    dsn, header, parts, statusText,
    human: parts[0]!.content.toString('utf8').split('\r\n'),
    perMessage: [...fields(first!)],
    perRecipient: groups.map(fields),
  };
}

test('a failed recipient: a multipart/report of human text, delivery-status and headers, with the fields RFC 3464 asks for', () => {
  const r = report({ recipients: [rcpt('failed', 'bob@rcpt.test', { remoteMta: 'mx.rcpt.test' })] });
  assert.deepEqual([...r.header], [
    ['from', 'Mail Delivery System <MAILER-DAEMON@mx.impulse.test>'],
    ['to', '<alice@sender.test>'],
    ['subject', 'Undelivered Mail Returned to Sender'],
    ['date', NOW_TEXT],
    ['message-id', `<Q1.${NOW}@mx.impulse.test>`],
    ['auto-submitted', 'auto-replied'],
    ['mime-version', '1.0'],
    ['content-type', r.header.get('content-type')],
  ]);
  assert.deepEqual(r.parts.map((p) => [...p.fields]), [
    [['content-type', 'text/plain; charset=us-ascii']], [['content-type', 'message/delivery-status']], [['content-type', 'text/rfc822-headers']],
  ]);
  assert.deepEqual(r.perMessage, [
    ['reporting-mta', 'dns; mx.impulse.test'], ['arrival-date', 'Mon, 01 Jan 2024 03:04:05 +0000'], ['x-impulse-queue-id', 'Q1'],
  ]);
  assert.deepEqual([...r.perRecipient[0]!], [
    ['final-recipient', 'rfc822; bob@rcpt.test'], ['action', 'failed'], ['status', '5.1.1'], ['remote-mta', 'dns; mx.rcpt.test'],
    ['diagnostic-code', 'smtp; 550 5.1.1 no such user'], ['last-attempt-date', NOW_TEXT],
  ]);
  assert.ok(r.human.includes('<bob@rcpt.test>: 550 5.1.1 no such user'), r.human.join('\n'));
  assert.ok(r.human.includes('The headers of your message are attached.'));
  assert.ok(r.parts[2]!.content.equals(ORIGINAL_HEADERS), 'the header section, byte for byte');
  assert.deepEqual([r.dsn.eightBit, r.dsn.utf8], [false, false]);
});

test('delayed alone: a warning that says when delivery is given up; headers only, even with RET=FULL', () => {
  const until = NOW + 4 * DAY;
  const r = report({ ret: 'FULL', recipients: [rcpt('delayed', 'carol@rcpt.test', { willRetryUntil: until })] });
  assert.equal(r.header.get('subject'), 'Delayed Mail (still being retried)');
  const fieldsOf = r.perRecipient[0]!;
  assert.deepEqual([fieldsOf.get('action'), fieldsOf.get('status'), fieldsOf.get('will-retry-until')], ['delayed', '4.4.1', 'Sat, 06 Jan 2024 03:04:05 +0000']);
  assert.equal(fieldsOf.has('remote-mta'), false, 'no remote MTA given, none reported');
  assert.ok(r.human.some((l) => l.includes('until Sat, 06 Jan 2024 03:04:05 +0000') && l.includes('give up')), r.human.join('\n'));
  assert.ok(r.human.includes('<carol@rcpt.test>: 451 4.4.1 try later'));
  assert.ok(!r.human.join('\n').includes('could not be delivered'));
  // RFC 3461 §4.3: RET governs only DSNs that report a failure.
  assert.equal(r.parts[2]!.type, 'text/rfc822-headers');
});

test('relayed alone: a delivery report that says the next system does not report delivery', () => {
  const r = report({ recipients: [rcpt('relayed', 'dan@rcpt.test', { willRetryUntil: NOW + DAY, reply: { code: 250, enhanced: 'x', text: 'ok' } })] });
  assert.equal(r.header.get('subject'), 'Successful Mail Delivery Report');
  assert.match(r.human.join(' '), /relayed to the recipients below, to a system that does not report delivery/);
  const fieldsOf = r.perRecipient[0]!;
  assert.equal(fieldsOf.get('action'), 'relayed');
  assert.equal(fieldsOf.get('status'), '2.0.0', 'an unusable enhanced code falls back to the class of the action');
  assert.equal(fieldsOf.has('will-retry-until'), false, 'RFC 3464 §2.3.9: only for delayed recipients');
});

test('mixed actions: the subject names the worst, each recipient keeps its own line and field group', () => {
  const until = NOW + 2 * DAY;
  const recipients = [rcpt('relayed', 'r@rcpt.test'), rcpt('delayed', 'd@rcpt.test', { willRetryUntil: until }), rcpt('failed', 'f@rcpt.test')];
  const r = report({ recipients });
  assert.equal(r.header.get('subject'), 'Undelivered Mail Returned to Sender');
  assert.deepEqual(r.perRecipient.map((g) => [g.get('final-recipient'), g.get('action'), g.has('will-retry-until')]), [
    ['rfc822; r@rcpt.test', 'relayed', false], ['rfc822; d@rcpt.test', 'delayed', true], ['rfc822; f@rcpt.test', 'failed', false],
  ]);
  const text = r.human.join('\n');
  const at = ['could not be delivered', '<f@rcpt.test>: 550', 'not been delivered yet', '<d@rcpt.test>: 451', 'relayed to', '<r@rcpt.test>: 250'].map((s) => text.indexOf(s));
  assert.ok(at.every((n, i) => n >= 0 && (i === 0 || n > at[i - 1]!)), `worst first, each under its own explanation:\n${text}`);
  assert.equal(report({ recipients: recipients.slice(0, 2) }).header.get('subject'), 'Delayed Mail (still being retried)');
});

test('ENVID and ORCPT are written decoded (RFC 3461 §6.3 (a), §4.2), in their ABNF places, and only when given', () => {
  const r = report({ envid: 'QQ+31 4=15', recipients: [rcpt('failed', 'bob@rcpt.test', { originalRecipient: 'rfc822;Bob+tag=1 x@Rcpt.test' })] });
  assert.deepEqual(r.perMessage[0], ['original-envelope-id', 'QQ+31 4=15']);
  assert.deepEqual([...r.perRecipient[0]!][0], ['original-recipient', 'rfc822; Bob+tag=1 x@Rcpt.test']);
  assert.doesNotMatch(r.statusText, /\+2B|\+3D|\+20/, 'no xtext in the report');
  const untyped = report({ recipients: [rcpt('failed', 'b@rcpt.test', { originalRecipient: 'b@rcpt.test' })] });
  assert.equal(untyped.perRecipient[0]!.get('original-recipient'), 'unknown; b@rcpt.test', 'RFC 3464 §2.3.1: a type that cannot be told is "unknown"');
  const none = report({ envid: undefined });
  assert.ok(!none.perMessage.some(([name]) => name === 'original-envelope-id'));
  assert.equal(none.perRecipient[0]!.has('original-recipient'), false);
});

test('RET=FULL returns the message byte for byte up to maxReturnSize; a larger one its headers, and the human part says so', () => {
  const full = report({ ret: 'FULL', maxReturnSize: ORIGINAL.length });
  assert.deepEqual([...full.parts[2]!.fields], [['content-type', 'message/rfc822']]);
  assert.ok(full.parts[2]!.content.equals(ORIGINAL));
  assert.ok(full.human.includes('A copy of your message is attached.'));
  const over = report({ ret: 'FULL', maxReturnSize: ORIGINAL.length - 1 });
  assert.equal(over.parts[2]!.type, 'text/rfc822-headers');
  assert.ok(over.parts[2]!.content.equals(ORIGINAL_HEADERS));
  assert.ok(over.human.includes(`Your message is larger than ${ORIGINAL.length - 1} bytes, so only its headers are attached.`));
  const hdrs = report({ ret: 'HDRS' });
  assert.ok(hdrs.parts[2]!.content.equals(ORIGINAL_HEADERS));
  assert.equal(report({ originalMessage: undefined }).parts.length, 2, 'nothing to return, no third part');
});

test('an 8-bit original returned FULL is byte-identical and marked 8bit, and so is the report', () => {
  const original = Buffer.concat([Buffer.from('Subject: caf\xe9\r\n\r\n', 'latin1'), Buffer.from([0xff, 0xfe, 0x80, 0xc3, 0x28, 0x0d, 0x0a])]);
  const r = report({ ret: 'FULL', originalMessage: original });
  assert.ok(r.parts[2]!.content.equals(original), 'no byte decoded or re-encoded');
  assert.equal(r.parts[2]!.fields.get('content-transfer-encoding'), '8bit');
  assert.equal(r.header.get('content-transfer-encoding'), '8bit', 'RFC 2045 §6.4: the multipart is 8bit too');
  assert.deepEqual(r.parts.slice(0, 2).map((p) => p.fields.has('content-transfer-encoding')), [false, false]);
  assert.deepEqual([r.dsn.eightBit, r.dsn.utf8], [true, false]);
  assert.equal(report({ ret: 'FULL' }).parts[2]!.fields.has('content-transfer-encoding'), false, 'a 7-bit original is not labelled');
});

test('a SMTPUTF8 original: the message/global* types, UTF-8 addresses and text written natively', () => {
  const original = Buffer.from('From: élise@sender.test\r\nSubject: café\r\n\r\nbonjour\r\n');
  const recipients = [rcpt('failed', '用户@例子.广告', {
    originalRecipient: 'utf-8;\\x{7528}\\x{6237}@例子.广告', reply: { code: 550, enhanced: '5.1.1', text: 'boîte inconnue' },
  })];
  const r = report({ utf8: true, ret: 'FULL', originalSender: 'élise@sender.test', originalMessage: original, recipients });
  assert.deepEqual(r.parts.map((p) => [p.type, p.fields.get('content-transfer-encoding')]), [
    ['text/plain; charset=utf-8', '8bit'], ['message/global-delivery-status', '8bit'], ['message/global', '8bit'],
  ]);
  assert.ok(r.parts[2]!.content.equals(original));
  const group = r.perRecipient[0]!;
  assert.equal(group.get('final-recipient'), 'utf-8; 用户@例子.广告');
  assert.equal(group.get('original-recipient'), 'utf-8; 用户@例子.广告', 'RFC 6533 §3: utf-8-addr-xtext up-converted');
  assert.equal(group.get('diagnostic-code'), 'smtp; 550 5.1.1 boîte inconnue');
  assert.ok(r.human.includes('<用户@例子.广告>: 550 5.1.1 boîte inconnue'));
  assert.equal(r.header.get('to'), '<élise@sender.test>');
  assert.deepEqual([r.dsn.eightBit, r.dsn.utf8], [true, true]);
  const hdrs = report({ utf8: true, originalMessage: original, recipients });
  assert.deepEqual([...hdrs.parts[2]!.fields], [['content-type', 'message/global-headers'], ['content-transfer-encoding', '8bit']], 'no charset (RFC 6533 §6.3)');
  assert.ok(hdrs.parts[2]!.content.equals(original.subarray(0, original.indexOf('\r\n\r\n') + 2)));
  assert.equal(report({ utf8: true, originalMessage: undefined }).dsn.utf8, true, 'a message/global-delivery-status part alone makes it UTF-8');
});

test('an ASCII DSN writes a UTF-8 address as utf-8-addr-xtext and stays 7-bit (RFC 6533 §3)', () => {
  const r = report({ recipients: [rcpt('failed', 'ü+x@例.test')] });
  assert.equal(r.perRecipient[0]!.get('final-recipient'), 'utf-8; \\x{FC}\\x{2B}x@\\x{4F8B}.test');
  assert.ok(r.human.includes('<\\x{FC}\\x{2B}x@\\x{4F8B}.test>: 550 5.1.1 no such user'));
  assert.deepEqual([r.dsn.eightBit, r.dsn.utf8], [false, false]);
  const sender = report({ originalSender: 'élise@sender.test' });
  assert.equal(sender.header.get('to'), '<élise@sender.test>');
  assert.deepEqual([sender.dsn.eightBit, sender.dsn.utf8], [true, true], 'a UTF-8 address in the header needs SMTPUTF8');
});

test('a reply text with CR, LF or controls cannot break the report: one line, no injected field or part', () => {
  const text = `bad\r\nFinal-Recipient: rfc822; evil@x.test\r\n\r\n--=_impulse_Q1_${NOW}--\r\n\x07bell\u00e9`;
  const r = report({ recipients: [rcpt('failed', 'bob@rcpt.test', { reply: { code: 550, enhanced: '5.1.1', text } })] });
  assert.equal(r.parts.length, 3);
  const flat = `550 5.1.1 bad Final-Recipient: rfc822; evil@x.test --=_impulse_Q1_${NOW}-- ?bell?`;
  assert.equal(r.perRecipient[0]!.get('diagnostic-code'), `smtp; ${flat}`);
  assert.equal(r.perRecipient[0]!.get('final-recipient'), 'rfc822; bob@rcpt.test');
  assert.ok(r.human.includes(`<bob@rcpt.test>: ${flat}`));
  const utf8 = report({ utf8: true, recipients: [rcpt('failed', 'bob@rcpt.test', { reply: { code: 550, enhanced: '5.1.1', text } })] });
  assert.equal(utf8.perRecipient[0]!.get('diagnostic-code'), `smtp; ${flat.replace(/\?$/, 'é')}`, 'UTF-8 stays, controls do not');
});

test('a diagnostic too long for a line is cut at a character boundary, marked, still one line', () => {
  for (const [utf8, unit] of [[false, 'x'], [true, 'é'], [true, '𝄞']] as const) {
    const r = report({ utf8, recipients: [rcpt('failed', 'bob@rcpt.test', { reply: { code: 550, enhanced: '5.1.1', text: unit.repeat(3000) } })] });
    const line = `Diagnostic-Code: ${r.perRecipient[0]!.get('diagnostic-code')}`;
    assert.ok(Buffer.byteLength(line) <= 998 && Buffer.byteLength(line) > 990, `${Buffer.byteLength(line)} octets`);
    assert.match(line, new RegExp(`^Diagnostic-Code: smtp; 550 5\\.1\\.1 (?:${unit})+\\.\\.\\.$`, 'u'));
  }
});

test('the boundary never occurs in the returned message', () => {
  const boundary = /boundary="([^"]+)"/.exec(buildDsn(input({ ret: 'FULL' })).body.toString())![1]!;
  const original = Buffer.concat([ORIGINAL, Buffer.from(`--${boundary}\r\nContent-Type: text/plain\r\n\r\nx\r\n--${boundary}--\r\n`)]);
  const r = report({ ret: 'FULL', originalMessage: original });
  assert.equal(r.parts.length, 3);
  assert.ok(r.parts[2]!.content.equals(original));
});

test('the builder is pure: the same input gives the same bytes; a DSN without recipients is refused', () => {
  assert.ok(buildDsn(input({ ret: 'FULL', envid: 'E1' })).body.equals(buildDsn(input({ ret: 'FULL', envid: 'E1' })).body));
  assert.throws(() => buildDsn(input({ recipients: [] })), RangeError);
});
