import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRate } from '../../src/config/units.js';
import { connectionGoal, refillCount, roomForConnections } from '../../src/scheduler/policy.js';
import { transition } from '../../src/scheduler/domain-state.js';
import { Throttle, Throttles } from '../../src/scheduler/throttle.js';

test('the connection goal grows with the active queue and never passes the limit', () => {
  const table: Array<[number, number, 'normal' | 'high', number]> = [
    [0, 32, 'normal', 0], [1, 32, 'normal', 1], [10, 32, 'normal', 4], [100, 32, 'normal', 21], [400, 32, 'normal', 32],
    [1_000_000, 32, 'normal', 32], [10, 32, 'high', 8], [100, 32, 'high', 30], [2, 3, 'normal', 1], [100, 3, 'high', 3],
    [5, 1, 'high', 1],
  ];
  for (const [ready, limit, aggr, goal] of table) assert.equal(connectionGoal(ready, limit, aggr), goal, `${ready} ready, limit ${limit}, ${aggr}`);
});

test('room for connections is the smallest of goal, scope and server headroom', () => {
  const base = { goal: 5, pair: 2, scope: 0, scopeMax: undefined, server: 0, serverMax: 100 };
  assert.equal(roomForConnections(base), 3);
  assert.equal(roomForConnections({ ...base, scope: 9, scopeMax: 10 }), 1);
  assert.equal(roomForConnections({ ...base, server: 100 }), 0);
  assert.equal(roomForConnections({ ...base, pair: 7 }), 0, 'never negative');
  assert.equal(roomForConnections({ ...base, scope: 12, scopeMax: 10 }), 0, 'over a lowered cap');
});

test('a queue calls back parked mail once half empty, up to max_ready and the window\'s room', () => {
  const table: Array<[ready: number, incoming: number, maxReady: number, windowRoom: number, count: number, why: string]> = [
    [1000, 0, 1000, 9000, 0, 'full'],
    [501, 0, 1000, 9000, 0, 'more than half'],
    [500, 0, 1000, 9000, 500, 'half: fill it'],
    [0, 0, 1000, 9000, 1000, 'empty'],
    [0, 600, 1000, 9000, 0, 'promoted jobs on their way count'],
    [100, 300, 1000, 9000, 600, 'and are not asked for twice'],
    [0, 0, 1000, 250, 250, 'the window bounds it'],
    [0, 0, 1000, 0, 0, 'a full window promotes nothing'],
    [0, 0, 1000, -40, 0, 'nor does an overfull one'],
    [0, 0, 1, 9000, 1, 'max_ready 1'],
  ];
  for (const [ready, incoming, maxReady, windowRoom, count, why] of table) {
    assert.equal(refillCount({ ready, incoming, maxReady, windowRoom }), count, why);
  }
});

test('throttle syntax: "N" per second, "N/S" per S seconds or duration; bad text is refused', () => {
  assert.deepEqual(parseRate('10'), { count: 10, perMs: 1000 });
  assert.deepEqual(parseRate(10), { count: 10, perMs: 1000 });
  assert.deepEqual(parseRate('10/1'), { count: 10, perMs: 1000 });
  assert.deepEqual(parseRate('100/60'), { count: 100, perMs: 60_000 });
  assert.deepEqual(parseRate('5/1m'), { count: 5, perMs: 60_000 });
  for (const bad of ['0', '10/0', 'ten', '10/x', '-1', '1.5']) assert.equal(parseRate(bad), undefined, bad);
});

test('a throttle allows N events in any window of S and says how long to wait', () => {
  const t = new Throttle({ count: 3, perMs: 1000 });
  for (const at of [0, 10, 20]) {
    assert.equal(t.wait(at), 0);
    t.take(at);
  }
  assert.equal(t.wait(20), 980, 'the fourth waits for the first to leave the window');
  assert.equal(t.wait(1000), 0);
  t.take(1000);
  assert.equal(t.wait(1000), 10);
});

test('throttles are shared by the scope that defines them', () => {
  const throttles = new Throttles();
  const rate = { count: 1, perMs: 1000 };
  const a = throttles.get('domain /\\.example$/', rate);
  assert.equal(throttles.get('domain /\\.example$/', rate), a, 'two domains under one regex scope share one budget');
  assert.notEqual(throttles.get('domain other.example', rate), a);
  assert.equal(throttles.get('global', undefined), undefined, 'no rate, no throttle');
});

test('domain phase: a delay holds until its time or the first successful connection', () => {
  const why = { code: 451, enhanced: '4.4.1', text: 'delayed' };
  const delayed = transition({ phase: 'normal' }, { kind: 'delay', until: 5000, reason: why });
  assert.deepEqual(delayed, { phase: 'delayed', until: 5000, reason: why });
  assert.equal(transition(delayed, { kind: 'tick', now: 4999 }), delayed);
  assert.deepEqual(transition(delayed, { kind: 'tick', now: 5000 }), { phase: 'normal' });
  assert.deepEqual(transition(delayed, { kind: 'connected' }), { phase: 'normal' });
  assert.deepEqual(transition(delayed, { kind: 'flush' }), { phase: 'normal' });
  assert.deepEqual(transition({ phase: 'normal' }, { kind: 'tick', now: 1 }), { phase: 'normal' });
});
