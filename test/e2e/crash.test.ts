// kill -9 at random moments under steady load, of the daemon (Redis survives it) and of Redis (the
// daemon stays up): every message the intake answered 250 reaches its MX. A message reaches it
// twice only when its first copy was accepted just before a daemon died, before the daemon could
// record it. The moments come from a generator with a fixed seed, printed with every failure, so each
// run kills at the same points of the load; IMPULSE_CRASH_SEED=<seed> tries others.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Enqueuer } from '../../src/queue/enqueue.js';
import { DELIVERY_QUEUE, domainOf } from '../../src/queue/job.js';
import { ShardLayout, Sharded } from '../../src/queue/shards.js';
import { MessageStore } from '../../src/store/message-store.js';
import type { Daemon, LogRecord } from '../helpers/daemon.js';
import { type Injected, type Injector, startInjector, waitForDelivered } from '../helpers/injector.js';
import { Prng } from '../helpers/prng.js';
import { type TestRedisOptions, startRedis, waitForQueueEmpty } from '../helpers/redis.js';
import type { SinkBehaviour, SinkMessage } from '../helpers/sink.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone } from './world.js';

const SEED = process.env.IMPULSE_CRASH_SEED ?? 'c0ffee42';
const CYCLES = 4;
/** Messages a daemon generation (or Redis run) must accept before it may be killed: each kill hits a working system. */
const LOAD_PER_CYCLE = 15;
/** The claim on a dead daemon's jobs lapses after this; short so its held mail comes back soon. */
const JOB_LOCK = '2s';
/**
 * Longest a daemon takes from a remote's 250 to recording the job complete in Redis. A duplicate
 * whose first copy arrived longer than this before a kill was not in flight at that kill.
 */
const RECORD_LAG_MS = 1500;
/** The sink may read a final dot sent just before a kill a little after this process sent the kill. */
const READ_LAG_MS = 500;

/** Larger than a daemon fetches within BACKLOG_LOCK on this kind of machine (about 5,000 a second). */
const BACKLOG = 8000;
const BACKLOG_LOCK = '1s';

const replay = `seed ${SEED} (replay: IMPULSE_CRASH_SEED=${SEED})`;

/** A receiver that takes a little while over each message, so a kill finds some on the wire. */
const slowSink: SinkBehaviour = async (ctx) => {
  if (ctx.stage === 'data') await delay(50);
  return undefined;
};

/** Redis with every write on disk before it is acknowledged; a world whose domains all have one MX, the sink. */
async function setUp(t: { after(fn: () => Promise<void>): void }, sinkHost: string, domains: string[],
  opts: { redis?: TestRedisOptions; sink?: SinkBehaviour } = {}) {
  const redis = await startRedis(opts.redis ?? { appendfsync: 'always' });
  t.after(() => redis.stop());
  const world: World = await buildWorld({
    zone: mxZone(Object.fromEntries(domains.map((d) => [d, sinkHost]))),
    sinks: { mx: { host: sinkHost, ...(opts.sink ? { behaviour: opts.sink } : {}) } },
  });
  t.after(() => world.close());
  const config = { redis: { url: redis.url }, job_lock_timeout: JOB_LOCK };
  return { redis, world, config, sink: world.sinks.mx! };
}

function inject(world: World, tag: string, domains: string[]): Injector {
  return startInjector({ host: '127.0.0.1', port: world.intakePort, sessions: 4, domains, tag, gapMs: 20, retryMs: 100 });
}

const acceptedIn = (sent: readonly Injected[]) => sent.filter((r) => r.outcome === 'accepted').length;

/** Waits until the daemon has accepted `count` more messages than it has now. */
function moreAccepted(injector: Injector, count: number): Promise<void> {
  const since = acceptedIn(injector.sent);
  return injector.until((s) => acceptedIn(s) >= since + count, 30_000, `${count} more messages accepted`);
}

function copiesByRecipient(messages: SinkMessage[]): Map<string, SinkMessage[]> {
  const by = new Map<string, SinkMessage[]>();
  for (const m of messages) for (const r of m.rcptTo) by.set(r, [...(by.get(r) ?? []), m]);
  return by;
}

/** Every copy at the sink is the message sent to that recipient, not another one. */
function assertIntact(copies: Map<string, SinkMessage[]>, sent: Injected[]): void {
  const idOf = new Map(sent.map((s) => [s.recipient, s.messageId]));
  for (const [rcpt, msgs] of copies) {
    for (const m of msgs) {
      const id = /^Message-ID: (.*)$/im.exec(m.raw.toString('latin1'))?.[1]?.trim();
      assert.equal(id, idOf.get(rcpt), `${rcpt} got the message sent to it; ${replay}`);
    }
  }
}

/** Delivery records of one daemon: no recipient twice, whatever the generation before it did. */
function assertOncePerDaemon(logs: LogRecord[], which: string): void {
  const seen = new Set<string>();
  for (const r of logs) {
    if (r.event !== 'delivery') continue;
    for (const rcpt of r.recipients as string[]) {
      assert.ok(!seen.has(rcpt), `${which} logged the delivery to ${rcpt} twice; ${replay}`);
      seen.add(rcpt);
    }
  }
}

test('daemon kill -9 cycles under load: every accepted message is delivered; a duplicate only for mail in flight at a kill', async (t) => {
  t.diagnostic(replay);
  const rand = new Prng(SEED).fork('daemon');
  const domains = ['a.crash.test', 'b.crash.test'];
  const { redis, world, config, sink } = await setUp(t, '127.0.0.21', domains, { sink: slowSink });
  const generations: Daemon[] = [await world.start(config)];
  const injector = inject(world, 'k', domains);
  const kills: number[] = [];
  for (let c = 0; c < CYCLES; c++) {
    await moreAccepted(injector, LOAD_PER_CYCLE);
    await delay(rand.between(200, 2000));
    const victim = generations.at(-1)!;
    kills.push(Date.now());
    victim.proc.kill('SIGKILL');
    await victim.exited;
    generations.push(await world.start(config));
  }
  await moreAccepted(injector, LOAD_PER_CYCLE);
  const sent = await injector.stop();
  const accepted = sent.filter((s) => s.outcome === 'accepted');
  t.diagnostic(`${sent.length} sent, ${accepted.length} accepted, kills at +${kills.map((k) => k - sent[0]!.sentAt).join(', +')} ms`);

  await waitForDelivered(sink, accepted.map((s) => s.recipient), 30_000);
  await waitForQueueEmpty(redis.url, 30_000);

  const copies = copiesByRecipient(sink.messages);
  assertIntact(copies, sent);
  let duplicates = 0;
  for (const [rcpt, msgs] of copies) {
    for (let i = 1; i < msgs.length; i++) {
      duplicates++;
      const first = msgs[i - 1]!.receivedAt;
      const again = msgs[i]!.receivedAt;
      // Arrival stamps are taken in this process, like the kill moments.
      const cause = kills.find((k) => first >= k - RECORD_LAG_MS && first <= k + READ_LAG_MS && again > k);
      assert.ok(cause !== undefined,
        `${rcpt} arrived again at +${again - first} ms with no kill in the ${RECORD_LAG_MS} ms after its first copy; ${replay}`);
    }
  }
  t.diagnostic(`${sink.messages.length} messages at the sink, ${duplicates} duplicates`);
  // How soon each restart took up the mail its predecessor held (job_lock_timeout plus the stalled check).
  const firstArrival = new Map([...copies].map(([r, m]) => [r, m[0]!.receivedAt]));
  t.diagnostic(`held at each kill: ${kills.map((k) => {
    const late = accepted.filter((s) => s.answeredAt < k && firstArrival.get(s.recipient)! > k).map((s) => firstArrival.get(s.recipient)! - k);
    return `${late.length} messages, the last delivered +${Math.max(0, ...late)} ms after the kill`;
  }).join('; ')}`);
  generations.forEach((g, i) => assertOncePerDaemon(g.logs, `daemon generation ${i}`));
  for (const g of generations) {
    assert.deepEqual(g.logs.filter((r) => ['permanent_failure', 'bounce_queued', 'job_error'].includes(r.event)), [], replay);
  }
  assert.equal(await generations.at(-1)!.stop('SIGTERM'), 0);
});

test('Redis kill -9 cycles under load: intake answers 451 4.3.0 at once while it is down, the daemon resumes by itself, every accepted message is delivered once', async (t) => {
  t.diagnostic(replay);
  const rand = new Prng(SEED).fork('redis');
  const domains = ['a.redis-crash.test', 'b.redis-crash.test'];
  const { redis, world, config, sink } = await setUp(t, '127.0.0.22', domains, { sink: slowSink });
  const daemon = await world.start(config);
  const injector = inject(world, 'r', domains);
  const outages: Array<{ from: number; to: number }> = [];
  for (let c = 0; c < CYCLES; c++) {
    await moreAccepted(injector, LOAD_PER_CYCLE);
    await delay(rand.between(200, 1500));
    const from = Date.now();
    await redis.kill9();
    await injector.until((s) => s.some((r) => r.outcome === 'refused' && r.sentAt >= from), 10_000, 'a message refused while Redis is down');
    await delay(rand.between(0, 2500));
    await redis.restart();
    outages.push({ from, to: Date.now() });
    await daemon.waitForLogs((r) => r.event === 'redis_up' && r.connection === 'worker', c + 1, 15_000);
  }
  await moreAccepted(injector, LOAD_PER_CYCLE);
  const sent = await injector.stop();
  const accepted = sent.filter((s) => s.outcome === 'accepted');
  const refused = sent.filter((s) => s.outcome === 'refused');
  t.diagnostic(`${sent.length} sent, ${accepted.length} accepted, ${refused.length} refused; outages ${outages.map((o) => `${o.to - o.from} ms`).join(', ')}`);

  assert.deepEqual(sent.filter((s) => s.outcome === 'lost'), [], `the daemon answered every message; ${replay}`);
  for (const r of refused) {
    assert.match(r.reply ?? '', /^451 4\.3\.0 /, replay);
    assert.ok(r.answeredAt - r.sentAt < 5000, `refused after ${r.answeredAt - r.sentAt} ms; a client must not wait on a dead Redis; ${replay}`);
  }
  await waitForDelivered(sink, accepted.map((s) => s.recipient), 30_000);
  await waitForQueueEmpty(redis.url, 30_000);
  const copies = copiesByRecipient(sink.messages);
  assertIntact(copies, sent);
  const twice = [...copies].filter(([, m]) => m.length > 1).map(([r]) => r);
  assert.deepEqual(twice, [], `no message delivered twice; ${replay}`);
  assertOncePerDaemon(daemon.logs, 'the daemon');
  assert.ok(daemon.logs.filter((r) => r.event === 'redis_down' && r.connection === 'worker').length >= CYCLES, 'each outage was logged');
  assert.deepEqual(daemon.logs.filter((r) => ['permanent_failure', 'bounce_queued', 'job_error'].includes(r.event)), [], replay);
  assert.equal(await daemon.stop('SIGTERM'), 0);
});

/** Queues messages straight into Redis the way intake does, with no daemon running: the backlog a start finds. */
async function queueBacklog(url: string, recipients: string[]): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  const queue = new Queue(DELIVERY_QUEUE, { connection: redis, prefix: 'impulse' });
  const shards = new Sharded(new ShardLayout('impulse', 1, false), (shard) => ({ shard, queue, store: new MessageStore(redis, 'impulse') }));
  const enqueuer = new Enqueuer(shards, () => 86_400_000);
  try {
    await Promise.all(recipients.map((to, i) => enqueuer.enqueue({
      qid: `BACKLOG${i}`, sender: 's@sender.test', jobs: [{ domain: domainOf(to), recipients: [to] }], receivedAt: Date.now(),
      body: Buffer.from(makeMessage({ from: 's@sender.test', to: [to] })),
    })));
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

test('a daemon starting on a backlog larger than it fetches within job_lock_timeout loses no job lock and delivers each message once', async (t) => {
  // Fast enough to queue thousands: this test kills nothing.
  const { redis, world, sink } = await setUp(t, '127.0.0.24', ['backlog.test'], { redis: {} });
  const recipients = Array.from({ length: BACKLOG }, (_, i) => `b${i}@backlog.test`);
  await queueBacklog(redis.url, recipients);
  // The window takes the whole backlog at once: BullMQ fetches it job after job before the first is worked on.
  const daemon = await world.start({ redis: { url: redis.url }, job_lock_timeout: BACKLOG_LOCK, max_ready: BACKLOG });
  await waitForDelivered(sink, recipients, 60_000);
  await waitForQueueEmpty(redis.url, 30_000);
  assert.deepEqual(daemon.logs.filter((r) => r.event === 'lock_lost' || r.event === 'job_reclaimed').slice(0, 5), [],
    'every lock was renewed from the moment its job was fetched');
  assert.equal(sink.messages.length, BACKLOG, 'each message delivered once');
  assert.equal(await daemon.stop('SIGTERM'), 0);
});

test('a daemon starting on a backlog delivers its first message while most of the backlog still waits in Redis', async (t) => {
  // Every write fsynced, as in production: each fetch then waits for the disk, the case where
  // jobs fetched early waited for the rest before their attempts began.
  const { redis, world, sink } = await setUp(t, '127.0.0.26', ['early.test']);
  const recipients = Array.from({ length: BACKLOG }, (_, i) => `e${i}@early.test`);
  await queueBacklog(redis.url, recipients);
  const client = new Redis(redis.url, { maxRetriesPerRequest: null });
  t.after(() => client.quit());
  const daemon = await world.start({ redis: { url: redis.url }, max_ready: BACKLOG });
  await sink.waitForMessages(1, 30_000);
  const waiting = await client.llen('impulse:delivery:wait');
  t.diagnostic(`${waiting} of ${BACKLOG} jobs still waiting in Redis at the first delivery`);
  // Fetching the whole backlog before the first attempt leaves none waiting; attempts that begin as
  // jobs are fetched leave most (7,703 of 8,000 measured).
  assert.ok(waiting > BACKLOG / 2, `attempts begin as jobs are fetched: ${waiting} of ${BACKLOG} jobs still waiting at the first delivery, `
    + `${BACKLOG - waiting} fetched before it; most (more than ${BACKLOG / 2}) should still wait`);
  await waitForDelivered(sink, recipients, 60_000);
  assert.equal(sink.messages.length, BACKLOG, 'each message delivered once');
  assert.equal(await daemon.stop('SIGTERM'), 0);
});

test('on its embedded Redis, a daemon started after kill -9 takes back the mail its predecessor held at once, not a job_lock_timeout later', async (t) => {
  let killed = false;
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const world = await buildWorld({
    zone: mxZone({ 'orphan.test': '127.0.0.25' }),
    sinks: {
      mx: {
        host: '127.0.0.25',
        // Sits on the first session's data until the daemon is dead.
        behaviour: async (ctx) => {
          if (ctx.stage !== 'data' || killed) return undefined;
          await released;
          return { code: 451, message: 'try again later' };
        },
      },
    },
  });
  t.after(() => world.close());
  const sink = world.sinks.mx!;
  // The default job_lock_timeout (60 s): waiting for the claims to lapse would take a minute or two.
  const config = { redis: { embedded: true, dir: join(world.dir, 'redis-orphans'), appendfsync: 'always' } };
  const first = await world.start(config);
  const recipients = ['o1@orphan.test', 'o2@orphan.test', 'o3@orphan.test'];
  for (const to of recipients) {
    await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) });
  }
  await sink.waitForConnections(1);
  first.proc.kill('SIGKILL');
  await first.exited;
  killed = true;
  release();

  const restartedAt = Date.now();
  const second = await world.start(config);
  const returned = await second.waitForLog((r) => r.event === 'orphaned_jobs_returned');
  assert.ok(returned.jobs >= 1, 'the job on the dead session was still claimed');
  await sink.waitForRecipients(recipients, 10_000);
  t.diagnostic(`held mail delivered ${Date.now() - restartedAt} ms after the restart began`);
  for (const to of recipients) assert.equal(sink.messages.filter((m) => m.rcptTo.includes(to)).length, 1, `${to} arrived once`);
  const deliveries = await second.waitForLogs((r) => r.event === 'delivery', recipients.length);
  assert.deepEqual(deliveries.map((d) => d.attempt), [1, 1, 1], 'the crash charged no attempt');
  assert.equal(await second.stop('SIGTERM'), 0);
});
