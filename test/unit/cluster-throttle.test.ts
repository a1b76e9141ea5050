// ClusterThrottles against a real Redis: one event at once, then one per perMs / count (so no
// window of perMs holds more than count), the waits checked against bounds computed from the rate
// and the time the calls took; two instances (two nodes) drawing on one budget; wait() taking
// nothing; keys apart; rates that do not divide.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { ClusterThrottles } from '../../src/cluster/gcra.js';
import type { Rate } from '../../src/config/units.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';

const PREFIX = 'impulse';

let server: TestRedis;
let first: Redis;
let second: Redis;
let nodeA: ClusterThrottles;
let nodeB: ClusterThrottles;

before(async () => {
  server = await startRedis();
  first = new Redis(server.url);
  second = new Redis(server.url);
  nodeA = new ClusterThrottles(first, PREFIX);
  nodeB = new ClusterThrottles(second, PREFIX);
});

after(async () => {
  first.disconnect();
  second.disconnect();
  await server.stop();
});

/** The emission interval in ms, as the throttle rounds it (up, to a whole µs). */
function interval(rate: Rate): number {
  return Math.ceil((rate.perMs * 1000) / rate.count) / 1000;
}

/**
 * Asserts that the wait after an event taken from idleness is one interval less the time since the
 * event: Redis measured at most `elapsedMs` of it (the local time from before the first call
 * was sent to after the last reply), and the wait is rounded up to whole ms.
 */
function assertWaitAfterEvent(wait: number, rate: Rate, elapsedMs: number): void {
  const t = interval(rate);
  assert.ok(wait <= Math.ceil(t), `wait ${wait} ms is at most one interval (${t} ms)`);
  assert.ok(wait >= Math.ceil(t - elapsedMs), `wait ${wait} ms is one interval (${t} ms) less at most the ${elapsedMs.toFixed(2)} ms the calls took`);
}

/**
 * At least `ms` by the monotonic clock: Node counts a timer from the event loop's cached clock,
 * which lags when the process was busy, so a single timer can fire early.
 */
async function waitOut(ms: number): Promise<void> {
  const from = performance.now();
  for (let left = ms; left > 0; left = ms - (performance.now() - from)) await delay(Math.ceil(left));
}

async function takeAll(throttles: ClusterThrottles, key: string, rate: Rate, n: number): Promise<number[]> {
  const waits: number[] = [];
  for (let i = 0; i < n; i++) waits.push(await throttles.take(key, rate));
  return waits;
}

test('one event goes at once; the next waits one interval, perMs / count, so no window holds more than count; the key expires when idle', async () => {
  const rate = { count: 5, perMs: 1000 };
  const started = performance.now();
  assert.deepEqual(await takeAll(nodeA, 'pace', rate, 1), [0]);
  const wait = await nodeA.take('pace', rate);
  assertWaitAfterEvent(wait, rate, performance.now() - started);
  assert.ok(wait > 0);
  const pttl = await first.pttl(`${PREFIX}:throttle:pace`);
  const elapsed = performance.now() - started;
  assert.ok(pttl <= interval(rate) && pttl >= interval(rate) - elapsed - 1, `PTTL ${pttl}: the key lives until its TAT, one interval after the event`);
});

test('two nodes draw on one budget', async () => {
  const rate = { count: 5, perMs: 1000 };
  const started = performance.now();
  assert.deepEqual(await takeAll(nodeA, 'shared', rate, 1), [0]);
  assertWaitAfterEvent(await nodeB.take('shared', rate), rate, performance.now() - started);
  assertWaitAfterEvent(await nodeA.take('shared', rate), rate, performance.now() - started);
});

test('wait takes nothing', async () => {
  const rate = { count: 2, perMs: 1000 };
  for (let i = 0; i < 5; i++) assert.equal(await nodeA.wait('asking', rate), 0);
  assert.equal(await first.exists(`${PREFIX}:throttle:asking`), 0, 'nothing written by asking');
  const started = performance.now();
  assert.deepEqual(await takeAll(nodeA, 'asking', rate, 1), [0]);
  const tat = await first.get(`${PREFIX}:throttle:asking`);
  const waits: number[] = [];
  for (let i = 0; i < 5; i++) waits.push(await nodeA.wait('asking', rate));
  assert.equal(await first.get(`${PREFIX}:throttle:asking`), tat, 'asking moved nothing');
  for (const w of waits) assertWaitAfterEvent(w, rate, performance.now() - started);
  assert.ok(waits.every((w, i) => i === 0 || w <= waits[i - 1]!), `waits only shrink: ${waits.join(', ')}`);
  assertWaitAfterEvent(await nodeA.take('asking', rate), rate, performance.now() - started);
});

test('different keys are independent', async () => {
  const rate = { count: 3, perMs: 1000 };
  assert.deepEqual(await takeAll(nodeA, 'left', rate, 1), [0]);
  assert.ok(await nodeA.take('left', rate) > 0);
  assert.deepEqual(await takeAll(nodeA, 'right', rate, 1), [0]);
  assert.equal(await nodeB.wait('elsewhere', rate), 0);
});

test('a rate whose perMs does not divide by count: the pace holds, and asking again after the wait is never too early', async () => {
  for (const rate of [{ count: 3, perMs: 100 }, { count: 7, perMs: 200 }]) {
    const key = `odd-${rate.count}`;
    const started = performance.now();
    assert.deepEqual(await takeAll(nodeA, key, rate, 1), [0]);
    assertWaitAfterEvent(await nodeA.take(key, rate), rate, performance.now() - started);
    assert.match(await first.get(`${PREFIX}:throttle:${key}`) ?? '', /^\d+$/, 'the TAT is kept in whole µs');
    for (let i = 0; i < 3; i++) {
      const wait = await nodeA.wait(key, rate);
      assert.ok(wait > 0 && wait <= Math.ceil(interval(rate)), `wait ${wait} ms within one interval`);
      await waitOut(wait); // what is tested is that the time the throttle asked for was enough
      assert.equal(await nodeA.take(key, rate), 0, `allowed after waiting ${wait} ms`);
    }
  }
});
