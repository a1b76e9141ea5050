// The daemon on a real Redis Cluster (three masters, a replica each): mail to many domains is
// delivered through all three masters; a message whose domains map to several shards is kept,
// shown and released in each.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { ShardLayout } from '../../src/queue/shards.js';
import { type Daemon, runCli, startDaemon } from '../helpers/daemon.js';
import { waitForDelivered } from '../helpers/injector.js';
import { freePort } from '../helpers/ports.js';
import { type TestRedisCluster, startRedisCluster } from '../helpers/redis-cluster.js';
import { makeMessage, sendMail, sendMany } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone, queueIdOf } from './world.js';

const SINK = '127.0.0.230';
const DOMAINS = Array.from({ length: 60 }, (_, i) => `d${i}.cluster.test`);

let cluster: TestRedisCluster;
let world: World;

before(async () => {
  cluster = await startRedisCluster();
  world = await buildWorld({
    zone: mxZone(Object.fromEntries(DOMAINS.map((d) => [d, SINK]))),
    sinks: { mx: { host: SINK } },
    config: { redis: { cluster: cluster.urls } },
  });
});

after(async () => {
  await world?.close();
  await cluster?.stop();
});

/** A daemon in a directory of its own (config file, admin socket), on its own intake port. */
async function node(name: string, redis: Record<string, unknown> = {}): Promise<{ daemon: Daemon; port: number }> {
  const port = await freePort('127.0.0.1');
  const dir = join(world.dir, name);
  mkdirSync(dir);
  const daemon = await startDaemon({
    ...world.config, node_name: name, listen: [{ address: '127.0.0.1', port }], admin: { socket: join(dir, 'admin.sock') },
    redis: { cluster: cluster.urls, ...redis },
  }, { dir });
  return { daemon, port };
}

async function json<T>(d: Daemon, ...args: string[]): Promise<T> {
  const r = await runCli([...args, '--json', '-c', d.configPath]);
  assert.equal(r.code, 0, `impulse ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Keys matching `pattern` on every live master: what Impulse left in the cluster. */
async function keysOnMasters(pattern: string): Promise<string[]> {
  const found: string[] = [];
  for (const m of await cluster.masters()) {
    const redis = new Redis(m.url, { maxRetriesPerRequest: 0 });
    try {
      found.push(...await redis.keys(pattern));
    } finally {
      redis.disconnect();
    }
  }
  return found;
}

test('a few hundred messages to sixty domains are delivered, every master carrying a share; a message over three shards lives and ends in each', async () => {
  const a = await node('spread');
  try {
    const before = await cluster.commandsProcessed();
    const recipients = Array.from({ length: 300 }, (_, i) => `u${i}@${DOMAINS[i % DOMAINS.length]}`);
    const replies = await sendMany({
      host: '127.0.0.1', port: a.port, connections: 6,
      messages: recipients.map((to) => ({ from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) })),
    });
    assert.ok(replies.every((r) => r.startsWith('250 ')), replies.find((r) => !r.startsWith('250 ')));
    await waitForDelivered(world.sinks.mx!, recipients, 30_000);
    const afterDelivery = await cluster.commandsProcessed();
    const masters = await cluster.masters();
    const done = masters.map((m) => afterDelivery.get(m.port)! - before.get(m.port)!);
    const total = done.reduce((x, y) => x + y, 0);
    t_diag(`commands per master for 300 messages: ${done.join(', ')} (${(total / 300).toFixed(1)} per message)`);
    for (const [i, n] of done.entries()) assert.ok(n >= total / 6, `master ${masters[i]!.port} ran ${n} of ${total} commands: ${done.join(', ')}`);

    // Three domains whose shards live on three different masters, one of them suspended: the
    // message keeps a body in each shard, and its job for the suspended domain stays queued there.
    const layout = new ShardLayout('impulse', 16, true);
    const byMaster = new Map<number, string>();
    for (const d of DOMAINS) {
      const owner = (await cluster.masterOf(`${layout.of(d).prefix}:msg:x`)).port;
      if (!byMaster.has(owner)) byMaster.set(owner, d);
    }
    const [held, ...free] = [...byMaster.values()];
    assert.equal(free.length, 2, 'the sixty domains reach all three masters');
    await json(a.daemon, 'suspend', held!);
    const to = [`m@${held}`, `m@${free[0]}`, `m@${free[1]}`];
    const r = await sendMail({ host: '127.0.0.1', port: a.port, from: 's@sender.test', to, raw: makeMessage({ from: 's@sender.test', to }) });
    const qid = queueIdOf(r.response);
    await world.sinks.mx!.waitForRecipients(to.slice(1), 10_000);
    const want = JSON.stringify([[held, 'delayed'], [free[0], 'delivered'], [free[1], 'delivered']].sort());
    let shown = '';
    for (const deadline = Date.now() + 10_000; shown !== want && Date.now() < deadline; await delay(200)) {
      const message = await json<{ jobs: Array<{ domain: string; state: string }> }>(a.daemon, 'message', 'show', qid);
      shown = JSON.stringify(message.jobs.map((j) => [j.domain, j.state]).sort());
    }
    assert.equal(shown, want, 'message show gathers the jobs of all three shards: two delivered, the suspended one parked');
    const mailq = await json<{ rows: Array<{ domain: string; delayed: number }> }>(a.daemon, 'mailq', '--domain', held!);
    assert.deepEqual(mailq.rows.map((row) => [row.domain, row.delayed]), [[held, 1]]);
    assert.equal((await keysOnMasters(`*:msg:${qid}`)).length, 1, 'the shards done with the message released their copies of the body');

    await json(a.daemon, 'resume', held!);
    await world.sinks.mx!.waitForRecipients([to[0]!], 10_000);
    await a.daemon.waitForLog((l) => l.event === 'delivery' && l.qid === qid && l.domain === held);
    await delay(200);
    assert.deepEqual(await keysOnMasters(`*:msg:${qid}*`), [], 'no body or job set of the message is left on any master');
    const summary = await json<{ queue: { delayed: number; waiting: number } }>(a.daemon, 'summary');
    assert.deepEqual(summary.queue, { ...summary.queue, delayed: 0, waiting: 0 });
  } finally {
    await a.daemon.stop();
  }
});

function t_diag(text: string): void {
  process.stdout.write(`# ${text}\n`);
}
