// The domain/binding scheduler seen from outside: connection limits per source and per MX host
// counted by the sink, a message throttle measured at the sink, requeue-one and purge-domain in
// each message's history and the log, and mx_failures_to_delay in the log and the state API;
// the next message's body read from Redis while the connection's transaction is still on the wire.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createConnection } from 'node:net';
import type { Daemon, LogRecord } from '../helpers/daemon.js';
import { startInProcess } from '../helpers/in-process.js';
import { type QueuedJob, readJobs } from '../helpers/jobs.js';
import { makeMessage, sendMail, sendMany } from '../helpers/smtp-client.js';
import { Condition } from '../helpers/wait.js';
import { type World, buildWorld, mxZone, queueIdOf } from './world.js';

let world: World;
/** Opened by the prefetch test: the ahead.test sink holds its first message's DATA until then. */
let releaseFirstData: () => void = () => {};
const firstDataReleased = new Promise<void>((resolve) => {
  releaseFirstData = resolve;
});
let aheadDataCalls = 0;
/** When each transaction reached the thr.test sink: its MAIL FROM, the first thing a message the throttle let go sends. */
const thrMailAt: number[] = [];
const aheadData = new Condition();
const slowData = (ms: number) => async (ctx: { stage: string }) => {
  if (ctx.stage === 'data') await new Promise((resolve) => setTimeout(resolve, ms));
  return undefined;
};

before(async () => {
  world = await buildWorld({
    zone: {
      ...mxZone({ 'lim.test': '127.0.0.60', 'thr.test': '127.0.0.62', 'rq.test': '127.0.0.63', 'rqw.test': '127.0.0.67', 'ahead.test': '127.0.0.66' }),
      // Two domains on one MX host with a host-scope limit.
      'h1.test': { mx: [{ preference: 10, exchange: 'mx.hosted.test' }] },
      'h2.test': { mx: [{ preference: 10, exchange: 'mx.hosted.test' }] },
      'mx.hosted.test': { a: ['127.0.0.61'] },
      'down.test': { mx: [{ preference: 10, exchange: 'mx1.down.test' }, { preference: 20, exchange: 'mx2.down.test' }] },
      'mx1.down.test': { a: ['127.0.0.64'] },
      'mx2.down.test': { a: ['127.0.0.65'] },
      'broken.test': { rcode: 'SERVFAIL' },
    },
    sinks: {
      lim: { host: '127.0.0.60', behaviour: slowData(60) },
      hosted: { host: '127.0.0.61', behaviour: slowData(60) },
      thr: {
        host: '127.0.0.62',
        behaviour: (ctx: { stage: string }) => {
          if (ctx.stage === 'mail') thrMailAt.push(performance.timeOrigin + performance.now());
          return undefined;
        },
      },
      rqWitness: { host: '127.0.0.67' },
      ahead: {
        host: '127.0.0.66',
        behaviour: async (ctx: { stage: string }) => {
          if (ctx.stage !== 'data') return undefined;
          aheadDataCalls++;
          aheadData.notify();
          if (aheadDataCalls === 1) await firstDataReleased;
          return undefined;
        },
      },
    },
    config: {
      bindings: [
        { name: 'b1', bind_address: '127.0.0.11' },
        { name: 'b2', bind_address: '127.0.0.12' },
      ],
    },
  });
});

after(async () => {
  await world.close();
});

/** A daemon with its own Redis, so mail one test leaves queued never reaches another. */
function daemonWith(name: string, overrides: Record<string, unknown>): Promise<Daemon> {
  return world.start({ redis: redisOf(name), ...overrides });
}

function redisOf(name: string) {
  return { embedded: true, dir: join(world.dir, `redis-${name}`), appendfsync: 'everysec' };
}

function messages(n: number, to: (i: number) => string, headers: (i: number) => Record<string, string> = () => ({})) {
  return Array.from({ length: n }, (_, i) => ({ from: 's@sender.test', to: [to(i)], raw: makeMessage({ from: 's@sender.test', to: [to(i)], headers: headers(i) }) }));
}

async function inject(to: string, headers: Record<string, string> = {}): Promise<string> {
  const raw = makeMessage({ from: 's@sender.test', to: [to], headers });
  return queueIdOf((await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [to], raw })).response);
}

test('max_outbound_connections 3 per binding × domain holds for each of two source addresses; a host limit of 2 holds across bindings and domains', async () => {
  const daemon = await daemonWith('limits', {
    max_outbound_connections: 3,
    connection_allocation_aggressiveness: 'high',
    hosts: { 'mx.hosted.test': { max_outbound_connections: 2 } },
  });
  try {
    const binding = (i: number) => ({ 'X-Impulse-Binding': i % 2 === 0 ? 'b1' : 'b2' });
    const toLim = messages(120, (i) => `l${i}@lim.test`, binding);
    const toHosted = messages(80, (i) => `h${i}@h${(i % 4 < 2) ? 1 : 2}.test`, binding);
    await sendMany({ host: '127.0.0.1', port: world.intakePort, messages: [...toLim, ...toHosted] });
    await world.sinks.lim!.waitForMessages(120, 30_000);
    await world.sinks.hosted!.waitForMessages(80, 30_000);

    const lim = world.sinks.lim!.peakConcurrency();
    assert.equal(lim.bySource['127.0.0.11'], 3, `binding b1 reached and kept its limit: ${JSON.stringify(lim)}`);
    assert.equal(lim.bySource['127.0.0.12'], 3, `binding b2 reached and kept its limit: ${JSON.stringify(lim)}`);
    const hosted = world.sinks.hosted!.peakConcurrency();
    assert.equal(hosted.total, 2, `the MX host saw at most its limit, and reached it: ${JSON.stringify(hosted)}`);
  } finally {
    await daemon.stop();
  }
});

test('outbound_throttle_messages "10/1": the sink never sees more than 10 messages of that domain start in a second', async () => {
  const daemon = await daemonWith('throttle', { domains: { 'thr.test': { outbound_throttle_messages: '10/1' } } });
  try {
    const before = thrMailAt.length;
    await sendMany({ host: '127.0.0.1', port: world.intakePort, messages: messages(35, (i) => `t${i}@thr.test`) });
    await world.sinks.thr!.waitForMessages(35, 20_000);
    // Measured at MAIL FROM, one write after the throttle let the message go: the end of DATA
    // comes after the body and two more round trips, whose time varies with the machine's load.
    const times = thrMailAt.slice(before).sort((a, b) => a - b);
    assert.equal(times.length, 35);
    const window = 950;
    let busiest = 0;
    for (let i = 0; i < times.length; i++) busiest = Math.max(busiest, times.filter((t) => t >= times[i]! && t < times[i]! + window).length);
    assert.ok(busiest <= 10, `at most 10 transactions started in any ${window} ms, saw ${busiest}`);
    const span = times.at(-1)! - times[0]!;
    assert.ok(span >= 2900, `35 messages at 10/s take at least 3 s after the first ten, took ${span} ms`);
  } finally {
    await daemon.stop();
  }
});

test('CONN_ACTION_REQUEUE1 charges one held message per failed connection; the others stay held', async () => {
  // No sink at rq.test's MX: every connection is refused. After each failure the queue waits
  // host_failure_retry for its next attempt; 2 s leaves each failure's charge logged and written to
  // the delayed set long before the next failure. A 60 s retry keeps charged mail delayed throughout.
  // normal: one connection at a time for the few messages held, so each failure charges one.
  const daemon = await daemonWith('requeue', {
    host_failure_retry: '2s', mx_failures_to_delay: 0, retry_interval: '60s', max_retry_interval: '60s', connection_allocation_aggressiveness: 'normal',
  });
  const redisDir = join(world.dir, 'redis-requeue');
  const isFailure = (r: LogRecord) => r.event === 'connection_failure' && r.domain === 'rq.test';
  const isCharge = (r: LogRecord) => r.event === 'transient_failure' && r.domain === 'rq.test';
  const isEither = (r: LogRecord) => isFailure(r) || isCharge(r);
  const names = new Map<string, string>();
  /** rq.test's failed connections and charges in log order: 'failure', or the name of the message charged. */
  const sequence = () => daemon.logs.filter(isEither).map((r) => (isFailure(r) ? 'failure' : names.get(r.qid) ?? r.qid));
  const jobOf = (jobs: QueuedJob[], qid: string, state: string) => {
    const job = jobs.find((j) => j.data.qid === qid);
    assert.ok(job, `${names.get(qid)} (${qid}) is ${state}; ${state}: ${jobs.map((j) => names.get(j.data.qid) ?? j.data.qid).join(', ')}`);
    return job;
  };
  const assertCharged = (delayed: QueuedJob[], qid: string) => {
    const { data } = jobOf(delayed, qid, 'delayed');
    const name = names.get(qid);
    assert.equal(data.attempts, 1, `${name} was charged one attempt`);
    assert.equal(data.history.length, 1, `${name}'s history: ${JSON.stringify(data.history)}`);
    const [entry] = data.history;
    assert.equal(entry.action, 'requeue1', `${name}'s history: ${JSON.stringify(entry)}`);
    assert.match(entry.reply, /^421 4\.4\.0 /, `${name}'s history: ${JSON.stringify(entry)}`);
    assert.ok(entry.flags.includes('CONN_ERROR_CONNECT') && entry.flags.includes('CONN_ACTION_REQUEUE1'), `${name}'s history: ${JSON.stringify(entry)}`);
  };
  const assertHeld = (active: QueuedJob[], qid: string) => {
    const { data } = jobOf(active, qid, 'active');
    assert.equal(data.attempts, 0, `${names.get(qid)} is held, uncharged`);
    assert.deepEqual(data.history ?? [], [], `${names.get(qid)} has no history`);
  };
  try {
    const a = await inject('a@rq.test');
    names.set(a, 'a');
    const [first] = await daemon.waitForLogs(isCharge, 1);
    assert.equal(first!.qid, a);
    assert.equal(first!.action, 'requeue1');
    assert.ok(first!.flags.includes('CONN_ERROR_CONNECT') && first!.flags.includes('CONN_ACTION_REQUEUE1'), first!.flags.join('|'));

    // Three more while the queue waits out host_failure_retry, then one for a live MX: BullMQ
    // hands jobs out in arrival order, so that one's delivery shows b, c and d were fetched.
    const [b, c, d] = [await inject('b@rq.test'), await inject('c@rq.test'), await inject('d@rq.test')];
    names.set(b, 'b').set(c, 'c').set(d, 'd');
    await inject('w@rqw.test');
    await world.sinks.rqWitness!.waitForRecipients(['w@rqw.test']);
    const whileWaiting = await readJobs(redisDir, ['active']);
    assert.deepEqual(sequence(), ['failure', 'a'], 'b, c and d, read from Redis while the queue waits for its next attempt, are not charged yet');
    for (const qid of [b, c, d]) assertHeld(whileWaiting, qid);

    // Three failures in: d is still held; a and b, charged 2 s or more ago, are delayed.
    await daemon.waitForLogs(isCharge, 3);
    const [delayed3, active3] = [await readJobs(redisDir, ['delayed']), await readJobs(redisDir, ['active'])];
    assert.deepEqual(sequence(), ['failure', 'a', 'failure', 'b', 'failure', 'c'], 'one charge per failure, in arrival order; d held when read');
    assertCharged(delayed3, a);
    assertCharged(delayed3, b);
    assertHeld(active3, d);

    // The next record is the fourth failure: nothing more was charged since c.
    await daemon.waitForLogs(isEither, 7);
    assert.deepEqual(sequence().slice(0, 7), ['failure', 'a', 'failure', 'b', 'failure', 'c', 'failure'], 'd waited for the next failure');
    assertCharged(await readJobs(redisDir, ['delayed']), c);
    await daemon.waitForLogs(isCharge, 4);
    assert.deepEqual(sequence(), ['failure', 'a', 'failure', 'b', 'failure', 'c', 'failure', 'd']);

    const records = daemon.logs.filter(isEither);
    for (const r of records) {
      assert.ok(r.flags.includes('CONN_ERROR_CONNECT') && r.flags.includes('CONN_ACTION_REQUEUE1'), `${r.event} ${r.qid ?? ''}: ${r.flags.join('|')}`);
      if (isCharge(r)) {
        assert.equal(r.action, 'requeue1', JSON.stringify(r));
        assert.equal(r.attempt, 1, JSON.stringify(r));
        assert.match(r.reply, /^421 4\.4\.0 /, JSON.stringify(r));
      }
    }
    const times = records.filter(isFailure).map((r) => Date.parse(r.time));
    for (let i = 1; i < times.length; i++) {
      const gap = times[i]! - times[i - 1]!;
      assert.ok(gap >= 2000, `failure ${i + 1} came ${gap} ms after the one before; host_failure_retry is 2 s`);
    }
  } finally {
    await daemon.stop();
  }
});

test('CONN_ACTION_PURGE_DOMAIN: a failed MX lookup charges every held message of the domain, on every binding', async () => {
  const daemon = await daemonWith('purge', { retry_interval: '60s', max_retry_interval: '60s' });
  try {
    const qids = [
      await inject('a@broken.test', { 'X-Impulse-Binding': 'b1' }),
      await inject('b@broken.test', { 'X-Impulse-Binding': 'b2' }),
      await inject('c@broken.test'),
    ];
    const records = await daemon.waitForLogs((r) => r.event === 'transient_failure' && r.domain === 'broken.test', 3);
    for (const r of records) {
      assert.equal(r.action, 'purge_domain');
      assert.ok(r.flags.includes('CONN_ERROR_MX_LOOKUP_FAILED') && r.flags.includes('CONN_ACTION_PURGE_DOMAIN'), r.flags.join('|'));
      assert.match(r.reply, /^451 4\.4\.3 /);
    }
    assert.deepEqual(new Set(records.map((r) => r.binding)), new Set(['b1', 'b2', 'default']));
    const delayed = await readJobs(join(world.dir, 'redis-purge'), ['delayed']);
    assert.deepEqual(new Set(delayed.map((j) => j.data.qid)), new Set(qids));
    for (const j of delayed) {
      assert.equal(j.data.history.at(-1).action, 'purge_domain', `history of ${j.data.qid}`);
      assert.ok(j.data.history.at(-1).flags.includes('CONN_ACTION_PURGE_DOMAIN'));
    }
  } finally {
    await daemon.stop();
  }
});

test('mx_failures_to_delay 4 with both MXs down: the domain is delayed, makes no connection until its next attempt, and delivers once an MX is back', async () => {
  const inProcess = await startInProcess({
    ...world.config, redis: redisOf('delay'), listen: [{ address: '127.0.0.1', port: world.intakePort }],
    mx_failures_to_delay: 4, retry_interval: '4s', max_retry_interval: '4s', host_failure_retry: '1s', connection_allocation_aggressiveness: 'normal',
  }, world.dir);
  const { daemon, logs } = inProcess;
  try {
    await inject('a@down.test');
    await inject('b@down.test');
    await inject('c@down.test');
    const delayed = await inProcess.waitForLog((r) => r.event === 'domain_delayed' && r.domain === 'down.test');
    assert.equal(delayed.consecutive_failures, 4);
    const refused = (r: Record<string, any>) => r.event === 'connection_failure' && r.domain === 'down.test' && r.flags.includes('CONN_ERROR_CONNECT');
    assert.equal(logs.filter(refused).length, 4, 'two attempts, each refused by both MXs');

    const [state] = daemon.scheduler.state('down.test').domains;
    assert.equal(state!.phase, 'delayed');
    assert.equal(state!.consecutive_failures, 4);
    assert.equal(state!.delayed_until, delayed.until);
    assert.equal(state!.active, 0, 'active mail went to the delayed queue');
    assert.match(state!.last_error!.reply, /^421 /);

    const until = Date.parse(delayed.until);
    await world.startSink('downMx', '127.0.0.64');
    await world.sinks.downMx!.waitForRecipients(['a@down.test', 'b@down.test', 'c@down.test'], 20_000);
    const early = logs.filter((r) => r.event === 'connection_failure' && r.domain === 'down.test' && r.time > delayed.time && r.time < until);
    assert.deepEqual(early, [], 'no connection attempt while the domain is delayed');
    const firstConnection = world.sinks.downMx!.connectionLog[0]!.openedAt;
    assert.ok(firstConnection >= until - 5, `first connection ${new Date(firstConnection).toISOString()} not before ${delayed.until}`);
    const [after] = daemon.scheduler.state('down.test').domains;
    assert.equal(after!.consecutive_failures, 0, 'the first success cleared the count');
    assert.notEqual(after!.phase, 'delayed');
  } finally {
    await inProcess.stop();
  }
});

test('suspend and resume a domain and a binding: mail is parked, uncharged, while suspended and delivered after resume; the state shows it', async () => {
  const inProcess = await startInProcess({
    ...world.config, redis: redisOf('suspend'), listen: [{ address: '127.0.0.1', port: world.intakePort }], suspended_recheck_interval: '1s',
  }, world.dir);
  const { daemon } = inProcess;
  const parked = (domain: string) => inProcess.waitForLog((r) => r.event === 'parked' && r.domain === domain && r.reason === 'suspended');
  try {
    daemon.scheduler.suspendDomain('h1.test');
    await inject('s1@h1.test');
    await parked('h1.test');
    assert.equal(daemon.scheduler.state('h1.test').domains[0]!.phase, 'suspended');
    daemon.scheduler.resumeDomain('h1.test');
    await world.sinks.hosted!.waitForRecipients(['s1@h1.test']);

    daemon.scheduler.suspendBinding('b2');
    await inject('s2@h2.test', { 'X-Impulse-Binding': 'b2' });
    await parked('h2.test');
    const [h2] = daemon.scheduler.state('h2.test').domains;
    assert.deepEqual(h2!.bindings.map((b) => [b.binding, b.suspended]), [['b2', true]]);
    daemon.scheduler.resumeBinding('b2');
    await world.sinks.hosted!.waitForRecipients(['s2@h2.test']);
    assert.deepEqual(daemon.scheduler.state('h2.test').domains[0]!.siblings, ['h1.test'], 'h1.test shares the MX host');

    for (const domain of ['h1.test', 'h2.test']) {
      const delivery = await inProcess.waitForLog((r) => r.event === 'delivery' && r.domain === domain);
      assert.equal(delivery.attempt, 1, `a suspension charges no attempt (${domain})`);
    }
  } finally {
    await inProcess.stop();
  }
});

test('max_recipients_per_batch splits a message into transactions on one connection; max_deliveries_per_connection and idle_timeout close connections', async () => {
  const daemon = await daemonWith('batches', {
    domains: { 'thr.test': { max_recipients_per_batch: 2, max_deliveries_per_connection: 3, idle_timeout: '1s' } },
  });
  const sink = world.sinks.thr!;
  const before = sink.messages.length;
  const connectionsBefore = sink.connectionLog.length;
  try {
    const rcpts = ['r1@thr.test', 'r2@thr.test', 'r3@thr.test', 'r4@thr.test', 'r5@thr.test'];
    await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: rcpts, raw: makeMessage({ from: 's@sender.test', to: rcpts }) });
    const batches = (await sink.waitForRecipients(rcpts)).filter((m) => m.rcptTo.some((r) => r.startsWith('r')));
    assert.deepEqual(batches.map((m) => m.rcptTo.length), [2, 2, 1]);
    assert.equal(new Set(batches.map((m) => m.connectionId)).size, 1, 'one connection carried every batch');

    await sendMany({ host: '127.0.0.1', port: world.intakePort, messages: messages(9, (i) => `m${i}@thr.test`), connections: 1 });
    const got = (await sink.waitForMessages(before + 12)).slice(before);
    const perConnection = new Map<string, Set<string>>();
    for (const m of got) {
      const id = /^Message-ID: (.+)$/im.exec(m.raw.toString('latin1'))![1]!;
      perConnection.set(m.connectionId, (perConnection.get(m.connectionId) ?? new Set()).add(id));
    }
    assert.ok([...perConnection.values()].every((ids) => ids.size <= 3), `at most 3 messages per connection: ${[...perConnection.values()].map((s) => s.size)}`);
    assert.ok(perConnection.size >= 4, `10 messages at 3 per connection need at least 4 connections, saw ${perConnection.size}`);

    await sink.waitForOpen(0, 10_000);
    const last = sink.connectionLog.slice(connectionsBefore).reduce((a, b) => (b.closedAt! > a.closedAt! ? b : a));
    const lastMessage = Math.max(...got.map((m) => m.receivedAt));
    const idle = last.closedAt! - lastMessage;
    assert.ok(idle >= 900 && idle < 4000, `the last connection idled about idle_timeout (1 s) before closing: ${Math.round(idle)} ms`);
  } finally {
    await daemon.stop();
  }
});

test('the next message\'s body is read from Redis while the connection is still sending the one before', async () => {
  // The held DATA must outlast the wait below: a transaction ended by data_timeout would let a
  // new connection read the body without any read-ahead.
  const daemon = await daemonWith('prefetch', { domains: { 'ahead.test': { max_outbound_connections: 1, data_timeout: '60s' } } });
  // MONITOR on a plain socket: each command Redis runs comes as a line `+<time> [<db> <client>] "cmd" "arg" …`.
  const monitor = createConnection(join(redisOf('prefetch').dir, 'redis.sock'));
  const reads: string[] = [];
  const seen = new Condition();
  let pending = '';
  monitor.setEncoding('latin1').on('data', (chunk: string) => {
    const lines = (pending + chunk).split('\r\n');
    pending = lines.pop()!;
    for (const line of lines) {
      const read = /^\+\S+ \[[^\]]*\] "hmget" "([^"]*:msg:[^"]+)"/i.exec(line);
      if (read) reads.push(read[1]!);
      if (line === '+OK') reads.push('(monitoring)');
    }
    seen.notify();
  });
  try {
    monitor.write('MONITOR\r\n');
    await seen.until(() => (reads.includes('(monitoring)') ? true : undefined), 10_000, () => 'MONITOR not acknowledged');
    // Both on one binding: one active queue, one connection.
    await inject('first@ahead.test', { 'X-Impulse-Binding': 'b1' });
    await aheadData.until(() => (aheadDataCalls === 1 ? true : undefined), 10_000, () => `DATA calls at the sink: ${aheadDataCalls}`);
    const second = await inject('second@ahead.test', { 'X-Impulse-Binding': 'b1' });
    await seen.until(() => reads.find((key) => key === `impulse:msg:${second}`), 10_000,
      () => `no read of the second message's body while the first's DATA is held; bodies read: ${reads.join(', ')}`);
    assert.equal(world.sinks.ahead!.messages.length, 0, 'the first transaction is still on the wire');
    assert.equal(world.sinks.ahead!.connections, 1, 'on the one connection');
    releaseFirstData();
    const got = await world.sinks.ahead!.waitForMessages(2, 10_000);
    assert.deepEqual(got.map((m) => m.rcptTo).sort(), [['first@ahead.test'], ['second@ahead.test']]);
  } finally {
    releaseFirstData();
    monitor.destroy();
    await daemon.stop();
  }
});
