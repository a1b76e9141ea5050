// Limits shared by the nodes of a cluster, as the receiver sees them: cluster_max_outbound_connections
// caps the sessions three daemons open together (per binding × domain, and per MX host from
// `hosts:`), a connection moving between sibling domains carries its lease along, and
// cluster_outbound_throttle_messages paces what two daemons start together.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { type Daemon } from '../helpers/daemon.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone } from './world.js';

let world: World;
let redis: TestRedis;

const slowData = async (ctx: { stage: string }) => {
  if (ctx.stage === 'data') await new Promise((resolve) => setTimeout(resolve, 200));
  return undefined;
};

before(async () => {
  redis = await startRedis();
  world = await buildWorld({
    zone: {
      ...mxZone({ 'cap.test': '127.0.0.140', 'paced.test': '127.0.0.142' }),
      // Two domains on one MX host, capped by its hosts: entry.
      'h1.test': { mx: [{ preference: 10, exchange: 'mx.shared.test' }] },
      'h2.test': { mx: [{ preference: 10, exchange: 'mx.shared.test' }] },
      'mx.shared.test': { a: ['127.0.0.141'] },
      // Two sibling domains on one MX host, each with its own pair limit.
      'mig1.test': { mx: [{ preference: 10, exchange: 'mx.mig.test' }] },
      'mig2.test': { mx: [{ preference: 10, exchange: 'mx.mig.test' }] },
      'mx.mig.test': { a: ['127.0.0.143'] },
    },
    sinks: {
      cap: { host: '127.0.0.140', behaviour: slowData },
      shared: { host: '127.0.0.141', behaviour: slowData },
      paced: { host: '127.0.0.142' },
      mig: { host: '127.0.0.143', behaviour: slowData },
    },
    config: {
      redis: { url: redis.url }, connection_allocation_aggressiveness: 'high', max_deliveries_per_connection: 5,
      domains: { 'cap.test': { cluster_max_outbound_connections: 3 }, 'paced.test': { cluster_outbound_throttle_messages: '10/1' } },
      hosts: { 'mx.shared.test': { cluster_max_outbound_connections: 2 } },
    },
  });
});

after(async () => {
  await world.close();
  await redis.stop();
});

function nodes(prefix: string, n: number, overrides: Record<string, unknown> = {}): Promise<Array<{ daemon: Daemon; port: number }>> {
  return Promise.all(Array.from({ length: n }, (_, i) => world.startNode(`${prefix}-${i}`, overrides)));
}

/** Injects each address into the nodes in turn, twenty at a time. */
async function inject(into: Array<{ port: number }>, addresses: string[]): Promise<void> {
  for (let i = 0; i < addresses.length; i += 20) {
    await Promise.all(addresses.slice(i, i + 20).map((to, j) => sendMail({
      host: '127.0.0.1', port: into[(i + j) % into.length]!.port, from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }),
    })));
  }
}

const deliveredBy = (d: Daemon, domain: string) => d.logs.filter((r) => r.event === 'delivery' && r.domain === domain).length;

test('cluster_max_outbound_connections: three nodes together never hold more sessions than the cap, per domain and per MX host, and every node takes part', async () => {
  const three = await nodes('cap', 3);
  try {
    const cap = Array.from({ length: 90 }, (_, i) => `c${i}@cap.test`);
    const shared = Array.from({ length: 60 }, (_, i) => `s${i}@h${1 + (i % 2)}.test`);
    await inject(three, [...cap, ...shared]);
    await world.sinks.cap!.waitForRecipients(cap, 60_000);
    await world.sinks.shared!.waitForRecipients(shared, 60_000);
    assert.equal(world.sinks.cap!.peakConcurrency().total, 3, 'the cap is reached and never passed');
    assert.equal(world.sinks.shared!.peakConcurrency().total, 2, 'the MX host cap holds across both domains');
    for (const { daemon } of three) assert.ok(deliveredBy(daemon, 'cap.test') > 0, 'each node delivered some of it');
  } finally {
    await Promise.all(three.map(({ daemon }) => daemon.stop()));
  }
});

test('an emptied connection moves to a sibling domain under cluster_max_outbound_connections with that pair\'s lease, and keeps its former pair\'s', async () => {
  // One connection for the site (max_outbound_connections 1), held open while the test looks at
  // the leases: the sibling's mail waits for it, which it takes over once its first domain is done.
  const capped = { cluster_max_outbound_connections: 1, max_outbound_connections: 1 };
  const [node] = await nodes('mig', 1, {
    domains: { 'mig1.test': capped, 'mig2.test': capped }, max_deliveries_per_connection: 100, idle_timeout: '1m',
  });
  const client = new Redis(redis.url);
  try {
    const mail = ['m0@mig1.test', 'n0@mig2.test', 'm1@mig1.test', 'n1@mig2.test', 'm2@mig1.test', 'n2@mig2.test'];
    await inject([node!], mail);
    const got = (await world.sinks.mig!.waitForRecipients(mail, 30_000)).sort((a, b) => a.receivedAt - b.receivedAt);
    assert.equal(new Set(got.map((m) => m.connectionId)).size, 1, 'one session carried both domains\' mail');
    const domains = got.map((m) => m.rcptTo[0]!.split('@')[1]);
    assert.equal(domains.filter((d, i) => i > 0 && d !== domains[i - 1]).length, 1, `one move: ${domains.join(' ')}`);
    // The idle session is counted under both pairs, as it may serve either without asking again.
    const live = (domain: string) => client.zcard(`impulse:lease:pair:default:${domain}`);
    assert.deepEqual([await live('mig1.test'), await live('mig2.test')], [1, 1]);
    await node!.daemon.stop();
    assert.deepEqual([await live('mig1.test'), await live('mig2.test')], [0, 0], 'both given back as the session closed');
  } finally {
    client.disconnect();
    if (node!.daemon.proc.exitCode === null) await node!.daemon.stop();
  }
});

test('cluster_outbound_throttle_messages "10/1": two nodes together start one message per 100 ms, never more than ten in a second', async () => {
  // A window of 10 (at most 16 jobs fetched, two per worker) keeps one node from taking all 30
  // while the throttle holds them back, so both must deliver some.
  const two = await nodes('paced', 2, { max_active_messages: 10 });
  try {
    const paced = Array.from({ length: 30 }, (_, i) => `p${i}@paced.test`);
    await inject(two, paced);
    const got = await world.sinks.paced!.waitForRecipients(paced, 30_000);
    const times = got.map((m) => m.receivedAt).sort((a, b) => a - b);
    // Starts are paced; arrivals add the time on the wire, so a window gets one of slack.
    for (let i = 0; i + 11 < times.length; i++) {
      assert.ok(times[i + 11]! - times[i]! >= 1000, `arrivals ${i}..${i + 11} within ${times[i + 11]! - times[i]!} ms`);
    }
    assert.ok(times.at(-1)! - times[0]! >= 29 * 100 - 250, `30 messages took ${times.at(-1)! - times[0]!} ms at one per 100 ms`);
    for (const { daemon } of two) assert.ok(deliveredBy(daemon, 'paced.test') > 0, 'both nodes delivered some of it');
  } finally {
    await Promise.all(two.map(({ daemon }) => daemon.stop()));
  }
});
