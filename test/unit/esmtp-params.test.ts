// Intake's ESMTP parameters, table by table: which MAIL and RCPT parameters are refused (555,
// 553 5.6.7), and what of them a job keeps (DSN requests, RET, ENVID, 8-bit content, SMTPUTF8).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SMTPServerAddress, SMTPServerEnvelope } from 'smtp-server';
import { dsnRequests, messageParams, requestsOf } from '../../src/intake/envelope-params.js';
import { mailRefusal, rcptRefusal } from '../../src/intake/esmtp-params.js';

test('MAIL FROM: the offered extensions\' parameters pass, others get 555 5.5.4, a UTF-8 sender needs SMTPUTF8', () => {
  const table: Array<[string, Record<string, string | true> | false, boolean, boolean, string | undefined]> = [
    ['s@x.test', false, false, false, undefined],
    ['s@x.test', { SIZE: '10', BODY: '8BITMIME', RET: 'FULL', ENVID: 'e', SMTPUTF8: true }, true, false, undefined],
    ['s@x.test', { FOO: 'bar' }, false, false, '555 5.5.4 MAIL FROM parameter FOO not recognised'],
    ['s@x.test', { FOO: 'bar', XYZ: true }, false, false, '555 5.5.4 MAIL FROM parameters FOO, XYZ not recognised'],
    ['s@x.test', { AUTH: '<>' }, false, false, '555 5.5.4 MAIL FROM parameter AUTH not recognised'],
    ['s@x.test', { AUTH: '<>' }, false, true, undefined],
    ['s@x.test', { REQUIRETLS: true }, false, false, '555 5.5.4 MAIL FROM parameter REQUIRETLS not recognised'],
    ['jürgen@x.test', false, false, false, '553 5.6.7 Sender address with non-ASCII characters needs SMTPUTF8 (RFC 6531)'],
    ['jürgen@x.test', { SMTPUTF8: true }, true, false, undefined],
    ['', false, false, false, undefined],
  ];
  for (const [address, args, utf8, auth, want] of table) {
    const r = mailRefusal(address, args, utf8, auth);
    assert.equal(r ? `${r.code} ${r.text}` : undefined, want, `${address} ${JSON.stringify(args)}`);
  }
});

test('RCPT TO: NOTIFY and ORCPT pass, others get 555 5.5.4, a UTF-8 recipient needs SMTPUTF8', () => {
  const table: Array<[string, Record<string, string | true> | false, boolean, string | undefined]> = [
    ['r@x.test', { NOTIFY: 'NEVER', ORCPT: 'rfc822;r@x.test' }, false, undefined],
    ['r@x.test', { BODY: '8BITMIME' }, false, '555 5.5.4 RCPT TO parameter BODY not recognised'],
    ['jörg@x.test', false, false, '553 5.6.7 Recipient address with non-ASCII characters needs SMTPUTF8 (RFC 6531)'],
    ['jörg@x.test', false, true, undefined],
  ];
  for (const [address, args, utf8, want] of table) {
    const r = rcptRefusal(address, args, utf8);
    assert.equal(r ? `${r.code} ${r.text}` : undefined, want, `${address} ${JSON.stringify(args)}`);
  }
});

test('a job keeps only the parameters given: RET, ENVID, SMTPUTF8, 8-bit content (declared or found), and the DSN requests of its own recipients', () => {
  const envelope = (e: Partial<SMTPServerEnvelope>) => ({ mailFrom: false, rcptTo: [], bodyType: '7bit', smtpUtf8: false, ...e }) as SMTPServerEnvelope;
  const ascii = Buffer.from('Subject: x\r\n\r\nhi\r\n');
  assert.deepEqual(messageParams(envelope({ dsn: { ret: null, envid: null } }), ascii), {});
  assert.deepEqual(messageParams(envelope({ dsn: { ret: 'FULL', envid: 'e1' }, bodyType: '8bitmime', smtpUtf8: true }), ascii),
    { ret: 'FULL', envid: 'e1', eightBit: true, smtputf8: true });
  assert.deepEqual(messageParams(envelope({}), Buffer.from('caf\xe9', 'latin1')), { eightBit: true }, '8-bit content without BODY=8BITMIME is told to the next hop');
  const rcpt = (address: string, dsn?: SMTPServerAddress['dsn']): SMTPServerAddress => ({ address, args: false, ...(dsn ? { dsn } : {}) });
  const requests = dsnRequests([
    rcpt('a@one.test', { notify: ['NEVER'] }), rcpt('b@one.test'), rcpt('c@two.test', { orcpt: 'rfc822;C@two.test' }), rcpt('d@two.test', {}),
    rcpt('zoë@two.test', { orcpt: 'rfc822;zo\u00c3\u00ab@two.test' }),
  ]);
  assert.deepEqual([...requests.keys()], ['a@one.test', 'c@two.test', 'zoë@two.test']);
  assert.equal(requests.get('zoë@two.test')!.orcpt, 'rfc822;zoë@two.test', 'the UTF-8 bytes its xtext stood for');
  assert.deepEqual(requestsOf(requests, ['a@one.test', 'b@one.test']), { 'a@one.test': { notify: ['NEVER'] } });
  assert.deepEqual(requestsOf(requests, ['c@two.test', 'd@two.test']), { 'c@two.test': { orcpt: 'rfc822;C@two.test' } });
  assert.equal(requestsOf(requests, ['b@one.test']), undefined, 'a job whose recipients made no request carries none');
});
