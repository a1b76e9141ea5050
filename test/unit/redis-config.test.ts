// The redis section's ways to reach Redis, shards and replica waits: what a valid file gives, and a
// clear error naming the keys for each combination that cannot work.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfigText } from '../../src/config/load.js';

function redisOf(yaml: string) {
  const r = parseConfigText(yaml, '/etc/impulse/impulse.yaml');
  assert.ok(r.ok, r.ok ? '' : r.errors.join('; '));
  return { runtime: r.config.redis, document: r.document.redis };
}

function errorsOf(yaml: string): string[] {
  const r = parseConfigText(yaml, '/etc/impulse/impulse.yaml');
  assert.equal(r.ok, false, `expected errors for ${yaml}`);
  return r.ok ? [] : r.errors;
}

test('no redis key: the embedded Redis, one shard, no replica wait (the layout of before)', () => {
  const { runtime } = redisOf('log_level: info');
  assert.equal(runtime.embedded, true);
  assert.equal(runtime.shards, 1);
  assert.equal(runtime.wait_replicas, undefined);
  assert.equal(runtime.wait_timeout, undefined);
});

test('url alone: one shard, not embedded', () => {
  const { runtime } = redisOf('redis: { url: "redis://10.0.0.1:6379" }');
  assert.equal(runtime.embedded, undefined);
  assert.equal(runtime.shards, 1);
});

test('cluster: 16 shards unless set; shards may be set on any topology', () => {
  assert.equal(redisOf('redis: { cluster: ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"] }').runtime.shards, 16);
  assert.equal(redisOf('redis: { cluster: ["redis://10.0.0.1:6379"], shards: 48 }').runtime.shards, 48);
  assert.equal(redisOf('redis: { url: "redis://10.0.0.1:6379", shards: 4 }').runtime.shards, 4);
});

test('sentinels with sentinel_name, and wait_timeout defaulting to 1s once wait_replicas is set', () => {
  const { runtime, document } = redisOf('redis: { sentinels: ["10.0.0.1:26379", "[2001:db8::1]:26379"], sentinel_name: mymaster, wait_replicas: 1 }');
  assert.deepEqual(runtime.sentinels, ['10.0.0.1:26379', '[2001:db8::1]:26379']);
  assert.equal(runtime.wait_timeout, 1000);
  assert.equal(document.wait_timeout, '1s', 'check-config shows the default as written');
  assert.equal(redisOf('redis: { url: "redis://x:6379", wait_replicas: 2, wait_timeout: 250ms }').runtime.wait_timeout, 250);
});

test('two ways to reach Redis at once are refused, naming both', () => {
  for (const [yaml, found] of [
    ['redis: { cluster: ["redis://10.0.0.1:6379"], url: "redis://10.0.0.1:6379" }', 'url and cluster'],
    ['redis: { cluster: ["redis://10.0.0.1:6379"], embedded: true }', 'embedded: true and cluster'],
    ['redis: { cluster: ["redis://10.0.0.1:6379"], sentinels: ["a:26379"], sentinel_name: m }', 'cluster and sentinels'],
    ['redis: { url: "redis://10.0.0.1:6379", sentinels: ["a:26379"], sentinel_name: m }', 'url and sentinels'],
    ['redis: { url: "redis://10.0.0.1:6379", embedded: true }', 'url and embedded: true'],
  ] as const) {
    const errors = errorsOf(yaml);
    assert.equal(errors.length, 1, errors.join('; '));
    assert.match(errors[0]!, new RegExp(`^redis\\.\\w+: set only one of url, embedded: true, cluster or sentinels: .*\\(found ${found}\\)$`));
  }
});

test('sentinels and sentinel_name need each other', () => {
  assert.deepEqual(errorsOf('redis: { sentinels: ["a:26379"] }'), ['redis.sentinel_name: sentinels needs sentinel_name, the name they monitor the primary under']);
  assert.deepEqual(errorsOf('redis: { sentinel_name: m }'), ['redis.sentinel_name: sentinel_name needs sentinels, the host:port of the sentinels to ask']);
  assert.match(errorsOf('redis: { sentinels: ["10.0.0.1"], sentinel_name: m }')[0]!, /^redis\.sentinels\[0\]: expected host:port of a sentinel/);
});

test('wait_replicas needs replicas to wait for, wait_timeout needs wait_replicas and a sane length', () => {
  assert.deepEqual(errorsOf('redis: { wait_replicas: 1 }'),
    ['redis.wait_replicas: wait_replicas needs a Redis with replicas (url, sentinels or cluster): the embedded Redis has none']);
  assert.deepEqual(errorsOf('redis: { url: "redis://x:6379", wait_timeout: 1s }'), ['redis.wait_timeout: wait_timeout needs wait_replicas']);
  for (const t of ['0', '0s', '11s', '20']) {
    assert.match(errorsOf(`redis: { url: "redis://x:6379", wait_replicas: 1, wait_timeout: "${t}" }`).join('; '), /redis\.wait_timeout: wait_timeout must be above 0/, t);
  }
  assert.match(errorsOf('redis: { url: "redis://x:6379", wait_replicas: 0 }')[0]!, /^redis\.wait_replicas: /);
});

test('cluster entries must be redis URLs; a prefix with braces cannot be a hash tag', () => {
  assert.match(errorsOf('redis: { cluster: ["10.0.0.1:6379"] }')[0]!, /^redis\.cluster\[0\]: expected a redis:\/\/ or rediss:\/\/ URL/);
  assert.match(errorsOf('redis: { cluster: [] }')[0]!, /^redis\.cluster: /);
  assert.deepEqual(errorsOf('redis: { cluster: ["redis://10.0.0.1:6379"], prefix: "{mail}" }'),
    ['redis.prefix: prefix may not contain { or } with cluster or shards: each shard\'s keys carry the prefix in a hash tag']);
  assert.deepEqual(errorsOf('redis: { url: "redis://x:6379", shards: 0 }').length, 1);
});

test('unknown keys under redis are refused', () => {
  assert.deepEqual(errorsOf('redis: { cluster: ["redis://10.0.0.1:6379"], nodes: 3 }'), ['redis.nodes: unknown key']);
});
