import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRate } from '../../src/config/units.js';
import { MAX_PARK_MS, MIN_PARK_MS, connectionGoal, parkDelay, roomForConnections } from '../../src/scheduler/policy.js';
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

test('a full queue parks mail for its drain time, spread over the second half, within bounds', () => {
  assert.equal(parkDelay(100, 10, 1), 10_000, 'drains 100 in 10 s');
  assert.equal(parkDelay(100, 10, 0), 5_000);
  assert.equal(parkDelay(1, 1000, 1), MIN_PARK_MS, 'never less than the minimum');
  assert.equal(parkDelay(100_000, 0, 1), MAX_PARK_MS, 'a queue that drains nothing still comes back');
  assert.equal(parkDelay(100_000, 0, 0), MAX_PARK_MS / 2);
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
