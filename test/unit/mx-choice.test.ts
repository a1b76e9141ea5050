// The MX choice as a table: preference is absolute, failed and full hosts spill to the next
// preference, equal preferences fill evenly.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chooseTarget } from '../../src/delivery/mx-choice.js';
import type { Target } from '../../src/delivery/route.js';

const t = (host: string, preference: number, address: string): Target => ({ host, preference, address, port: 25 });
const mx = [t('a', 10, '192.0.2.1'), t('b', 10, '192.0.2.2'), t('c', 20, '192.0.2.3')];

function state(opts: { failed?: string[]; counts?: Record<string, number>; limits?: Record<string, number> }) {
  return {
    isFailed: (address: string) => (opts.failed ?? []).includes(address),
    hostCount: (host: string) => opts.counts?.[host] ?? 0,
    addressCount: () => 0,
    hostLimit: (host: string) => opts.limits?.[host],
  };
}

test('MX choice table', () => {
  const table: Array<[string, Parameters<typeof state>[0], string]> = [
    ['all idle: first of the best preference', {}, 'a'],
    ['equal preferences fill evenly', { counts: { a: 1 } }, 'b'],
    ['still even when both are busy', { counts: { a: 3, b: 2 } }, 'b'],
    ['a failed address is skipped', { failed: ['192.0.2.1'], counts: { b: 5 } }, 'b'],
    ['never the less-preferred while a better one is usable', { counts: { a: 9, b: 9 } }, 'a'],
    ['a host at its limit spills to its equal', { counts: { a: 2 }, limits: { a: 2 } }, 'b'],
    ['both best at their limit: the next preference', { counts: { a: 1, b: 1 }, limits: { a: 1, b: 1 } }, 'c'],
    ['best ones failed: the next preference', { failed: ['192.0.2.1', '192.0.2.2'] }, 'c'],
    ['failed and full mixed: the next preference', { failed: ['192.0.2.1'], counts: { b: 1 }, limits: { b: 1 } }, 'c'],
  ];
  for (const [name, s, host] of table) {
    const c = chooseTarget(mx, state(s));
    assert.equal(c.kind === 'target' ? c.target.host : c.kind, host, name);
  }
});

test('nothing usable: all failed, or at limit naming the full hosts', () => {
  assert.deepEqual(chooseTarget(mx, state({ failed: ['192.0.2.1', '192.0.2.2', '192.0.2.3'] })), { kind: 'all_failed' });
  const full = chooseTarget(mx, state({ failed: ['192.0.2.3'], counts: { a: 1, b: 1 }, limits: { a: 1, b: 1 } }));
  assert.deepEqual(full, { kind: 'all_at_limit', hosts: new Set(['a', 'b']) });
});
