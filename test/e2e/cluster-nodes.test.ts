// Two daemons on one Redis, as an operator runs a cluster: `impulse summary` on either lists both
// nodes alive; `impulse mailq` and `impulse domain` on one count the mail the other holds on a
// session; a third daemon under a live node's name refuses to start; a node killed with SIGKILL
// is shown silent and its figures are no longer counted.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { DomainDetail, Mailq, Summary } from '../../src/admin/protocol.js';
import { type Daemon, runCli, startDaemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone } from './world.js';

/** How often a wait asks the daemon again: the state it waits for comes with a heartbeat, every 2 s. */
const POLL_MS = 250;

let redis: TestRedis;
let world: World;
const daemons: Daemon[] = [];
let releaseTarpit: () => void = () => {};
const tarpit = new Promise<void>((resolve) => {
  releaseTarpit = resolve;
});
let dataStarted: () => void = () => {};
const dataStartedOnce = new Promise<void>((resolve) => {
  dataStarted = resolve;
});

before(async () => {
  redis = await startRedis();
  world = await buildWorld({
    zone: mxZone({ 'slow.test': '127.0.0.160' }),
    sinks: {
      // Sits on the DATA of its first message until the end: the node that took it holds it on a session.
      slow: { host: '127.0.0.160', behaviour: async (ctx) => {
        if (ctx.stage !== 'data') return undefined;
        dataStarted();
        await tarpit;
        return { code: 451, message: '4.3.0 released at the end of the test' };
      } },
    },
    config: { redis: { url: redis.url }, data_timeout: '10m', retry_interval: '1h', max_retry_interval: '2h' },
  });
});

after(async () => {
  releaseTarpit();
  for (const d of daemons) if (d.proc.exitCode === null && d.proc.signalCode === null) await d.stop();
  await world.close();
  await redis.stop();
});

/**
 * A daemon of the world on the shared Redis, in a directory of its own: the world's daemons share
 * one config file, and each node needs its own listen port, admin socket and node_name.
 */
async function startNode(name: string, port: number, opts: { waitReady?: boolean } = {}): Promise<Daemon> {
  const d = await startDaemon({
    ...world.config, node_name: name, admin: { socket: join(world.dir, `admin-${daemons.length}.sock`) }, listen: [{ address: '127.0.0.1', port }],
  }, opts);
  daemons.push(d);
  return d;
}

async function json<T>(d: Daemon, ...args: string[]): Promise<T> {
  const r = await runCli([...args, '-c', d.configPath, '--json']);
  assert.equal(r.code, 0, `impulse ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

async function text(d: Daemon, ...args: string[]): Promise<string> {
  const r = await runCli([...args, '-c', d.configPath]);
  assert.equal(r.code, 0, `impulse ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Asks `ask` again until `done` holds of its answer; the answer, or a failure with the last one after `timeoutMs`. */
async function until<T>(ask: () => Promise<T>, done: (v: T) => boolean, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await ask();
    if (done(v)) return v;
    assert.ok(Date.now() < deadline, `${what} not seen within ${timeoutMs} ms; last answer: ${JSON.stringify(v)}`);
    await delay(POLL_MS);
  }
}

test('summary lists both nodes alive, mailq and domain on one count what the other holds, a live name is refused, a killed node turns silent', async () => {
  const portB = await freePort('127.0.0.1');
  const b = await startNode('node-b', portB);
  await sendMail({ host: '127.0.0.1', port: portB, from: 's@sender.test', to: ['x@slow.test'], raw: makeMessage({ from: 's@sender.test', to: ['x@slow.test'] }) });
  await dataStartedOnce;
  // Started only now, so the one message is node-b's.
  const a = await startNode('node-a', world.intakePort);

  const summary = await until(() => json<Summary>(a, 'summary'),
    (s) => s.nodes.find((n) => n.name === 'node-b')?.held === 1, 'node-b holding its message in node-a\'s summary');
  assert.equal(summary.node, 'node-a');
  assert.deepEqual(summary.nodes.map((n) => [n.name, n.alive, n.pid]), [['node-a', true, a.proc.pid], ['node-b', true, b.proc.pid]]);
  const nodeB = summary.nodes[1]!;
  assert.deepEqual(nodeB.connections, { outbound: 1, connecting: 0, inbound: 0 });
  assert.ok(nodeB.age_s < 6, `node-b's heartbeat ${nodeB.age_s} s old`);
  assert.equal(summary.queue.active, 0, 'node-a\'s own queue holds nothing');
  const table = await text(a, 'summary');
  assert.match(table, /^NODE +STATUS +HOST +INBOUND +OUTBOUND +CONNECTING +HELD +DELIVERED\/S +HEARTBEAT$/m);
  assert.match(table, /^node-a +alive +\S+ +0 +0 +0 +0 +0\.00 +\d+\.\ds ago$/m);
  assert.match(table, /^node-b +alive +\S+ +0 +1 +0 +1 +0\.00 +\d+\.\ds ago$/m);
  const fromB = await json<Summary>(b, 'summary');
  assert.deepEqual(fromB.nodes.map((n) => [n.name, n.alive]), [['node-a', true], ['node-b', true]], 'either node sees both');

  // The message is on node-b's session: node-a knows of it only from node-b's heartbeat.
  const q = await json<Mailq>(a, 'mailq');
  assert.deepEqual(q.rows.map((r) => [r.domain, r.binding, r.active, r.delayed, r.connections]), [['slow.test', 'default', 1, 0, 1]]);
  assert.match(await text(a, 'mailq'), /^slow\.test +default +1 +0 +1 /m);
  const d = await json<DomainDetail>(a, 'domain', 'slow.test');
  assert.equal(d.active, 1);
  assert.deepEqual(d.other_nodes, [{ node: 'node-b', binding: 'default', ready: 0, in_flight: 1, connections: 1, connecting: 0 }]);
  assert.deepEqual(d.bindings.map((x) => [x.binding, x.in_flight, x.connections]), [['default', 1, 1]]);
  const own = await json<Mailq>(b, 'mailq');
  assert.deepEqual(own.rows.map((r) => [r.domain, r.active, r.connections]), [['slow.test', 1, 1]], 'node-b does not count itself twice');

  // A third daemon under a live node's name stops before it takes any mail.
  const twin = await startNode('node-a', await freePort('127.0.0.1'), { waitReady: false });
  const exit = await twin.exited;
  assert.equal(exit.code, 1, twin.stderr);
  assert.match(twin.stderr, new RegExp(`node_name "node-a" is taken by a live node sharing this Redis \\(pid ${a.proc.pid} on \\S+, last heartbeat \\S+ \\(\\d+\\.\\d s ago\\)\\); give each daemon a distinct node_name`));
  assert.ok(twin.logs.some((r) => r.event === 'node_name_taken'));
  assert.ok(!twin.logs.some((r) => r.event === 'ready'));

  b.proc.kill('SIGKILL');
  await b.exited;
  const after = await until(() => json<Summary>(a, 'summary'), (s) => s.nodes.find((n) => n.name === 'node-b')?.alive === false,
    'node-b silent in node-a\'s summary');
  const silent = after.nodes.find((n) => n.name === 'node-b')!;
  assert.ok(silent.age_s >= 6, `silent after three 2 s intervals, at ${silent.age_s} s`);
  assert.ok(after.nodes.find((n) => n.name === 'node-a')!.alive);
  assert.match(await text(a, 'summary'), /^node-b +silent +\S+ +- +- +- +- +- +\d+\.\ds ago$/m);
  // The job stays locked by the dead node for job_lock_timeout (60 s): nothing of it is counted meanwhile.
  assert.deepEqual((await json<Mailq>(a, 'mailq')).rows, []);
});
