// initiate_connection's flags produced for real: a refused port, a listener whose backlog is
// full, a source address not on this host, prohibited MX addresses, a host at its limit, DNS
// SERVFAIL, silence and null MX, and a lookup in flight; each seen in the log records and in the
// hook calls a recording plugin writes.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as F from '../../src/delivery/flags.js';
import { type Blackhole, startBlackhole } from '../helpers/blackhole.js';
import type { Daemon, LogRecord } from '../helpers/daemon.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone, queueIdOf } from './world.js';

const RECORDING_PLUGIN = fileURLToPath(new URL('../fixtures/recording-plugin.js', import.meta.url));
const COUNTING_PLUGIN = fileURLToPath(new URL('../../src/plugins/count-connection-failures.js', import.meta.url));

let world: World;
let daemon: Daemon;
let blackhole: Blackhole;
let releaseLimit!: () => void;
const limitGate = new Promise<void>((resolve) => {
  releaseLimit = resolve;
});

before(async () => {
  world = await buildWorld({
    zone: {
      'refuse.test': { mx: [{ preference: 10, exchange: 'mx1.refuse.test' }, { preference: 20, exchange: 'mx2.refuse.test' }] },
      'mx1.refuse.test': { a: ['127.0.0.30'] },
      'mx2.refuse.test': { a: ['127.0.0.31'] },
      ...mxZone({ 'slow.test': '127.0.0.32', 'private.test': '127.0.0.40', 'limit.test': '127.0.0.41', 'bind.test': '127.0.0.31' }),
      'servfail.test': { rcode: 'SERVFAIL' },
      'silent.test': { drop: true },
      'nullmx.test': { mx: [{ preference: 0, exchange: '.' }] },
    },
    sinks: {
      next: { host: '127.0.0.31' },
      limit: { host: '127.0.0.41', behaviour: async (ctx) => (ctx.stage === 'data' ? limitGate.then(() => undefined) : undefined) },
    },
  });
  blackhole = await startBlackhole('127.0.0.32', world.sinkPort);
  daemon = await world.start({
    connect_timeout: '1s',
    prohibited_hosts: ['127.0.0.40/32'],
    hosts: { 'mx.limit.test': { max_outbound_connections: 1 } },
    // Two queued messages then ask for a second connection, which the host limit refuses.
    domains: { 'limit.test': { connection_allocation_aggressiveness: 'high' } },
    bindings: [{ name: 'far', bind_address: '198.51.100.7' }],
    plugins: [{ path: RECORDING_PLUGIN }, { path: COUNTING_PLUGIN }],
  });
});

after(async () => {
  releaseLimit();
  await world.close();
  await blackhole.close();
});

async function inject(to: string, headers: Record<string, string> = {}): Promise<string> {
  const raw = makeMessage({ from: 's@sender.test', to: [to], headers });
  return queueIdOf((await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [to], raw })).response);
}

function failureRecord(domain: string, flags: string[]): Promise<LogRecord> {
  return daemon.waitForLog((r) => r.event === 'connection_failure' && r.domain === domain && JSON.stringify(r.flags) === JSON.stringify(flags));
}

function hookCall(domain: string, err: number): Promise<LogRecord> {
  return daemon.waitForLog((r) => r.event === 'hook_call' && r.hook === 'log_client_connection_failure' && r.args[1] === err && r.args[2].domain === domain);
}

test('CONNECT: a refused port is marked failed and the next MX is tried at once', async () => {
  const qid = await inject('x@refuse.test');
  const [msg] = await world.sinks.next!.waitForRecipients(['x@refuse.test']);
  assert.ok(msg);
  const record = await failureRecord('refuse.test', ['CONN_ERROR_CONNECT']);
  assert.deepEqual([record.binding, record.mx_host, record.mx_ip], ['default', 'mx1.refuse.test', '127.0.0.30']);
  const call = await hookCall('refuse.test', F.CONN_ERROR_CONNECT);
  assert.deepEqual(call.args[0], { address: '127.0.0.30', port: world.sinkPort, host: 'mx1.refuse.test' });
  assert.deepEqual(call.args[3], { binding: 'default', domain: 'refuse.test', bindAddress: null });
  assert.equal(typeof call.args[4], 'number');
  const success = await daemon.waitForLog((r) => r.event === 'hook_call' && r.hook === 'log_client_connection_success' && r.args[1].domain === 'refuse.test');
  assert.deepEqual(success.args[0], { address: '127.0.0.31', port: world.sinkPort, host: 'mx2.refuse.test' });
  const delivery = await daemon.waitForLog((r) => r.event === 'delivery' && r.qid === qid);
  assert.equal(delivery.mx_ip, '127.0.0.31');
  const counted = await daemon.waitForLog((r) => r.event === 'connection_failure_count' && r.domain === 'refuse.test' && r.flags.includes('CONN_ERROR_CONNECT'));
  assert.ok(counted.counts.CONN_ERROR_CONNECT >= 1, 'the example plugin counts failures by flag');
  assert.ok(counted.counts.CONN_ERROR_MX_LOOKUP_PENDING >= 1);
});

test('MX_LOOKUP_PENDING: the first attempt at a new domain finds its lookup in flight', async () => {
  const call = await hookCall('refuse.test', F.CONN_ERROR_MX_LOOKUP_PENDING);
  assert.equal(call.args[0], null, 'no address is involved yet');
});

test('CONNECT_TIMEOUT: a listener with a full backlog times out after connect_timeout, with REQUEUE1', async () => {
  const qid = await inject('x@slow.test');
  const record = await failureRecord('slow.test', ['CONN_ERROR_CONNECT_TIMEOUT', 'CONN_ACTION_REQUEUE1']);
  assert.deepEqual([record.mx_host, record.mx_ip], ['mx.slow.test', '127.0.0.32']);
  assert.match(record.reply, /^450 4\.4\.1 \[internal\] Connection Timed Out/);
  await hookCall('slow.test', F.CONN_ERROR_CONNECT_TIMEOUT | F.CONN_ACTION_REQUEUE1);
  const deferred = await daemon.waitForLog((r) => r.event === 'transient_failure' && r.qid === qid);
  assert.match(deferred.reply, /^450 4\.4\.1 /);
});

test('BIND: a binding whose source address is not on this host fails before any packet leaves', async () => {
  const qid = await inject('x@bind.test', { 'X-Impulse-Binding': 'far' });
  const record = await failureRecord('bind.test', ['CONN_ERROR_BIND', 'CONN_ACTION_REQUEUE1']);
  assert.equal(record.binding, 'far');
  const deferred = await daemon.waitForLog((r) => r.event === 'transient_failure' && r.qid === qid);
  assert.equal(deferred.binding, 'far');
  assert.equal(world.sinks.next!.messages.filter((m) => m.rcptTo.includes('x@bind.test')).length, 0);
});

test('PROHIBITED_IP: every MX address prohibited purges the domain and fails with 551 5.4.6', async () => {
  const qid = await inject('x@private.test');
  await failureRecord('private.test', ['CONN_ERROR_PROHIBITED_IP', 'CONN_ACTION_PURGE_DOMAIN']);
  const failed = await daemon.waitForLog((r) => r.event === 'permanent_failure' && r.qid === qid);
  assert.match(failed.reply, /^551 5\.4\.6 /);
});

test('DNS: SERVFAIL and silence give MX_LOOKUP_FAILED with PURGE_DOMAIN (deferred); null MX gives SMTP_NULL_MX (failed)', async () => {
  const servfail = await inject('x@servfail.test');
  const silent = await inject('x@silent.test');
  const nullmx = await inject('x@nullmx.test');
  await failureRecord('servfail.test', ['CONN_ERROR_MX_LOOKUP_FAILED', 'CONN_ACTION_PURGE_DOMAIN']);
  await failureRecord('silent.test', ['CONN_ERROR_MX_LOOKUP_FAILED', 'CONN_ACTION_PURGE_DOMAIN']);
  await failureRecord('nullmx.test', ['CONN_ERROR_SMTP_NULL_MX', 'CONN_ACTION_PURGE_DOMAIN']);
  assert.match((await daemon.waitForLog((r) => r.event === 'transient_failure' && r.qid === servfail)).reply, /^451 4\.4\.3 /);
  assert.match((await daemon.waitForLog((r) => r.event === 'transient_failure' && r.qid === silent)).reply, /^451 4\.4\.3 .*ETIMEOUT/);
  assert.match((await daemon.waitForLog((r) => r.event === 'permanent_failure' && r.qid === nullmx)).reply, /^556 5\.1\.10 /);
});

test('HOST_MAX_REACHED: with the only MX at its host limit, the next connection waits, with no action', async () => {
  const first = await inject('a@limit.test');
  await world.sinks.limit!.waitForConnections(1);
  const second = await inject('b@limit.test');
  await hookCall('limit.test', F.CONN_ERROR_HOST_MAX_REACHED);
  assert.equal(world.sinks.limit!.connections, 1, 'the host limit holds the second connection back');
  releaseLimit();
  await world.sinks.limit!.waitForRecipients(['a@limit.test', 'b@limit.test']);
  for (const qid of [first, second]) {
    const d = await daemon.waitForLog((r) => r.event === 'delivery' && r.qid === qid);
    assert.equal(d.attempt, 1, 'waiting for the host limit charges no attempt');
  }
  assert.equal(world.sinks.limit!.connections, 1, 'the waiting message went out on the connection that was already open');
});
