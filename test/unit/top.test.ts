// `impulse top`'s parts that need no daemon: the per-pair rates over a sliding minute (on a fake
// clock) and the view, sorted by each column's key and cut to the terminal.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Top } from '../../src/admin/protocol.js';
import { renderTop } from '../../src/cli/commands/top.js';
import { PairRates } from '../../src/observability/pair-rates.js';

test('rates per binding × domain over the last minute: this minute plus the part of the last one still covered; quiet pairs are forgotten', () => {
  let now = 1_000_000;
  const rates = new PairRates(() => now);
  rates.add('b1', 'a.test', 'delivered', 60);
  rates.add('b1', 'a.test', 'failed', 6);
  rates.add('b2', 'a.test', 'deferred', 30);
  const at = (ms: number) => {
    now = 1_000_000 + ms;
    return rates.rates().map((r) => `${r.binding} ${r.domain} ${r.delivered.toFixed(2)} ${r.deferred.toFixed(2)} ${r.failed.toFixed(2)}`);
  };
  assert.deepEqual(at(0), ['b1 a.test 1.00 0.00 0.10', 'b2 a.test 0.00 0.50 0.00']);
  assert.deepEqual(at(59_000), ['b1 a.test 1.00 0.00 0.10', 'b2 a.test 0.00 0.50 0.00']);
  assert.deepEqual(at(60_000), ['b1 a.test 1.00 0.00 0.10', 'b2 a.test 0.00 0.50 0.00'], 'the last minute whole');
  assert.deepEqual(at(90_000), ['b1 a.test 0.50 0.00 0.05', 'b2 a.test 0.00 0.25 0.00'], 'half of it');
  rates.add('b1', 'a.test', 'delivered', 120);
  assert.deepEqual(at(90_000), ['b1 a.test 2.50 0.00 0.05', 'b2 a.test 0.00 0.25 0.00']);
  assert.deepEqual(at(150_000), ['b1 a.test 1.00 0.00 0.00'], 'b2 quiet for two minutes: gone');
  assert.deepEqual(at(400_000), []);
});

const view: Top = {
  node: 'mta1',
  total_rows: 3,
  rows: [
    { domain: 'gmail.com', binding: 'default', delivered_per_s: 12.5, deferred_per_s: 0.25, failed_per_s: 0, active: 40, delayed: 2, connections: 6, oldest_age_s: 95, shaping: [] },
    { domain: 'yahoo.com', binding: 'mta2', delivered_per_s: 0, deferred_per_s: 3, failed_per_s: 0.5, active: 900, delayed: 1200, connections: 0, oldest_age_s: 4000, shaping: ['yahoo-ts:suspend'] },
    { domain: 'b.test', binding: 'default', delivered_per_s: 1, deferred_per_s: 0, failed_per_s: 2, active: 0, delayed: 0, connections: 0, shaping: [] },
  ],
};
const at = new Date('2026-12-04T09:15:30Z');

test('the view: a title, the keys, the pairs sorted by the chosen column, largest first (names A to Z)', () => {
  assert.equal(renderTop(view, 'active', at), [
    'impulse top: node mta1, 09:15:30, 3 pairs, sorted by active',
    'keys: a active, l delayed, c connections, v delivered, t deferred, f failed, o oldest, n domain; q quits',
    'DOMAIN     BINDING  DELIVERED/S  DEFERRED/S  FAILED/S  ACTIVE  DELAYED  CONN  OLDEST  SHAPING',
    'yahoo.com  mta2            0.00        3.00      0.50     900     1200     0   1h06m  yahoo-ts:suspend',
    'gmail.com  default        12.50        0.25      0.00      40        2     6   1m35s  -',
    'b.test     default         1.00        0.00      2.00       0        0     0       -  -',
    '',
  ].join('\n'));
  const order = (sort: Parameters<typeof renderTop>[1]) => renderTop(view, sort, at).split('\n').slice(3, 6).map((l) => l.split(' ')[0]);
  assert.deepEqual(order('failed'), ['b.test', 'yahoo.com', 'gmail.com']);
  assert.deepEqual(order('delivered'), ['gmail.com', 'b.test', 'yahoo.com']);
  assert.deepEqual(order('connections'), ['gmail.com', 'b.test', 'yahoo.com']);
  assert.deepEqual(order('oldest'), ['yahoo.com', 'gmail.com', 'b.test']);
  assert.deepEqual(order('domain'), ['b.test', 'gmail.com', 'yahoo.com']);
});

test('a terminal of few lines shows the rows that fit', () => {
  assert.equal(renderTop(view, 'active', at, 6).split('\n').filter((l) => l !== '').length, 5, 'title, keys, column titles and two rows');
});
