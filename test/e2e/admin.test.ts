// The admin CLI as an operator runs it: subprocesses against a running daemon with real queued
// mail. Counts in summary and mailq match what was injected; flush and message retry make
// delayed mail leave at once; fail bounces; suspend holds a domain and resume releases it;
// message show lists the attempts the sink and the log saw; exit codes mean something.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type Daemon, runCli } from '../helpers/daemon.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import type { SinkBehaviour } from '../helpers/sink.js';
import { type World, buildWorld, mxZone, queueIdOf } from './world.js';

let world: World;
/** Domains whose sink answers 451 to every RCPT until let through. */
const refusing = new Set<string>(['held.test', 'doomed.test', 'quiet.test']);
const gate: SinkBehaviour = (ctx) => {
  if (ctx.stage !== 'rcpt') return undefined;
  const domain = ctx.address!.slice(ctx.address!.indexOf('@') + 1);
  return refusing.has(domain) ? { code: 451, message: '4.7.1 greylisted, try later' } : undefined;
};

before(async () => {
  world = await buildWorld({
    zone: {
      ...mxZone({ 'held.test': '127.0.0.70', 'doomed.test': '127.0.0.70', 'quiet.test': '127.0.0.70', 'other.test': '127.0.0.70', 'sus.test': '127.0.0.70' }),
      ...mxZone({ 'sender.test': '127.0.0.71' }),
    },
    sinks: { main: { host: '127.0.0.70', behaviour: gate }, senders: { host: '127.0.0.71' } },
    config: {
      // A deferral waits an hour, as does a suspended domain's mail (suspended_recheck_interval's
      // default): only flush, retry, fail or resume make mail leave within the test.
      retry_interval: '1h',
      max_retry_interval: '2h',
    },
  });
});

after(async () => {
  await world.close();
});

/** A daemon with its own Redis for one test, stopped whatever the test's outcome. */
async function withDaemon(name: string, body: (d: Daemon) => Promise<void>, overrides: Record<string, unknown> = {}): Promise<void> {
  const d = await world.start({ redis: { embedded: true, dir: join(world.dir, `redis-${name}`), appendfsync: 'everysec' }, ...overrides });
  try {
    await body(d);
  } finally {
    if (d.proc.exitCode === null && d.proc.signalCode === null) await d.stop();
  }
}

function cli(d: Daemon, ...args: string[]) {
  return runCli([...args, '-c', d.configPath]);
}

async function json<T>(d: Daemon, ...args: string[]): Promise<T> {
  const r = await cli(d, ...args, '--json');
  assert.equal(r.code, 0, `impulse ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

async function inject(to: string, from = 's@sender.test'): Promise<string> {
  const r = await sendMail({ host: '127.0.0.1', port: world.intakePort, from, to: [to], raw: makeMessage({ from, to: [to] }) });
  return queueIdOf(r.response);
}

interface Row { domain: string; binding: string; active: number; delayed: number; last_error?: { reply: string } }

test('summary and mailq count the injected mail; message retry and flush make delayed mail leave at once; message show lists every attempt', async () => {
  await withDaemon('counts', async (d) => {
    const held: string[] = [];
    for (let i = 0; i < 5; i++) held.push(await inject(`h${i}@held.test`));
    for (let i = 0; i < 3; i++) await inject(`o${i}@other.test`);
    // Mail of a domain that stays refusing: a flush of held.test must leave it alone.
    const stays = await inject('s@doomed.test');
    await d.waitForLogs((r) => r.event === 'transient_failure' && r.domain === 'held.test', 5);
    await d.waitForLog((r) => r.event === 'transient_failure' && r.qid === stays);
    await world.sinks.main!.waitForRecipients(['o0@other.test', 'o1@other.test', 'o2@other.test']);
    await d.waitForLogs((r) => r.event === 'delivery', 3);

    const summary = await json<{ counts: Record<string, number>; queue: Record<string, number> }>(d, 'summary');
    assert.deepEqual(summary.counts, { received: 9, delivered: 3, transient: 6, failed: 0 });
    assert.equal(summary.queue.delayed, 6);
    assert.equal(summary.queue.active, 0);

    const q = await json<{ rows: Row[]; total_rows: number }>(d, 'mailq');
    // other.test may still show its idle connection, with nothing queued.
    const queued = q.rows.filter((r) => r.active + r.delayed > 0);
    assert.deepEqual(queued.map((r) => [r.domain, r.delayed]), [['held.test', 5], ['doomed.test', 1]]);
    assert.equal(queued[0]!.delayed, 5);
    assert.equal(queued[0]!.active, 0);
    assert.match(queued[0]!.last_error!.reply, /^451 4\.7\.1 greylisted/);
    const table = await cli(d, 'mailq');
    assert.equal(table.code, 0);
    assert.match(table.stdout, /held\.test\s+default\s+0\s+5\s/);

    refusing.delete('held.test');
    const retried = await cli(d, 'message', 'retry', held[0]!);
    assert.equal(retried.code, 0, retried.stderr);
    await world.sinks.main!.waitForRecipients(['h0@held.test'], 5000);
    const flushed = await cli(d, 'flush', 'held.test');
    assert.equal(flushed.code, 0, flushed.stderr);
    assert.match(flushed.stdout, /flushed 4 messages/);
    await world.sinks.main!.waitForRecipients(['h1@held.test', 'h2@held.test', 'h3@held.test', 'h4@held.test'], 5000);

    await d.waitForLog((r) => r.event === 'delivery' && r.qid === held[0]);
    const shown = await json<{ qid: string; jobs: Array<{ state: string; attempts: Array<{ outcome: string; reply: string; mx_host?: string; mx_ip?: string }> }> }>(d, 'message', 'show', held[0]!);
    assert.equal(shown.qid, held[0]);
    assert.equal(shown.jobs.length, 1);
    assert.equal(shown.jobs[0]!.state, 'delivered');
    const attempts = shown.jobs[0]!.attempts;
    assert.deepEqual(attempts.map((a) => a.outcome), ['deferred', 'delivered']);
    const logged = d.logs.filter((r) => r.qid === held[0] && (r.event === 'transient_failure' || r.event === 'delivery'));
    assert.deepEqual(attempts.map((a) => a.reply), logged.map((r) => r.reply));
    assert.ok(attempts.every((a) => a.mx_host === 'mx.held.test' && a.mx_ip === '127.0.0.70'));
    const human = await cli(d, 'message', 'show', held[0]!);
    assert.match(human.stdout, /deferred\s+mx\.held\.test\/127\.0\.0\.70/);

    const after = await json<{ counts: Record<string, number>; queue: Record<string, number> }>(d, 'summary');
    assert.deepEqual(after.counts, { received: 9, delivered: 8, transient: 6, failed: 0 });
    assert.equal(after.queue.delayed, 1);

    const all = await cli(d, 'flush', 'all');
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /flushed 1 message\b/);
    await d.waitForLog((r) => r.event === 'transient_failure' && r.qid === stays && r.attempt === 2);
  });
});

test('fail bounces everything queued for a domain with the operator\'s note; message fail --quiet sends no bounce', async () => {
  await withDaemon('fail', async (d) => {
    await inject('x@doomed.test', 'bob@sender.test');
    await inject('y@doomed.test', 'bob@sender.test');
    const quiet = await inject('z@quiet.test', 'carol@sender.test');
    await d.waitForLogs((r) => r.event === 'transient_failure', 3);

    const failed = await cli(d, 'fail', 'doomed.test', '--note', 'domain retired');
    assert.equal(failed.code, 0, failed.stderr);
    assert.match(failed.stdout, /failed 2 messages/);
    const dsns = await world.sinks.senders!.waitForRecipients(['bob@sender.test'], 5000);
    await d.waitForLogs((r) => r.event === 'bounce_queued' && r.to === 'bob@sender.test', 2);
    assert.match(dsns[0]!.raw.toString(), /failed by an operator: domain retired/);
    const failures = d.logs.filter((r) => r.event === 'permanent_failure' && r.domain === 'doomed.test');
    assert.equal(failures.length, 2);
    assert.ok(failures.every((r) => r.action === 'admin_fail'));

    const q = await cli(d, 'message', 'fail', quiet, '--quiet');
    assert.equal(q.code, 0, q.stderr);
    await d.waitForLog((r) => r.event === 'permanent_failure' && r.qid === quiet);
    const shown = await json<{ jobs: Array<{ state: string }> }>(d, 'message', 'show', quiet);
    assert.equal(shown.jobs[0]!.state, 'failed');
    assert.equal(d.logs.filter((r) => r.event === 'bounce_queued' && r.qid === quiet).length, 0);
    const summary = await json<{ queue: Record<string, number>; counts: Record<string, number> }>(d, 'summary');
    assert.equal(summary.counts.failed, 3);
    assert.equal(world.sinks.senders!.messages.filter((m) => m.rcptTo.includes('carol@sender.test')).length, 0);
  });
});

test('suspend holds a domain\'s mail without an attempt; resume delivers it', async () => {
  await withDaemon('suspend', async (d) => {
    const s = await cli(d, 'suspend', 'sus.test');
    assert.equal(s.code, 0, s.stderr);
    const parked = [await inject('a@sus.test'), await inject('b@sus.test')];
    // Each of the two messages parked: two records need not be one each.
    for (const qid of parked) await d.waitForLog((r) => r.event === 'parked' && r.reason === 'suspended' && r.qid === qid);
    const summary = await json<{ suspended: { domains: string[] } }>(d, 'summary');
    assert.deepEqual(summary.suspended.domains, ['sus.test']);
    const detail = await json<{ phase: string; delayed: number }>(d, 'domain', 'sus.test');
    assert.equal(detail.phase, 'suspended');
    assert.equal(detail.delayed, 2, `${JSON.stringify(detail)}; parked: ${JSON.stringify(d.logs.filter((r) => r.event === 'parked'))}`);
    assert.equal(world.sinks.main!.messages.filter((m) => m.rcptTo.some((r) => r.endsWith('@sus.test'))).length, 0);

    const r = await cli(d, 'resume', 'sus.test');
    assert.equal(r.code, 0, r.stderr);
    await world.sinks.main!.waitForRecipients(['a@sus.test', 'b@sus.test'], 5000);
    const delivered = d.logs.filter((x) => x.event === 'delivery' && x.domain === 'sus.test');
    assert.ok(delivered.every((x) => x.attempt === 1), 'suspension charged no attempt');
  }, { log_level: 'debug' });
});

test('exit codes: 4 for an unknown message or domain, 2 for a usage error, 3 when no daemon answers', async () => {
  await withDaemon('codes', async (d) => {
    assert.equal((await cli(d, 'message', 'show', 'NOSUCHID')).code, 4);
    assert.equal((await cli(d, 'domain', 'never-seen.test')).code, 4);
    assert.equal((await cli(d, 'suspend')).code, 2);
    await d.stop();
    const gone = await cli(d, 'summary');
    assert.equal(gone.code, 3);
    assert.match(gone.stderr, /cannot reach the daemon/);
  });
});
