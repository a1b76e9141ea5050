// The daemon on a real Redis Cluster (three masters, a replica each): mail to many domains is
// delivered through all three masters; a message whose domains map to several shards is kept,
// shown and released in each; with wait_replicas beyond what the cluster has, intake answers 451
// and leaves nothing behind; and with wait_replicas: 1, a master killed with -9 under load loses
// no message that got 250, and the mail refused meanwhile got a 4xx.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { ShardLayout } from '../../src/queue/shards.js';
import { type Daemon, runCli } from '../helpers/daemon.js';
import { startInjector, waitForDelivered } from '../helpers/injector.js';
import { type TestRedisCluster, startRedisCluster } from '../helpers/redis-cluster.js';
import { makeMessage, sendMail, sendMany } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone, queueIdOf } from './world.js';

const SINK = '127.0.0.230';
const DOMAINS = Array.from({ length: 60 }, (_, i) => `d${i}.cluster.test`);
/** Claims lapse soon, so a job held when its master died comes back within seconds. */
const JOB_LOCK = '4s';

let cluster: TestRedisCluster;
let world: World;

before(async () => {
  cluster = await startRedisCluster();
  world = await buildWorld({
    zone: mxZone(Object.fromEntries(DOMAINS.map((d) => [d, SINK]))),
    sinks: { mx: { host: SINK } },
    config: { redis: { cluster: cluster.urls }, job_lock_timeout: JOB_LOCK },
  });
});

after(async () => {
  await world?.close();
  await cluster?.stop();
});

/** A node on the test's Redis Cluster. */
const node = (name: string, redis: Record<string, unknown> = {}) => world.startNode(name, { redis: { cluster: cluster.urls, ...redis } });

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
  // A second node hears the first's suspension over the cluster's pub/sub.
  const b = await node('listener');
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
    await b.daemon.waitForLog((l) => l.event === 'cluster_event' && l.kind === 'suspend' && l.domain === held && l.from === 'spread');
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
    // Either node may take the job: both read every shard.
    await Promise.any([a, b].map((n) => n.daemon.waitForLog((l) => l.event === 'delivery' && l.qid === qid && l.domain === held)));
    await delay(200);
    assert.deepEqual(await keysOnMasters(`*:msg:${qid}*`), [], 'no body or job set of the message is left on any master');
    const summary = await json<{ queue: { delayed: number; waiting: number } }>(a.daemon, 'summary');
    assert.deepEqual(summary.queue, { ...summary.queue, delayed: 0, waiting: 0 });
  } finally {
    await Promise.all([a.daemon.stop(), b.daemon.stop()]);
  }
});

test('wait_replicas beyond the replicas a master has: 451 4.3.0 naming the shortfall, and nothing of the message is left to deliver', async () => {
  const b = await node('greedy', { wait_replicas: 2, wait_timeout: '200ms' });
  const messageKeys = async () => (await keysOnMasters('*')).filter((k) => /:msg:|:delivery:[0-9A-Z]+-\d+$/.test(k));
  const keysBefore = new Set(await messageKeys());
  try {
    const to = ['w@d1.cluster.test', 'w@d2.cluster.test', 'w@d3.cluster.test'];
    await assert.rejects(
      sendMail({ host: '127.0.0.1', port: b.port, from: 's@sender.test', to, raw: makeMessage({ from: 's@sender.test', to }) }),
      (err: Error & { responseCode?: number; response?: string }) => {
        assert.equal(err.responseCode, 451, err.message);
        assert.match(err.response!, /^451 4\.3\.0 Temporary queue failure: 1 of 2 Redis replicas confirmed the message within 200 ms/);
        return true;
      },
    );
    const rec = await b.daemon.waitForLog((l) => l.event === 'reception_failed');
    assert.match(rec.err, /1 of 2 Redis replicas/);
    assert.deepEqual((await messageKeys()).filter((k) => !keysBefore.has(k)), [], 'every copy of the body and every job removed');
  } finally {
    await b.daemon.stop();
  }
});

test('kill -9 of a master under load with wait_replicas 1: every 250 reaches the MX, mail refused meanwhile got a 4xx, duplicates only around the kill', async () => {
  const c = await node('failover', { wait_replicas: 1 });
  const sink = world.sinks.mx!;
  const injector = startInjector({ host: '127.0.0.1', port: c.port, sessions: 6, domains: DOMAINS, tag: 'f', gapMs: 20, retryMs: 100 });
  try {
    await injector.until((s) => s.filter((m) => m.outcome === 'accepted').length >= 150, 20_000, 'load before the kill');
    const victim = (await cluster.masters())[0]!;
    const killedAt = Date.now();
    await cluster.nodes.find((n) => n.port === victim.port)!.kill9();
    const { newMasterPort } = await cluster.failedOver(victim.port);
    const failedOverAt = Date.now();
    t_diag(`master ${victim.port} killed; replica ${newMasterPort} serves its slots after ${failedOverAt - killedAt} ms`);
    // The promoted replica has no replica of its own: its shards' mail is refused from now on.
    const countAtFailover = injector.sent.filter((m) => m.outcome === 'accepted').length;
    await injector.until((s) => s.filter((m) => m.outcome === 'accepted').length >= countAtFailover + 60, 30_000, 'load after the failover')
      .catch((err: Error) => {
        const refusals = injector.sent.filter((m) => m.outcome !== 'accepted').slice(-5).map((m) => `+${m.answeredAt - killedAt} ms ${m.reply}`);
        const warnings = c.daemon.logs.filter((l) => l.level >= 40).slice(-10).map((l) => JSON.stringify(l));
        throw new Error(`${err.message}\nlast refusals:\n${refusals.join('\n')}\nlast warnings:\n${warnings.join('\n')}`);
      });
    const sent = await injector.stop();

    const accepted = sent.filter((m) => m.outcome === 'accepted');
    const refused = sent.filter((m) => m.outcome !== 'accepted');
    t_diag(`${accepted.length} accepted, ${refused.length} refused`);
    assert.deepEqual(refused.filter((m) => !/^4\d\d /.test(m.reply ?? '')).map((m) => `${m.outcome}: ${m.reply}`), [], 'every refusal is a 4xx reply');
    assert.ok(refused.every((m) => m.answeredAt >= killedAt), 'nothing refused before the kill');
    const layout = new ShardLayout('impulse', 16, true);
    const orphaned = new Set<string>();
    for (const d of DOMAINS) if ((await cluster.masterOf(`${layout.of(d).prefix}:x`)).port === newMasterPort) orphaned.add(d);
    const later = refused.filter((m) => m.answeredAt > failedOverAt + 3000);
    assert.deepEqual(later.filter((m) => !orphaned.has(m.recipient.split('@')[1]!) || !/0 of 1 Redis replicas confirmed/.test(m.reply!)).map((m) => m.reply), [],
      'once the cluster settled, only mail for the shards of the master left without a replica is refused, for want of that replica');
    // Acknowledged mail whose promotion the dead master took with it waits out the hold (14 s).
    await waitForDelivered(sink, accepted.map((m) => m.recipient), 40_000);

    const arrivals = new Map<string, number[]>();
    for (const m of sink.messages) for (const r of m.rcptTo) if (r.startsWith('f')) arrivals.set(r, [...(arrivals.get(r) ?? []), m.receivedAt]);
    // A second copy comes only of mail whose completion the killed master had not yet replicated:
    // delivered in the moment before the kill.
    const twice = [...arrivals].filter(([, at]) => at.length > 1);
    for (const [r, at] of twice) assert.ok(at[0]! <= killedAt + 500 && at[0]! >= killedAt - 2000, `${r} arrived twice (${at.map((x) => x - killedAt).join(', ')} ms after the kill)`);
    // A refused message can still arrive only when its removal met the dead master: refused between the kill and the failover.
    const refusedArrived = refused.filter((m) => arrivals.has(m.recipient));
    for (const m of refusedArrived) assert.ok(m.answeredAt <= failedOverAt + 1000, `${m.recipient} refused at +${m.answeredAt - killedAt} ms and delivered all the same`);
    t_diag(`${twice.length} delivered twice, ${refusedArrived.length} refused but delivered`);
    const events: Record<string, number> = {};
    for (const r of c.daemon.logs.filter((l) => l.level === 'warn' || l.level === 'error')) events[r.event] = (events[r.event] ?? 0) + 1;
    t_diag(`warnings and errors logged: ${JSON.stringify(events)}`);
  } finally {
    await injector.stop();
    await c.daemon.stop();
  }
});

function t_diag(text: string): void {
  process.stdout.write(`# ${text}\n`);
}
