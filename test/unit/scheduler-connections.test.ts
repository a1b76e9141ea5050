// The scheduler on a fake clock, connections side: the goal and each cap, throttles, Momentum's
// actions on failed connections, mx_failures_to_delay and its clearing, lookups in flight.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Harness, type ServerScript, ownMx, replyOf } from '../helpers/scheduler-harness.js';

function harness(domains: Record<string, string>, config: Record<string, unknown> = {}, servers: Record<string, ServerScript> = {}): Harness {
  return new Harness({ ...ownMx(domains), config, servers });
}

const BINDINGS = { bindings: [{ name: 'b1', bind_address: '192.0.2.201' }, { name: 'b2', bind_address: '192.0.2.202' }] };

test('the connection goal follows the queue: 10 held open 4 connections (normal), 8 (high), never more than the limit', async () => {
  for (const [aggressiveness, limit, n, want] of [['normal', 32, 10, 4], ['high', 32, 10, 8], ['high', 3, 10, 1], ['high', 3, 100, 3]] as const) {
    const h = harness({ 'a.test': '192.0.2.1' }, { connection_allocation_aggressiveness: aggressiveness, max_outbound_connections: limit },
      { '192.0.2.1': { sendMs: 100 } });
    h.submit('a.test', n);
    await h.clock.advance(5000);
    assert.equal(h.server('192.0.2.1').sessions.length, want, `${n} held, ${aggressiveness}, limit ${limit}`);
    assert.equal(h.delivered('a.test').length, n);
    await h.finish();
  }
});

test('max_outbound_connections holds per binding × domain: two bindings, 3 each from their own source address', async () => {
  const h = harness({ 'a.test': '192.0.2.1' }, { ...BINDINGS, max_outbound_connections: 3, connection_allocation_aggressiveness: 'high' },
    { '192.0.2.1': { sendMs: 50 } });
  h.submit('a.test', 100, { binding: 'b1' });
  h.submit('a.test', 100, { binding: 'b2' });
  await h.clock.advance(5000);
  const s = h.server('192.0.2.1');
  assert.deepEqual([s.peakBySource.get('192.0.2.201'), s.peakBySource.get('192.0.2.202')], [3, 3]);
  assert.equal(s.peak, 6);
  assert.equal(h.delivered('a.test').length, 200);
  await h.finish();
});

test('scope_max_outbound_connections set for a domain holds across its bindings', async () => {
  const h = harness({ 'a.test': '192.0.2.1' }, { ...BINDINGS, domains: { 'a.test': { scope_max_outbound_connections: 2 } } },
    { '192.0.2.1': { sendMs: 50 } });
  h.submit('a.test', 60, { binding: 'b1' });
  h.submit('a.test', 60, { binding: 'b2' });
  await h.clock.advance(100);
  const phases = h.scheduler.state('a.test').domains[0]!.bindings.map((b) => b.phase);
  assert.ok(phases.includes('waiting'), `a binding waits for room under the cap: ${phases}`);
  await h.clock.advance(20_000);
  assert.equal(h.server('192.0.2.1').peak, 2);
  assert.equal(h.delivered('a.test').length, 120, 'both bindings got their turn');
  await h.finish();
});

test('server_max_outbound_connections holds over every domain, and a closing connection lets a waiting queue in', async () => {
  const h = harness({ 'a.test': '192.0.2.1', 'b.test': '192.0.2.2', 'c.test': '192.0.2.3' }, { server_max_outbound_connections: 3, max_deliveries_per_connection: 2 },
    { '192.0.2.1': { sendMs: 20 }, '192.0.2.2': { sendMs: 20 }, '192.0.2.3': { sendMs: 20 } });
  for (const d of ['a.test', 'b.test', 'c.test']) h.submit(d, 40);
  await h.clock.advance(5000);
  assert.equal(h.peak, 3);
  assert.equal(h.delivered().length, 120);
  await h.finish();
});

test('a host limit holds across domains and bindings; a queue whose MX is full waits for a place, not charged', async () => {
  const shared = { exchange: 'mx.shared.test', priority: 10 };
  const h = new Harness({
    mx: { 'a.test': [shared], 'b.test': [shared] }, a: { 'mx.shared.test': ['192.0.2.5'] },
    config: { ...BINDINGS, migrate_connections_between_sibling_domains: false, hosts: { 'mx.shared.test': { max_outbound_connections: 2 } } },
    servers: { '192.0.2.5': { sendMs: 50 } },
  });
  h.submit('a.test', 30, { binding: 'b1' });
  h.submit('b.test', 30, { binding: 'b2' });
  await h.clock.advance(10);
  const waiting = [...h.scheduler.state().domains.flatMap((d) => d.bindings.map((b) => `${d.domain} ${b.phase} ${b.phase_detail ?? ''}`))];
  assert.ok(waiting.some((w) => w.includes('waiting on host_limit')), waiting.join('; '));
  await h.clock.advance(20_000);
  assert.equal(h.server('192.0.2.5').peak, 2);
  assert.equal(h.delivered().length, 60);
  assert.equal(h.attempted().length, 60, 'every message was attempted once: a full host charges nothing');
  await h.finish();
});

test('outbound_throttle_connections "2/1": no more than two connections opened in any second', async () => {
  const h = harness({ 'a.test': '192.0.2.1' }, { outbound_throttle_connections: '2/1', max_deliveries_per_connection: 1 });
  h.submit('a.test', 10);
  await h.clock.advance(10_000);
  const opened = h.server('192.0.2.1').sessions.map((s) => s.at);
  assert.equal(opened.length, 10);
  for (const t of opened) assert.ok(opened.filter((u) => u >= t && u < t + 1000).length <= 2, `at most 2 within a second of ${t}`);
  assert.ok(opened.at(-1)! - opened[0]! >= 4000, 'ten connections at two a second take four seconds after the first two');
  await h.finish();
});

test('outbound_throttle_messages "5/1": no more than five messages started in any second', async () => {
  const h = harness({ 'a.test': '192.0.2.1' }, { outbound_throttle_messages: '5/1' });
  h.submit('a.test', 20);
  await h.clock.advance(10_000);
  const sent = h.server('192.0.2.1').transactions.map((t) => t.at);
  assert.equal(sent.length, 20);
  for (const t of sent) assert.ok(sent.filter((u) => u >= t && u < t + 1000).length <= 5, `at most 5 within a second of ${t}`);
  assert.equal(sent.at(-1)! - sent[0]!, 3000);
  await h.finish();
});

test('a message throttle slower than idle_timeout: the connection gives its message back, closes, and the queue opens one when the throttle allows', async () => {
  const h = harness({ 'a.test': '192.0.2.1' }, { outbound_throttle_messages: '1/10', idle_timeout: '5s' });
  h.submit('a.test', 3);
  await h.clock.advance(30_000);
  const s = h.server('192.0.2.1');
  assert.deepEqual(s.transactions.map((t) => t.at - s.transactions[0]!.at), [0, 10_000, 20_000]);
  assert.ok(s.sessions.length >= 2, `a connection closed rather than idle ten seconds: ${s.sessions.length} sessions`);
  assert.equal(h.attempted().length, 3, 'given back, not charged');
  await h.finish();
});

test('CONN_ACTION_REQUEUE1: each refused connection charges the head of the queue, one message, and the queue waits host_failure_retry', async () => {
  // normal: one connection for three messages, so each failure is one attempt.
  const h = harness({ 'a.test': '192.0.2.1' }, { host_failure_retry: '10s', mx_failures_to_delay: 0, connection_allocation_aggressiveness: 'normal' }, { '192.0.2.1': { refuse: true } });
  const [q1, q2, q3] = h.submit('a.test', 3);
  await h.clock.advance(5000);
  assert.deepEqual(h.attempted().map((r) => [r.qid, r.outcome.kind === 'attempted' && r.outcome.attempt.action, replyOf(r)]), [[q1, 'requeue1', '421 4.4.0']]);
  const view = h.scheduler.state('a.test').domains[0]!;
  assert.equal(view.bindings[0]!.phase, 'paced');
  assert.equal(view.bindings[0]!.ready, 2, 'the others stay held');
  const [q4] = h.submit('a.test', 1);
  await h.clock.advance(1000);
  assert.equal(h.attempted().length, 1, 'mail arriving while the queue is paced is not charged at once');
  await h.clock.advance(30_000);
  const charged = h.attempted('requeue1');
  assert.deepEqual(charged.map((r) => r.qid), [q1, q2, q3, q4], 'in order, one per failed connection');
  assert.deepEqual(charged.map((r) => r.at - charged[0]!.at), [0, 10_000, 20_000, 30_000]);
  await h.finish();
});

test('CONN_ACTION_PURGE_DOMAIN: a failed lookup charges every held message of the domain on every binding; a null MX fails them for good', async () => {
  const h = new Harness({ mx: { 'broken.test': 'ESERVFAIL', 'nomail.test': [{ exchange: '', priority: 0 }] }, a: {}, config: BINDINGS });
  h.submit('broken.test', 1, { binding: 'b1' });
  h.submit('broken.test', 1, { binding: 'b2' });
  h.submit('broken.test', 1);
  h.submit('nomail.test', 2);
  await h.clock.advance(100);
  const purged = h.attempted('purge_domain');
  assert.deepEqual(purged.filter((r) => r.domain === 'broken.test').map((r) => [r.binding, replyOf(r)]).sort(),
    [['b1', '451 4.4.3'], ['b2', '451 4.4.3'], ['default', '451 4.4.3']]);
  assert.deepEqual(purged.filter((r) => r.domain === 'nomail.test').map(replyOf), ['556 5.1.10', '556 5.1.10']);
  await h.finish();
});

test('mx_failures_to_delay: the domain is delayed, its held mail charged, new mail parked, no connection until the delay ends; then a success clears it', async () => {
  const scripts: Record<string, ServerScript> = { '192.0.2.1': { refuse: true }, '192.0.2.2': { refuse: true } };
  const h = new Harness({
    mx: { 'down.test': [{ exchange: 'mx1.down.test', priority: 10 }, { exchange: 'mx2.down.test', priority: 20 }] },
    a: { 'mx1.down.test': ['192.0.2.1'], 'mx2.down.test': ['192.0.2.2'] },
    // normal: one connection for three messages, so the failures come one after the other.
    config: { mx_failures_to_delay: 2, retry_interval: '60s', max_retry_interval: '60s', host_failure_retry: '1s', connection_allocation_aggressiveness: 'normal' }, servers: scripts,
  });
  const [q1, q2, q3] = h.submit('down.test', 3);
  await h.clock.advance(100);
  assert.deepEqual(h.attempted().map((r) => [r.qid, r.outcome.kind === 'attempted' && r.outcome.attempt.action]),
    [[q1, 'requeue1'], [q2, 'delay_domain'], [q3, 'delay_domain']]);
  assert.match(replyOf(h.attempted('delay_domain')[0]!), /^451 4\.4\.1/);
  const delayed = h.events('domain_delayed');
  assert.equal(delayed.length, 1);
  assert.equal(Date.parse(delayed[0]!.until), h.clock.now() - 100 + 60_000);
  const view = h.scheduler.state('down.test').domains[0]!;
  assert.deepEqual([view.phase, view.consecutive_failures], ['delayed', 2]);
  const [q4] = h.submit('down.test', 1);
  await h.clock.advance(100);
  assert.deepEqual(h.parked('domain delayed').map((r) => r.qid), [q4]);
  const failures = () => h.hookCalls.filter((c) => c.hook === 'log_client_connection_failure').length;
  const before = failures();
  await h.clock.advance(59_000);
  assert.equal(failures(), before, 'no connection attempt while delayed');
  scripts['192.0.2.1']!.refuse = false;
  await h.clock.advance(2000);
  assert.equal(h.last(q4)!.outcome.kind, 'attempted');
  assert.deepEqual(h.delivered().map((r) => r.qid), [q4], 'delivered once the delay ended');
  const after = h.scheduler.state('down.test').domains[0]!;
  assert.deepEqual([after.phase === 'delayed', after.consecutive_failures], [false, 0], 'the success cleared the count and the delay');
  await h.finish();
});

test('a lookup in flight is waited for: nothing charged, the queue says so, and it connects when the answer comes', async () => {
  const h = new Harness({ ...ownMx({ 'slow.test': '192.0.2.1' }), lookupMs: 500 });
  h.submit('slow.test', 2);
  await h.clock.advance(100);
  const b = h.scheduler.state('slow.test').domains[0]!.bindings[0]!;
  assert.deepEqual([b.phase, b.phase_detail], ['waiting', 'on mx_lookup']);
  assert.equal(h.attempted().length, 0);
  await h.clock.advance(1000);
  assert.equal(h.delivered('slow.test').length, 2);
  assert.equal(h.scheduler.state('slow.test').domains[0]!.consecutive_failures, 0);
  await h.finish();
});

test('an operator\'s flush ends a queue\'s pause after a failed connection: the next attempt is made at once', async () => {
  // normal: one connection for two messages, so the first failure pauses the queue with one charged.
  const h = harness({ 'a.test': '192.0.2.1' }, { host_failure_retry: '60s', mx_failures_to_delay: 0, connection_allocation_aggressiveness: 'normal' }, { '192.0.2.1': { refuse: true } });
  const [, q2] = h.submit('a.test', 2);
  await h.clock.advance(1000);
  assert.equal(h.attempted().length, 1);
  h.scheduler.flush('a.test');
  await h.clock.advance(10);
  assert.deepEqual(h.attempted().map((r) => r.qid).at(-1), q2, 'charged at once, not a minute later');
  await h.finish();
});
