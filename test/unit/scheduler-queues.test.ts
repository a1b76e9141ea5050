// The scheduler on a fake clock, queues side: parking and promotion, the window, suspension and
// resumption, sites (lending, migration, the sibling wait, TLS policy), connection lifetimes,
// operators' fail and stop, and the sweep.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LEND_QUANTUM } from '../../src/scheduler/site.js';
import { Harness, type ServerScript, ownMx, replyOf } from '../helpers/scheduler-harness.js';

/** Domains that all have `mx.shared.test` (at 192.0.2.5) as their only MX. */
function shared(domains: string[], config: Record<string, unknown> = {}, script: ServerScript = {}): Harness {
  return new Harness({
    mx: Object.fromEntries(domains.map((d) => [d, [{ exchange: 'mx.shared.test', priority: 10 }]])),
    a: { 'mx.shared.test': ['192.0.2.5'] },
    config,
    servers: { '192.0.2.5': script },
  });
}

const BINDINGS = { bindings: [{ name: 'b1', bind_address: '192.0.2.201' }, { name: 'b2', bind_address: '192.0.2.202' }] };
const migrations = (h: Harness) => h.hookCalls.filter((c) => c.hook === 'premigrate_outbound_connection')
  .map((c) => `${(c.args[1] as { domain: string }).domain}>${(c.args[2] as { domain: string }).domain}`);

test('a full ready queue parks new mail, filed; it is promoted as the queue drains, each message delivered once', async () => {
  const h = shared(['a.test'], { max_ready: 10, max_outbound_connections: 2 }, { sendMs: 10 });
  const qids = h.submit('a.test', 50);
  await h.clock.settle();
  assert.equal(h.parked('active queue full').length, 40);
  const q = h.scheduler.state('a.test').domains[0]!.bindings[0]!;
  assert.deepEqual([q.ready, q.in_flight], [9, 1], 'ten held (max_ready), one on the one connection the goal gives ten');
  await h.clock.advance(5000);
  assert.deepEqual(h.delivered().map((r) => r.qid).sort(), qids, 'each delivered once');
  assert.ok(h.promotions >= 5, `promoted in rounds as the queue drained: ${h.promotions}`);
  assert.equal(h.delayed.size, 0, 'nothing left parked');
  await h.clock.advance(3_600_000);
  assert.equal(h.delivered().length, 50, 'no fallback brought anything back twice');
  await h.finish();
});

test('the window: once 90% of max_active_messages is held, a queue holding 10 or more parks, and the reserve serves small queues', async () => {
  const h = new Harness({
    ...ownMx({ 'big.test': '192.0.2.1', 'small.test': '192.0.2.2' }),
    config: { max_active_messages: 20, max_ready: 100, max_outbound_connections: 1 },
    servers: { '192.0.2.1': { sendMs: 1000 } },
  });
  h.submit('big.test', 40);
  await h.clock.advance(10);
  assert.equal(h.scheduler.heldCount, 18, 'the window\'s limit less its reserve');
  assert.equal(h.parked('active queue full').length, 22);
  const small = h.submit('small.test', 2);
  await h.clock.advance(10);
  assert.deepEqual(h.delivered('small.test').map((r) => r.qid), small, 'a small queue gets through while the big one waits');
  await h.clock.advance(60_000);
  assert.equal(h.delivered('big.test').length, 40);
  await h.finish();
});

test('suspend a domain: held mail is parked and filed, new mail parked, nothing charged; resume promotes it at once', async () => {
  const h = shared(['a.test'], { max_outbound_connections: 1 }, { sendMs: 100 });
  const first = h.submit('a.test', 5);
  await h.clock.advance(50);
  h.scheduler.suspendDomain('a.test');
  const later = h.submit('a.test', 2);
  await h.clock.advance(10_000);
  assert.deepEqual(h.delivered().map((r) => r.qid), first.slice(0, 1), 'only the message on the connection went');
  assert.equal(h.parked('suspended').length, 6);
  assert.equal(h.scheduler.state('a.test').domains[0]!.phase, 'suspended');
  h.scheduler.resumeDomain('a.test');
  await h.clock.advance(2000);
  assert.deepEqual(h.delivered().map((r) => r.qid).sort(), [...first, ...later].sort(), 'all delivered within two seconds of the resume');
  assert.equal(h.attempted().length, 7, 'one attempt each: the suspension charged none');
  await h.finish();
});

test('suspend a binding: its mail waits while another binding\'s mail for the same domain goes; resume sends it', async () => {
  const h = shared(['a.test'], BINDINGS, { sendMs: 10 });
  h.scheduler.suspendBinding('b1');
  const b1 = h.submit('a.test', 3, { binding: 'b1' });
  const b2 = h.submit('a.test', 3, { binding: 'b2' });
  await h.clock.advance(5000);
  assert.deepEqual(h.delivered().map((r) => r.qid), b2);
  assert.deepEqual(h.scheduler.state('a.test').domains[0]!.bindings.map((b) => [b.binding, b.suspended]).sort(), [['b1', true], ['b2', false]]);
  h.scheduler.resumeBinding('b1');
  await h.clock.advance(1000);
  assert.deepEqual(h.delivered().map((r) => r.qid).sort(), [...b1, ...b2].sort());
  await h.finish();
});

test('a connection whose domain ran out of mail moves to a sibling on the same MX: one session for both, premigrate fired', async () => {
  const h = shared(['a.test', 'b.test'], { max_outbound_connections: 1 }, { sendMs: 100 });
  h.submit('a.test', 3);
  h.submit('b.test', 3);
  await h.clock.advance(2000);
  assert.equal(h.delivered().length, 6);
  assert.equal(h.server('192.0.2.5').sessions.length, 1);
  assert.deepEqual(migrations(h), ['a.test>b.test']);
  await h.finish();
});

test(`a site lends a busy connection to a sibling with none after ${LEND_QUANTUM} messages, while its own queue still holds mail; premigrate fires for it`, async () => {
  const h = shared(['a.test', 'b.test'], { max_outbound_connections: 1 }, { sendMs: 50 });
  h.submit('a.test', 30);
  await h.clock.advance(10);
  h.submit('b.test', 3);
  await h.clock.advance(5000);
  const order = h.server('192.0.2.5').transactions.map((t) => t.recipients[0]!.split('@')[1]);
  assert.deepEqual(order.slice(0, LEND_QUANTUM + 3), [...Array<string>(LEND_QUANTUM).fill('a.test'), 'b.test', 'b.test', 'b.test']);
  assert.equal(order.length, 33);
  assert.deepEqual(migrations(h), ['a.test>b.test', 'b.test>a.test'], 'lent while a.test held 20 more, and back');
  assert.equal(h.server('192.0.2.5').sessions.length, 1);
  await h.finish();
});

test('a queue with no connection in a site at its goal waits a second for a sibling\'s, then opens its own', async () => {
  const h = shared(['a.test', 'b.test'], { max_outbound_connections: 1 }, { sendMs: 300 });
  h.submit('a.test', 30);
  await h.clock.advance(10);
  const waitFrom = h.clock.now();
  h.submit('b.test', 1);
  await h.clock.advance(500);
  const b = h.scheduler.state('b.test').domains[0]!.bindings[0]!;
  assert.deepEqual([b.phase, b.phase_detail], ['awaiting_sibling', `since ${new Date(waitFrom).toISOString()}`]);
  await h.clock.advance(1000);
  const sessions = h.server('192.0.2.5').sessions;
  assert.equal(sessions.length, 2);
  assert.equal(sessions[1]!.at - waitFrom, 1000, 'its own connection one second after it started waiting');
  assert.equal(h.delivered('b.test').length, 1);
  await h.finish();
});

test('TLS policy refuses a migration: a plain session opened for one domain never carries mail of a sibling that verifies certificates', async () => {
  const h = shared(['plain.test', 'strict.test'], { max_outbound_connections: 1, domains: { 'strict.test': { tls_verify: 'host' } } }, { sendMs: 100 });
  h.submit('plain.test', 2);
  h.submit('strict.test', 2);
  await h.clock.advance(3000);
  assert.equal(h.delivered().length, 4);
  assert.deepEqual(migrations(h), [], 'no move to strict.test');
  assert.equal(h.server('192.0.2.5').sessions.length, 2, 'strict.test opened its own');
  await h.finish();
});

test('an idle connection is taken over by a sibling that gets mail, premigrate fired, before any new connection', async () => {
  const h = shared(['a.test', 'b.test'], { idle_timeout: '5s' }, { sendMs: 10 });
  h.submit('a.test', 1);
  await h.clock.advance(1000);
  h.submit('b.test', 1);
  await h.clock.advance(100);
  assert.equal(h.delivered('b.test').length, 1);
  assert.equal(h.server('192.0.2.5').sessions.length, 1);
  assert.deepEqual(migrations(h), ['a.test>b.test']);
  await h.finish();
});

test('connection lifetimes: idle_timeout closes an idle session, max_deliveries_per_connection a busy one, max_recipients_per_batch splits transactions', async () => {
  const h = shared(['a.test'], { idle_timeout: '5s', max_deliveries_per_connection: 3, max_outbound_connections: 1, max_recipients_per_batch: 2 }, { sendMs: 10 });
  h.submit('a.test', 1, { recipients: 5 });
  await h.clock.advance(4900);
  const s = h.server('192.0.2.5');
  assert.deepEqual(s.transactions.map((t) => t.recipients.length), [2, 2, 1]);
  assert.equal(s.open, 1, 'still open before idle_timeout');
  await h.clock.advance(200);
  assert.equal(s.open, 0, 'closed at idle_timeout');
  h.submit('a.test', 10);
  await h.clock.advance(1000);
  assert.equal(s.sessions.length, 5, 'ten messages at three per connection take four more');
  await h.finish();
});

test('an operator\'s fail settles matching held mail with the reply, quiet when asked; mail on a connection finishes its transaction', async () => {
  const h = shared(['a.test'], { max_outbound_connections: 1 }, { sendMs: 1000 });
  const [first, ...rest] = h.submit('a.test', 4);
  await h.clock.advance(10);
  const why = { code: 554, enhanced: '5.0.0', text: '[internal] failed by an operator' };
  assert.equal(h.scheduler.failHeld((e) => e.domain === 'a.test', why, true), 3);
  assert.deepEqual(h.attempted('admin_fail').map((r) => [r.qid, replyOf(r), r.outcome.kind === 'attempted' && r.outcome.attempt.quiet]),
    rest.map((q) => [q, '554 5.0.0', true]));
  await h.clock.advance(2000);
  assert.deepEqual(h.delivered().map((r) => r.qid), [first]);
  await h.finish();
});

test('a stop parks every held message to come back at once, unfiled, and opens nothing more', async () => {
  const h = shared(['a.test'], { max_outbound_connections: 1 }, { sendMs: 1000 });
  h.submit('a.test', 4);
  await h.clock.advance(10);
  h.stop();
  const parked = h.parked('stopping');
  assert.equal(parked.length, 3);
  assert.ok(parked.every((r) => r.outcome.kind === 'parked' && r.outcome.until === r.at));
  h.submit('a.test', 1);
  await h.clock.advance(5000);
  assert.equal(h.parked('stopping').length, 4, 'mail fetched meanwhile is parked too');
  assert.equal(h.server('192.0.2.5').sessions.length, 1);
  assert.equal(h.delivered().length, 1, 'the message on the connection finished its transaction');
  await h.finish();
});

test('the sweep forgets domains with nothing held, open, parked or delayed; a domain with mail away stays known', async () => {
  const h = new Harness({
    ...ownMx({ 'gone.test': '192.0.2.1', 'away.test': '192.0.2.2' }),
    config: { idle_timeout: '1s', retry_interval: '1h', mx_failures_to_delay: 0 },
    servers: { '192.0.2.2': { reply: () => '451 4.3.0 later' } },
  });
  h.submit('gone.test', 1);
  h.submit('away.test', 1);
  await h.clock.advance(1000);
  assert.deepEqual(h.scheduler.state().domains.map((d) => d.domain).sort(), ['away.test', 'gone.test']);
  await h.clock.advance(120_000);
  assert.deepEqual(h.scheduler.state().domains.map((d) => [d.domain, d.delayed]), [['away.test', 1]], 'its deferred message is still to come back');
  await h.finish();
});
