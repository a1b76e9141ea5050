// Running the daemon as an operator does: SIGHUP and `impulse reload` apply a changed limit
// without a restart and refuse a broken file; the metrics scrape counts what the sink saw; a
// second SIGTERM stops at once and loses nothing; the admin API over loopback wants its token;
// the systemd unit and its one-per-core template pass systemd-analyze, and every shipped way of
// starting the daemon gives node the same flags.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { type Daemon, SHIPPED_NODE_ARGS, nodeFlagsOf, runCli } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import { makeMessage, sendMail, sendMany } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone, queueIdOf } from './world.js';

let world: World;
/** Released at the end so the tarpitted session's sink handler finishes. */
let releaseTarpit: () => void = () => {};
const tarpit = new Promise<void>((resolve) => {
  releaseTarpit = resolve;
});
let tarpitting = true;
let dataStarted: () => void = () => {};
const dataStartedOnce = new Promise<void>((resolve) => {
  dataStarted = resolve;
});

before(async () => {
  world = await buildWorld({
    zone: {
      ...mxZone({ 'lim.test': '127.0.0.80', 'tar.test': '127.0.0.81', 'ok.test': '127.0.0.83', 'grey.test': '127.0.0.83' }),
      ...mxZone({ 'dead.test': '127.0.0.82' }),
    },
    sinks: {
      lim: { host: '127.0.0.80', behaviour: async (ctx) => {
        if (ctx.stage === 'data') await new Promise((resolve) => setTimeout(resolve, 100));
        return undefined;
      } },
      tar: { host: '127.0.0.81', behaviour: async (ctx) => {
        if (ctx.stage !== 'data' || !tarpitting) return undefined;
        dataStarted();
        await tarpit;
        return { code: 451, message: '4.3.0 released at the end of the test' };
      } },
      ok: { host: '127.0.0.83', behaviour: (ctx) => (ctx.stage === 'rcpt' && ctx.address!.endsWith('@grey.test') ? { code: 451, message: '4.7.1 greylisted' } : undefined) },
    },
    config: { connection_allocation_aggressiveness: 'high', retry_interval: '1h', max_retry_interval: '2h' },
  });
});

after(async () => {
  releaseTarpit();
  await world.close();
});

function redisOf(name: string) {
  return { embedded: true, dir: join(world.dir, `redis-${name}`), appendfsync: 'everysec' };
}

function messages(n: number, domain: string, tag: string) {
  return Array.from({ length: n }, (_, i) => {
    const to = [`${tag}${i}@${domain}`];
    return { from: 's@sender.test', to, raw: makeMessage({ from: 's@sender.test', to }) };
  });
}

function rewrite(d: Daemon, change: (doc: Record<string, any>) => void): void {
  const doc = parse(readFileSync(d.configPath, 'utf8')) as Record<string, any>;
  change(doc);
  writeFileSync(d.configPath, stringify(doc));
}

test('SIGHUP applies a raised connection limit without a restart; a broken file is refused and the old config kept', async () => {
  const d = await world.start({ redis: redisOf('reload'), domains: { 'lim.test': { max_outbound_connections: 1 } } });
  try {
    const sink = world.sinks.lim!;
    await sendMany({ host: '127.0.0.1', port: world.intakePort, messages: messages(6, 'lim.test', 'a'), connections: 3 });
    await sink.waitForMessages(6);
    assert.equal(sink.peakConcurrency().total, 1);

    rewrite(d, (doc) => {
      doc.domains['lim.test'].max_outbound_connections = 3;
      doc.ehlo_hostname = 'reloaded.impulse.test';
    });
    d.proc.kill('SIGHUP');
    const reloaded = await d.waitForLog((r) => r.event === 'reloaded');
    assert.deepEqual(reloaded.restart_required, []);
    // The goal curve reaches a limit of 3 only past about 45 held messages.
    await sendMany({ host: '127.0.0.1', port: world.intakePort, messages: messages(100, 'lim.test', 'b'), connections: 5 });
    await sink.waitForMessages(106, 20000);
    assert.equal(sink.peakConcurrency().total, 3);
    assert.equal(d.logs.filter((r) => r.event === 'starting').length, 1, 'no restart');
    // A new connection greets with the EHLO name from the reloaded file.
    await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: ['e@ok.test'], raw: makeMessage({ from: 's@sender.test', to: ['e@ok.test'] }) });
    const [greeted] = await world.sinks.ok!.waitForRecipients(['e@ok.test']);
    assert.equal(greeted!.helo, 'reloaded.impulse.test');

    rewrite(d, (doc) => {
      doc.domains['lim.test'].max_outbound_connections = 0;
      doc.no_such_key = true;
    });
    d.proc.kill('SIGHUP');
    const refused = await d.waitForLog((r) => r.event === 'reload_refused');
    assert.ok(refused.errors.some((e: string) => e.startsWith('domains.lim.test.max_outbound_connections:')), JSON.stringify(refused.errors));
    assert.ok(refused.errors.includes('no_such_key: unknown key'));
    // The CLI checks the file itself first: the daemon is not asked to reload a file it would refuse.
    const local = await runCli(['reload', '-c', d.configPath]);
    assert.equal(local.code, 2);
    assert.match(local.stderr, /no_such_key: unknown key/);
    // A file that validates but whose plugin cannot load is refused by the daemon.
    rewrite(d, (doc) => {
      doc.domains['lim.test'].max_outbound_connections = 1;
      delete doc.no_such_key;
      doc.plugins = [{ path: './no-such-plugin.mjs' }];
    });
    const remote = await runCli(['reload', '-c', d.configPath]);
    assert.equal(remote.code, 1);
    assert.match(remote.stderr, /no-such-plugin/);

    const detail = await runCli(['domain', 'lim.test', '--json', '-c', d.configPath]);
    assert.equal(detail.code, 0, detail.stderr);
    const limits = (JSON.parse(detail.stdout) as { bindings: Array<{ limits: Record<string, { value: unknown }> }> }).bindings[0]!.limits;
    assert.equal(limits.max_outbound_connections!.value, 3, 'the running config stays');
    await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: ['after@lim.test'], raw: makeMessage({ from: 's@sender.test', to: ['after@lim.test'] }) });
    await sink.waitForRecipients(['after@lim.test']);
  } finally {
    await d.stop();
  }
});

test('the metrics scrape counts deliveries, deferrals and connection failures as the sink and log saw them; /healthz and /readyz answer', async () => {
  const port = await freePort();
  const d = await world.start({ redis: redisOf('metrics'), metrics: { listen: `127.0.0.1:${port}` }, connect_timeout: '1s' });
  try {
    await sendMany({ host: '127.0.0.1', port: world.intakePort, messages: messages(4, 'ok.test', 'm'), connections: 2 });
    await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: ['g@grey.test'], raw: makeMessage({ from: 's@sender.test', to: ['g@grey.test'] }) });
    await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: ['x@dead.test'], raw: makeMessage({ from: 's@sender.test', to: ['x@dead.test'] }) });
    await world.sinks.ok!.waitForRecipients(['m0@ok.test', 'm1@ok.test', 'm2@ok.test', 'm3@ok.test']);
    await d.waitForLogs((r) => r.event === 'delivery', 4);
    await d.waitForLogs((r) => r.event === 'transient_failure', 2);

    const scrape = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const valueIn = (scraped: string, series: string) => {
      const line = scraped.split('\n').find((l) => l.startsWith(`${series} `));
      assert.ok(line, `no ${series} in the scrape`);
      return Number(line.slice(series.length + 1));
    };
    const text = await scrape();
    const value = (series: string) => valueIn(text, series);
    assert.equal(value('impulse_messages_received_total{binding="default"}'), 6);
    assert.equal(value('impulse_messages_delivered_total{binding="default"}'), 4);
    assert.equal(value('impulse_delivery_latency_seconds_count'), 4);
    assert.equal(value('impulse_messages_deferred_total{binding="default",status="4.7.1",bounce_class="70"}'), 1);
    assert.ok(value('impulse_connection_failures_total{flag="CONN_ERROR_CONNECT"}') >= 1);
    assert.equal(value('impulse_queue_messages{state="delayed"}'), 2);
    assert.equal(value('impulse_redis_up'), 1);
    assert.match(text, /^nodejs_eventloop_lag_seconds \d/m);
    // Every job taken was delivered or put back, so none stays in transit (a job put back may
    // leave a moment after its log record: scraped again until then).
    const deadline = Date.now() + 5000;
    let inTransit = value('impulse_jobs_in_transit');
    while (inTransit !== 0 && Date.now() < deadline) inTransit = valueIn(await scrape(), 'impulse_jobs_in_transit');
    assert.equal(inTransit, 0);

    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok', checks: { redis: 'ok' } });
    assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
  } finally {
    await d.stop();
  }
});

test('a second SIGTERM stops at once, abandoning the session in flight; after restart the message is delivered once', async () => {
  const config = { redis: redisOf('sigterm'), shutdown_timeout: '30s', job_lock_timeout: '2s' };
  const d = await world.start(config);
  const r = await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: ['t@tar.test'], raw: makeMessage({ from: 's@sender.test', to: ['t@tar.test'] }) });
  const qid = queueIdOf(r.response);
  await dataStartedOnce;
  d.proc.kill('SIGTERM');
  await d.waitForLog((x) => x.event === 'stopping');
  d.proc.kill('SIGTERM');
  const { code } = await d.exited;
  assert.equal(code, 0);
  assert.ok(d.logs.some((x) => x.event === 'stopping_now'));
  assert.ok(!d.logs.some((x) => x.event === 'shutdown_timeout'), 'did not wait for shutdown_timeout');

  tarpitting = false;
  const again = await world.start(config);
  try {
    await world.sinks.tar!.waitForRecipients(['t@tar.test'], 15000);
    await again.waitForLog((x) => x.event === 'delivery' && x.qid === qid);
    assert.equal(world.sinks.tar!.messages.filter((m) => m.rcptTo.includes('t@tar.test')).length, 1);
  } finally {
    await again.stop();
  }
});

test('the admin API over a loopback port answers only requests carrying the token from token_file', async () => {
  const port = await freePort();
  const tokenFile = join(world.dir, 'admin-token');
  writeFileSync(tokenFile, 's3cret-token\n');
  const d = await world.start({ redis: redisOf('token'), admin: { listen: `127.0.0.1:${port}`, token_file: tokenFile } });
  try {
    const ok = await runCli(['summary', '--json', '-c', d.configPath]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { version: string }).version.length > 0, true);
    const bare = await fetch(`http://127.0.0.1:${port}/v1/summary`);
    assert.equal(bare.status, 401);
    const wrongFile = join(world.dir, 'wrong-token');
    writeFileSync(wrongFile, 'guess\n');
    const wrongConfig = join(world.dir, 'wrong.yaml');
    writeFileSync(wrongConfig, stringify({ admin: { listen: `127.0.0.1:${port}`, token_file: wrongFile } }));
    const wrong = await runCli(['summary', '-c', wrongConfig]);
    assert.equal(wrong.code, 5);
  } finally {
    await d.stop();
  }
});

test('the systemd unit and its template for one daemon per core pass systemd-analyze verify', () => {
  const unit = fileURLToPath(new URL('../../../systemd/impulse.service', import.meta.url));
  // A template is verified as one of its instances, so %i stands for something.
  const instance = join(world.dir, 'impulse@2.service');
  copyFileSync(fileURLToPath(new URL('../../../systemd/impulse@.service', import.meta.url)), instance);
  for (const file of [unit, instance]) {
    const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '');
  }
  assert.match(readFileSync(instance, 'utf8'), /^ExecStart=.* start -c \/etc\/impulse\/%i\.yaml$/m);
});

test('npm start, both systemd units and the image start node with the same flags, and node takes them', () => {
  const file = (path: string) => readFileSync(fileURLToPath(new URL(`../../../${path}`, import.meta.url)), 'utf8');
  const units = ['systemd/impulse.service', 'systemd/impulse@.service'].map((u) => /^ExecStart=(.*)$/m.exec(file(u))![1]!.split(' '));
  const image = JSON.parse(/^ENTRYPOINT (.*)$/m.exec(file('Dockerfile'))![1]!) as string[];
  assert.deepEqual(SHIPPED_NODE_ARGS, ['--max-semi-space-size=16', '--no-allocation-site-pretenuring', '--heap-growing-percent=100']);
  for (const words of [...units, image]) assert.deepEqual(nodeFlagsOf(words), SHIPPED_NODE_ARGS, words.join(' '));
  const r = spawnSync(process.execPath, [...SHIPPED_NODE_ARGS, '-e', ''], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
});
