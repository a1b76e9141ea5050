// Adaptive limits: which replies are signals, how limits step within bounds (tables), and the
// scheduler on a fake clock against a receiver that takes at most 10 messages a second.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reply } from '../../src/core/reply.js';
import { type AdaptiveBounds, initialValues, isRateSignal, stepDown, stepUp, throttleOf } from '../../src/shaping/adaptive-policy.js';
import { Harness, ownMx } from '../helpers/scheduler-harness.js';

test('rate and reputation signals: a receiver\'s deferral of a block class or about rate or volume; never a 5xx or Impulse\'s own', () => {
  const table: Array<[number, string, string, number, boolean]> = [
    [421, '4.7.28', 'Our system has detected an unusual rate of unsolicited mail', 50, true],
    [421, '4.3.2', 'RP-001 (COL004) Unfortunately, some messages weren\'t sent. We have limits', 70, true],
    [421, '4.7.0', '[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume', 51, true],
    [451, '4.7.651', 'The mail server has been temporarily rate limited due to IP reputation. (S3114)', 51, true],
    [450, '4.2.1', 'Mailbox busy', 20, false],
    [421, '4.7.0', 'Try again later', 70, false],
    [550, '5.7.1', 'Blocked (S3150)', 50, false],
    [451, '4.4.2', '[internal] connection lost at DATA: rate limited', 70, false],
  ];
  for (const [code, enhanced, text, cls, want] of table) assert.equal(isRateSignal(reply(code, enhanced, text), cls), want, text);
});

const bounds: AdaptiveBounds = {
  max_outbound_connections: [2, 32], max_deliveries_per_connection: [10, 200],
  outbound_throttle_messages: [{ count: 1, perMs: 1000 }, { count: 100, perMs: 1000 }], step_down_interval: 60_000, step_up_interval: 3_600_000,
};

test('limits start at the top of their bounds, step down by a quarter and up by a twentieth (connections by one), never past a bound', () => {
  let v = initialValues(bounds);
  assert.deepEqual(v, { connections: 32, deliveries: 200, perSecond: 100 });
  const downs = [];
  for (let i = 0; i < 12; i++) downs.push((v = stepDown(v, bounds)));
  assert.deepEqual(downs.slice(0, 3), [{ connections: 24, deliveries: 150, perSecond: 75 }, { connections: 18, deliveries: 112, perSecond: 56.25 }, { connections: 13, deliveries: 84, perSecond: 42.1875 }]);
  assert.deepEqual([v.connections, v.deliveries], [2, 10], 'held at the lower bounds');
  assert.ok(v.perSecond! >= 1 && v.perSecond! < 4);
  assert.deepEqual(stepUp({ connections: 2, deliveries: 10, perSecond: 1 }, bounds), { connections: 3, deliveries: 11, perSecond: 1.05 });
  assert.deepEqual(stepUp({ connections: 32, deliveries: 199, perSecond: 99 }, bounds), { connections: 32, deliveries: 200, perSecond: 100 });
  assert.deepEqual(stepDown({ connections: 5 }, { step_down_interval: 1, step_up_interval: 1 }), { connections: 5, deliveries: undefined, perSecond: undefined }, 'an unbounded option does not move');
  assert.deepEqual([throttleOf(42.2), throttleOf(1), throttleOf(0.5), throttleOf(5000)], [{ count: 1, perMs: 24 }, { count: 1, perMs: 1000 }, { count: 1, perMs: 2000 }, { count: 1, perMs: 1 }]);
});

const LIMIT_PER_S = 10;
const RATE = '421 4.7.28 [192.0.2.200] Our system has detected an unusual rate of unsolicited mail originating from your IP address.';

test('against a receiver taking 10 messages a second: the rate settles under the limit with few deferrals, then climbs back when the limit lifts', async () => {
  let limit = LIMIT_PER_S;
  const accepted: number[] = [];
  const deferred: number[] = [];
  let h: Harness | undefined;
  const answer = () => {
    const now = h!.clock.now();
    const recent = accepted.filter((t) => t > now - 1000).length;
    if (recent >= limit) {
      deferred.push(now);
      return RATE;
    }
    accepted.push(now);
    return '250 2.0.0 ok';
  };
  h = new Harness({
    ...ownMx({ 'busy.test': '192.0.2.1' }),
    config: {
      max_outbound_connections: 4,
      adaptive: { outbound_throttle_messages: ['1/1', '40/1'], max_outbound_connections: [1, 4], step_down_interval: '2s', step_up_interval: '10s' },
    },
    servers: { '192.0.2.1': { sendMs: 5, reply: answer } },
  });
  // Mail arrives faster than the receiver takes it, so the sender is always ready to send.
  for (let s = 0; s < 300; s++) {
    h.submit('busy.test', 20);
    await h.clock.advance(1000);
  }
  const window = (list: number[], from: number, to: number) => list.filter((t) => t >= from && t < to).length;
  const start = h.clock.now() - 300_000;
  const lastHalf = [start + 150_000, start + 300_000] as const;
  const sent = window(accepted, ...lastHalf);
  const refused = window(deferred, ...lastHalf);
  assert.ok(sent / 150 >= 0.85 * LIMIT_PER_S, `steady rate ${sent / 150}/s, at least 85% of ${LIMIT_PER_S}`);
  assert.ok(refused / (sent + refused) <= 0.05, `deferred ${refused} of ${sent + refused} attempts in the last half`);
  const steps = h.events('adaptive_step');
  assert.ok(steps.some((e) => e.direction === 'down') && steps.some((e) => e.direction === 'up'));
  assert.equal(steps[0]?.reply, RATE);

  limit = 1000;
  const before = accepted.length;
  for (let s = 0; s < 300; s++) {
    h.submit('busy.test', 40);
    await h.clock.advance(1000);
  }
  assert.ok((accepted.length - before) / 300 > 1.5 * LIMIT_PER_S, 'with the limit lifted, clean intervals step the rate back up');
  await h.finish();
});
