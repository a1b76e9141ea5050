// Binding assignment policy and the stable pick within a group.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assignBinding } from '../../src/binding/assign.js';
import { Bindings, stableIndex } from '../../src/binding/registry.js';

const bindings = () => new Bindings({
  ehlo_hostname: 'global.test',
  bindings: [{ name: 'b1', bind_address: '127.0.0.10' }, { name: 'b2', bind_address: '127.0.0.11', ehlo_hostname: 'b2.test' }, { name: 'b3' }],
  binding_groups: [{ name: 'pool', bindings: ['b1', 'b2', 'b3'] }],
});
const rules = [
  { sender_domain: 'ruled.test', binding: 'b2' },
  { recipient_domain: 'big.test', binding_group: 'pool' },
];
const input = (over: Partial<Parameters<typeof assignBinding>[0]> = {}) => ({
  senderDomain: 'sender.test', recipientDomain: 'dest.test', header: undefined, hook: async () => undefined, ...over,
});

test('assignment order: header, then rules, then the set_binding hook, then the default', async () => {
  const b = bindings();
  const table: Array<[string, Parameters<typeof assignBinding>[0], unknown]> = [
    ['header binding', input({ header: { binding: 'b1' }, senderDomain: 'ruled.test' }), { binding: 'b1' }],
    ['header group', input({ header: { group: 'pool' } }), { group: 'pool' }],
    ['rule by sender domain', input({ senderDomain: 'ruled.test', hook: async () => ({ binding: 'b1' }) }), { binding: 'b2' }],
    ['rule by recipient domain', input({ recipientDomain: 'big.test' }), { group: 'pool' }],
    ['hook', input({ hook: async () => ({ binding: 'b3' }) }), { binding: 'b3' }],
    ['default', input(), { binding: 'default' }],
  ];
  for (const [name, i, expected] of table) {
    const a = await assignBinding(i, rules, b, 'normal');
    assert.equal(a.kind, 'assigned', name);
    assert.deepEqual(a.kind === 'assigned' ? a.choice : undefined, expected, name);
  }
});

test('unknown names fall back to the default with a note, or are refused under default_binding: none', async () => {
  const b = bindings();
  const viaHeader = await assignBinding(input({ header: { binding: 'nosuch' } }), rules, b, 'normal');
  assert.deepEqual(viaHeader, { kind: 'assigned', choice: { binding: 'default' }, source: 'default', note: 'unknown binding "nosuch" in header' });
  const viaHook = await assignBinding(input({ hook: async () => ({ group: 'nogroup' }) }), rules, b, 'normal');
  assert.equal(viaHook.kind === 'assigned' && viaHook.note, 'unknown binding group "nogroup" chosen by set_binding');
  assert.equal((await assignBinding(input(), rules, b, 'none')).kind, 'refused');
  assert.equal((await assignBinding(input({ header: { binding: 'nosuch' } }), rules, b, 'none')).kind, 'refused');
  assert.equal((await assignBinding(input({ header: { binding: 'b1' } }), rules, b, 'none')).kind, 'assigned');
});

test('the default binding and group always exist; bindings inherit the global EHLO name', () => {
  const b = bindings();
  assert.deepEqual(b.get('default'), { name: 'default', bindAddress: undefined, ehloHostname: 'global.test' });
  assert.equal(b.hasGroup('default'), true);
  assert.equal(b.get('b1')!.ehloHostname, 'global.test');
  assert.equal(b.get('b2')!.ehloHostname, 'b2.test');
});

test('a group pick is stable per message and skips suspended bindings', () => {
  const b = bindings();
  const keys = Array.from({ length: 60 }, (_, i) => `QID${i}`);
  const picks = keys.map((k) => b.pickFromGroup('pool', k)!.name);
  assert.deepEqual(picks, keys.map((k) => b.pickFromGroup('pool', k)!.name), 'same message, same binding');
  assert.deepEqual(new Set(picks), new Set(['b1', 'b2', 'b3']), 'messages spread over the group');
  assert.deepEqual(picks, keys.map((k) => ['b1', 'b2', 'b3'][stableIndex(k, 3)]));
  b.suspend('b2');
  const afterSuspend = keys.map((k) => b.pickFromGroup('pool', k)!.name);
  assert.ok(!afterSuspend.includes('b2'));
  assert.deepEqual(new Set(afterSuspend), new Set(['b1', 'b3']));
  b.suspend('b1');
  b.suspend('b3');
  assert.ok(b.pickFromGroup('pool', 'QID1'), 'with every member suspended a message still has a binding');
  b.resume('b2');
  assert.equal(b.pickFromGroup('pool', 'QID1')!.name, 'b2');
});

test('resolve: a vanished binding or group falls back to the default binding', () => {
  const b = bindings();
  assert.equal(b.resolve({ binding: 'gone' }, 'Q').name, 'default');
  assert.equal(b.resolve({ group: 'gone' }, 'Q').name, 'default');
  assert.equal(b.resolve({}, 'Q').name, 'default');
  assert.equal(b.resolve({ binding: 'b2' }, 'Q').name, 'b2');
});
