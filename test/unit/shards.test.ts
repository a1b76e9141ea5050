// The delivery queue's shards: a domain's shard by FNV-1a, spread evenly over similar names; each
// shard's hash tag in its own part of the slot space; the single untagged layout of before shards.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ShardLayout, fnv1a32 } from '../../src/queue/shards.js';
import { keySlot } from '../../src/store/key-slot.js';

test('FNV-1a 32 gives the published values', () => {
  assert.equal(fnv1a32(''), 0x811c9dc5);
  assert.equal(fnv1a32('a'), 0xe40c292c);
  assert.equal(fnv1a32('foobar'), 0xbf9cf968);
});

test('d0.test … d59.test land on all 16 shards, none with more than twice the mean', () => {
  const layout = new ShardLayout('impulse', 16, true);
  const counts = new Array<number>(16).fill(0);
  for (let i = 0; i < 60; i++) counts[layout.of(`d${i}.test`).index]! += 1;
  assert.ok(counts.every((c) => c > 0), `every shard has some: ${counts.join(' ')}`);
  assert.ok(Math.max(...counts) <= 2 * (60 / 16), `none above twice the mean of 3.75: ${counts.join(' ')}`);
  // What the issue reports of CRC16 mod 16 for the same names, for contrast: half the shards empty.
  const crc = new Set(Array.from({ length: 60 }, (_, i) => keySlot(`d${i}.test`) % 16));
  assert.ok(crc.size <= 8, `CRC16 mod 16 uses ${crc.size} shards`);
});

test('larger sets of similar names spread within a quarter of the mean', () => {
  const layout = new ShardLayout('impulse', 16, true);
  for (const pattern of ['d%.test', 'customer%.example.com', 'mx%.bench.test']) {
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 1000; i++) counts[layout.of(pattern.replace('%', String(i))).index]! += 1;
    assert.ok(Math.min(...counts) >= 0.75 * 62.5 && Math.max(...counts) <= 1.25 * 62.5, `${pattern}: ${counts.join(' ')}`);
  }
});

test('a domain always maps to the same shard, in every daemon', () => {
  const a = new ShardLayout('impulse', 16, true);
  const b = new ShardLayout('impulse', 16, true);
  for (const d of ['gmail.com', 'example.org', 'xn--bcher-kva.example']) assert.deepEqual(a.of(d), b.of(d));
});

test('each shard has a hash tag of its own, its slot in the shard\'s part of the slot space, so shards spread over masters', () => {
  for (const count of [3, 16, 64]) {
    const layout = new ShardLayout('impulse', count, true);
    const prefixes = layout.shards.map((s) => s.prefix);
    assert.equal(new Set(prefixes).size, count);
    layout.shards.forEach((s, i) => {
      assert.match(s.prefix, /^\{impulse:\d+:\d+\}$/);
      const slot = keySlot(`${s.prefix}:delivery:wait`);
      assert.ok(slot >= Math.floor((i * 16384) / count) && slot < Math.floor(((i + 1) * 16384) / count), `shard ${i} of ${count}: slot ${slot}`);
      // Every key of the shard shares the slot: BullMQ's, the body's, the parked index's.
      for (const key of [`${s.prefix}:delivery:123-0`, `${s.prefix}:msg:ABC`, `${s.prefix}:history:ABC`, `${s.prefix}:parked-pairs`]) {
        assert.equal(keySlot(key), slot, key);
      }
    });
  }
  // Three masters with even slot ranges, as redis-cli --cluster create makes them: 6, 5 and 5 shards.
  const perMaster = [0, 0, 0];
  for (const s of new ShardLayout('impulse', 16, true).shards) perMaster[Math.floor(keySlot(s.prefix) / (16384 / 3))]! += 1;
  assert.deepEqual(perMaster.sort(), [5, 5, 6]);
});

test('one shard on one Redis keeps the layout from before shards: the prefix itself, no hash tag', () => {
  const layout = new ShardLayout('impulse', 1, false);
  assert.deepEqual(layout.shards, [{ index: 0, prefix: 'impulse' }]);
  assert.equal(layout.of('anything.test').prefix, 'impulse');
  assert.equal(new ShardLayout('impulse', 1, true).shards[0]!.prefix.startsWith('{impulse:0:'), true, 'on a cluster even one shard is tagged');
});

test('keySlot follows Redis Cluster: CRC16 of the key, or of its hash tag', () => {
  assert.equal(keySlot('foo'), 12182);
  assert.equal(keySlot('123456789'), 12739);
  assert.equal(keySlot('{user1000}.following'), keySlot('user1000'));
  assert.equal(keySlot('{}x'), 10595, 'an empty tag hashes the whole key');
  assert.notEqual(keySlot('a{}b{c}'), keySlot('c'), 'only the first { and the next } delimit a tag');
});
