// SMTP replies: parsing remote lines, formatting and classifying ours.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatReply, isTemporary, parseReply } from '../../src/core/reply.js';

test('remote reply lines parse into code, enhanced status and text', () => {
  const table: Array<[string, ReturnType<typeof parseReply>]> = [
    ['250 2.0.0 Ok: queued as X', { code: 250, enhanced: '2.0.0', text: 'Ok: queued as X' }],
    ['550 5.1.1 <a@b>: no such user', { code: 550, enhanced: '5.1.1', text: '<a@b>: no such user' }],
    ['451 try later', { code: 451, enhanced: '4.0.0', text: 'try later' }],
    ['554-5.7.1 first\r\n554 5.7.1 second', { code: 554, enhanced: '5.7.1', text: 'first 5.7.1 second' }],
    ['421', { code: 421, enhanced: '4.0.0', text: '' }],
    ['hello', undefined],
    ['999 nope', undefined],
  ];
  for (const [line, expected] of table) assert.deepEqual(parseReply(line), expected, line);
});

test('replies format as one SMTP line and classify by their code', () => {
  assert.equal(formatReply({ code: 451, enhanced: '4.4.1', text: 'x' }), '451 4.4.1 x');
  assert.equal(isTemporary({ code: 451, enhanced: '4.4.1', text: '' }), true);
  assert.equal(isTemporary({ code: 550, enhanced: '5.1.1', text: '' }), false);
});
