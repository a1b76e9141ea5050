// The daemon on a primary behind Sentinel with wait_replicas: 1: it delivers; after kill -9 of the
// primary and the sentinels' failover it delivers through the promoted replica, every message it
// acknowledged before or during the kill included; the promoted replica has no replica of its own,
// so intake refuses new mail with 451 until one is attached, and accepts it again then.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { type Daemon, runCli } from '../helpers/daemon.js';
import { startInjector, waitForDelivered } from '../helpers/injector.js';
import { adminClient, type RedisProcess, settle, spawnRedis } from '../helpers/redis-cluster.js';
import { type TestRedisSentinel, startRedisSentinel } from '../helpers/redis-sentinel.js';
import { makeMessage, sendMail, sendMany } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone } from './world.js';

const SINK = '127.0.0.231';
const FREE = ['a.sentinel.test', 'b.sentinel.test', 'c.sentinel.test'];
const HELD = 'held.sentinel.test';

let topology: TestRedisSentinel;
let world: World;
let replacement: RedisProcess | undefined;

before(async () => {
  topology = await startRedisSentinel();
  world = await buildWorld({
    zone: mxZone(Object.fromEntries([...FREE, HELD].map((d) => [d, SINK]))),
    sinks: { mx: { host: SINK } },
    config: {
      redis: { sentinels: topology.sentinels.map((s) => `${s.host}:${s.port}`), sentinel_name: topology.name, wait_replicas: 1 },
      // Claims lapse soon, so a job held when the primary died comes back within seconds.
      job_lock_timeout: '4s',
    },
  });
});

after(async () => {
  await world?.close();
  await replacement?.dispose();
  await topology?.stop();
});

async function cli(d: Daemon, ...args: string[]): Promise<string> {
  const r = await runCli([...args, '-c', d.configPath]);
  assert.equal(r.code, 0, `impulse ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function send(to: string): Promise<{ response: string }> {
  return sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) });
}

test('sentinel failover under load: mail acknowledged before and during the kill of the primary is delivered through the promoted replica', async () => {
  const d = await world.start();
  const sink = world.sinks.mx!;

  const first = Array.from({ length: 40 }, (_, i) => `s${i}@${FREE[i % FREE.length]}`);
  const replies = await sendMany({
    host: '127.0.0.1', port: world.intakePort, connections: 4,
    messages: first.map((to) => ({ from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) })),
  });
  assert.ok(replies.every((r) => r.startsWith('250 ')));
  await waitForDelivered(sink, first, 15_000);

  // Acknowledged and still queued at the kill: mail for a suspended domain.
  await cli(d, 'suspend', HELD);
  const held = Array.from({ length: 10 }, (_, i) => `h${i}@${HELD}`);
  for (const to of held) assert.match((await send(to)).response, /^250 /);
  await settle('held mail parked in Redis', 10_000, async () => {
    const q = JSON.parse(await cli(d, 'mailq', '--domain', HELD, '--json')) as { rows: Array<{ delayed: number }> };
    if (q.rows[0]?.delayed !== held.length) throw new Error(JSON.stringify(q.rows));
  });

  const injector = startInjector({ host: '127.0.0.1', port: world.intakePort, sessions: 4, domains: FREE, tag: 'k', gapMs: 20, retryMs: 100 });
  await injector.until((s) => s.filter((m) => m.outcome === 'accepted').length >= 40, 20_000, 'load before the kill');
  const old = await topology.primary();
  const killedAt = Date.now();
  await topology.killPrimary9();
  const { newPrimaryPort } = await topology.failedOver(old.port);
  process.stdout.write(`# primary ${old.port} killed; ${newPrimaryPort} promoted after ${Date.now() - killedAt} ms\n`);
  await delay(1000);
  const sent = await injector.stop();

  const accepted = sent.filter((m) => m.outcome === 'accepted');
  const refused = sent.filter((m) => m.outcome !== 'accepted');
  assert.deepEqual(refused.filter((m) => !/^4\d\d /.test(m.reply ?? '')).map((m) => `${m.outcome}: ${m.reply}`), [], 'every refusal is a 4xx reply');
  assert.ok(refused.every((m) => m.answeredAt >= killedAt), 'nothing refused before the kill');

  await cli(d, 'resume', HELD);
  await waitForDelivered(sink, [...held, ...accepted.map((m) => m.recipient)], 40_000);
  process.stdout.write(`# ${accepted.length} accepted under load, ${refused.length} refused, all accepted delivered\n`);

  // The promoted replica has none of its own: nothing new can be made safe, so nothing is taken.
  await assert.rejects(send('late@a.sentinel.test'), (err: Error & { response?: string }) => {
    assert.match(err.response ?? '', /^451 4\.3\.0 Temporary queue failure: 0 of 1 Redis replicas confirmed the message/);
    return true;
  });
  replacement = await spawnRedis(async (port, dir) => [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes',
    '--repl-diskless-sync-delay', '0', '--replicaof', '127.0.0.1', String(newPrimaryPort),
  ]);
  const admin = adminClient(replacement.port);
  try {
    await settle('replacement replica synced', 15_000, async () => {
      const role = await admin.role();
      if (role[3] !== 'connected') throw new Error(`link ${String(role[3])}`);
    });
  } finally {
    admin.disconnect();
  }
  assert.match((await send('again@b.sentinel.test')).response, /^250 /);
  await sink.waitForRecipients(['again@b.sentinel.test'], 10_000);
  assert.deepEqual(d.logs.filter((r) => r.event === 'job_error'), []);
  process.stdout.write(`# queue errors: ${JSON.stringify([...new Set(d.logs.filter((r) => r.event === 'queue_error').map((r) => r.err))])}\n`);
  process.stdout.write(`# warnings and errors logged: ${JSON.stringify(countEvents(d.logs.filter((r) => r.level === "warn" || r.level === "error")))}\n`);
});

function countEvents(records: Array<{ event?: string }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of records) out[r.event ?? '?'] = (out[r.event ?? '?'] ?? 0) + 1;
  return out;
}
