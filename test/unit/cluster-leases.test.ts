// ClusterLeases against a real Redis, with two instances standing for two nodes: the limit holds
// across both, a release on one wakes a waiter on the other, a vanished node's leases lapse after
// their TTL and wake a waiter then, renewal keeps leases alive and restores one deleted behind its back.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { ClusterLeases, type Lease } from '../../src/cluster/leases.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';

const PREFIX = 'impulse';
/** Every test awaits events; one that never comes fails the test instead of hanging the file. */
const BOUNDED = { timeout: 10_000 };

type LogRecord = Record<string, unknown> & { event?: string };

interface Node {
  leases: ClusterLeases;
  redis: Redis;
  subscriber: Redis;
  records: LogRecord[];
  /** Resolves with the first log record of `event`, already written or still to come. */
  logged(event: string): Promise<LogRecord>;
}

let server: TestRedis;
let admin: Redis;
const nodes: Node[] = [];

before(async () => {
  server = await startRedis();
  admin = new Redis(server.url);
});

after(async () => {
  for (const n of nodes) {
    await n.leases.close();
    // Not twice: ioredis arms a 2 s timer on a second disconnect that nothing clears, keeping the file alive.
    for (const r of [n.redis, n.subscriber]) if (r.status !== 'end') r.disconnect();
  }
  admin.disconnect();
  await server.stop();
});

async function node(name: string, ttlMs: number): Promise<Node> {
  const records: LogRecord[] = [];
  const listeners: Array<() => void> = [];
  const log = pino({ level: 'debug' }, {
    write: (line: string) => {
      records.push(JSON.parse(line) as LogRecord);
      for (const l of listeners) l();
    },
  });
  const redis = new Redis(server.url);
  const subscriber = new Redis(server.url);
  const leases = new ClusterLeases({ redis, subscriber, prefix: PREFIX, node: name, ttlMs, log });
  await leases.start();
  const logged = (event: string) => new Promise<LogRecord>((resolve) => {
    const check = () => {
      const found = records.find((r) => r.event === event);
      if (found) resolve(found);
    };
    listeners.push(check);
    check();
  });
  const n = { leases, redis, subscriber, records, logged };
  nodes.push(n);
  return n;
}

async function granted(leases: ClusterLeases, key: string, limit: number): Promise<Lease> {
  const r = await leases.acquire(key, limit);
  assert.ok('lease' in r, `a lease on ${key} under a limit of ${limit}`);
  return r.lease;
}

// The promise comes back wrapped: an async function returning it bare would wait for it.
async function refused(leases: ClusterLeases, key: string, limit: number): Promise<{ freed: Promise<void> }> {
  const r = await leases.acquire(key, limit);
  assert.ok('freed' in r, `no lease on ${key} beyond a limit of ${limit}`);
  return r;
}

test('the limit holds across two nodes; count and held report per key; members name their node', BOUNDED, async () => {
  const a = await node('node-a', 5000);
  const b = await node('node-b', 5000);
  await granted(a.leases, 'mx1', 3);
  await granted(a.leases, 'mx1', 3);
  await granted(b.leases, 'mx1', 3);
  await refused(a.leases, 'mx1', 3);
  await refused(b.leases, 'mx1', 3);
  await granted(b.leases, 'mx2', 3);

  assert.equal(await a.leases.count('mx1'), 3);
  assert.equal(await b.leases.count('mx2'), 1);
  assert.equal(await a.leases.count('nothing'), 0);
  assert.deepEqual(a.leases.held(), new Map([['mx1', 2]]));
  assert.deepEqual(b.leases.held(), new Map([['mx1', 1], ['mx2', 1]]));

  const members = await admin.zrange(`${PREFIX}:lease:mx1`, 0, '-1');
  assert.deepEqual(members.map((m) => m.split(':')[0]).sort(), ['node-a', 'node-a', 'node-b']);
  const pttl = await admin.pttl(`${PREFIX}:lease:mx1`);
  assert.ok(pttl > 5000 && pttl <= 15_000, `the set outlives its leases by a few TTLs, then goes: PTTL ${pttl}`);

  // A larger limit for the same key grants again: the limit is the caller's, the count is the cluster's.
  await granted(b.leases, 'mx1', 4);
  assert.equal(await b.leases.count('mx1'), 4);
});

test('a waiter is woken by a release on another node; waiters on one key share one promise', BOUNDED, async () => {
  // A TTL far beyond the test: only the release message can wake the waiter in time.
  const a = await node('node-a', 30_000);
  const b = await node('node-b', 30_000);
  const held = await granted(b.leases, 'shared', 1);
  const { freed } = await refused(a.leases, 'shared', 1);
  assert.equal((await refused(a.leases, 'shared', 1)).freed, freed, 'one promise for every waiter on the key');
  let woken = false;
  void freed.then(() => { woken = true; });
  await granted(a.leases, 'other', 1);
  assert.equal(woken, false, 'a lease on another key wakes nobody');

  const started = performance.now();
  b.leases.release(held);
  await freed;
  const took = performance.now() - started;
  assert.ok(took < 1000, `woken by the release message, after ${took.toFixed(0)} ms`);
  await granted(a.leases, 'shared', 1);
  assert.deepEqual(b.leases.held(), new Map());
  b.leases.release(held); // twice: nothing more happens
  assert.equal(await a.leases.count('shared'), 1);
});

test('a release that reaches a node before Redis\'s refusal does still wakes it', BOUNDED, async () => {
  const a = await node('node-a', 30_000);
  const b = await node('node-b', 30_000);
  const held = await granted(b.leases, 'race', 1);
  // The acquire script's command (ioredis puts it on the connection) is wrapped so that, after
  // Redis refused, the other node releases and its message is handled before the refusal is.
  const commands = a.redis as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const acquire = commands['impulseLeaseAcquire']!;
  commands['impulseLeaseAcquire'] = async function (this: Redis, ...args: unknown[]) {
    const reply = await acquire.apply(this, args);
    const message = once(a.subscriber, 'message');
    b.leases.release(held);
    await message;
    return reply;
  };
  const { freed } = await refused(a.leases, 'race', 1);
  commands['impulseLeaseAcquire'] = acquire;
  await freed; // the TTL is 30 s: only the release can wake it within the test's bound
  await granted(a.leases, 'race', 1);
});

test('a node that vanishes without releasing: its lease lapses after the TTL and a waiter is woken then, not before', BOUNDED, async () => {
  const ttlMs = 400;
  const a = await node('node-a', ttlMs);
  const b = await node('node-b', ttlMs);
  const sent = performance.now();
  await granted(b.leases, 'crash', 1);
  const grantedAt = performance.now();
  // Gone before its first renewal: its connections close, close() is never called.
  b.redis.disconnect();
  b.subscriber.disconnect();

  await (await refused(a.leases, 'crash', 1)).freed;
  const woke = performance.now();
  // Scores are whole milliseconds of Redis's clock, so the expiry may fall up to 1 ms before sent + TTL.
  assert.ok(woke - sent >= ttlMs - 2, `woken ${(woke - sent).toFixed(1)} ms after the lease was asked for, TTL ${ttlMs} ms`);
  assert.ok(woke - grantedAt <= ttlMs + 150, `woken ${(woke - grantedAt).toFixed(1)} ms after the lease was granted, TTL ${ttlMs} ms`);
  await granted(a.leases, 'crash', 1);
  assert.equal(await a.leases.count('crash'), 1);
});

test('renewal keeps a lease alive past several TTLs; a waiter woken at its old expiry is refused again', BOUNDED, async () => {
  const ttlMs = 300;
  const a = await node('node-a', ttlMs);
  const b = await node('node-b', ttlMs);
  const lease = await granted(a.leases, 'long', 1);
  await (await refused(b.leases, 'long', 1)).freed;
  await refused(b.leases, 'long', 1);
  await delay(4 * ttlMs);
  assert.equal(await b.leases.count('long'), 1);
  await refused(b.leases, 'long', 1);
  const score = await admin.zscore(`${PREFIX}:lease:long`, `node-a:${lease.id}`);
  const [seconds, micros] = await admin.time();
  const ahead = Number(score) - (Number(seconds) * 1000 + Math.floor(Number(micros) / 1000));
  assert.ok(ahead > 0 && ahead <= ttlMs, `the lease expires ${ahead} ms from now by Redis's clock`);
  assert.equal(a.records.filter((r) => r.event === 'lease_lapsed').length, 0, 'nothing lapsed');
});

test('a lease deleted behind its back is put back at renewal and logged once as lease_lapsed', BOUNDED, async () => {
  const ttlMs = 300;
  const a = await node('node-a', ttlMs);
  const lease = await granted(a.leases, 'gone', 2);
  await granted(a.leases, 'gone', 2);
  // Its count is not checked here: a renewal may come between the two calls and put it back.
  assert.equal(await admin.zrem(`${PREFIX}:lease:gone`, `node-a:${lease.id}`), 1);

  const record = await a.logged('lease_lapsed');
  assert.equal(record['key'], 'gone');
  assert.equal(record['leases'], 1);
  assert.equal(typeof record['msg'], 'string');
  assert.notEqual(await admin.zscore(`${PREFIX}:lease:gone`, `node-a:${lease.id}`), null, 'the member is back');
  assert.equal(await a.leases.count('gone'), 2);
  await delay(ttlMs); // three more renewals
  assert.equal(a.records.filter((r) => r.event === 'lease_lapsed').length, 1, 'logged once');
});

test('close releases what the node holds and wakes the other node\'s waiter; acquire after close rejects', BOUNDED, async () => {
  const a = await node('node-a', 30_000);
  const b = await node('node-b', 30_000);
  await granted(a.leases, 'closing', 2);
  await granted(a.leases, 'closing', 2);
  const { freed } = await refused(b.leases, 'closing', 2);
  await a.leases.close();
  await freed;
  assert.equal(await b.leases.count('closing'), 0);
  assert.deepEqual(a.leases.held(), new Map());
  await assert.rejects(a.leases.acquire('closing', 2), /closed/);
});

test('a Redis error rejects acquire; a failed release is logged, not thrown; a limit under 1 is refused', BOUNDED, async () => {
  const a = await node('node-a', 30_000);
  const lease = await granted(a.leases, 'broken', 1);
  await assert.rejects(a.leases.acquire('broken', 0), RangeError);
  a.redis.disconnect();
  await assert.rejects(a.leases.acquire('broken', 2), /Connection is closed/);
  a.leases.release(lease);
  const record = await a.logged('lease_release_failed');
  assert.equal(record['key'], 'broken');
  assert.equal(await admin.zcard(`${PREFIX}:lease:broken`), 1, 'left to lapse');
});
