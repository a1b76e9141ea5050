// Node heartbeats against a real Redis, two registries standing for two daemons: both are listed
// with what they reported; one that stops beating is shown silent after three of its intervals and
// its name can then be taken; a second daemon under a live node's name is refused, naming the
// other; a restart on the same machine takes its dead predecessor's name at once; a clean stop
// removes the entry; an entry silent for a day is dropped.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { pino } from 'pino';
import { type NodeReport, NodeRegistry, type NodeStatus, type QueueFigures } from '../../src/cluster/nodes.js';
import { type Clock, systemClock } from '../../src/core/clock.js';
import type { LogRecord } from '../helpers/daemon.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { redisPerFile } from '../helpers/redis.js';

const redis = redisPerFile();
let prefix = 0;

interface TestNode {
  registry: NodeRegistry;
  logs: LogRecord[];
  report: NodeReport;
  queues: QueueFigures[];
}

const rates = { received: 2, delivered: 1.5, transient: 0.25, failed: 0 };

/** A registry on its own key prefix per test, as a daemon named `name` on machine `host` would run it. */
function node(keys: string, name: string, host: string, opts: { clock?: Clock; intervalMs?: number } = {}): TestNode {
  const logs: LogRecord[] = [];
  const t: TestNode = {
    logs,
    report: { connections: { outbound: 3, connecting: 1, inbound: 2 }, held: 7, rates },
    queues: [],
    registry: undefined as unknown as NodeRegistry,
  };
  t.registry = new NodeRegistry({
    redis: redis(), prefix: keys, name, version: '9.9.9', host, clock: opts.clock ?? new FakeClock(), ...(opts.intervalMs ? { intervalMs: opts.intervalMs } : {}),
    log: pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogRecord) }),
    report: () => t.report,
    queues: () => [...t.queues],
  });
  return t;
}

const freshPrefix = () => `nodes-test-${prefix++}`;
const byName = (list: NodeStatus[], name: string) => list.find((n) => n.name === name);

test('two nodes are both listed alive with what each reported, the table bounded to its largest rows', async () => {
  const keys = freshPrefix();
  const a = node(keys, 'a', 'host-a');
  const b = node(keys, 'b', 'host-b');
  b.report = { connections: { outbound: 10, connecting: 0, inbound: 0 }, held: 40, rates };
  b.queues = Array.from({ length: 1500 }, (_, i) => ({ domain: `d${i}.test`, binding: 'default', ready: i, in_flight: 0, connections: 1, connecting: 0 }));
  await a.registry.start();
  await b.registry.start();

  const list = await a.registry.list();
  assert.deepEqual(list.map((n) => [n.name, n.host, n.alive, n.self]), [['a', 'host-a', true, true], ['b', 'host-b', true, false]]);
  const nb = byName(list, 'b')!;
  assert.equal(nb.pid, process.pid);
  assert.equal(nb.version, '9.9.9');
  assert.deepEqual(nb.connections, { outbound: 10, connecting: 0, inbound: 0 });
  assert.equal(nb.held, 40);
  assert.deepEqual(nb.rates, rates);
  assert.ok(nb.ageMs < 2000, `age ${nb.ageMs} ms`);
  assert.equal(nb.queues.length, 1000);
  assert.deepEqual(nb.queues[0], { domain: 'd1499.test', binding: 'default', ready: 1499, in_flight: 0, connections: 1, connecting: 0 });
  assert.equal(nb.queues.at(-1)!.domain, 'd500.test');

  // A heartbeat carries the figures of its time.
  b.report = { ...b.report, held: 41 };
  await b.registry.beat();
  assert.equal(byName(await a.registry.list(), 'b')!.held, 41);
  await a.registry.stop();
  await b.registry.stop();
});

test('a node that stops beating is shown silent after three of its intervals, and its name can then be taken', async () => {
  const keys = freshPrefix();
  const interval = 200;
  // a beats on real timers; b's clock never moves, so after its first heartbeat it is silent.
  const a = node(keys, 'a', 'host-a', { clock: systemClock, intervalMs: interval });
  const b = node(keys, 'b', 'host-b', { intervalMs: interval });
  await a.registry.start();
  await b.registry.start();
  const first = await a.registry.list();
  assert.ok(byName(first, 'b')!.alive);

  const deadline = Date.now() + 10_000;
  let list = first;
  while (byName(list, 'b')!.alive) {
    assert.ok(Date.now() < deadline, `b still alive after 10 s: ${JSON.stringify(byName(list, 'b'))}`);
    await delay(interval / 2);
    list = await a.registry.list();
  }
  const nb = byName(list, 'b')!;
  assert.ok(nb.ageMs >= 3 * interval, `silent at ${nb.ageMs} ms, not before ${3 * interval}`);
  assert.ok(byName(list, 'a')!.alive, 'a kept beating');

  // Another machine may now run a daemon named b.
  const b2 = node(keys, 'b', 'host-c');
  await b2.registry.start();
  const taken = byName(await a.registry.list(), 'b')!;
  assert.deepEqual([taken.host, taken.alive], ['host-c', true]);
  await b2.registry.stop();
  await a.registry.stop();
});

test('a second daemon under a live node\'s name is refused with the other\'s pid, host and last heartbeat', async () => {
  const keys = freshPrefix();
  const a = node(keys, 'mta', 'host-a');
  const c = node(keys, 'mta', 'host-c');
  await a.registry.start();
  await assert.rejects(c.registry.start(), (err: Error) => {
    assert.match(err.message, new RegExp(`^node_name "mta" is taken by a live node sharing this Redis \\(pid ${process.pid} on host-a, `
      + 'last heartbeat \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\(\\d+\\.\\d s ago\\)\\); give each daemon a distinct node_name$'));
    return true;
  });
  assert.ok(c.logs.some((r) => r.event === 'node_name_taken' && r.other_host === 'host-a' && r.other_pid === process.pid));
  // The refused one's stop leaves the live node's entry alone.
  await c.registry.stop();
  const list = await a.registry.list();
  assert.deepEqual(list.map((n) => [n.name, n.host, n.self]), [['mta', 'host-a', true]]);
  await a.registry.stop();
});

test('a daemon restarted on the same machine takes its dead predecessor\'s name at once; the predecessor\'s heartbeats are then refused', async () => {
  const keys = freshPrefix();
  // Same host and this very pid: as a container's daemon restarted as pid 1.
  const old = node(keys, 'mta', 'host-a');
  const restarted = node(keys, 'mta', 'host-a');
  await old.registry.start();
  await restarted.registry.start();
  assert.deepEqual((await restarted.registry.list()).map((n) => [n.name, n.self]), [['mta', true]]);
  await old.registry.beat();
  assert.ok(old.logs.some((r) => r.event === 'node_name_taken'), 'the displaced instance says so');
  assert.deepEqual((await restarted.registry.list()).map((n) => n.self), [true], 'and writes nothing');
  await old.registry.stop();
  assert.equal((await restarted.registry.list()).length, 1, 'its stop leaves the new entry');
  await restarted.registry.stop();
});

test('a clean stop removes the node\'s entry', async () => {
  const keys = freshPrefix();
  const a = node(keys, 'a', 'host-a');
  const b = node(keys, 'b', 'host-b');
  await a.registry.start();
  await b.registry.start();
  await b.registry.stop();
  assert.deepEqual((await a.registry.list()).map((n) => n.name), ['a']);
  assert.deepEqual(await redis().hkeys(`${keys}:nodes`), ['a']);
  await a.registry.stop();
  assert.equal(await redis().exists(`${keys}:nodes`), 0);
});

test('an entry silent for more than a day is dropped; one this version cannot read is skipped', async () => {
  const keys = freshPrefix();
  const a = node(keys, 'a', 'host-a');
  await a.registry.start();
  const [seconds] = await redis().time();
  const old = {
    instance: 'gone', interval_ms: 2000, name: 'gone', host: 'host-g', pid: 4242, version: '0.0.1', started_at: 0,
    connections: { outbound: 0, connecting: 0, inbound: 0 }, held: 0, rates, queues: [], heartbeat_ms: Number(seconds) * 1000 - 2 * 86_400_000,
  };
  await redis().hset(`${keys}:nodes`, 'gone', JSON.stringify(old), 'odd', '{"instance":"x"}');
  assert.deepEqual((await a.registry.list()).map((n) => n.name), ['a']);
  assert.deepEqual((await redis().hkeys(`${keys}:nodes`)).sort(), ['a', 'odd']);
  await a.registry.stop();
});
