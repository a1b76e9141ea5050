// MX lookup outcomes and ordering, driven by an in-memory resolver so every case is exact; the
// same paths run against a real DNS server in the end-to-end tests.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DnsResolver } from '../../src/dns/resolver.js';
import { memoryResolver } from '../helpers/memory-resolver.js';
import { type LookupResult, type Target, lookupTargets } from '../../src/delivery/route.js';

const opts = { routes: {}, port: 25 };

function targets(r: LookupResult): Target[] {
  assert.equal(r.kind, 'targets', `expected targets, got ${JSON.stringify(r)}`);
  return r.kind === 'targets' ? r.targets : [];
}

test('MX hosts come in preference order; equal preferences are shuffled', async () => {
  const r = memoryResolver(
    { 'd.test': [{ exchange: 'c.mx', priority: 20 }, { exchange: 'a.mx', priority: 10 }, { exchange: 'b.mx', priority: 10 }] },
    { 'a.mx': ['192.0.2.1'], 'b.mx': ['192.0.2.2'], 'c.mx': ['192.0.2.3'] },
  );
  const sequence = [0.9, 0.5, 0.1];
  let i = 0;
  const first = targets(await lookupTargets('d.test', r, { ...opts, random: () => sequence[i++ % 3]! }));
  assert.deepEqual(first.map((t) => t.host), ['b.mx', 'a.mx', 'c.mx']);
  const second = targets(await lookupTargets('d.test', r, { ...opts, random: () => 0.5 }));
  assert.deepEqual(second.map((t) => [t.host, t.address, t.port, t.preference]),
    [['a.mx', '192.0.2.1', 25, 10], ['b.mx', '192.0.2.2', 25, 10], ['c.mx', '192.0.2.3', 25, 20]]);
});

test('without MX records the domain itself is the implicit MX', async () => {
  const t = targets(await lookupTargets('d.test', memoryResolver({}, { 'd.test': ['192.0.2.9'] }), opts));
  assert.deepEqual(t.map((x) => [x.host, x.address]), [['d.test', '192.0.2.9']]);
});

test('a static route skips the MX lookup', async () => {
  const t = targets(await lookupTargets('d.test', memoryResolver({}, {}), { ...opts, routes: { 'd.test': '192.0.2.7:2525' } }));
  assert.deepEqual(t.map((x) => [x.host, x.address, x.port]), [['192.0.2.7', '192.0.2.7', 2525]]);
});

test('DNS outcomes: null MX 556 5.1.10, NXDOMAIN 550 5.1.2, SERVFAIL and timeout 451 4.4.3, dangling MX 550 5.4.4', async () => {
  const table: Array<[string, DnsResolver, string, number, string]> = [
    ['n.test', memoryResolver({ 'n.test': [{ exchange: '', priority: 0 }] }, {}), 'null_mx', 556, '5.1.10'],
    ['x.test', memoryResolver({}, {}), 'failed', 550, '5.1.2'],
    ['s.test', memoryResolver({ 's.test': 'ESERVFAIL' }, {}), 'failed', 451, '4.4.3'],
    ['t.test', memoryResolver({ 't.test': 'ETIMEOUT' }, {}), 'failed', 451, '4.4.3'],
    ['h.test', memoryResolver({ 'h.test': [{ exchange: 'gone.h.test', priority: 0 }] }, {}), 'failed', 550, '5.4.4'],
    ['m.test', memoryResolver({ 'm.test': [{ exchange: 'mx.m.test', priority: 0 }] }, { 'mx.m.test': 'ESERVFAIL' }), 'failed', 451, '4.4.3'],
  ];
  for (const [domain, resolver, kind, code, enhanced] of table) {
    const r = await lookupTargets(domain, resolver, opts);
    assert.equal(r.kind, kind, domain);
    assert.ok(r.kind !== 'targets');
    assert.deepEqual([r.reply.code, r.reply.enhanced], [code, enhanced], domain);
  }
});

test('a null MX beside real MX records is ignored (RFC 7505 §3)', async () => {
  const r = memoryResolver({ 'd.test': [{ exchange: '', priority: 0 }, { exchange: 'mx.d.test', priority: 10 }] }, { 'mx.d.test': ['192.0.2.4'] });
  assert.deepEqual(targets(await lookupTargets('d.test', r, opts)).map((t) => t.host), ['mx.d.test']);
});
