// Parked mail comes back because its queue has room, not because a timer ran out: a burst many
// times the window is delivered with every park's fallback an hour away; a suspended domain's
// mail leaves at resume; mail parked before a restart stays suspended and leaves at resume after it. Each case would hang until
// the test's timeout if promotion did not work, since nothing else brings parked mail back within
// the hour.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { type Daemon, runCli } from '../helpers/daemon.js';
import { makeMessage, sendMany } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone } from './world.js';

let world: World;
const BURST_DOMAINS = ['p0.test', 'p1.test', 'p2.test'];

before(async () => {
  world = await buildWorld({
    zone: mxZone({ 'p0.test': '127.0.0.80', 'p1.test': '127.0.0.80', 'p2.test': '127.0.0.80', 'held.test': '127.0.0.80' }),
    sinks: { main: { host: '127.0.0.80' } },
    // A suspension's fallback is an hour: only a resume (or a start) may bring its mail back here.
    config: { suspended_recheck_interval: '1h', log_level: 'debug' },
  });
});

after(async () => {
  await world.close();
});

function messagesTo(recipients: string[]) {
  return recipients.map((to) => ({ from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) }));
}

async function inject(recipients: string[]): Promise<void> {
  await sendMany({ host: '127.0.0.1', port: world.intakePort, messages: messagesTo(recipients), connections: 4, timeoutMs: 60_000 });
}

/** A client of the embedded Redis of the daemon started with `redis-<name>`. */
function redisOf(name: string): Redis {
  return new Redis({ path: join(world.dir, `redis-${name}`, 'redis.sock'), maxRetriesPerRequest: null });
}

function cli(d: Daemon, ...args: string[]) {
  return runCli([...args, '-c', d.configPath]);
}

test('a burst two hundred times its queues\' size is delivered once each, parked mail promoted as queues drain', async () => {
  const d = await world.start({ redis: { embedded: true, dir: join(world.dir, 'redis-burst'), appendfsync: 'everysec' }, max_active_messages: 100, max_ready: 3, max_outbound_connections: 1 });
  try {
    const recipients = Array.from({ length: 600 }, (_, i) => `u${i}@${BURST_DOMAINS[i % 3]}`);
    await inject(recipients);
    await world.sinks.main!.waitForRecipients(recipients, 60_000);
    const parks = d.logs.filter((r) => r.event === 'parked' && r.reason === 'active queue full');
    assert.ok(parks.length >= 100, `the burst overflowed its queues (${parks.length} parks), so promotion brought it back`);
    // The sink has the message a moment before the daemon logs its 250.
    const deliveries = await d.waitForLogs((r) => r.event === 'delivery' && BURST_DOMAINS.includes(r.domain), recipients.length);
    assert.ok(deliveries.every((r) => r.attempt === 1), 'parking charged no attempt');
    const received = world.sinks.main!.messages.flatMap((m) => m.rcptTo).filter((r) => recipients.includes(r));
    assert.equal(received.length, recipients.length, 'no message arrived twice');
    const redis = redisOf('burst');
    try {
      assert.deepEqual(await redis.smembers('impulse:parked-pairs'), [], 'no pair is left with parked mail');
    } finally {
      redis.disconnect();
    }
  } finally {
    await d.stop();
  }
});

test('a suspended domain\'s parked mail leaves at resume, and mail parked before a restart stays suspended after it and leaves at resume', async () => {
  const name = 'suspend';
  const overrides = { redis: { embedded: true, dir: join(world.dir, `redis-${name}`), appendfsync: 'everysec' } };
  const first = await world.start(overrides);
  const before = Array.from({ length: 40 }, (_, i) => `b${i}@held.test`);
  const resumed = Array.from({ length: 40 }, (_, i) => `r${i}@held.test`);
  try {
    assert.equal((await cli(first, 'suspend', 'held.test')).code, 0);
    await inject(resumed);
    await first.waitForLogs((r) => r.event === 'parked' && r.reason === 'suspended', resumed.length);
    assert.equal((await cli(first, 'resume', 'held.test')).code, 0);
    await world.sinks.main!.waitForRecipients(resumed, 20_000);

    assert.equal((await cli(first, 'suspend', 'held.test')).code, 0);
    await inject(before);
    await first.waitForLogs((r) => r.event === 'parked' && r.reason === 'suspended', resumed.length + before.length);
  } finally {
    await first.stop();
  }
  const count = (rcpts: string[]) => world.sinks.main!.messages.filter((m) => m.rcptTo.some((r) => rcpts.includes(r))).length;
  assert.equal(count(before), 0, 'nothing left while suspended');
  // The suspension outlasts the restart (it is kept in Redis); at resume the new daemon finds the
  // pairs parked before the restart itself.
  const second = await world.start(overrides);
  try {
    assert.match((await cli(second, 'summary')).stdout, /^Suspended domains:\s+held\.test$/m);
    assert.equal(count(before), 0, 'nothing left while still suspended');
    assert.equal((await cli(second, 'resume', 'held.test')).code, 0);
    await world.sinks.main!.waitForRecipients(before, 20_000);
    assert.equal(count(resumed) + count(before), resumed.length + before.length, 'each message once');
  } finally {
    await second.stop();
  }
});
