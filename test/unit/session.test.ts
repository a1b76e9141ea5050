// runTransaction's per-recipient replies for each way a transaction ends, on a client scripted at
// the connector seam with errors shaped as nodemailer's SMTPConnection reports them. The same
// faults on real sockets are in test/e2e/remote-faults.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SmtpClient } from '../../src/delivery/connector.js';
import { runTransaction } from '../../src/delivery/session.js';

type SendResult = Awaited<ReturnType<SmtpClient['send']>>;

function clientSending(send: (envelope: unknown) => Promise<SendResult>, extensions: string[] = []): SmtpClient & { closes: number } {
  const client = {
    closes: 0, secure: false, tls: { verified: 'no' as const }, extensions, closed: false,
    onClose: () => {}, offClose: () => {}, judge: () => undefined, send, reset: async () => {}, quit: () => {},
    close: () => {
      client.closes++;
    },
  };
  return client;
}

const rejects = (fields: Record<string, unknown>) => () => Promise.reject(Object.assign(new Error(String(fields.message ?? 'failed')), fields));
const rcptError = (recipient: string, response: string) =>
  Object.assign(new Error('Recipient command failed'), { code: 'EENVELOPE', command: 'RCPT TO', response, recipient });
const env = (recipients: string[]) => ({ sender: 's@x.test', recipients, body: Buffer.from('Subject: t\r\n\r\nhi\r\n'), params: {} });
const WHERE = 'mx.x.test [192.0.2.1]';

async function replies(client: SmtpClient, recipients: string[], dataTimeout = 1000): Promise<Record<string, string>> {
  const got = await runTransaction(client, env(recipients), dataTimeout, WHERE);
  assert.deepEqual(got.map((r) => r.recipient), recipients, 'one reply per recipient, in order');
  return Object.fromEntries(got.map((r) => [r.recipient, `${r.reply.code} ${r.reply.enhanced} ${r.reply.text}`]));
}

test('accepted with some recipients refused at RCPT: each refused one gets its own reply, the rest the final 250', async () => {
  const client = clientSending(async () => ({
    response: '250 2.0.0 Ok: queued as X',
    rejectedErrors: [rcptError('b@x.test', '550 5.1.1 No such user'), rcptError('c@x.test', '451 4.2.0 Busy')],
  }) as unknown as SendResult);
  assert.deepEqual(await replies(client, ['a@x.test', 'b@x.test', 'c@x.test']), {
    'a@x.test': '250 2.0.0 Ok: queued as X',
    'b@x.test': '550 5.1.1 No such user',
    'c@x.test': '451 4.2.0 Busy',
  });
});

test('552 to RCPT TO is RFC 821\'s "too many recipients": taken as 452, so the recipient is retried, not bounced', async () => {
  const client = clientSending(async () => ({
    response: '250 2.0.0 Ok', rejectedErrors: [rcptError('b@x.test', '552 5.5.3 Too many recipients'), rcptError('c@x.test', '552 Mailbox full')],
  }) as unknown as SendResult);
  const got = await replies(client, ['a@x.test', 'b@x.test', 'c@x.test']);
  assert.match(got['b@x.test']!, /^452 4\.5\.3 Too many recipients \(552 to RCPT TO taken as 452, RFC 5321 4\.5\.3\.1\.10\)$/);
  assert.match(got['c@x.test']!, /^452 4\.0\.0 Mailbox full /);
});

test('every recipient refused at RCPT: each keeps its own reply, 552 again taken as 452', async () => {
  const errors = [rcptError('a@x.test', '550 5.1.1 No such user'), rcptError('b@x.test', '552 5.5.3 Too many recipients')];
  const client = clientSending(rejects({ code: 'EENVELOPE', command: 'RCPT TO', response: '550 5.1.1 No such user', rejectedErrors: errors }));
  const got = await replies(client, ['a@x.test', 'b@x.test']);
  assert.match(got['a@x.test']!, /^550 5\.1\.1 /);
  assert.match(got['b@x.test']!, /^452 4\.5\.3 /);
});

test('552 at the end of DATA stays permanent: the message is too big, for every recipient', async () => {
  const client = clientSending(rejects({ code: 'EMESSAGE', command: 'DATA', response: '552 5.3.4 Message too big' }));
  assert.deepEqual(await replies(client, ['a@x.test', 'b@x.test']), { 'a@x.test': '552 5.3.4 Message too big', 'b@x.test': '552 5.3.4 Message too big' });
});

test('MAIL FROM refused: its reply for every recipient', async () => {
  const client = clientSending(rejects({ code: 'EENVELOPE', command: 'MAIL FROM', response: '421 4.7.0 Try again later' }));
  assert.deepEqual(Object.values(await replies(client, ['a@x.test'])), ['421 4.7.0 Try again later']);
});

test('a connection lost or silent mid-transaction: 451 4.4.2, temporary, naming the cause', async () => {
  const lost = clientSending(rejects({ message: 'Connection closed unexpectedly', code: 'ECONNECTION', command: 'CONN' }));
  assert.match((await replies(lost, ['a@x.test']))['a@x.test']!, /^451 4\.4\.2 \[internal\] connection lost during the transaction \(ECONNECTION\): Connection closed unexpectedly$/);
  const reset = clientSending(rejects({ message: 'write EPIPE', code: 'ESOCKET', originalCode: 'EPIPE', command: 'CONN' }));
  assert.match((await replies(reset, ['a@x.test']))['a@x.test']!, /^451 4\.4\.2 \[internal\] connection lost during the transaction \(EPIPE\)/);
  const silent = clientSending(rejects({ message: 'Timeout', code: 'ETIMEDOUT', timeoutType: 'SOCKET_TIMEOUT', command: 'CONN' }));
  assert.match((await replies(silent, ['a@x.test']))['a@x.test']!, /^451 4\.4\.2 \[internal\] timed out during the transaction: no data from the server within data_timeout/);
});

test('a transaction still running after data_timeout per stage is cut off: 451 4.4.2 for all, and the session closed', async () => {
  const stuck = clientSending(() => new Promise<SendResult>(() => {}));
  const started = performance.now();
  const got = await replies(stuck, ['a@x.test', 'b@x.test'], 50);
  const took = performance.now() - started;
  // Two recipients: MAIL, two RCPT, DATA, content, final reply: six stages of 50 ms.
  assert.ok(took >= 295, `cut off after ${took} ms, not before 300 ms`);
  for (const r of Object.values(got)) assert.match(r, /^451 4\.4\.2 \[internal\] timed out: transaction not finished within 300 ms \(data_timeout for each of 6 stages\)$/);
  assert.equal(stuck.closes, 1, 'a session stuck mid-transaction cannot be reused');
});

test('a slow transaction that finishes within its deadline is not cut off', async () => {
  const slow = clientSending(() => new Promise<SendResult>((resolve) => {
    setTimeout(() => resolve({ response: '250 2.0.0 Ok' } as unknown as SendResult), 150);
  }));
  // One recipient, 100 ms per stage: a 500 ms deadline for a transaction taking 150 ms.
  assert.deepEqual(await replies(slow, ['a@x.test'], 100), { 'a@x.test': '250 2.0.0 Ok' });
  assert.equal(slow.closes, 0);
});

test('a UTF-8 address to a hop without SMTPUTF8, or 8-bit content to one without 8BITMIME: refused for every recipient, nothing sent', async () => {
  let sent = 0;
  const send = async () => {
    sent++;
    return { response: '250 2.0.0 Ok' } as unknown as SendResult;
  };
  const utf8 = { sender: 's@x.test', recipients: ['a@x.test', 'jürgen@x.test'], body: Buffer.from('hi\r\n'), params: { smtputf8: true as const } };
  const got = await runTransaction(clientSending(send, ['8BITMIME', 'DSN']), utf8, 1000, WHERE);
  assert.deepEqual(got.map((r) => `${r.recipient} ${r.reply.code} ${r.reply.enhanced}`), ['a@x.test 553 5.6.7', 'jürgen@x.test 553 5.6.7']);
  assert.match(got[0]!.reply.text, /^\[internal\] mx\.x\.test \[192\.0\.2\.1\] does not offer SMTPUTF8/);
  const eight = { sender: 's@x.test', recipients: ['a@x.test'], body: Buffer.from('caf\xe9\r\n', 'latin1'), params: { eightBit: true as const } };
  const [r] = await runTransaction(clientSending(send, ['SMTPUTF8']), eight, 1000, WHERE);
  assert.equal(`${r!.reply.code} ${r!.reply.enhanced}`, '554 5.6.3');
  assert.equal(sent, 0, 'nothing went to either hop');
  const ascii = { ...eight, body: Buffer.from('plain\r\n'), params: { eightBit: true as const } };
  const [ok] = await runTransaction(clientSending(send, []), ascii, 1000, WHERE);
  assert.equal(ok!.reply.code, 250, 'declared 8BITMIME with only 7-bit bytes goes to a 7-bit hop');
});

test('the envelope passed on carries SIZE, BODY=8BITMIME, SMTPUTF8 and each recipient\'s DSN request; the client drops what the hop does not offer', async () => {
  let got: Record<string, unknown> | undefined;
  const send = async (envelope: unknown) => {
    got = envelope as Record<string, unknown>;
    return { response: '250 2.0.0 Ok' } as unknown as SendResult;
  };
  const params = {
    eightBit: true as const, smtputf8: true as const, ret: 'HDRS' as const, envid: 'E 1',
    dsn: { 'b@x.test': { notify: ['SUCCESS' as const, 'FAILURE' as const], orcpt: 'rfc822;B@x.test' } },
  };
  await runTransaction(clientSending(send, ['8BITMIME', 'SMTPUTF8', 'DSN']), { sender: 's@x.test', recipients: ['a@x.test', 'b@x.test'], body: Buffer.from('hi\r\n'), params }, 1000, WHERE);
  assert.deepEqual(got, {
    from: 's@x.test', to: ['a@x.test', 'b@x.test'], size: 4, use8BitMime: true, smtputf8: true,
    dsn: { ret: 'HDRS', envid: 'E 1' }, recipientDsn: params.dsn,
  });
});

test('a message larger than the SIZE the hop announced is not sent: failed for good with 552 5.3.4, as the hop would at the end of DATA', async () => {
  const client = clientSending(rejects({ code: 'EMESSAGE', command: 'MAIL FROM', message: 'Message size larger than allowed 1000' }), ['SIZE']);
  const got = await replies(client, ['a@x.test']);
  assert.equal(got['a@x.test'], '552 5.3.4 [internal] mx.x.test [192.0.2.1] takes messages of up to 1000 bytes (SIZE); this one has 18');
});
