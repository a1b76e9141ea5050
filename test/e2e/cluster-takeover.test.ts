// No mail lost and no second delivery between nodes: a node killed with -9 under load has its
// held mail taken over by the other within job_lock_timeout, each message delivered, duplicates
// only for transactions it had on the wire; a node stalled past its claims (SIGSTOP) finds its
// jobs taken over when it wakes and abandons them before MAIL FROM instead of sending them again.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type LogRecord, runCli } from '../helpers/daemon.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone } from './world.js';

const LOCK_MS = 4000;
const DOMAINS = Array.from({ length: 10 }, (_, i) => `load${i}.test`);
let world: World;
let redis: TestRedis;
/** Holds each DATA of stop.test until the test lets it go. */
let gate: Promise<void> = Promise.resolve();
let dataStarted: () => void = () => {};

before(async () => {
  redis = await startRedis();
  world = await buildWorld({
    zone: mxZone({ ...Object.fromEntries(DOMAINS.map((d) => [d, '127.0.0.130'])), 'stop.test': '127.0.0.131' }),
    sinks: {
      load: { host: '127.0.0.130', behaviour: async (ctx) => {
        if (ctx.stage === 'data') await new Promise((resolve) => setTimeout(resolve, 400));
        return undefined;
      } },
      stop: { host: '127.0.0.131', behaviour: async (ctx) => {
        if (ctx.stage !== 'data') return undefined;
        dataStarted();
        await gate;
        return undefined;
      } },
    },
    config: { redis: { url: redis.url }, job_lock_timeout: `${LOCK_MS}ms`, connection_allocation_aggressiveness: 'high', max_outbound_connections: 1 },
  });
});

after(async () => {
  await world.close();
  await redis.stop();
});

/** A node of the cluster, logging at debug (parks are logged there). */
const node = (name: string, extra: Record<string, unknown> = {}) => world.startNode(name, { log_level: 'debug', ...extra });

async function inject(port: number, to: string): Promise<void> {
  await sendMail({ host: '127.0.0.1', port, from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) });
}

const at = (r: LogRecord) => Date.parse(r.time as string);

test('a node killed with -9 under load: the other takes its held mail over within job_lock_timeout, every message delivered, duplicates only for transactions it had on the wire', async () => {
  const a = await node('kill-a');
  const b = await node('kill-b');
  try {
    const all = Array.from({ length: 240 }, (_, i) => `m${i}@${DOMAINS[i % DOMAINS.length]}`);
    // Injected twenty at a time, half into each node, so both hold a backlog when one is killed.
    for (let i = 0; i < all.length; i += 20) await Promise.all(all.slice(i, i + 20).map((to, j) => inject(j % 2 === 0 ? a.port : b.port, to)));
    const sink = world.sinks.load!;
    await sink.waitForMessages(40, 30_000);
    // An upper bound on the transactions the killed node had on the wire: every session open now.
    const onWire = sink.open;
    const killedAt = Date.now();
    await a.daemon.stop('SIGKILL');
    const stalled = await b.daemon.waitForLog((r) => r.event === 'job_stalled', LOCK_MS + 5000);
    assert.ok(at(stalled) - killedAt <= LOCK_MS + 500, `taken over ${at(stalled) - killedAt} ms after the kill; job_lock_timeout is ${LOCK_MS} ms`);
    await sink.waitForRecipients(all, 60_000);
    const deliveries = new Map<string, number>();
    for (const m of sink.messages) for (const r of m.rcptTo) deliveries.set(r, (deliveries.get(r) ?? 0) + 1);
    const twice = [...deliveries].filter(([, n]) => n > 1);
    assert.ok(twice.length <= onWire, `${twice.length} delivered twice; ${onWire} transactions were on the wire at the kill`);
    assert.ok(twice.every(([, n]) => n === 2), 'none more than twice');
  } finally {
    await Promise.all([a.daemon.stop(), b.daemon.stop()]);
  }
});

test('a node stalled past its claims (SIGSTOP) finds its jobs taken over when it wakes, and abandons them before MAIL FROM', async () => {
  let release!: () => void;
  gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const started = new Promise<void>((resolve) => {
    dataStarted = resolve;
  });
  const stuck = await node('stop-a', { domains: { 'stop.test': { max_outbound_connections: 1 } } });
  const mail = Array.from({ length: 6 }, (_, i) => `s${i}@stop.test`);
  for (const to of mail) await inject(stuck.port, to);
  await started;
  // The one connection is in DATA; the rest wait in the node's ready queue.
  assert.match((await runCli(['summary', '-c', stuck.daemon.configPath])).stdout, /^Queue:\s+6 active/m);
  stuck.daemon.proc.kill('SIGSTOP');
  const other = await node('stop-b', { domains: { 'stop.test': { max_outbound_connections: 1 } } });
  try {
    await other.daemon.waitForLogs((r) => r.event === 'job_stalled', mail.length, LOCK_MS + 5000);
    release();
    await world.sinks.stop!.waitForRecipients(mail, 30_000);
    stuck.daemon.proc.kill('SIGCONT');
    const abandoned = await stuck.daemon.waitForLogs((r) => r.event === 'attempt_abandoned', mail.length - 1, 15_000);
    assert.deepEqual(new Set(abandoned.map((r) => r.domain)), new Set(['stop.test']));
    const sent = world.sinks.stop!.messages.flatMap((m) => m.rcptTo);
    const twice = mail.filter((to) => sent.filter((x) => x === to).length > 1);
    assert.ok(twice.length <= 1, `only the transaction on the wire at the stall may arrive twice: ${twice.join(', ')}`);
  } finally {
    release();
    stuck.daemon.proc.kill('SIGCONT');
    await Promise.all([stuck.daemon.stop(), other.daemon.stop()]);
  }
});
