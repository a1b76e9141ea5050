// Several daemons on one Redis hold the same state: a suspension said to one node holds mail
// injected into another (and into a node started later), a domain one node delays is delayed on
// the others, a shaping action one node takes holds on the others and an operator's clear on any
// node ends it everywhere.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type Daemon, type LogRecord, runCli } from '../helpers/daemon.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone } from './world.js';

let world: World;
let redis: TestRedis;
let rated = true;

before(async () => {
  redis = await startRedis();
  world = await buildWorld({
    zone: {
      ...mxZone({ 'held.test': '127.0.0.120', 'calm.test': '127.0.0.120', 'dead.test': '127.0.0.121', 'rated.test': '127.0.0.122' }),
    },
    sinks: {
      main: { host: '127.0.0.120' },
      rated: { host: '127.0.0.122', behaviour: (ctx) => (ctx.stage === 'data' && rated ? { code: 421, message: '4.7.28 rate limited' } : undefined) },
    },
    config: { redis: { url: redis.url } },
  });
});

after(async () => {
  await world.close();
  await redis.stop();
});

/** A node of the cluster, logging at debug (parks are logged there). */
const node = (name: string, extra: Record<string, unknown> = {}) => world.startNode(name, { log_level: 'debug', ...extra });

/** The first record `pred` matches on any of the nodes: any node may take a job, whichever took the mail in. */
function onAny(daemons: Daemon[], pred: (r: LogRecord) => boolean): Promise<LogRecord> {
  return Promise.any(daemons.map((d) => d.waitForLog(pred)));
}

async function inject(port: number, to: string): Promise<void> {
  await sendMail({ host: '127.0.0.1', port, from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) });
}

async function cli(d: Daemon, ...args: string[]): Promise<string> {
  const r = await runCli([...args, '-c', d.configPath]);
  assert.equal(r.code, 0, `impulse ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

test('a suspension said to one node holds mail injected into another and into a node started later; a resume on either releases it', async () => {
  const a = await node('state-a');
  const b = await node('state-b');
  let c: { daemon: Daemon; port: number } | undefined;
  try {
    await cli(a.daemon, 'suspend', 'held.test');
    await b.daemon.waitForLog((r) => r.event === 'cluster_event' && r.kind === 'suspend' && r.domain === 'held.test' && r.from === 'state-a');
    await inject(b.port, 'one@held.test');
    await onAny([a.daemon, b.daemon], (r) => r.event === 'parked' && r.domain === 'held.test' && r.reason === 'suspended');
    c = await node('state-c');
    const nodes = [a.daemon, b.daemon, c.daemon];
    await inject(c.port, 'two@held.test');
    // Parked twice in all: once for each message, by whichever node took it.
    const parkedQids = () => new Set(nodes.flatMap((d) => d.logs).filter((r) => r.event === 'parked' && r.domain === 'held.test' && r.reason === 'suspended').map((r) => r.qid));
    await onAny(nodes, () => parkedQids().size === 2);
    await inject(b.port, 'three@calm.test');
    await world.sinks.main!.waitForRecipients(['three@calm.test']);
    assert.deepEqual(world.sinks.main!.messages.flatMap((m) => m.rcptTo).filter((t) => t.endsWith('@held.test')), [], 'nothing to the suspended domain');
    assert.match(await cli(c.daemon, 'summary'), /^Suspended domains:\s+held\.test$/m);
    await cli(c.daemon, 'resume', 'held.test');
    await world.sinks.main!.waitForRecipients(['one@held.test', 'two@held.test'], 20_000);
    assert.match(await cli(a.daemon, 'summary'), /^Suspended domains:\s+none$/m);
  } finally {
    await Promise.all([a.daemon.stop(), b.daemon.stop(), c?.daemon.stop()]);
  }
});

test('a domain one node delays after mx_failures_to_delay is delayed on the other, whose mail for it waits', async () => {
  const config = { mx_failures_to_delay: 2, retry_interval: '1h', max_retry_interval: '1h', host_failure_retry: '100ms' };
  const a = await node('delay-a', config);
  const b = await node('delay-b', config);
  try {
    // Each refused connection charges one message (CONN_ACTION_REQUEUE1): the second failure needs a second message.
    for (const to of ['x1@dead.test', 'x2@dead.test', 'x3@dead.test']) await inject(a.port, to);
    const delayed = await a.daemon.waitForLog((r) => r.event === 'domain_delayed' && r.domain === 'dead.test');
    const told = await b.daemon.waitForLog((r) => r.event === 'domain_delayed' && r.domain === 'dead.test' && r.by === 'cluster');
    assert.equal(told.until, delayed.until);
    await inject(b.port, 'y@dead.test');
    const parked = await onAny([a.daemon, b.daemon], (r) => r.event === 'parked' && r.domain === 'dead.test');
    assert.equal(parked.reason, 'domain delayed');
    assert.equal(b.daemon.logs.filter((r) => r.event === 'connection_failure' && r.domain === 'dead.test').length, 0, 'the other node tries no connection');
  } finally {
    await Promise.all([a.daemon.stop(), b.daemon.stop()]);
  }
});

test('a shaping action one node takes holds on the other; an operator\'s clear on the other ends it on both', async () => {
  const config = { retry_interval: '1s', shaping_rules: [{ name: 'rate', match: '4\\.7\\.28', action: 'suspend', duration: '1h' }] };
  const a = await node('shape-a', config);
  const b = await node('shape-b', config);
  try {
    await inject(a.port, 'p@rated.test');
    await a.daemon.waitForLog((r) => r.event === 'shaping_action' && r.domain === 'rated.test');
    const adopted = await b.daemon.waitForLog((r) => r.event === 'shaping_action' && r.domain === 'rated.test');
    assert.equal(adopted.by, 'cluster');
    await inject(b.port, 'q@rated.test');
    await onAny([a.daemon, b.daemon], (r) => r.event === 'parked' && r.domain === 'rated.test' && r.reason === 'shaping suspended');
    const listed = JSON.parse(await cli(b.daemon, 'shaping', '--json')) as { actions: Array<{ id: string }> };
    assert.deepEqual(listed.actions.map((x) => x.id), ['rate|binding_domain:default:rated.test']);
    rated = false;
    assert.match(await cli(b.daemon, 'shaping', 'clear', '--domain', 'rated.test'), /^ended 1 shaping action\n/);
    assert.equal((await a.daemon.waitForLog((r) => r.event === 'shaping_action_ended')).by, 'cluster');
    await world.sinks.rated!.waitForRecipients(['p@rated.test', 'q@rated.test'], 20_000);
  } finally {
    await Promise.all([a.daemon.stop(), b.daemon.stop()]);
  }
});
