// Outcome records to the sender's systems: queued in Redis as they are logged, POSTed in signed
// JSON batches to real HTTP endpoints on loopback, kept through an endpoint's outage and a
// kill -9 of the daemon, in order per message, none twice; a stalled endpoint holds no mail; of
// two nodes one posts while the other stands by.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Daemon } from '../helpers/daemon.js';
import { runCli } from '../helpers/daemon.js';
import { type Receiver, startReceiver } from '../helpers/http-receiver.js';
import { freePort } from '../helpers/ports.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone } from './world.js';

const SECRET = 'sixteen-or-more-secret';
const SENDER = 'news@hook.test';
let world: World;
const receivers: Receiver[] = [];

before(async () => {
  world = await buildWorld({
    zone: mxZone({ 'hook.test': '127.0.0.170', 'bad.test': '127.0.0.171' }),
    sinks: {
      hook: { host: '127.0.0.170' },
      bad: { host: '127.0.0.171', behaviour: (ctx) => (ctx.stage === 'rcpt' ? { code: 550, message: '5.1.1 no such user here' } : undefined) },
    },
  });
});

after(async () => {
  await world.close();
  await Promise.all(receivers.map((r) => r.close()));
});

async function receiver(): Promise<Receiver> {
  const r = await startReceiver();
  receivers.push(r);
  return r;
}

async function send(to: string, headers: Record<string, string> = {}, port = world.intakePort): Promise<string> {
  const { response } = await sendMail({ host: '127.0.0.1', port, from: SENDER, to: [to], raw: makeMessage({ from: SENDER, to: [to], headers }) });
  return /queued as (\S+)/.exec(response)![1]!;
}

/** `n` messages to <prefix><i>@hook.test, each to the intake port `portOf(i)`, once all are at the sink: their queue ids. */
async function sendDelivered(prefix: string, n: number, portOf: (i: number) => number = () => world.intakePort): Promise<string[]> {
  const qids: string[] = [];
  for (let i = 0; i < n; i++) qids.push(await send(`${prefix}${i}@hook.test`, {}, portOf(i)));
  await world.sinks.hook!.waitForRecipients(qids.map((_, i) => `${prefix}${i}@hook.test`));
  return qids;
}

/** Each record's event, per message, in the order the endpoint took them. */
function byMessage(records: Array<Record<string, any>>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const r of records) out.set(r.qid, [...(out.get(r.qid) ?? []), r.event]);
  return out;
}

/**
 * Every record taken once, and each of these messages' reception then its delivery; with records
 * of several nodes (`unordered`), which are not ordered with each other, both of each.
 */
function receivedThenDelivered(records: Array<Record<string, any>>, qids: readonly string[], unordered = false): void {
  assert.equal(new Set(records.map((r) => r.id)).size, records.length, 'no record taken twice');
  const events = byMessage(records);
  for (const qid of qids) {
    const seen = unordered ? [...events.get(qid) ?? []].sort().reverse() : events.get(qid);
    assert.deepEqual(seen, ['reception', 'delivery'], qid);
  }
}

test('an endpoint down for a while: every record arrives once it is up, in order per message, signed, with its tenant; the tenant filter and the stream in summary and metrics', async () => {
  const all = await receiver();
  const acme = await receiver();
  all.setMode({ answer: 503 });
  const metricsPort = await freePort('127.0.0.1');
  const daemon = await world.start({
    metrics: { listen: `127.0.0.1:${metricsPort}` },
    webhooks: [
      { name: 'all', url: all.url, events: ['reception', 'delivery', 'permanent_failure', 'bounce_queued'], batch_size: 7, batch_wait: '200ms',
        secret: SECRET, headers: { Authorization: 'Bearer t0ken' } },
      { name: 'acme', url: acme.url, events: ['delivery'], tenants: ['acme'] },
    ],
  });
  try {
    const qids: string[] = [];
    for (let i = 0; i < 12; i++) qids.push(await send(`u${i}@hook.test`, i % 2 === 0 ? { 'X-Impulse-Tenant': 'acme' } : {}));
    const bad = await send('nobody@bad.test');
    // 12 messages and the DSN for bad.test's failure, to the sender at hook.test.
    await world.sinks.hook!.waitForMessages(13);
    await daemon.waitForLog((r) => r.event === 'webhook_failed' && r.webhook === 'all' && /^451 4\.4\.2 HTTP 503/.test(r.reply));
    assert.ok(world.sinks.hook!.messages.every((m) => !/x-impulse-tenant/i.test(m.raw.toString())), 'the tenant header is removed before delivery');

    const summary = await runCli(['summary', '-c', daemon.configPath]);
    assert.match(summary.stdout, /^all\s+failing\s+(\d+)\s+\S+\s+\d+ failed since \S+: 451 4\.4\.2 HTTP 503/m);
    assert.ok(Number(/^all\s+failing\s+(\d+)/m.exec(summary.stdout)![1]) >= 20, summary.stdout);
    const scraped = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(scraped, /^impulse_webhook_queued_records\{webhook="all"\} (2\d|3\d)$/m);
    assert.match(scraped, /^impulse_webhook_request_failures_total\{webhook="all"\} [1-9]/m);

    all.setMode({ answer: 200 });
    const expected = 12 * 2 + 3 + 1;
    const records = await all.until((r) => (r.taken.length >= expected ? r.taken : undefined), 30_000);
    await daemon.waitForLog((r) => r.event === 'webhook_recovered' && r.webhook === 'all');
    assert.equal(records.length, expected);
    receivedThenDelivered(records, qids);
    const events = byMessage(records);
    assert.deepEqual(events.get(bad), ['reception', 'permanent_failure', 'bounce_queued']);
    const dsn = records.find((r) => r.event === 'bounce_queued')!.dsn_qid;
    assert.deepEqual(events.get(dsn), ['delivery'], 'the DSN\'s own delivery');
    const node = daemon.logs.find((l) => l.event === 'node_started')!.node as string;
    for (const r of records) {
      assert.equal(r.tenant, qids.indexOf(r.qid) % 2 === 0 ? 'acme' : undefined, `${r.event} ${r.qid}`);
      assert.equal(r.node, node);
      assert.ok(!Number.isNaN(Date.parse(r.time)));
    }
    for (const req of all.requests) {
      assert.equal(req.headers['content-type'], 'application/json');
      assert.equal(req.headers.authorization, 'Bearer t0ken');
      const ts = req.headers['x-impulse-timestamp'] as string;
      assert.match(ts, /^\d{10}$/);
      const mac = createHmac('sha256', SECRET).update(`${ts}.${req.body}`).digest('hex');
      assert.equal(req.headers['x-impulse-signature'], `sha256=${mac}`);
      assert.ok(JSON.parse(req.body).length <= 7, 'batch_size');
    }

    const acmeRecords = await acme.until((r) => (r.taken.length >= 6 ? r.taken : undefined));
    assert.deepEqual(acmeRecords.map((r) => `${r.event} ${r.qid} ${r.tenant}`).sort(), qids.filter((_, i) => i % 2 === 0).map((q) => `delivery ${q} acme`).sort());
    assert.equal(acme.requests[0]!.headers['x-impulse-signature'], undefined, 'no secret, no signature');
  } finally {
    await daemon.stop();
  }
});

test('a stalled endpoint holds no mail: every message is delivered while its records wait, then they arrive', async () => {
  const slow = await receiver();
  slow.setMode({ stall: true });
  const daemon = await world.start({ webhooks: [{ name: 'slow', url: slow.url, events: ['reception', 'delivery'], timeout: '60s' }] });
  try {
    const qids = await sendDelivered('s', 20);
    assert.equal(slow.requests.length, 0, 'nothing answered yet');
    slow.setMode({ answer: 200 });
    const records = await slow.until((r) => (r.taken.length >= 40 ? r.taken : undefined));
    receivedThenDelivered(records, qids);
  } finally {
    await daemon.stop();
  }
});

test('kill -9 of the daemon while records wait for the endpoint: the next start posts every one of them', async () => {
  const hook = await receiver();
  hook.setMode({ answer: 500 });
  const config = { webhooks: [{ name: 'crash', url: hook.url, events: ['reception', 'delivery'], batch_size: 4 }] };
  let daemon: Daemon = await world.start(config);
  try {
    const qids = await sendDelivered('k', 8);
    await daemon.waitForLog((r) => r.event === 'webhook_failed' && r.webhook === 'crash');
    await daemon.stop('SIGKILL');
    hook.setMode({ answer: 200 });
    daemon = await world.start(config);
    const records = await hook.until((r) => (r.taken.length >= 16 ? r.taken : undefined), 30_000);
    assert.equal(records.length, 16);
    receivedThenDelivered(records, qids);
  } finally {
    await daemon.stop();
  }
});

test('two nodes on one Redis: one posts the webhook, the other stands by; a stop hands the lease over and every record arrives once', async () => {
  const hook = await receiver();
  hook.setMode({ answer: 503 });
  const redis: TestRedis = await startRedis();
  const webhooks = [{ name: 'shared', url: hook.url, events: ['reception', 'delivery'], batch_size: 10 }];
  const a = await world.startNode('hook-a', { redis: { url: redis.url }, webhooks });
  const b = await world.startNode('hook-b', { redis: { url: redis.url }, webhooks });
  try {
    const qids = await sendDelivered('n', 10, (i) => (i % 2 === 0 ? a.port : b.port));
    const failed = await Promise.race([a, b].map((n) => n.daemon.waitForLog((r) => r.event === 'webhook_failed' && r.webhook === 'shared', 20_000).then(() => n)));
    const other = failed === a ? b : a;
    const state = async (n: typeof a) => /^shared\s+(\w+)/m.exec((await runCli(['summary', '-c', n.daemon.configPath])).stdout)?.[1];
    assert.equal(await state(failed), 'failing');
    assert.equal(await state(other), 'standby', 'the other node does not post');
    assert.equal(other.daemon.logs.filter((r) => r.event === 'webhook_failed').length, 0);
    assert.equal(await failed.daemon.stop(), 0);
    hook.setMode({ answer: 200 });
    const records = await hook.until((r) => (r.taken.length >= 20 ? r.taken : undefined), 30_000);
    assert.equal(records.length, 20);
    receivedThenDelivered(records, qids, true);
    assert.deepEqual(new Set(records.map((r) => r.node)), new Set(['hook-a', 'hook-b']), 'records of both nodes, in one stream');
  } finally {
    await Promise.all([a.daemon.stop(), b.daemon.stop()]);
    await redis.stop();
  }
});
