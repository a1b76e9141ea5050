// Retry timing and how an attempt's recipients settle into delivered, failed and deferred.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nextAttempt, retryDelay } from '../../src/outcome/retry.js';
import { settle } from '../../src/outcome/settle.js';

const MIN = 60_000;
const policy = { retryInterval: 20 * MIN, maxRetryInterval: 12 * 60 * MIN, messageExpiration: 24 * 60 * MIN };

test('retry interval doubles per failed attempt up to max_retry_interval', () => {
  const table: Array<[number, number]> = [[1, 20], [2, 40], [3, 80], [4, 160], [5, 320], [6, 640], [7, 720], [30, 720], [2000, 720]];
  for (const [attempts, minutes] of table) assert.equal(retryDelay(attempts, policy), minutes * MIN, `after ${attempts} failures`);
});

test('the next attempt never lies past message_expiration, and an expired message is not retried', () => {
  const received = 1_000_000;
  assert.deepEqual(nextAttempt(received + MIN, received, 1, policy), { kind: 'retry', at: received + 21 * MIN });
  const nearEnd = received + 24 * 60 * MIN - 5 * MIN;
  assert.deepEqual(nextAttempt(nearEnd, received, 9, policy), { kind: 'retry', at: received + 24 * 60 * MIN });
  assert.deepEqual(nextAttempt(received + 24 * 60 * MIN, received, 10, policy), { kind: 'expired' });
});

test('settle splits recipients into delivered, failed and deferred', () => {
  const r = (recipient: string, code: number, enhanced: string) => ({ recipient, reply: { code, enhanced, text: 't' } });
  const s = settle([r('a@x', 250, '2.0.0'), r('b@x', 550, '5.1.1'), r('c@x', 451, '4.3.0')], 5000, 0, 1, policy);
  assert.deepEqual(s.delivered.map((x) => x.recipient), ['a@x']);
  assert.deepEqual(s.failed.map((x) => x.recipient), ['b@x']);
  assert.deepEqual(s.deferred.map((x) => x.recipient), ['c@x']);
  assert.equal(s.retryAt, 5000 + 20 * MIN);
  assert.equal(s.expired, false);
});

test('settle fails deferred recipients of an expired message with 554 5.4.7 naming the last reply', () => {
  const s = settle([{ recipient: 'c@x', reply: { code: 451, enhanced: '4.3.0', text: 'busy' } }], 24 * 60 * MIN, 0, 12, policy);
  assert.equal(s.deferred.length, 0);
  assert.equal(s.expired, true);
  assert.equal(s.failed[0]!.reply.code, 554);
  assert.equal(s.failed[0]!.reply.enhanced, '5.4.7');
  assert.match(s.failed[0]!.reply.text, /exceeded max time without delivery.*451 4\.3\.0 busy/);
});
