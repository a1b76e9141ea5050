// Mail queued when the daemon stops, or held by it when it is killed, is delivered after it starts
// again, exactly once, and a crash never fails it.
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { join } from 'node:path';
import { type World, buildWorld, mxZone, queueIdOf } from './world.js';

let world: World;

before(async () => {
  world = await buildWorld({
    zone: mxZone({ 'down.test': '127.0.0.6', 'slow.test': '127.0.0.8', 'crash.test': '127.0.0.9' }),
    sinks: {},
  });
});

after(async () => {
  await world.close();
});

test('messages queued for a sink that is down survive a stop and are delivered once after restart', async () => {
  const first = await world.start();
  const qids: string[] = [];
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const messageId = `<restart-${i}@impulse.test>`;
    const raw = makeMessage({ from: 's@sender.test', to: [`r${i}@down.test`], messageId });
    const res = await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [`r${i}@down.test`], raw });
    qids.push(queueIdOf(res.response));
    ids.push(messageId);
  }
  const deferred = await first.waitForLogs((r) => r.event === 'transient_failure' && qids.includes(r.qid), 5);
  for (const d of deferred) assert.match(d.reply, /^421 4\.4\.0 \[internal\] (no MXs for down\.test could be reached|.*ECONNREFUSED)/);
  assert.equal(await first.stop('SIGTERM'), 0);

  const sink = await world.startSink('down', '127.0.0.6');
  const second = await world.start();
  await sink.waitForMessages(5);
  await second.waitForLogs((r) => r.event === 'delivery' && qids.includes(r.qid), 5);
  const seen = sink.messages.map((m) => /^Message-ID: (.*)$/im.exec(m.raw.toString('latin1'))?.[1]?.trim());
  assert.deepEqual([...seen].sort(), [...ids].sort(), 'each queued message arrived exactly once');
  assert.equal(await second.stop('SIGTERM'), 0);
});

test('SIGTERM lets a session in flight finish before the daemon exits', async () => {
  let reachedData!: () => void;
  const atData = new Promise<void>((resolve) => {
    reachedData = resolve;
  });
  // A slow receiver: the final reply comes a second after the data, well inside shutdown_timeout.
  const sink = await world.startSink('slow', '127.0.0.8', async (ctx) => {
    if (ctx.stage !== 'data') return undefined;
    reachedData();
    await delay(1000);
    return undefined;
  });
  const daemon = await world.start();
  const raw = makeMessage({ from: 's@sender.test', to: ['x@slow.test'] });
  const res = await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: ['x@slow.test'], raw });
  const qid = queueIdOf(res.response);
  await atData;
  const code = await daemon.stop('SIGTERM');
  assert.equal(code, 0);
  assert.equal(sink.messages.length, 1);
  assert.ok(daemon.logs.some((r) => r.event === 'delivery' && r.qid === qid), 'the delivery was recorded before exit');
  assert.ok(daemon.logs.findIndex((r) => r.event === 'stopping') < daemon.logs.findIndex((r) => r.event === 'delivery' && r.qid === qid));
});

test('kill -9 with mail held and a session in flight: the next start delivers every message once, none failed, no attempt charged', async () => {
  let killed = false;
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  // Until the kill, the receiver sits on the data; the reply it finally gives goes to a dead socket.
  const sink = await world.startSink('crash', '127.0.0.9', async (ctx) => {
    if (ctx.stage !== 'data' || killed) return undefined;
    await released;
    return { code: 451, message: 'try again later' };
  });
  const config = { redis: { embedded: true, dir: join(world.dir, 'redis-crash'), appendfsync: 'always' }, job_lock_timeout: '2s' };
  const first = await world.start(config);
  const recipients = ['k1@crash.test', 'k2@crash.test', 'k3@crash.test'];
  const qids: string[] = [];
  for (const to of recipients) {
    const raw = makeMessage({ from: 's@sender.test', to: [to] });
    qids.push(queueIdOf((await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [to], raw })).response));
  }
  await sink.waitForConnections(1);
  first.proc.kill('SIGKILL');
  await first.exited;
  killed = true;
  release();

  const second = await world.start(config);
  await sink.waitForRecipients(recipients, 20_000);
  const deliveries = await second.waitForLogs((r) => r.event === 'delivery' && qids.includes(r.qid), 3, 20_000);
  assert.deepEqual(deliveries.map((d) => d.attempt), [1, 1, 1], 'the crash charged no attempt');
  for (const to of recipients) assert.equal(sink.messages.filter((m) => m.rcptTo.includes(to)).length, 1, `${to} arrived once`);
  assert.deepEqual(second.logs.filter((r) => r.event === 'permanent_failure' || r.event === 'bounce_queued'), []);
  assert.equal(await second.stop('SIGTERM'), 0);
});
