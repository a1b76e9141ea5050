// initiate_connection flag by flag, with an in-memory resolver, a scripted connector and a
// manual clock, so each CONN_ERROR_* and CONN_ACTION_* is produced exactly. The end-to-end tests
// produce the same flags on real sockets where loopback allows it; socket, ioctl and network
// unreachable errors cannot be caused on loopback and are injected here at the connector seam.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import type { Binding } from '../../src/binding/registry.js';
import { AddressHealth } from '../../src/delivery/address-health.js';
import type { ConnectSpec, Connector, SmtpClient } from '../../src/delivery/connector.js';
import { DomainRecord } from '../../src/delivery/domain-record.js';
import * as F from '../../src/delivery/flags.js';
import { HostConnections } from '../../src/delivery/host-connections.js';
import { type ConnectionError, type ConnectionHandle, Initiator } from '../../src/delivery/initiator.js';
import type { DnsResolver } from '../../src/dns/resolver.js';
import { HookRegistry } from '../../src/hooks/registry.js';
import { memoryResolver } from '../helpers/memory-resolver.js';
import { optionsFrom } from '../helpers/options.js';
import { DestinationPolicies } from '../../src/delivery/destination-tls.js';

const binding: Binding = { name: 'b1', bindAddress: '127.0.0.10', ehloHostname: 'b1.test' };
const client: SmtpClient = { secure: false, tls: { verified: 'no' }, extensions: [], closed: false, onClose: () => {}, offClose: () => {}, judge: () => undefined, send: async () => ({}) as never, reset: async () => {}, quit: () => {}, close: () => {} };

type Outcome = { sync: { error: number; reply: { code: number; enhanced: string }; retry?: Promise<void> } } | { via: 'connected' | 'timeout'; handle: ConnectionHandle; error?: ConnectionError };

function world(opts: {
  resolver: DnsResolver;
  connect?: Record<string, (spec: ConnectSpec) => Promise<SmtpClient>>;
  local?: boolean;
  prohibited?: string[];
  skipHosts?: string[];
  hostLimit?: number;
}) {
  const records: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'debug' }, new Writable({ write(chunk, _e, cb) { records.push(JSON.parse(String(chunk))); cb(); } }));
  const hooks = new HookRegistry({ log });
  const failures: Array<{ addr: unknown; err: number; domain: string; slot: unknown; now: number | null }> = [];
  const successes: Array<{ addr: unknown; domain: string }> = [];
  hooks.registerLast('log_client_connection_failure', (_c, addr, err, domain, slot, now) => {
    failures.push({ addr, err, domain: domain.domain, slot, now });
  }, { plugin: 'test' });
  hooks.registerLast('log_client_connection_success', (_c, addr, domain) => {
    successes.push({ addr, domain: domain.domain });
  }, { plugin: 'test' });
  hooks.seal();
  let now = 1_000_000;
  const attempts: string[] = [];
  const connector: Connector = (spec) => {
    attempts.push(spec.address);
    const behave = opts.connect?.[spec.address];
    return behave ? behave(spec) : Promise.resolve(client);
  };
  const initiator = new Initiator({
    resolver: opts.resolver, connector, health: new AddressHealth(), hosts: new HostConnections(), hooks, log,
    clock: { now: () => now },
    isLocalAddress: () => opts.local ?? true,
    policies: new DestinationPolicies({}), observer: { tlsPolicy: () => {} }, replies: { observe: () => {} },
    options: optionsFrom({
      remote_smtp_port: 25, prohibited_hosts: opts.prohibited ?? [], skip_hosts: opts.skipHosts ?? [], host_failure_retry: '120s',
      connect_timeout: '1s', greeting_timeout: '1s', data_timeout: '1s', tls: 'no',
      ...(opts.hostLimit === undefined ? {} : { hosts: { '/.*/': { max_outbound_connections: opts.hostLimit } } }),
    }),
  });
  const dr = new DomainRecord('d.test');
  return {
    dr, records, failures, successes, attempts, initiator,
    advance(ms: number) {
      now += ms;
    },
    initiate(): Promise<Outcome> {
      return new Promise((resolve) => {
        const r = initiator.initiateConnection(dr, binding, now,
          (handle, error) => resolve({ via: 'connected', handle, ...(error ? { error } : {}) }),
          (handle, error) => resolve({ via: 'timeout', handle, error }));
        if ('error' in r) resolve({ sync: r });
      });
    },
    /** Lets the first call start the lookup, waits for it, and initiates again. */
    async afterLookup(): Promise<Outcome> {
      const first = await this.initiate();
      assert.ok('sync' in first && first.sync.error === F.CONN_ERROR_MX_LOOKUP_PENDING, 'the first call finds the lookup in flight');
      if (dr.mx.phase === 'resolving') await dr.mx.settled;
      return this.initiate();
    },
  };
}

const twoMx = memoryResolver(
  { 'd.test': [{ exchange: 'mx1.d.test', priority: 10 }, { exchange: 'mx2.d.test', priority: 20 }] },
  { 'mx1.d.test': ['192.0.2.1'], 'mx2.d.test': ['192.0.2.2'] },
);
const refused = () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ESOCKET', originalCode: 'ECONNREFUSED' }));

function syncFlags(o: Outcome): string[] {
  assert.ok('sync' in o, `expected an immediate error, got ${'via' in o ? o.via : ''}`);
  return F.flagNames(o.sync.error);
}

test('MX_LOOKUP_PENDING while the lookup is in flight, with no action; then a connection', async () => {
  const w = world({ resolver: twoMx });
  const first = await w.initiate();
  assert.deepEqual(syncFlags(first), ['CONN_ERROR_MX_LOOKUP_PENDING']);
  assert.deepEqual(w.failures[0], { addr: null, err: F.CONN_ERROR_MX_LOOKUP_PENDING, domain: 'd.test', slot: { binding: 'b1', domain: 'd.test', bindAddress: '127.0.0.10' }, now: 1_000_000 });
  assert.ok('sync' in first && first.sync.retry, 'a wait says when to ask again');
  await first.sync.retry;
  assert.equal(w.dr.mx.phase, 'resolved', 'once the lookup has answered');
  const second = await w.initiate();
  assert.ok('via' in second && second.via === 'connected' && !second.error);
  assert.equal(second.handle.target.address, '192.0.2.1');
  assert.deepEqual(w.successes, [{ addr: { address: '192.0.2.1', port: 25, host: 'mx1.d.test' }, domain: 'd.test' }]);
});

test('DNS failures purge the domain: SERVFAIL and timeout temporarily, NXDOMAIN permanently; null MX permanently', async () => {
  const table: Array<[DnsResolver, string[], number]> = [
    [memoryResolver({ 'd.test': 'ESERVFAIL' }, {}), ['CONN_ERROR_MX_LOOKUP_FAILED', 'CONN_ACTION_PURGE_DOMAIN'], 451],
    [memoryResolver({ 'd.test': 'ETIMEOUT' }, {}), ['CONN_ERROR_MX_LOOKUP_FAILED', 'CONN_ACTION_PURGE_DOMAIN'], 451],
    [memoryResolver({}, {}), ['CONN_ERROR_MX_LOOKUP_FAILED', 'CONN_ACTION_PURGE_DOMAIN'], 550],
    [memoryResolver({ 'd.test': [{ exchange: '', priority: 0 }] }, {}), ['CONN_ERROR_SMTP_NULL_MX', 'CONN_ACTION_PURGE_DOMAIN'], 556],
  ];
  for (const [resolver, flags, code] of table) {
    const w = world({ resolver });
    const o = await w.afterLookup();
    assert.deepEqual(syncFlags(o), flags);
    assert.ok('sync' in o && o.sync.reply.code === code);
    assert.equal(w.attempts.length, 0, 'no connection is attempted');
  }
});

test('PROHIBITED_IP when every MX address is prohibited: purge domain, permanent 551 5.4.6', async () => {
  const w = world({ resolver: twoMx, prohibited: ['192.0.2.0/24'] });
  const o = await w.afterLookup();
  assert.deepEqual(syncFlags(o), ['CONN_ERROR_PROHIBITED_IP', 'CONN_ACTION_PURGE_DOMAIN']);
  assert.ok('sync' in o && o.sync.reply.code === 551 && o.sync.reply.enhanced === '5.4.6');
});

test('CONNECT: a refusal marks the address failed and the next address is tried at once', async () => {
  const w = world({ resolver: twoMx, connect: { '192.0.2.1': refused } });
  const o = await w.afterLookup();
  assert.ok('via' in o && o.via === 'connected' && !o.error);
  assert.equal(o.handle.target.address, '192.0.2.2');
  assert.deepEqual(w.attempts, ['192.0.2.1', '192.0.2.2']);
  const refusal = w.failures.find((f) => f.err & F.CONN_ERROR_CONNECT)!;
  assert.deepEqual([refusal.err, refusal.addr], [F.CONN_ERROR_CONNECT, { address: '192.0.2.1', port: 25, host: 'mx1.d.test' }]);
  const record = w.records.find((r) => r.event === 'connection_failure' && (r.flags as string[]).includes('CONN_ERROR_CONNECT'))!;
  assert.deepEqual([record.domain, record.binding, record.mx_host, record.mx_ip], ['d.test', 'b1', 'mx1.d.test', '192.0.2.1']);
});

test('every address refused: CONNECT with REQUEUE1; then NO_MXS_REACHABLE until host_failure_retry passes', async () => {
  const w = world({ resolver: twoMx, connect: { '192.0.2.1': refused, '192.0.2.2': refused } });
  const o = await w.afterLookup();
  assert.ok('via' in o && o.error);
  assert.deepEqual(F.flagNames(o.error.flags), ['CONN_ERROR_CONNECT', 'CONN_ACTION_REQUEUE1']);
  assert.equal(w.dr.consecutiveFailures, 2);
  assert.deepEqual(syncFlags(await w.initiate()), ['CONN_ERROR_NO_MXS_REACHABLE', 'CONN_ACTION_REQUEUE1']);
  w.advance(120_000);
  const again = await w.initiate();
  assert.ok('via' in again, 'after host_failure_retry the addresses are tried again');
  assert.deepEqual(w.attempts, ['192.0.2.1', '192.0.2.2', '192.0.2.1', '192.0.2.2']);
});

test('CONNECT_TIMEOUT marks the address failed and tries the next at once; the last one timing out calls onTimeout with REQUEUE1', async () => {
  // The scheduler pauses a pair for host_failure_retry after a failure, as long as the mark
  // lasts: a timed-out primary MX would be chosen again every time if the next one waited.
  const timedOut = () => Promise.reject(Object.assign(new Error('Connection timeout'), { code: 'ETIMEDOUT', timeoutType: 'CONNECT_TIMEOUT' }));
  const w = world({ resolver: twoMx, connect: { '192.0.2.1': timedOut } });
  const o = await w.afterLookup();
  assert.ok('via' in o && o.via === 'connected' && !o.error);
  assert.equal(o.handle.target.address, '192.0.2.2');
  assert.deepEqual(w.attempts, ['192.0.2.1', '192.0.2.2']);
  assert.deepEqual(w.failures.filter((f) => f.addr !== null).map((f) => f.err), [F.CONN_ERROR_CONNECT_TIMEOUT], 'no message charged while another MX remains');

  const both = world({ resolver: twoMx, connect: { '192.0.2.1': timedOut, '192.0.2.2': timedOut } });
  const last = await both.afterLookup();
  assert.ok('via' in last && last.via === 'timeout' && last.error);
  assert.deepEqual(F.flagNames(last.error.flags), ['CONN_ERROR_CONNECT_TIMEOUT', 'CONN_ACTION_REQUEUE1']);
  assert.deepEqual([last.error.reply.code, last.error.reply.enhanced], [450, '4.4.1']);
  assert.deepEqual(syncFlags(await both.initiate()), ['CONN_ERROR_NO_MXS_REACHABLE', 'CONN_ACTION_REQUEUE1'], 'both addresses are marked failed');
});

test('a refusal at the greeting, 5xx included, is no service at that address: 421 4.4.0 with the server\'s words, and the next MX is tried', async () => {
  const greeting = (response: string) => () => Promise.reject(Object.assign(new Error(`Invalid greeting. response=${response}`), { code: 'EPROTOCOL', command: 'CONN', response }));
  const w = world({ resolver: twoMx, connect: { '192.0.2.1': greeting('554 5.3.2 No service'), '192.0.2.2': greeting('421 4.3.2 Busy') } });
  const o = await w.afterLookup();
  assert.ok('via' in o && o.via === 'connected' && o.error);
  assert.deepEqual(w.attempts, ['192.0.2.1', '192.0.2.2']);
  assert.deepEqual(F.flagNames(o.error.flags), ['CONN_ERROR_CONNECT', 'CONN_ACTION_REQUEUE1']);
  assert.deepEqual(o.error.reply, { code: 421, enhanced: '4.3.2', text: 'mx2.d.test [192.0.2.2]:25 said: 421 4.3.2 Busy' });
  const first = w.records.find((r) => r.event === 'connection_failure' && r.mx_ip === '192.0.2.1');
  assert.equal(first?.reply, '421 4.4.0 mx1.d.test [192.0.2.1]:25 said: 554 5.3.2 No service');
});

test('HOST_MAX_REACHED when every eligible MX is at its host limit, with no action; a close frees the slot', async () => {
  const w = world({ resolver: twoMx, hostLimit: 1 });
  const a = await w.afterLookup();
  const b = await w.initiate();
  assert.ok('via' in a && 'via' in b);
  assert.deepEqual([a.handle.target.host, b.handle.target.host], ['mx1.d.test', 'mx2.d.test']);
  const full = await w.initiate();
  assert.deepEqual(syncFlags(full), ['CONN_ERROR_HOST_MAX_REACHED']);
  assert.ok('sync' in full && full.sync.retry, 'a wait says when to ask again');
  const again = await w.initiate();
  assert.ok('sync' in again && again.sync.retry === full.sync.retry, 'every refusal while the hosts are full shares one wait');
  let freed = false;
  void full.sync.retry.then(() => { freed = true; });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(freed, false, 'not before a place frees');
  a.handle.close();
  await full.sync.retry;
  const c = await w.initiate();
  assert.ok('via' in c && c.handle.target.host === 'mx1.d.test');
});

test('BIND: a source address not on this host fails before any connection, with REQUEUE1', async () => {
  const w = world({ resolver: twoMx, local: false });
  assert.deepEqual(syncFlags(await w.afterLookup()), ['CONN_ERROR_BIND', 'CONN_ACTION_REQUEUE1']);
  assert.equal(w.attempts.length, 0);
  assert.deepEqual(w.failures.at(-1)!.addr, { address: '192.0.2.1', port: 25, host: 'mx1.d.test' });
});

test('injected at the connector seam: SOCKET and IOCTL fail the attempt; CONNECT_NETWORK moves to the next address', async () => {
  const errno = (code: string) => () => Promise.reject(Object.assign(new Error(code), { code: 'ESOCKET', originalCode: code }));
  for (const [code, flags] of [['EMFILE', ['CONN_ERROR_SOCKET', 'CONN_ACTION_REQUEUE1']], ['ENOTTY', ['CONN_ERROR_IOCTL', 'CONN_ACTION_REQUEUE1']]] as const) {
    const w = world({ resolver: twoMx, connect: { '192.0.2.1': errno(code) } });
    const o = await w.afterLookup();
    assert.ok('via' in o && o.error);
    assert.deepEqual(F.flagNames(o.error.flags), flags);
  }
  const w = world({ resolver: twoMx, connect: { '192.0.2.1': errno('ENETUNREACH') } });
  const o = await w.afterLookup();
  assert.ok('via' in o && !o.error && o.handle.target.address === '192.0.2.2');
  assert.equal(w.failures.find((f) => f.addr !== null)!.err, F.CONN_ERROR_CONNECT_NETWORK);
});

test('the fourteen flags are distinct single bits with names', () => {
  const all = [
    F.CONN_ERROR_MX_LOOKUP_PENDING, F.CONN_ERROR_MX_LOOKUP_FAILED, F.CONN_ERROR_SMTP_NULL_MX, F.CONN_ERROR_NO_MXS_REACHABLE,
    F.CONN_ERROR_PROHIBITED_IP, F.CONN_ERROR_HOST_MAX_REACHED, F.CONN_ERROR_SOCKET, F.CONN_ERROR_IOCTL, F.CONN_ERROR_BIND,
    F.CONN_ERROR_CONNECT, F.CONN_ERROR_CONNECT_NETWORK, F.CONN_ERROR_CONNECT_TIMEOUT, F.CONN_ACTION_REQUEUE1, F.CONN_ACTION_PURGE_DOMAIN,
  ];
  assert.equal(new Set(all).size, 14);
  for (const f of all) assert.equal(F.flagNames(f).length, 1);
  assert.equal(all.reduce((a, b) => a | b, 0).toString(2).replace(/0/g, '').length, 14);
});

test('skip_hosts: a skipped MX host is passed over for the domain\'s other MXs', async () => {
  const w = world({ resolver: twoMx, skipHosts: ['mx1.d.test'] });
  const o = await w.afterLookup();
  assert.ok('via' in o && o.handle.target.host === 'mx2.d.test');
  assert.deepEqual(w.attempts, ['192.0.2.2']);
});
