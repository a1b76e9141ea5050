// The scheduler on a fake clock, as one node of several: a job whose lock another node took is
// abandoned before its transaction.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Harness, ownMx, replyOf } from '../helpers/scheduler-harness.js';

test('a job whose lock another node holds is abandoned before MAIL FROM: nothing reaches the server, nothing is written, the connection goes on', async () => {
  const h = new Harness({ ...ownMx({ 'a.test': '192.0.2.1' }), config: { max_outbound_connections: 1 }, servers: { '192.0.2.1': { sendMs: 10 } } });
  const [first, lost, third] = h.submit('a.test', 3);
  h.locksLost.add(`${lost}-0`);
  await h.clock.advance(1000);
  const s = h.server('192.0.2.1');
  assert.deepEqual(s.transactions.map((t) => t.recipients[0]!.split('@')[0]), ['r1.0', 'r3.0'], 'only the jobs still held were sent');
  assert.equal(s.sessions.length, 1, 'one session carried both');
  assert.deepEqual([first, lost, third].map((q) => replyOf(h.last(q!)!)), ['250 2.0.0', 'abandoned', '250 2.0.0']);
  assert.equal(h.scheduler.state('a.test').domains[0]!.bindings[0]!.in_flight, 0, 'the abandoned job is no longer counted in flight');
  await h.finish();
});
